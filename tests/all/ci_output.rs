//! What CI sees of a run against moto: the `--output json` summary (checked against its
//! published schema), GitHub Actions annotations and step summary, and no secrets in
//! any of it.

use deployer_tests::support::App;

use deployer_tests::support::env::EcsEnv;

use super::ecs::{STEPS, config};

fn summary_validator() -> jsonschema::Validator {
    let schema = deployer::cli::report::summary_schema();
    jsonschema::validator_for(&schema).expect("the summary schema is a valid JSON Schema")
}

fn schema_errors(validator: &jsonschema::Validator, json: &serde_json::Value) -> Vec<String> {
    validator.iter_errors(json).map(|e| e.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_summary_of_a_promotion_and_a_rollback_matches_its_schema() {
    let validator = summary_validator();

    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, STEPS).await;
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "web:2", "--output", "json"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let promoted: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {out}"));
    assert_eq!(schema_errors(&validator, &promoted), Vec::<String>::new());
    assert_eq!(promoted["result"], "promoted");
    assert_eq!(promoted["exit-code"], 0);
    assert_eq!(promoted["new-release"], "web:2");
    assert_eq!(promoted["stable-release"], "web:1");
    assert_eq!(promoted["traffic-new-percent"], 100);
    let shifts: Vec<u64> = promoted["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"].as_str().unwrap().starts_with("shift traffic"))
        .map(|s| s["traffic-new-percent"].as_u64().unwrap())
        .collect();
    assert_eq!(shifts, [10, 50, 100], "verified weights after each shift");
    // Progress went to stderr, not into the JSON.
    assert!(err.contains("step 1:"), "{err}");

    let bad = App::start(500, "boom");
    config(&env, &bad, STEPS);
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "web:3", "--output", "json"])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    let rolled_back: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        schema_errors(&validator, &rolled_back),
        Vec::<String>::new()
    );
    assert_eq!(rolled_back["result"], "rolled-back");
    assert_eq!(rolled_back["exit-code"], 1);
    assert_eq!(rolled_back["traffic-new-percent"], 0);
    let reason = rolled_back["rollback-reason"].as_str().unwrap();
    assert!(reason.contains("0/5 requests"), "{reason}");
    let failed_gate = rolled_back["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["gates"].as_array().unwrap())
        .find(|g| g["status"] == "fail")
        .expect("the failing gate is in the summary");
    assert!(failed_gate["name"].as_str().unwrap().starts_with("http:"));
    assert_eq!(env.weights().await, (0, 100), "web:2 stayed live on green");
    // Call counts depend on how soon tasks report healthy: checked by the benchmark and
    // the fault tests, left out of the snapshot.
    let mut pinned = rolled_back.clone();
    let object = pinned.as_object_mut().unwrap();
    assert!(
        object.remove("aws-api-calls").unwrap()["total"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        object
            .remove("rollback-latency-ms")
            .unwrap()
            .as_u64()
            .unwrap()
            < 1000
    );
    for step in object["steps"].as_array_mut().unwrap() {
        step.as_object_mut().unwrap().remove("aws-api-calls");
    }
    snapshot!(
        "summary_rolled_back",
        serde_json::to_string_pretty(&pinned).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_still_yields_a_json_summary_with_exit_code_3() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, r#"[{ weight = 50 }, { weight = 20 }]"#).await;
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "web:2", "--output", "json"])
        .await;
    assert_eq!(code, 3, "{out}\n{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        schema_errors(&summary_validator(), &summary),
        Vec::<String>::new()
    );
    assert_eq!(summary["result"], "bad-input");
    assert!(
        summary["detail"]
            .as_str()
            .unwrap()
            .contains("weights must increase"),
        "{summary}"
    );
    assert_eq!(env.weights().await, (100, 0), "nothing was changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_get_annotations_and_a_step_summary_without_secrets() {
    const AWS_SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
    const PASSWORD: &str = "hunter2-password";
    const TOKEN: &str = "tok-live-0123456789";
    let bad = App::start(500, "boom");
    let port = bad.url.trim_start_matches("http://127.0.0.1:");
    let port = port.split('/').next().unwrap();
    let url = format!("http://ci:{PASSWORD}@127.0.0.1:{port}/health?token={TOKEN}");
    let env = EcsEnv::with_task_sets(&url, STEPS).await;
    let step_summary = env.dir.path().join("step-summary.md");
    let out = env
        .command(&["run", "canary", "--release", "web:2"])
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &step_summary)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let summary = std::fs::read_to_string(&step_summary).unwrap();

    let annotation = stdout
        .lines()
        .find(|l| l.starts_with("::error title=deployer%3A web rolled back::"))
        .unwrap_or_else(|| panic!("no rollback annotation in {stdout}"));
    assert!(annotation.contains("0/5 requests"), "{annotation}");
    assert!(
        summary.contains("### deployer run web: ↩️ rolled back"),
        "{summary}"
    );
    assert!(
        summary.contains(r"| release | web\:1 → **web\:2** (canary) |"),
        "{summary}"
    );
    assert!(
        summary.contains("smoke") || summary.contains(r"http\:"),
        "{summary}"
    );

    // The run used the password and token (the app saw them), but no output shows them.
    assert!(
        bad.requests().iter().any(|r| r.contains(TOKEN)),
        "the smoke test sent its query"
    );
    for (name, text) in [
        ("stdout", &*stdout),
        ("stderr", &*stderr),
        ("step summary", &summary),
    ] {
        for secret in [AWS_SECRET, PASSWORD, TOKEN] {
            assert!(!text.contains(secret), "{name} shows {secret}:\n{text}");
        }
    }
    assert!(stderr.contains("token=***"), "{stderr}");
    snapshot!("github_rollback_stdout", stdout);
    snapshot!("github_rollback_step_summary", summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_become_file_and_line_annotations() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, r#"[{ weight = 50 }, { weight = 20 }]"#).await;
    let out = env
        .command(&["run", "canary", "--release", "web:2"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("::error file="))
        .unwrap_or_else(|| panic!("no annotation in {stdout}"));
    assert!(line.contains("deployer.toml,line="), "{line}");
    assert!(
        line.contains("::services.web.strategies.canary.steps[1].weight: is 20 after 50"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_follows_a_deployment_whose_log_is_tracing_json() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, STEPS).await;
    let watcher = env
        .command(&["status", "--watch", "--interval", "50ms"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (code, out, err) = env
        .deployer(&[
            "run",
            "canary",
            "--release",
            "web:2",
            "--log-format",
            "json",
        ])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // Every log line is a JSON record with structured fields.
    let records: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let events: Vec<&str> = records
        .iter()
        .filter_map(|r| r["fields"]["event"].as_str())
        .collect();
    assert!(
        events.contains(&"started") && events.contains(&"finished"),
        "{events:?}"
    );
    assert!(
        records.iter().any(
            |r| r["fields"]["event"] == "step-done" && r["fields"]["traffic_new_percent"] == 50
        ),
        "{err}"
    );

    let mut watcher = watcher;
    watcher.start_kill().unwrap();
    let watched = watcher.wait_with_output().await.unwrap();
    let watched = String::from_utf8_lossy(&watched.stdout);
    let idle = watched.find("state:   idle").expect("idle before");
    let deploying = watched
        .find("state:   deploying web:2 over web:1")
        .unwrap_or_else(|| panic!("the watch saw the deployment: {watched}"));
    let live = watched
        .rfind("live:    web:2")
        .unwrap_or_else(|| panic!("the watch saw the promotion: {watched}"));
    assert!(idle < deploying && deploying < live, "{watched}");
    // Blocks are printed only when something changed.
    assert!(watched.matches("service: web").count() < 40, "{watched}");
}
