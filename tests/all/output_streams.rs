//! What deployer's output does when its streams fight back, and when what it prints
//! came from outside (issue #22): a full stdout is exit 4 with one line on stderr, a
//! closed pipe ends quietly, a full stderr changes no exit code, argument errors under
//! `--output json` are JSON, and releases, reasons and paths from outside cannot print
//! a line of their own, a GitHub workflow command or a terminal escape.

use std::path::Path;
use std::process::Stdio;

use deployer_engine::gates::NoGates;
use deployer_engine::state::DeployResult;
use deployer_tests::support::cli::{bounded, mkfifo, plain};
use deployer_tests::support::config::ConfigBuilder;
use deployer_tests::support::config::quote;
use deployer_tests::support::rollout::{Harness, request};

/// An ECS canary service whose AWS endpoint is a closed port (nothing here calls it).
fn project(dir: &Path) -> std::path::PathBuf {
    ConfigBuilder::new()
        .aws("http://127.0.0.1:9")
        .service("web", |s| {
            s.ecs("c", "web", 4)
                .canary_steps("[ { weight = 50 } ]")
                .unreachable_listener()
        })
        .write(dir)
}

/// Commands that print to stdout without a cloud, on `config`.
fn printing_commands(config: &str) -> Vec<Vec<String>> {
    [
        vec!["schema", "config"],
        vec!["schema", "summary"],
        vec!["completions", "bash"],
        vec!["man"],
        vec!["plugin", "inspect", "builtin:canary"],
        vec!["validate", "--config", config],
        vec!["plan", "canary", "--config", config],
        vec!["history", "--service", "web", "--config", config],
        vec!["status", "--service", "web", "--config", config],
        vec![
            "status",
            "--service",
            "web",
            "--output",
            "json",
            "--config",
            config,
        ],
        // A failure whose JSON document cannot be written.
        vec![
            "run",
            "canary",
            "--release",
            "web:2",
            "--output",
            "json",
            "--config",
            "/nonexistent.toml",
        ],
    ]
    .into_iter()
    .map(|args| args.into_iter().map(String::from).collect())
    .collect()
}

#[test]
fn a_full_stdout_is_exit_4_with_one_line_and_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = project(dir.path());
    let config = config.to_str().unwrap();
    let mut problems = Vec::new();
    for args in printing_commands(config) {
        let what = args.join(" ");
        // Control: with a stdout to write to, each prints something.
        let out = plain().args(&args).output().unwrap();
        if out.stdout.is_empty() {
            problems.push(format!("{what}: printed nothing to begin with"));
        }
        // A full disk.
        let full = plain()
            .args(&args)
            .stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            )
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&full.stderr);
        if full.status.code() != Some(4) {
            problems.push(format!(
                "{what} > /dev/full: exit {:?}, not 4: {stderr}",
                full.status
            ));
        }
        if !stderr.contains("error: cannot write to standard output: No space left on device") {
            problems.push(format!("{what} > /dev/full: no line saying so: {stderr}"));
        }
        if stderr.contains("panicked") {
            problems.push(format!("{what} > /dev/full: panicked: {stderr}"));
        }
        // A reader that went away before a byte was written (`| head -0`).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let closed = plain().args(&args).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&closed.stderr);
        if stderr.contains("panicked") || stderr.contains("cannot write") {
            problems.push(format!("{what} | (closed): not quiet: {stderr}"));
        }
        if closed.status.code().is_some_and(|c| c == 101) {
            problems.push(format!("{what} | (closed): exit 101"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_full_stderr_changes_no_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let config = project(dir.path());
    let devfull = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    for (args, code) in [
        (vec!["validate", "--config", config.to_str().unwrap()], 0),
        (vec!["validate", "--config", "/nonexistent.toml"], 3),
        (vec!["run", "canary", "--release"], 3),
        (vec!["plan", "canary", "--desired", "0"], 3),
    ] {
        let out = plain()
            .args(&args)
            .stderr(devfull())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(out.code(), Some(code), "{args:?} 2> /dev/full");
    }
}

/// A step summary file that is a FIFO (nobody reading) must not hold the process
/// after the command has ended: it is skipped with a warning.
#[test]
fn a_step_summary_that_is_a_fifo_does_not_hold_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("summary");
    mkfifo(&fifo);
    let run = bounded(
        plain()
            .args([
                "run",
                "canary",
                "--release",
                "web:2",
                "--output",
                "json",
                "--config",
                "/nonexistent.toml",
            ])
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", &fifo),
    );
    let (status, stderr) = (run.code, run.stderr);
    assert_eq!(status, Some(3), "hung or wrong exit: {stderr}");
    assert!(stderr.contains("cannot write the step summary"), "{stderr}");
}

#[test]
fn argument_errors_under_output_json_are_a_json_document() {
    for (args, command) in [
        (
            vec!["run", "canary", "--output", "json", "--release"],
            "run",
        ),
        (vec!["--output=json", "run", "canary"], "run"),
        (vec!["rollback", "--output", "json", "--bogus"], "rollback"),
        (
            vec!["status", "--output", "json", "--interval", "0s"],
            "status",
        ),
        (vec!["history", "--output", "json", "extra"], "history"),
    ] {
        let out = plain().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {stderr}"));
        assert_eq!(summary["result"], "bad-input", "{args:?}: {summary}");
        assert_eq!(summary["exit-code"], 3, "{args:?}");
        assert_eq!(summary["command"], command, "{args:?}");
        let detail = summary["detail"].as_str().unwrap();
        assert!(
            !detail.is_empty() && stderr.contains(detail),
            "{args:?}: the detail is clap's message: {detail} / {stderr}"
        );
    }
    // And a failure after the arguments (no config) of each JSON command.
    for command in ["run", "rollback", "status", "history"] {
        let mut args = vec![command];
        if command == "run" {
            args.extend(["canary", "--release", "web:2"]);
        }
        args.extend(["--output", "json", "--config", "/nonexistent.toml"]);
        let out = plain().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["result"], "bad-input", "{args:?}");
        assert!(
            summary["detail"]
                .as_str()
                .unwrap()
                .contains("cannot read the config"),
            "{summary}"
        );
    }
}

/// A release and a reason carrying a newline, a workflow command, a carriage return and
/// terminal escapes, journaled by the real engine; a config path with the same.
const FORGED: &str =
    "web:2\n::error::forged\r\u{1b}[2J\u{1b}]0;title\u{7}\u{2028}::warning::forged";

/// No line of `text` is a workflow command we did not write, none carries a control
/// character but the newline, and none a Unicode line separator.
fn assert_no_forged_line(what: &str, text: &str) {
    for line in text.lines() {
        let line_start = line.trim_start();
        assert!(
            !(line_start.starts_with("::error::forged")
                || line_start.starts_with("::warning::forged")),
            "{what}: a forged workflow command: {line:?}"
        );
        assert!(
            !line
                .chars()
                .any(|c| (c.is_control() && c != '\t') || c == '\u{2028}'),
            "{what}: a raw control character: {line:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_from_outside_cannot_print_a_line_of_its_own() {
    let h = Harness::new();
    let plugin = h.builtin("canary");
    let mut forged = request("canary", r#"{"steps":[{"weight":50}]}"#);
    forged.new_release = FORGED.to_string();
    let report = h.deploy(&plugin, &NoGates, forged).await;
    assert_eq!(report.result, DeployResult::Promoted);
    let dir = tempfile::tempdir().unwrap();
    let config = project(dir.path());
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(h.dir.path())
        .arg(dir.path().join(".deployer"))
        .status()
        .unwrap();
    assert!(copy.success());
    for github in [false, true] {
        for args in [
            vec!["status", "--service", "web"],
            vec!["history", "--service", "web"],
        ] {
            let out = plain()
                .args(&args)
                .arg("--config")
                .arg(&config)
                .env("GITHUB_ACTIONS", github.to_string())
                .output()
                .unwrap();
            let (stdout, stderr) = (
                String::from_utf8(out.stdout).unwrap(),
                String::from_utf8(out.stderr).unwrap(),
            );
            assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
            // The release is there, escaped onto its line.
            assert!(
                stdout.contains(r"web:2\n::error::forged\r\u{1b}[2J"),
                "{stdout}"
            );
            assert_no_forged_line(&format!("{args:?}"), &stdout);
            assert_no_forged_line(&format!("{args:?}"), &stderr);
        }
    }
    // A config path, a service name and an endpoint carrying the same, in errors.
    let named = dir.path().join(format!("a{FORGED}.toml"));
    std::fs::write(
        dir.path().join("names.toml"),
        format!(
            "[aws]\nendpoint-url = {}\n\n[services.{}.target]\nkind = \"ecs\"\ncluster = \"c\"\nservice = \"web\"\ndesired-count = 2\n",
            quote(FORGED),
            quote(FORGED),
        ),
    )
    .unwrap();
    for (config, github) in [
        (named.as_path(), false),
        (named.as_path(), true),
        (&dir.path().join("names.toml"), true),
    ] {
        let out = plain()
            .args(["validate", "--config"])
            .arg(config)
            .env("GITHUB_ACTIONS", github.to_string())
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(
            stderr.contains("forged"),
            "the text is shown, escaped: {stderr}"
        );
        assert_no_forged_line("validate", &stdout);
        assert_no_forged_line("validate", &stderr);
    }
}
