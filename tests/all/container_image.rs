//! The container image (`Dockerfile`) keeps its promises: it is built with the README's
//! install command, its runtime stage has every library the binary links, it runs as a
//! non-root user, and its entrypoint is the installed binary.
//!
//! With a Docker engine the image is built and run. Without one (this project's CI
//! machines have only the client), the build stage's commands run here as the image
//! build would run them, and the binary they install is run the way the runtime stage
//! runs it: as uid 65532 with nothing else from this machine than the libraries the
//! distroless base also has.

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Command;

use deployer_tests::support::cli::repo;

/// One instruction of a Dockerfile: `RUN`, `COPY`, ... and the rest of its line.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The Dockerfile's stages, each its instructions from `FROM` on. Continued lines are
/// joined and comments dropped, as Docker reads them.
fn stages(text: &str) -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    let mut logical = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && logical.is_empty()) {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            logical += part;
            continue;
        }
        logical += line;
        let (keyword, args) = logical.split_once(' ').unwrap_or((&logical, ""));
        let instruction = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        };
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("a Dockerfile starts with FROM")
            .push(instruction);
        logical.clear();
    }
    stages
}

fn args_of<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
        .collect()
}

/// What gcr.io/distroless/cc-debian12 ships: glibc (bookworm's 2.36), libgcc_s,
/// libstdc++, libgomp, and OpenSSL 3.
const BASE_LIBRARIES: &[&str] = &[
    "linux-vdso.so.1",
    "ld-linux-x86-64.so.2",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libgomp.so.1",
    "libssl.so.3",
    "libcrypto.so.3",
];
const BASE_GLIBC: (u32, u32) = (2, 36);

#[test]
fn the_image_is_built_by_the_install_command_and_runs_as_nonroot() {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let stages = stages(&dockerfile);
    assert_eq!(
        stages.len(),
        3,
        "build, ci (with a shell) and the runtime stage"
    );
    let (build, ci, runtime) = (&stages[0], &stages[1], &stages[2]);

    // The `ci` variant: the same binary, the same user, on Debian bookworm like the base.
    assert_eq!(
        args_of(ci, "FROM"),
        ["docker.io/library/debian:bookworm-slim AS ci"]
    );
    assert_eq!(args_of(ci, "USER"), ["65532:65532"]);
    assert_eq!(
        args_of(ci, "COPY"),
        ["--from=build /out/bin/deployer /usr/local/bin/deployer"]
    );

    // The runtime stage: distroless, a non-root user, the installed binary as entrypoint.
    assert_eq!(
        args_of(runtime, "FROM"),
        ["gcr.io/distroless/cc-debian12:nonroot"]
    );
    let user = args_of(runtime, "USER");
    assert_eq!(user, ["65532:65532"], "distroless's nonroot, by number");
    let copy = args_of(runtime, "COPY");
    assert_eq!(copy.len(), 1, "{copy:?}");
    let installed = copy[0]
        .strip_prefix("--from=build /out/bin/deployer ")
        .expect("the runtime stage copies the build stage's installed binary");
    let entrypoint: Vec<String> = serde_json::from_str(args_of(runtime, "ENTRYPOINT")[0]).unwrap();
    assert_eq!(entrypoint, [installed]);

    // The build stage installs with the README's command.
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let runs = args_of(build, "RUN");
    let install = runs
        .iter()
        .find(|run| run.contains("cargo install"))
        .expect("the build stage runs cargo install");
    let documented = "cargo install --locked --path host/cli";
    assert!(install.contains(documented), "{install}");
    assert!(
        readme.contains(documented),
        "the README documents {documented}"
    );

    let work = tempfile::tempdir().unwrap();
    let binary = if docker_engine() {
        build_and_run_with_docker(work.path())
    } else {
        run_build_stage(&runs, work.path())
    };
    libraries_are_the_bases(&binary);
    runs_as_nonroot(&binary, work.path());
}

fn docker_engine() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The build stage's RUN lines as the image build runs them (in the repository, which
/// `COPY . .` copies), into `work/out`. A debug build in a target dir of its own: the
/// suite's `target/debug/deployer`, which other tests are running, is never replaced
/// (and a reused machine keeps that dir, so only the workspace's crates are rebuilt).
fn run_build_stage(runs: &[&str], work: &Path) -> PathBuf {
    eprintln!("no Docker engine here: running the build stage's commands without it");
    let out = work.join("out");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-build");
    for run in runs {
        let command = run
            .replace("--root /out", &format!("--root {}", out.display()))
            .replace("cargo install ", "cargo install --debug ");
        let status = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(repo(""))
            .env(
                "DEPLOYER_GIT_COMMIT",
                "0123456789abcdef0123456789abcdef01234567",
            )
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .unwrap();
        assert!(status.success(), "{command}");
    }
    out.join("bin/deployer")
}

/// `docker build` and `docker run --version`; the binary copied out for the other checks.
fn build_and_run_with_docker(work: &Path) -> PathBuf {
    let tag = "deployer-image-test:latest";
    let status = Command::new("docker")
        .args(["build", "--build-arg"])
        .arg("DEPLOYER_GIT_COMMIT=0123456789abcdef0123456789abcdef01234567")
        .args(["-t", tag])
        .arg(repo(""))
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("docker")
        .args(["run", "--rm", tag, "--version"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("(0123456789ab)"));
    let name = "deployer-image-test-copy";
    let _ = Command::new("docker").args(["rm", name]).output();
    assert!(
        Command::new("docker")
            .args(["create", "--name", name, tag])
            .status()
            .unwrap()
            .success()
    );
    let binary = work.join("deployer");
    assert!(
        Command::new("docker")
            .args(["cp", &format!("{name}:/usr/local/bin/deployer")])
            .arg(&binary)
            .status()
            .unwrap()
            .success()
    );
    let _ = Command::new("docker").args(["rm", name]).output();
    binary
}

/// Every library the binary loads is one the distroless base has, at its glibc.
fn libraries_are_the_bases(binary: &Path) {
    let out = Command::new("ldd").arg(binary).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    for line in listing.lines() {
        let name = line.split_whitespace().next().unwrap();
        let name = Path::new(name).file_name().unwrap().to_string_lossy();
        assert!(
            BASE_LIBRARIES.contains(&name.as_ref()),
            "the binary links {name}, which the runtime image does not have:\n{listing}"
        );
    }
    let symbols = Command::new("objdump")
        .arg("-T")
        .arg(binary)
        .output()
        .unwrap();
    let newest = String::from_utf8_lossy(&symbols.stdout)
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("(GLIBC_").or(word.strip_prefix("GLIBC_")))
        .filter_map(|version| {
            let version = version.trim_end_matches(')');
            let (major, minor) = version.split_once('.')?;
            Some((
                major.parse::<u32>().ok()?,
                minor.split('.').next()?.parse::<u32>().ok()?,
            ))
        })
        .max()
        .expect("the binary links glibc");
    assert!(
        newest <= BASE_GLIBC,
        "needs glibc {newest:?}, the base has {BASE_GLIBC:?}"
    );
}

/// The binary as the runtime stage runs it: uid 65532, an empty environment but HOME,
/// a project directory of that user's; `--version` names the commit the build got, and
/// an example project validates. (Not root here: as this user.)
fn runs_as_nonroot(binary: &Path, work: &Path) {
    let root = unsafe { libc::geteuid() } == 0;
    let home = work.join("home");
    let project = work.join("project");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&project).unwrap();
    for file in std::fs::read_dir(repo("examples/ecs-canary")).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, project.join(file.file_name().unwrap())).unwrap();
    }
    if root {
        for path in [work, &home, &project, binary.parent().unwrap(), binary] {
            chown(path, Some(65532), Some(65532)).unwrap();
        }
        // The installed binary sits two levels down; its parents must be traversable.
        if let Some(out) = binary.parent().and_then(Path::parent) {
            chown(out, Some(65532), Some(65532)).unwrap();
        }
    }
    let run = |args: &[&str]| {
        let mut command = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65532", "--regid=65532", "--clear-groups"])
                .arg(binary);
            c
        } else {
            Command::new(binary)
        };
        let out = command
            .args(args)
            .env_clear()
            .env("HOME", &home)
            .current_dir(&project)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["--version"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("(0123456789ab)"), "{out}");
    let (code, out, err) = run(&["validate"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&["plugin", "inspect", "builtin:canary"]);
    assert_eq!(code, Some(0), "{out}{err}");
}
