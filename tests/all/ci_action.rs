//! The GitHub Actions composite action (`action.yml`, steps in `scripts/ci/action.sh`),
//! run step by step as the runner runs it (`support/run_action.py`): it uses a deployer
//! of its own version from PATH, refuses another, passes deployer's exit code on as the
//! step's and as `exit-code`, never runs its `command` input through a shell, and a
//! canary through it writes the job's step summary.
//! (Building deployer from source when none is on PATH is `cargo install`, which the
//! container image test runs; it takes a release build, so it is not run here.)

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use deployer_tests::support::App;
use deployer_tests::support::cli::{deployer_bin, repo};
use deployer_tests::support::env::EcsEnv;

/// A PATH of `bin` and the system's tools only (no deployer installed elsewhere).
fn path_with(bin: &Path) -> String {
    format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display())
}

/// A bin dir holding the suite's deployer.
fn bin_with_deployer(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    symlink(deployer_bin(), bin.join("deployer")).unwrap();
    bin
}

struct Outcome {
    code: i32,
    exit_code_output: String,
    stdout: String,
    stderr: String,
}

/// The action with `inputs`, from `workspace`, with PATH and `env`.
fn run_action(
    workspace: &Path,
    path: &str,
    env: &[(&str, &Path)],
    inputs: &[(&str, &str)],
) -> Outcome {
    let python = deployer_tests::support::moto_python();
    let outputs = workspace.join("action-outputs.json");
    let mut command = Command::new(python);
    command
        .arg(repo("tests/support/run_action.py"))
        .arg(repo(""))
        .arg(&outputs)
        .args(inputs.iter().map(|(k, v)| format!("{k}={v}")))
        .current_dir(workspace)
        .env("PATH", path)
        .env("HOME", workspace)
        .env("GITHUB_ACTIONS", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    let outputs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&outputs).unwrap()).unwrap();
    Outcome {
        code: out.status.code().unwrap(),
        exit_code_output: outputs["exit-code"].as_str().unwrap().to_string(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A workspace holding examples/ecs-canary as `deploy/deployer.toml`.
fn workspace_with_example() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("deploy")).unwrap();
    std::fs::copy(
        repo("examples/ecs-canary/deployer.toml"),
        dir.path().join("deploy/deployer.toml"),
    )
    .unwrap();
    dir
}

#[test]
fn the_action_uses_deployer_from_path_and_passes_its_exit_code_on() {
    let dir = workspace_with_example();
    let path = path_with(&bin_with_deployer(dir.path()));
    let ok = run_action(
        dir.path(),
        &path,
        &[],
        &[("command", "validate"), ("working-directory", "deploy")],
    );
    assert_eq!(
        (ok.code, ok.exit_code_output.as_str()),
        (0, "0"),
        "{}{}",
        ok.stdout,
        ok.stderr
    );
    assert!(ok.stdout.contains("deployer: using"), "{}", ok.stdout);

    // Bad input: deployer's 3 is the step's exit code and the output.
    let bad = run_action(
        dir.path(),
        &path,
        &[],
        &[("command", "validate"), ("config", "deploy/missing.toml")],
    );
    assert_eq!(
        (bad.code, bad.exit_code_output.as_str()),
        (3, "3"),
        "{}{}",
        bad.stdout,
        bad.stderr
    );
    assert!(bad.stderr.contains("deploy/missing.toml"), "{}", bad.stderr);
}

#[test]
fn install_path_refuses_a_missing_deployer_or_another_version() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let missing = run_action(
        dir.path(),
        &path_with(&empty),
        &[],
        &[("command", "validate"), ("install", "path")],
    );
    assert_eq!(
        (missing.code, missing.exit_code_output.as_str()),
        (3, "3"),
        "{}{}",
        missing.stdout,
        missing.stderr
    );
    assert!(
        missing.stdout.contains("there is none"),
        "{}",
        missing.stdout
    );
    assert!(
        missing
            .stdout
            .contains("::error title=deployer::install: path needs deployer"),
        "{}",
        missing.stdout
    );

    // Another release on PATH is not taken for this action's.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("deployer"),
        "#!/bin/sh\necho 'deployer 9.9.9 (0000000)'\n",
    )
    .unwrap();
    std::fs::set_permissions(
        other.join("deployer"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let wrong = run_action(
        dir.path(),
        &path_with(&other),
        &[],
        &[("command", "validate"), ("install", "path")],
    );
    assert_eq!(wrong.code, 3, "{}{}", wrong.stdout, wrong.stderr);
    assert!(
        wrong.stdout.contains("another version at"),
        "{}",
        wrong.stdout
    );

    // Only `auto` and `path`: a near miss is refused, not taken for a build from source.
    let typo = run_action(
        dir.path(),
        &path_with(&empty),
        &[],
        &[("command", "validate"), ("install", "PATH")],
    );
    assert_eq!((typo.code, typo.exit_code_output.as_str()), (3, "3"));
    assert!(
        typo.stdout
            .contains("install input is auto (the default) or path"),
        "{}",
        typo.stdout
    );
}

#[test]
fn nothing_planted_in_the_repository_runs_in_the_actions_place() {
    // A relative PATH entry (`tools`) would find programs in whatever directory a step
    // runs in: a contributor could plant `deploy/tools/deployer` or `python3` next to
    // the config. The action ignores relative entries and finds its programs first.
    let dir = workspace_with_example();
    let marker = dir.path().join("planted-ran");
    // (Not `bash` at the top: the runner itself finds its shell through PATH.)
    for (tools, programs) in [
        (
            dir.path().join("tools"),
            &["deployer", "python3", "mktemp"][..],
        ),
        (
            dir.path().join("deploy/tools"),
            &["deployer", "python3", "mktemp", "bash"][..],
        ),
    ] {
        std::fs::create_dir_all(&tools).unwrap();
        for program in programs {
            std::fs::write(
                tools.join(program),
                format!(
                    "#!/bin/sh\necho 'deployer 0.1.0 (x)'\ntouch {}\n",
                    marker.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(
                tools.join(program),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
        }
    }
    let real = bin_with_deployer(dir.path());
    let out = run_action(
        dir.path(),
        &format!("tools:{}", path_with(&real)),
        &[],
        &[("command", "validate"), ("working-directory", "deploy")],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!marker.exists(), "a program planted in the repository ran");

    // A working directory that is not one is bad input, with the output set.
    let nowhere = run_action(
        dir.path(),
        &path_with(&real),
        &[],
        &[
            ("command", "validate"),
            ("working-directory", "no/such/dir"),
        ],
    );
    assert_eq!((nowhere.code, nowhere.exit_code_output.as_str()), (3, "3"));
}

#[test]
fn the_config_input_is_one_word_and_carries_no_control_characters() {
    let dir = workspace_with_example();
    let path = path_with(&bin_with_deployer(dir.path()));
    // A config path starting with `-` is a path, not a flag.
    let dash = run_action(
        dir.path(),
        &path,
        &[],
        &[("command", "validate"), ("config", "-deploy.toml")],
    );
    assert_eq!(dash.code, 3, "{}{}", dash.stdout, dash.stderr);
    assert!(dash.stderr.contains("-deploy.toml"), "{}", dash.stderr);
    assert!(
        !dash.stderr.contains("unexpected argument"),
        "{}",
        dash.stderr
    );
    for config in [
        "--x\n::error::INJECTED",
        "--x\r::warning::INJECTED",
        "a\u{2028}::error::INJECTED",
    ] {
        let out = run_action(
            dir.path(),
            &path,
            &[],
            &[("command", "validate"), ("config", config)],
        );
        assert_eq!(
            (out.code, out.exit_code_output.as_str()),
            (3, "3"),
            "{config:?}"
        );
        assert!(
            out.stdout
                .contains("config input holds a control character"),
            "{}",
            out.stdout
        );
        for line in out.stdout.lines().chain(out.stderr.lines()) {
            assert!(!line.contains("INJECTED"), "echoed: {line}");
        }
    }
}

#[test]
fn the_command_input_is_split_into_words_and_never_run_by_a_shell() {
    let dir = workspace_with_example();
    let path = path_with(&bin_with_deployer(dir.path()));
    let pwned = dir.path().join("pwned");
    let hostile = format!(
        "validate --config \"deploy/deployer.toml\" $(touch {p}) `touch {p}`; touch {p} | touch {p}",
        p = pwned.display()
    );
    let out = run_action(dir.path(), &path, &[], &[("command", &hostile)]);
    assert!(!pwned.exists(), "the command input was run by a shell");
    // deployer got the words as words: an argument it does not know, so bad input.
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("$(touch"), "{}", out.stderr);

    // A quoted newline could carry a `::command::` line into the log (deployer echoes an
    // argument it refuses): refused before deployer runs, and the input is not echoed.
    let injected = run_action(
        dir.path(),
        &path,
        &[],
        &[("command", "validate 'x\n::error::INJECTED'")],
    );
    assert_eq!(
        (injected.code, injected.exit_code_output.as_str()),
        (3, "3")
    );
    assert!(
        injected.stdout.contains("control character"),
        "{}",
        injected.stdout
    );
    for line in injected.stdout.lines().chain(injected.stderr.lines()) {
        assert!(!line.contains("INJECTED"), "echoed: {line}");
    }
    let empty = run_action(dir.path(), &path, &[], &[("command", "  # nothing")]);
    assert_eq!((empty.code, empty.exit_code_output.as_str()), (3, "3"));
    assert!(
        empty.stdout.contains("command input is empty"),
        "{}",
        empty.stdout
    );

    // Quotes group words; an unclosed one is bad input, said plainly, and not echoed.
    let unclosed = run_action(
        dir.path(),
        &path,
        &[],
        &[("command", "validate --config 'deploy")],
    );
    assert_eq!(
        (unclosed.code, unclosed.exit_code_output.as_str()),
        (3, "3")
    );
    assert!(
        unclosed.stdout.contains("check its quotes") && !unclosed.stdout.contains("'deploy"),
        "{}",
        unclosed.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_through_the_action_writes_the_step_summary_and_fails_the_step_on_rollback() {
    let good = App::start(200, "ok");
    let bad = App::start(500, "boom");
    let env = EcsEnv::with_task_sets(&bad.url, "[{ weight = 10 }, { weight = 50 }]").await;
    let path = path_with(&bin_with_deployer(env.dir.path()));
    let summary = env.dir.path().join("step-summary.md");
    let cache = env.dir.path().join("cache");
    // The action blocks (it waits for deployer), the test's runtime serves moto's agent.
    let through_action = || {
        let (workspace, path) = (env.dir.path().to_path_buf(), path.clone());
        let (summary, cache) = (summary.clone(), cache.clone());
        tokio::task::spawn_blocking(move || {
            let vars: [(&str, &Path); 2] = [
                ("GITHUB_STEP_SUMMARY", &summary),
                ("DEPLOYER_CACHE_DIR", &cache),
            ];
            run_action(
                &workspace,
                &path,
                &vars,
                &[("command", "run canary --release web:2 --service web")],
            )
        })
    };
    let failed = through_action().await.unwrap();
    assert_eq!(
        (failed.code, failed.exit_code_output.as_str()),
        (1, "1"),
        "{}{}",
        failed.stdout,
        failed.stderr
    );
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.contains("### deployer run web: ↩️ rolled back"),
        "{text}"
    );
    assert_eq!(env.weights().await, (100, 0), "rolled back");

    env.write(&env.task_sets(&good.url, "[{ weight = 10 }, { weight = 50 }]"));
    let promoted = through_action().await.unwrap();
    assert_eq!(
        (promoted.code, promoted.exit_code_output.as_str()),
        (0, "0"),
        "{}{}",
        promoted.stdout,
        promoted.stderr
    );
    assert!(
        std::fs::read_to_string(&summary)
            .unwrap()
            .contains("promoted")
    );
}
