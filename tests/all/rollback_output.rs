//! What a rollback says against moto, through the real binary: "verified" only after
//! the weights were read back, a recovery's report from the listener rather than from
//! the journal, and the test listener given back to the stable side.

use deployer_contract::{ScaleRequest, Side, StepOutcome};
use deployer_engine::state::Record;
use deployer_engine::state::journal::{Action, RollbackAction};
use deployer_tests::support::App;
use deployer_tests::support::cli::on_terminal;
use deployer_tests::support::env::{EcsEnv, sigkill};

/// The target group the test listener forwards to (its only one).
async fn test_listener_group(env: &EcsEnv) -> Vec<String> {
    let out = env
        .clients
        .elb
        .describe_listeners()
        .listener_arns(&env.world.test_listener)
        .send()
        .await
        .unwrap();
    let listener = &out.listeners()[0];
    let forward = listener
        .default_actions()
        .iter()
        .find(|a| a.forward_config().is_some() || a.target_group_arn().is_some())
        .unwrap();
    match forward.forward_config() {
        Some(config) if !config.target_groups().is_empty() => config
            .target_groups()
            .iter()
            .map(|g| g.target_group_arn().unwrap().to_string())
            .collect(),
        _ => vec![forward.target_group_arn().unwrap().to_string()],
    }
}

/// A canary whose smoke test fails after its first shift: the rollback's log says what
/// it is doing, then what it read back, never "verified" before the read; the report
/// names the read-back. The test traffic the run sent to the new side goes back to
/// stable: the new side's group is emptied and is where the next deployment starts,
/// and a test listener left on it would send testers to nothing, then to an untested
/// release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_says_verified_only_after_reading_back_and_returns_the_test_listener() {
    let env = EcsEnv::start(&[]).await;
    let bad = App::start(500, "boom");
    let world = &env.world;
    assert_eq!(test_listener_group(&env).await, vec![world.blue.clone()]);
    // Only after each shift, so that the run gets traffic and test traffic first.
    env.write(&env.config().service("web", |s| {
        env.task_set_web(s.health_timeout("5s").watch_interval("1s"))
            .http_gate(&["post-traffic"], &bad.url, 3)
            .canary_steps(r#"[{ weight = 10 }, { weight = 50 }]"#)
    }));

    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("route test traffic to the new side"),
        "the run sent test traffic to the new side: {err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    let at = |text: &str| {
        lines
            .iter()
            .position(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no line says `{text}`:\n{err}"))
    };
    let asked = at("deployer: rollback: shift traffic: 0% new / 100% stable");
    assert!(
        !lines[asked].contains("verified"),
        "claimed before the read-back: {}",
        lines[asked]
    );
    let verified = at("deployer: rollback: weights verified: 0% new / 100% stable");
    let read = at("deployer: traffic read back from the load balancer: 0% new / 100% stable");
    assert!(asked < verified && verified < read, "{err}");
    assert!(
        out.contains("traffic:  100% on web:1 (stable), read back from the load balancer"),
        "{out}"
    );
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(
        test_listener_group(&env).await,
        vec![world.blue.clone()],
        "the test listener still points at the rolled-back side's group"
    );
}

/// A killed canary whose journal records its rollback's shift back to stable, while the
/// listener still sends 10% to the canary (the weights changed behind the journal's
/// back). `deployer rollback` must report what the listener says, not the journal: it
/// reads 10%, moves it back, and says so; the old report claimed 100% on stable and
/// removed the canary under live traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_reports_the_traffic_it_read_back_not_the_journal() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, r#"[{ weight = 10, bake = "1h" }]"#).await;
    let child = env.spawn(&["run", "canary", "--release", "web:2"]);
    env.wait_for_weights("the canary never shifted traffic", |(_, green)| green > 0)
        .await;
    sigkill(child).await;
    assert_eq!(env.weights().await, (90, 10));

    // The killed run's rollback, as far as the journal goes: stable back at full size,
    // traffic back on it; the listener was never changed.
    let dir = env.dir.path().join(".deployer/services/web/deployments");
    let journal = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(&journal).unwrap();
    let last_seq = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        .filter_map(|r| match r {
            Record::Intent { seq, .. } | Record::Done { seq, .. } => Some(seq),
            _ => None,
        })
        .max()
        .unwrap();
    let mut records = vec![Record::RollbackStarted {
        reason: "cancelled".into(),
        at_ms: 1,
    }];
    let actions = [
        RollbackAction::Scale(ScaleRequest {
            side: Side::Stable,
            count: 4,
        }),
        RollbackAction::ShiftTraffic(0),
    ];
    for (seq, action) in (last_seq + 1..).zip(actions) {
        records.push(Record::Intent {
            seq,
            action: Action::Rollback(action),
        });
        records.push(Record::Done {
            seq,
            outcome: StepOutcome::Done,
        });
    }
    let mut text = text;
    for record in records {
        text += &serde_json::to_string(&record).unwrap();
        text += "\n";
    }
    std::fs::write(&journal, text).unwrap();

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("traffic read back from the load balancer: 10% new / 90% stable"),
        "{err}"
    );
    assert!(
        out.contains("the load balancer still sent 10% of traffic to web:2 although the journal recorded all of it back; it was moved back again"),
        "{out}"
    );
    assert!(
        out.contains("traffic:  100% on web:1 (stable), read back from the load balancer"),
        "{out}"
    );
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
}

/// On a terminal a rolled-back run says its result once, and says it without
/// repeating itself ("rolled back: rolled back to …" before). With stdout on a pipe
/// (`deployer run … > log`, a CI step keeping stdout) both streams still carry it:
/// each is a complete record on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_result_is_said_once_and_a_pipe_still_gets_it() {
    let bad = App::start(500, "boom");
    let env = EcsEnv::with_task_sets(&bad.url, r#"[{ weight = 10 }]"#).await;
    let command = || {
        let mut cmd = env.command(&["run", "canary", "--release", "web:2"]);
        cmd.env_remove("GITHUB_ACTIONS").env("TERM", "xterm");
        cmd
    };
    let result = |text: &str| {
        text.lines()
            .filter(|l| l.contains(": rolled back to web:1: gate `http:"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };

    let seen = on_terminal(command(), true).await;
    assert_eq!(seen.code, Some(1), "{}", seen.terminal);
    assert_eq!(
        result(&seen.terminal).len(),
        1,
        "the result once on the terminal:\n{}",
        seen.terminal
    );
    assert!(
        !seen.terminal.contains("rolled back: rolled back"),
        "{}",
        seen.terminal
    );
    // It is the report's line, with the release and traffic under it.
    assert!(
        seen.terminal
            .contains("  traffic:  100% on web:1 (stable), read back from the load balancer"),
        "{}",
        seen.terminal
    );
    // The terminal was one: progress was drawn live on it.
    assert!(seen.terminal.contains("\x1b[2K"), "{:?}", seen.terminal);

    let seen = on_terminal(command(), false).await;
    assert_eq!(seen.code, Some(1), "{}", seen.terminal);
    assert_eq!(result(&seen.piped).len(), 1, "stdout:\n{}", seen.piped);
    assert_eq!(
        result(&seen.terminal).len(),
        1,
        "stderr:\n{}",
        seen.terminal
    );
    assert!(
        result(&seen.terminal)[0].starts_with("deployer: deployment "),
        "{:?}",
        result(&seen.terminal)
    );
}
