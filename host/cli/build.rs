//! Stamps the binary with the commit it was built from, for `deployer --version`: which
//! build a CI job ran is the first question when a deploy went wrong.
//!
//! `DEPLOYER_GIT_COMMIT` (a full or short hash) wins: a container build or a package has
//! no `.git` to read. Otherwise git is asked; with neither, the commit is "unknown".

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DEPLOYER_GIT_COMMIT");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let stamp = match std::env::var("DEPLOYER_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => short(commit.trim()).to_string(),
        _ => from_git(&dir).unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo:rustc-env=DEPLOYER_BUILD_COMMIT={stamp}");
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// `abc123def456 2026-12-01`, the commit and its date, watching what moves HEAD.
fn from_git(dir: &str) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|text| !text.is_empty())
    };
    let line = git(&["log", "-1", "--format=%H %cs"])?;
    let (commit, date) = line.split_once(' ')?;
    // A new commit or checkout changes HEAD or the branch's ref (or packed-refs).
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(format!("{} {date}", short(commit)))
}
