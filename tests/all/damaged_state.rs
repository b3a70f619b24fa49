//! Damaged and hostile state (issue #22): journals cut at every line and mid-line,
//! records out of range, history and `active` files that point elsewhere or are not
//! files at all. `status`, `history` and `rollback` must report the damage with the file
//! and line and exit 3 — never a confident wrong answer, a panic or a hang — and leave
//! the state directory byte for byte as it was, without a single cloud call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deployer_engine::gates::NoGates;
use deployer_engine::state::DeployResult;

use deployer_tests::support::cli::{bounded, mkfifo, plain};
use deployer_tests::support::config::ConfigBuilder;
use deployer_tests::support::listener::counting_endpoint;
use deployer_tests::support::rollout::{Harness, request};

const CANARY: &str = r#"{"steps":[{"weight":25},{"weight":50}]}"#;

/// Every entry under `root`: regular files by content, links by target, the rest by kind.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut seen = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_symlink() {
                format!("link to {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if meta.is_file() {
                format!(
                    "{} bytes: {:x?}",
                    meta.len(),
                    sha(&std::fs::read(&path).unwrap())
                )
            } else {
                format!("special {:?}", meta.file_type())
            };
            seen.insert(path.strip_prefix(root).unwrap().to_path_buf(), what);
        }
    }
    seen
}

fn sha(bytes: &[u8]) -> String {
    deployer_plugin_host::sha256_hex(bytes)
}

/// `deployer ARGS --config CONFIG`, killed after 30 s: (exit code, stdout, stderr, hung).
fn run_bounded(config: &Path, args: &[&str]) -> (Option<i32>, String, String, bool) {
    let run = bounded(
        plain()
            .args(args)
            .arg("--config")
            .arg(config)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing"),
    );
    (run.code, run.stdout, run.stderr, run.hung)
}

/// A project whose state holds two finished deployments of `web` made by the real
/// engine (`web:2` promoted, then `web:3` promoted), and whose AWS endpoint counts
/// connections.
struct Project {
    dir: tempfile::TempDir,
    pristine: tempfile::TempDir,
    config: PathBuf,
    connections: Arc<AtomicUsize>,
}

impl Project {
    async fn new() -> Project {
        let h = Harness::new();
        let plugin = h.builtin("canary");
        let first = h.deploy(&plugin, &NoGates, request("canary", CANARY)).await;
        assert_eq!(first.result, DeployResult::Promoted);
        let mut second = request("canary", CANARY);
        second.new_release = "web:3".into();
        let second = h.deploy(&plugin, &NoGates, second).await;
        assert_eq!(second.result, DeployResult::Promoted);
        let (endpoint, connections) = counting_endpoint();
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigBuilder::new()
            .aws(&endpoint)
            .service("web", |s| s.ecs("c", "web", 4).unreachable_listener())
            .write(dir.path());
        let pristine = h.dir;
        Project {
            dir,
            pristine,
            config,
            connections,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join(".deployer")
    }

    fn service(&self) -> PathBuf {
        self.state().join("services/web")
    }

    /// The state as the engine left it, in place of whatever is there now.
    fn restore(&self) {
        let _ = std::fs::remove_dir_all(self.state());
        copy_dir(self.pristine.path(), &self.state());
    }

    /// The journals of `web`, oldest first.
    fn journals(&self) -> Vec<PathBuf> {
        deployer_tests::support::journals_oldest_first(&self.service().join("deployments"))
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Run the read-only commands and `rollback` on the damaged state: each exits 3 naming
/// `names` and the damage, prints nothing on stdout (no wrong answer), leaves the state
/// as it was and reaches no cloud. Problems are collected, not asserted one by one, so
/// one run shows them all.
fn expect_refusal(
    project: &Project,
    case: &str,
    names: &str,
    says: &str,
    problems: &mut Vec<String>,
) {
    let before = snapshot(&project.state());
    for args in [
        vec!["status", "--service", "web"],
        vec!["history", "--service", "web"],
        vec!["rollback", "--service", "web"],
    ] {
        let (code, out, err, hung) = run_bounded(&project.config, &args);
        let what = format!("{case}: `{}`", args[0]);
        if hung {
            problems.push(format!("{what}: hung (killed after 30 s)"));
            continue;
        }
        if code != Some(3) {
            problems.push(format!("{what}: exit {code:?}, not 3: {out}{err}"));
        }
        if err.contains("panicked") {
            problems.push(format!("{what}: panicked: {err}"));
        }
        if !err.contains(names) || !err.contains(says) {
            problems.push(format!("{what}: expected `{names}` and `{says}` in: {err}"));
        }
        if !out.is_empty() {
            problems.push(format!(
                "{what}: printed an answer from damaged state: {out}"
            ));
        }
    }
    if snapshot(&project.state()) != before {
        problems.push(format!("{case}: the state directory changed"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_state_is_reported_with_its_file_never_read_as_a_wrong_answer() {
    let project = Project::new().await;
    project.restore();

    // Control: the undamaged state reads as the truth.
    let (code, out, err, _) = run_bounded(&project.config, &["status", "--service", "web"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("live:    web:3"), "{out}");
    let (code, out, err, _) = run_bounded(&project.config, &["history", "--service", "web"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");

    let mut problems = Vec::new();
    let mut cases = 0;
    let newest = project.journals().last().unwrap().clone();
    let newest_name = newest.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&newest).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    // The newest journal cut at every line boundary and in the middle of every line:
    // history lists it as finished, so every cut is damage (its end is gone).
    for keep in 0..lines.len() {
        for mid in [false, true] {
            project.restore();
            let mut cut: String = lines[..keep].iter().map(|l| format!("{l}\n")).collect();
            if mid {
                cut.push_str(&lines[keep][..lines[keep].len() / 2]);
            }
            std::fs::write(&newest, cut).unwrap();
            cases += 1;
            expect_refusal(
                &project,
                &format!("journal cut after line {keep} (mid-line: {mid})"),
                &newest_name,
                "damaged",
                &mut problems,
            );
        }
    }

    // Records that could not have been written: generated over the values that matter.
    let shift = lines
        .iter()
        .position(|l| l.contains(r#""ShiftTraffic":50"#))
        .expect("a 50% shift in the journal");
    for (what, from, to) in [
        (
            "a 250% shift",
            r#""ShiftTraffic":50"#,
            r#""ShiftTraffic":250"#,
        ),
        (
            "a 101% shift",
            r#""ShiftTraffic":50"#,
            r#""ShiftTraffic":101"#,
        ),
        (
            "a negative shift",
            r#""ShiftTraffic":50"#,
            r#""ShiftTraffic":-1"#,
        ),
        (
            "an unknown record",
            r#""record":"intent""#,
            r#""record":"note""#,
        ),
    ] {
        project.restore();
        let mut damaged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        damaged[shift] = damaged[shift].replacen(from, to, 1);
        std::fs::write(&newest, damaged.join("\n") + "\n").unwrap();
        cases += 1;
        expect_refusal(&project, what, &newest_name, "damaged", &mut problems);
    }
    // A step done that was never begun: its intent renumbered.
    project.restore();
    let mut damaged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let seq = damaged[shift]
        .split(r#""seq":"#)
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .to_string();
    damaged[shift] = damaged[shift].replacen(&format!(r#""seq":{seq},"#), r#""seq":999,"#, 1);
    std::fs::write(&newest, damaged.join("\n") + "\n").unwrap();
    cases += 1;
    expect_refusal(
        &project,
        "a step done, never begun",
        &newest_name,
        "damaged",
        &mut problems,
    );

    for (what, count) in [
        ("2 million units", 2_000_000u64),
        ("u32::MAX units", 4_294_967_295),
    ] {
        project.restore();
        let scaled = text.replacen(
            r#"{"Scale":{"side":"New","count":1}}"#,
            &format!(r#"{{"Scale":{{"side":"New","count":{count}}}}}"#),
            1,
        );
        assert_ne!(scaled, text);
        std::fs::write(&newest, scaled).unwrap();
        cases += 1;
        expect_refusal(&project, what, &newest_name, "damaged", &mut problems);
    }
    // One journal posing as another deployment's.
    project.restore();
    let first = project.journals()[0].clone();
    std::fs::copy(&first, &newest).unwrap();
    cases += 1;
    expect_refusal(
        &project,
        "a journal copied over another",
        &newest_name,
        "damaged",
        &mut problems,
    );

    // History lines that are not entries, or name a deployment outside the service.
    let history = project.service().join("history.jsonl");
    for (what, line) in [
        ("garbage", "garbage"),
        ("a JSON line of another shape", r#"{"deployment":"x"}"#),
        (
            "an id walking out",
            r#"{"id":"../../other/deployments/d1"}"#,
        ),
        ("an absolute id", r#"{"id":"/etc/passwd"}"#),
        ("an empty id", r#"{"id":""}"#),
        ("an id with a newline", r#"{"id":"d1\n::error::forged"}"#),
    ] {
        project.restore();
        let mut text = std::fs::read_to_string(&history).unwrap();
        text.push_str(line);
        text.push('\n');
        std::fs::write(&history, text).unwrap();
        cases += 1;
        expect_refusal(
            &project,
            &format!("history: {what}"),
            "history.jsonl",
            "damaged",
            &mut problems,
        );
    }
    // `active` naming a deployment outside the service.
    for id in ["../../../../etc/passwd", "..", "a/b", "d1 d2"] {
        project.restore();
        std::fs::write(project.service().join("active"), id).unwrap();
        cases += 1;
        expect_refusal(
            &project,
            &format!("active = {id}"),
            "active",
            "not a deployment id",
            &mut problems,
        );
    }

    // Files that are not files: /dev/zero (as a link), a FIFO, a directory, in place of
    // the journal, the history and `active`.
    for (file, named) in [
        (newest.clone(), newest_name.as_str()),
        (history.clone(), "history.jsonl"),
        (project.service().join("active"), "active"),
    ] {
        for kind in ["/dev/zero", "fifo", "dir"] {
            project.restore();
            let _ = std::fs::remove_file(&file);
            match kind {
                "fifo" => {
                    mkfifo(&file);
                }
                "dir" => std::fs::create_dir(&file).unwrap(),
                zero => std::os::unix::fs::symlink(zero, &file).unwrap(),
            }
            cases += 1;
            expect_refusal(
                &project,
                &format!("{named} is {kind}"),
                named,
                "not a regular file",
                &mut problems,
            );
        }
    }

    // Links to ordinary files and directories, where deployer reads and writes its
    // own state: refused, and the file a link names is never written (a link committed
    // into `.deployer/` must not let the next run empty an arbitrary file).
    let outside = tempfile::tempdir().unwrap();
    for (file, named) in [
        (newest.clone(), newest_name.as_str()),
        (history.clone(), "history.jsonl"),
        (project.service().join("active"), "active"),
        (project.service().join("lock"), "lock"),
        (project.service().join("deployments"), "deployments"),
    ] {
        project.restore();
        let victim = outside.path().join(named);
        let _ = std::fs::remove_dir_all(&victim);
        if file.is_dir() {
            copy_dir(&file, &victim);
            std::fs::remove_dir_all(&file).unwrap();
        } else {
            // `active` is absent when nothing is in flight: a link to the newest id.
            let bytes = std::fs::read(&file)
                .unwrap_or_else(|_| newest_name.trim_end_matches(".jsonl").as_bytes().to_vec());
            std::fs::write(&victim, bytes).unwrap();
            let _ = std::fs::remove_file(&file);
        }
        std::os::unix::fs::symlink(&victim, &file).unwrap();
        let before = snapshot(outside.path());
        cases += 1;
        expect_refusal(
            &project,
            &format!("{named} is a link"),
            named,
            "it is a symbolic link, not a regular file",
            &mut problems,
        );
        if snapshot(outside.path()) != before {
            problems.push(format!("{named} is a link: the file it names was written"));
        }
    }

    // Records spliced, repeated or removed, and ends the records do not lead to.
    let promote = lines
        .iter()
        .position(|l| l.contains(r#""step":"Promote""#))
        .expect("a promotion in the journal");
    let finished_line = lines.last().unwrap().to_string();
    let edits: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "a repeated intent",
            {
                let mut l: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                l.insert(shift + 1, lines[shift].to_string());
                l
            },
            "begins where step",
        ),
        (
            "a repeated done",
            {
                let mut l: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                l.insert(shift + 2, lines[shift + 1].to_string());
                l
            },
            "is done twice",
        ),
        (
            "an intent numbered 0 spliced in",
            {
                let mut l: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                l.insert(
                    shift,
                    r#"{"record":"intent","seq":0,"action":{"step":"Promote"}}"#.to_string(),
                );
                l
            },
            "begins where step",
        ),
        (
            "a done removed",
            {
                let mut l: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                l.remove(shift + 1);
                l
            },
            "neither done nor rolled back",
        ),
        (
            "ended promoted at 50%, a step still open",
            {
                let mut l: Vec<String> = lines[..=shift].iter().map(|l| l.to_string()).collect();
                l.push(finished_line.clone());
                l
            },
            "no promotion was carried out",
        ),
        (
            "the promotion removed",
            {
                let mut l: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                l.drain(promote..promote + 2);
                l
            },
            "damaged",
        ),
        (
            "a second end, rolled back",
            {
                let mut l: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                l.push(
                    finished_line.replace(r#""result":"promoted""#, r#""result":"rolled-back""#),
                );
                l
            },
            "no rollback began",
        ),
    ];
    for (what, damaged, says) in edits {
        project.restore();
        std::fs::write(&newest, damaged.join("\n") + "\n").unwrap();
        cases += 1;
        expect_refusal(&project, what, &newest_name, says, &mut problems);
    }

    assert!(
        problems.is_empty(),
        "{} of {cases} damaged states misread:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(cases > 60, "{cases}");
    assert_eq!(
        project.connections.load(Ordering::SeqCst),
        0,
        "damaged state must be reported before any cloud call"
    );
}
