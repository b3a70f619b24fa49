//! Control during and after a deploy, end to end against moto with the real binary:
//! `deployer abort` and `deployer promote` from a second process (local files and the
//! S3 + DynamoDB backend), the old side kept warm after promotion (`scale-down-delay`),
//! a rollback inside that delay that scales nothing, `deployer tidy`, and a rollback in
//! steps that stops when the release it goes back to fails its gates.

use deployer_tests::support::App;
use deployer_tests::support::ecs_service;
use deployer_tests::support::env::EcsEnv;

/// Canary steps that bake for an hour each: only a person ends them.
const LONG_BAKES: &str =
    r#"[{ weight = 10, bake = "1h" }, { weight = 50, bake = "1h" }, { weight = 75, bake = "1h" }]"#;

const NO_TRAFFIC: &str = "the canary never shifted traffic";

/// The task definitions of `web`'s task sets, sorted.
async fn task_sets(env: &EcsEnv) -> Vec<String> {
    let service = ecs_service(&env.clients, "web").await.unwrap().unwrap();
    let mut sets: Vec<String> = service
        .task_sets()
        .iter()
        .map(|t| {
            t.task_definition()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    sets.sort();
    sets
}

/// A canary of web:2 with hour-long bakes, running in the background; returns once it
/// holds some production traffic.
async fn canary_in_bake(env: &EcsEnv) -> tokio::process::Child {
    let child = env.spawn_captured(&["run", "canary", "--release", "web:2"]);
    env.wait_for_weights(NO_TRAFFIC, |(_, green)| green > 0)
        .await;
    child
}

async fn output(child: tokio::process::Child) -> (i32, String, String) {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        child.wait_with_output(),
    )
    .await
    .expect("the run did not end within 2 minutes of being told to")
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Abort from a second process while the canary bakes: the run rolls back, reporting
/// who aborted and why, and the abort command says the run acted on it. `junk` first
/// puts something that is not a signal in the promote slot: it must not hide the abort.
async fn abort_mid_bake<F: std::future::Future<Output = ()>>(
    env: &EcsEnv,
    junk: impl FnOnce() -> F,
) {
    let (code, out, _) = env
        .deployer(&["abort", "--reason", "p99 over budget"])
        .await;
    assert_eq!(code, 0, "nothing is running yet: {out}");
    assert!(
        out.contains("nothing to abort: no deployment of `web` is running"),
        "{out}"
    );

    let run = canary_in_bake(env).await;
    junk().await;
    let (code, out, err) = env
        .deployer(&["abort", "--reason", "p99 over budget"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("is rolling back: aborted by "), "{out}");
    let (code, out, err) = output(run).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("aborted by ") && out.contains(": p99 over budget"),
        "{out}"
    );
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(task_sets(env).await, ["web:1"]);

    let (code, out, _) = env.deployer(&["promote"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to promote"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_from_a_second_process_rolls_the_bake_back() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, LONG_BAKES).await;
    let slot = env
        .dir
        .path()
        .join(".deployer/services/web/signal-promote.json");
    abort_mid_bake(&env, || async move { std::fs::write(slot, "x").unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_through_the_s3_backend_rolls_the_bake_back() {
    let good = App::start(200, "ok");
    let env = EcsEnv::start(&[]).await;
    env.write(
        &env.task_sets(&good.url, LONG_BAKES)
            .aws_state("deployer-state", "deployer-locks", "shop/")
            .lease("5s"),
    );
    let s3 = env.clients.s3.clone();
    abort_mid_bake(&env, || async move {
        s3.put_object()
            .bucket("deployer-state")
            .key("shop/services/web/signals/promote.json")
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
    })
    .await;
    assert!(
        env.s3_keys()
            .await
            .iter()
            .any(|k| k == "shop/services/web/signals/abort.json"),
        "the signal travelled through S3"
    );
}

/// A run killed mid-bake cannot act on a signal: the command says so instead of waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_of_a_run_that_died_says_how_to_roll_it_back() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, LONG_BAKES).await;
    env.kill_when(
        &["run", "canary", "--release", "web:2"],
        NO_TRAFFIC,
        |(_, g)| g > 0,
    )
    .await;
    let (code, out, err) = env.deployer(&["abort"]).await;
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(out.contains("no deployer is running it"), "{out}");
    assert!(out.contains("deployer rollback --service web"), "{out}");
}

/// `promote` ends the bake in progress; `promote --full` takes the run straight to 100%
/// (skipping the 75% step), its gates still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_ends_a_bake_and_promote_full_goes_straight_to_100() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, LONG_BAKES).await;
    let run = canary_in_bake(&env).await;
    let (code, out, err) = env.deployer(&["promote", "--reason", "looks good"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("goes on: promoted by "), "{out}");
    env.wait_for_weights("the canary did not go on to 50%", |(_, green)| green == 50)
        .await;
    let (code, out, err) = env.deployer(&["promote", "--full"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("promoted to 100% by "), "{out}");
    let (code, out, err) = output(run).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let said = format!("{out}{err}");
    assert!(
        said.contains("promoted by ") && said.contains(": looks good"),
        "{said}"
    );
    assert_eq!(env.journal_shifts(), [10, 50, 100], "75% was skipped");
    assert_eq!(task_sets(&env).await, ["web:2"]);
    // The post-traffic smoke test still ran after the jump to 100%.
    let journal = std::fs::read_dir(env.dir.path().join(".deployer/services/web/deployments"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    let after_full = &journal[journal.find("\"full\":true").expect("journaled")..];
    assert!(
        after_full.contains(r#""host-gates":"PostTraffic""#),
        "{after_full}"
    );
    assert!(said.contains("promoted to 100% by "), "{said}");
}

/// With a scale-down-delay the old side stays up after promotion; a rollback inside
/// the delay moves traffic back with no scaling call at all, verified from the load
/// balancer, and keeps the release it rolled away from warm in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_within_the_scale_down_delay_only_moves_traffic() {
    let good = App::start(200, "ok");
    let (env, out) = promoted_with_delay(&good, "1h").await;
    assert!(out.contains("web:1 stays warm until"), "{out}");
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(task_sets(&env).await, ["web:1", "web:2"], "web:1 kept");
    let (_, status, _) = env.deployer(&["status"]).await;
    assert!(status.contains("live:    web:2"), "{status}");
    assert!(
        status.contains("warm:    web:1 at full size without traffic, until"),
        "{status}"
    );
    let (_, history, _) = env.deployer(&["history"]).await;
    assert!(history.contains("web:1 stays warm until"), "{history}");

    let (code, out, err) = env.deployer(&["rollback", "--output", "json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let calls = summary["aws-api-calls"]["by-operation"]
        .as_object()
        .unwrap();
    let scaling: Vec<&String> = calls
        .keys()
        .filter(|op| {
            [
                "UpdateTaskSet",
                "CreateTaskSet",
                "DeleteTaskSet",
                "UpdateService",
                "RegisterScalableTarget",
            ]
            .iter()
            .any(|scale| op.ends_with(&format!(".{scale}")))
        })
        .collect();
    assert!(
        scaling.is_empty(),
        "scaling calls: {scaling:?} in {calls:?}"
    );
    assert!(
        calls
            .keys()
            .any(|op| op.ends_with(".ModifyListener") || op.ends_with(".ModifyRule")),
        "traffic moved: {calls:?}"
    );
    assert_eq!(env.weights().await, (100, 0), "read back from the ALB");
    assert_eq!(
        env.primary().await,
        ("web:1".to_string(), 2),
        "web:2 kept warm in turn"
    );
    assert_eq!(summary["kept-warm"]["release"], "web:2", "{summary}");

    // A second rollback (a double click) changes nothing and keeps web:2 tracked as
    // warm, so it is still scaled down in time.
    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("nothing to do"), "{out}");
    let (_, status, _) = env.deployer(&["status"]).await;
    assert!(status.contains("warm:    web:2"), "{status}");
    let (code, out, err) = env.deployer(&["tidy", "--now"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(task_sets(&env).await, ["web:1"]);
}

fn deployer_tests_steps() -> &'static str {
    r#"[{ weight = 50, bake = "200ms" }]"#
}

/// The ECS world with `scale-down-delay = delay`, web:2 promoted over web:1 by
/// blue-green; the run's stdout.
async fn promoted_with_delay(good: &App, delay: &str) -> (EcsEnv, String) {
    let env = EcsEnv::start(&[]).await;
    env.write(
        &env.task_sets(&good.url, deployer_tests_steps())
            .service("web", |s| s.settings(|t| t.str("scale-down-delay", delay))),
    );
    let (code, out, err) = env
        .deployer(&["run", "blue-green", "--release", "web:2"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    (env, out)
}

/// Once the delay has passed, `deployer tidy` scales the old side down (not before); a
/// new deployment scales a side still warm down first, whatever its delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warm_side_is_scaled_down_by_tidy_once_due_and_by_the_next_run_at_once() {
    let good = App::start(200, "ok");
    let (env, _) = promoted_with_delay(&good, "20s").await;
    let (code, out, _) = env.deployer(&["tidy"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to do yet"), "{out}");
    assert_eq!(task_sets(&env).await, ["web:1", "web:2"]);

    // Traffic put on the warm side by hand: it is not scaled down while it serves.
    env.set_weights(50, 50).await;
    let (code, out, err) = env.deployer(&["tidy", "--now"]).await;
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(err.contains("gives it 50% of traffic"), "{err}");
    assert_eq!(task_sets(&env).await, ["web:1", "web:2"]);
    env.set_weights(0, 100).await;

    let (code, out, err) = env.deployer(&["tidy", "--wait"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(task_sets(&env).await, ["web:2"], "{out}");
    let (_, status, _) = env.deployer(&["status"]).await;
    assert!(!status.contains("warm:"), "{status}");
    let (_, history, _) = env.deployer(&["history"]).await;
    assert!(history.contains("is scaled down"), "{history}");

    // web:3 keeps web:2 warm; deploying web:1 right away scales web:2 down first.
    let (code, out, err) = env
        .deployer(&["run", "blue-green", "--release", "web:3"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(task_sets(&env).await, ["web:2", "web:3"]);
    let (code, out, err) = env
        .deployer(&["run", "blue-green", "--release", "web:1"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("scaling down web:2"), "{err}");
    assert_eq!(task_sets(&env).await, ["web:1", "web:3"]);
    assert_eq!(env.primary().await.0, "web:1");
}

/// `rollback --steps 50,0 --bake 5s` walks traffic back with the service's gates
/// between the steps. When the release it goes back to fails them (its alarm fires at
/// 50%), the walk stops: traffic returns to where it started, and it says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gradual_rollback_stops_when_the_stable_side_fails_its_gates() {
    let good = App::start(200, "ok");
    let (env, _) = promoted_with_delay(&good, "1h").await;

    let walk = env.spawn_captured(&["rollback", "--steps", "50,0", "--bake", "1h"]);
    env.wait_for_weights("the rollback never reached 50%", |(blue, _)| blue == 50)
        .await;
    env.set_alarm(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .await;
    let (code, out, err) = output(walk).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("web-5xx: ALARM"), "{out}");
    assert_eq!(
        env.weights().await,
        (0, 100),
        "back on web:2, where it started"
    );
    assert_eq!(env.primary().await.0, "web:2");
}

/// Without a failing gate, the same walk ends with everything on the previous release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gradual_rollback_walks_traffic_back_in_steps() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, deployer_tests_steps()).await;
    let (code, out, err) = env
        .deployer(&["run", "blue-green", "--release", "web:2"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = env
        .deployer(&["rollback", "--steps", "75,25,0", "--bake", "1s"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.journal_shifts(), [25, 75, 100]);
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));

    let (code, _, err) = env.deployer(&["rollback", "--steps", "50"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("the last step must be 0"), "{err}");
}

/// `{ weight = 10, pause = "approval" }`: the canary waits at 10% for a person. In GitHub
/// Actions the wait is announced in the log and the step summary while it lasts;
/// `deployer promote` continues it to promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_pause_waits_and_continues_on_promote() {
    let good = App::start(200, "ok");
    let env = EcsEnv::start(&[]).await;
    env.write(
        &env.task_sets(&good.url, r#"[{ weight = 10, pause = "approval" }]"#)
            .service("web", |s| {
                s.strategy("canary", |p| p.str("approval-timeout", "1h"))
            }),
    );
    let summary = env.dir.path().join("step-summary.md");
    // The wait is announced while the run waits, not when it ends.
    let run = run_until_waiting(&env, &summary, 1).await;
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.contains("deployer promote --service web"), "{text}");
    assert_eq!(env.weights().await, (90, 10), "waiting at 10%");
    let (code, out, err) = env
        .deployer(&["promote", "--reason", "checked the dashboards"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = output(run).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("::notice title=deployer%3A waiting for approval::"),
        "{out}"
    );
    assert_eq!(env.journal_shifts(), [10, 100]);
    assert_eq!(task_sets(&env).await, ["web:2"]);
}

/// Nobody answers: at its timeout the pause rolls back, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_approval_pause_rolls_back_at_its_timeout() {
    let good = App::start(200, "ok");
    let env = EcsEnv::start(&[]).await;
    env.write(
        &env.task_sets(&good.url, r#"[{ weight = 10, pause = "approval" }]"#)
            .service("web", |s| {
                s.strategy("canary", |p| p.str("approval-timeout", "2s"))
            }),
    );
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("nobody approved within 2s"), "{out}");
    assert!(err.contains("waiting for approval until"), "{err}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(task_sets(&env).await, ["web:1"]);
}

/// Spawn `deployer run canary --release web:2` as in GitHub Actions, writing its step
/// summary to `summary`; returns once the summary announces `notes` approval waits.
async fn run_until_waiting(
    env: &EcsEnv,
    summary: &std::path::Path,
    notes: usize,
) -> tokio::process::Child {
    let run = env
        .command(&["run", "canary", "--release", "web:2"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", summary)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_to_string(summary)
        .unwrap_or_default()
        .matches("Waiting for approval")
        .count()
        < notes
    {
        assert!(tokio::time::Instant::now() < deadline, "never announced");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    run
}

/// A run killed while it waits for approval and resumed (`on-interrupted = "resume"`)
/// waits until the same deadline, not a fresh timeout: killing and resuming cannot keep
/// the canary exposed past its `approval-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_approval_pause_keeps_its_deadline() {
    let good = App::start(200, "ok");
    let env = EcsEnv::start(&[]).await;
    env.write(
        &env.task_sets(&good.url, r#"[{ weight = 10, pause = "approval" }]"#)
            .service("web", |s| {
                s.settings(|t| t.str("on-interrupted", "resume"))
                    .strategy("canary", |p| p.str("approval-timeout", "1h"))
            }),
    );
    let summary = env.dir.path().join("step-summary.md");
    let first = run_until_waiting(&env, &summary, 1).await;
    deployer_tests::support::env::sigkill(first).await;
    // Deadlines are to the second: the resumed run announces its own a second later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = run_until_waiting(&env, &summary, 2).await;
    let text = std::fs::read_to_string(&summary).unwrap();
    let until: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split(" until ").nth(1))
        .map(|rest| &rest[..23])
        .collect();
    assert_eq!(until.len(), 2, "{text}");
    assert_eq!(
        until[0], until[1],
        "the resumed wait has the first one's deadline: {text}"
    );
    let (code, out, err) = env.deployer(&["abort"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("is rolling back"), "{out}");
    let (code, out, err) = output(second).await;
    assert_eq!(code, 1, "{out}\n{err}");
    // The aborted deployment is not begun again by the run that resumed it.
    assert!(out.contains("aborted by "), "{out}");
    assert_eq!(task_sets(&env).await, ["web:1"]);
    assert_eq!(env.weights().await, (100, 0));
}
