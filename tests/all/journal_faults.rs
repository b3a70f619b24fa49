//! The S3 + DynamoDB state backend under faults, against moto and the real binary, every
//! AWS call through the fault proxy: the journal's store failing with traffic on the new
//! side, a promoted run's history entry lost, and a run paused while its journal write
//! is in flight, then taken over.

use deployer_tests::support::App;
use deployer_tests::support::config::ConfigBuilder;
use deployer_tests::support::env::EcsEnv;
use deployer_tests::support::fault_proxy::{ALWAYS, Fault, FaultProxy};

use super::faults::through_proxy;

/// The ECS world with `web` on task sets smoke-tested against `app` with these canary
/// steps, its journals and locks in S3 and DynamoDB (lease 5 s, the shortest allowed),
/// `edit` applied, every AWS call of the binary through a fault proxy.
async fn aws_state_through_proxy(
    app: &App,
    canary_steps: &str,
    edit: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (EcsEnv, FaultProxy) {
    let env = EcsEnv::start(&[]).await;
    let config = edit(
        env.task_sets(&app.url, canary_steps)
            .aws_state("deployer-state", "deployer-locks", "shop/")
            .lease("5s"),
    );
    let proxy = through_proxy(&env, config).await;
    (env, proxy)
}

/// The output of a finished command as (exit code, stdout, stderr).
fn texts(out: &std::process::Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Wait for `child`, reading the listener every 20 ms meanwhile: its output, and the
/// largest share of traffic seen on green (the new side).
async fn output_watching_the_new_share(
    child: tokio::process::Child,
    env: &EcsEnv,
) -> (std::process::Output, u8) {
    let output = child.wait_with_output();
    tokio::pin!(output);
    let mut most = 0;
    loop {
        tokio::select! {
            out = &mut output => return (out.unwrap(), most),
            () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                most = most.max(env.weights().await.1);
            }
        }
    }
}

/// `deployer history --output json`: (result, stable release, new release), newest first.
async fn history(env: &EcsEnv) -> Vec<(String, String, String)> {
    let (code, out, err) = env.deployer(&["history", "--output", "json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    rows.iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            (text("result"), text("stable-release"), text("new-release"))
        })
        .collect()
}

fn row(result: &str, stable: &str, new: &str) -> (String, String, String) {
    (result.into(), stable.into(), new.into())
}

/// Operations that change the cloud or the journal.
const CHANGES: [&str; 9] = [
    "ModifyListener",
    "ModifyRule",
    "CreateTaskSet",
    "UpdateTaskSet",
    "DeleteTaskSet",
    "UpdateServicePrimaryTaskSet",
    "UpdateService",
    "PutObject",
    "DeleteObject",
];

/// The changes among `answered` (operations the proxy answered).
fn changes(answered: &[String]) -> Vec<&String> {
    answered
        .iter()
        .filter(|op| CHANGES.contains(&op.as_str()))
        .collect()
}

/// With traffic on the canary, every S3 write of the journal starts failing (503, after
/// the SDK's own retries): the run cannot journal its next step, so it takes no further
/// step (traffic never goes past 10%) and rolls back; the rollback goes on without its
/// journal, trying the store again only when it ends: traffic 100% on web:1 as the
/// listener reports it, exit 1, the output says the journal could not be written. With the store back, `status` still shows the
/// deployment unfinished (the store is what the next run reads); the next `run` rolls it
/// back again (nothing left to change) and deploys; `history` shows both as they ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_aws_backend_a_journal_store_failing_mid_run_rolls_back_and_the_next_run_recovers()
{
    let good = App::start(200, "ok");
    let (env, proxy) = aws_state_through_proxy(
        &good,
        r#"[{ weight = 10, bake = "2s" }, { weight = 50 }]"#,
        |c| c,
    )
    .await;
    let run = env.spawn_captured(&["run", "canary", "--release", "web:2", "--output", "json"]);
    env.wait_for_weights("the canary never shifted traffic", |(_, green)| green > 0)
        .await;
    proxy.arm_matching("PutObject", "/deployments/", Fault::Unavailable, 0, ALWAYS);
    let (out, most) = output_watching_the_new_share(run, &env).await;
    let (code, stdout, stderr) = texts(&out);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert_eq!(most, 10, "no step after the store failed: {stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["result"], "rolled-back", "{stdout}");
    let detail = summary["detail"].as_str().unwrap();
    assert!(
        detail.contains("writing the journal failed")
            && detail.contains("the journal could not be written")
            && detail.contains("ServiceUnavailable"),
        "{detail}"
    );
    // The forward run's journal write (1 + 3 retries) and the rollback's at its end
    // (1 + 1 retry), each call up to the SDK's 5 attempts: the rollback did not try the
    // store before each of its actions while traffic was still on web:2.
    let refused = proxy.count("PutObject", Fault::Unavailable);
    assert!((1..=(4 + 2) * 5).contains(&refused), "{refused} attempts");
    assert_eq!(env.weights().await, (100, 0), "traffic is back on web:1");
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));

    proxy.disarm("PutObject");
    let (_, status, _) = env.deployer(&["status"]).await;
    assert!(status.contains("deploying web:2 over web:1"), "{status}");
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "web:2", "--output", "json"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["result"], "promoted", "{out}");
    assert!(summary["recovered"].is_string(), "{out}");
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(env.primary().await, ("web:2".to_string(), 1));
    assert_eq!(
        history(&env).await,
        [
            row("promoted", "web:1", "web:2"),
            row("rolled-back", "web:1", "web:2")
        ]
    );
}

/// `on-interrupted = "resume"`. A canary promotes web:2, but its history entry cannot be
/// written (S3 answers 503 to that object only, after the journal's `finished` record):
/// the run exits 4 naming the write, with web:2 live on 100% of traffic. Run again, web:2
/// is found live: nothing is deployed over it and nothing changes. The same loss after
/// web:3 promotes, then web:1 is deployed: it starts from web:3 (its stable release),
/// goes on the side web:3 does not use, and promotes. `history` shows every deployment promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_aws_backend_a_promoted_run_whose_history_write_failed_is_never_deployed_over() {
    use deployer_tests::support::config::Service;
    let good = App::start(200, "ok");
    let resume = |c: ConfigBuilder| {
        c.service("web", |s: Service| {
            s.settings(|t| t.str("on-interrupted", "resume"))
        })
    };
    let (env, proxy) = aws_state_through_proxy(&good, super::ecs::STEPS, resume).await;
    let lose_history = || {
        proxy.arm_matching("PutObject", "/history/", Fault::Unavailable, 0, ALWAYS);
    };
    let promote_losing_history = async |release: &str, weights: (u8, u8)| {
        lose_history();
        let (code, out, err) = env.run("canary", "web", release).await;
        assert_eq!(code, 4, "{out}\n{err}");
        assert!(
            err.contains("history/") && err.contains("ServiceUnavailable"),
            "{out}\n{err}"
        );
        assert_eq!(env.weights().await, weights, "{release} is live");
        assert_eq!(env.primary().await, (release.to_string(), 1));
        proxy.disarm("PutObject");
    };

    promote_losing_history("web:2", (0, 100)).await;
    let before = proxy.answered().len();
    let (code, out, err) = env.run("canary", "web", "web:2").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("web:2 is already live"), "{out}");
    let answered = proxy.answered();
    let changed = changes(&answered[before..]);
    // The paperwork is finished (its `finished` record again, the history entry, the
    // active mark cleared); nothing else.
    assert!(
        changed
            .iter()
            .all(|op| *op == "PutObject" || *op == "DeleteObject"),
        "{changed:?}"
    );
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(env.primary().await, ("web:2".to_string(), 1));

    promote_losing_history("web:3", (100, 0)).await;
    // An older release deployed again, as a new one.
    let (code, out, err) = env.run("canary", "web", "web:1").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (0, 100), "web:1 went beside web:3");
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
    assert_eq!(
        history(&env).await,
        [
            row("promoted", "web:3", "web:1"),
            row("promoted", "web:2", "web:3"),
            row("promoted", "web:1", "web:2"),
        ]
    );
}

/// Send `signal` to `child`.
fn signal(child: &tokio::process::Child, signal: i32) {
    let pid = child.id().unwrap() as i32;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Wait (a minute at most, else fail with `what`) until `done`.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed().as_secs() < 60, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The fence race. A canary's journal write of its shift to 50% reaches S3, but its
/// answer is held in flight; the run is paused there (SIGSTOP) past its 5 s lease.
/// `deployer rollback` waits the lease out, takes over, finds that shift in flight and
/// rolls back: traffic 100% on web:1. Then the first run is continued: its heartbeat
/// renews (after the takeover, so it must count as lost), and only then does the held
/// answer arrive, a success. The run must not act on it: it exits 4, saying another run
/// holds the service, having made no change at all (no traffic, task set or journal
/// write: the listener, the task sets and the bucket are as the rollback left them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_aws_backend_a_run_paused_with_its_journal_write_in_flight_changes_nothing_after_a_takeover()
 {
    let good = App::start(200, "ok");
    let (env, proxy) = aws_state_through_proxy(
        &good,
        r#"[{ weight = 10, bake = "1s" }, { weight = 50 }]"#,
        |c| c,
    )
    .await;
    proxy.arm_matching("PutObject", r#""ShiftTraffic":50"#, Fault::Hold, 0, 1);
    let paused = env.spawn_captured(&["run", "canary", "--release", "web:2"]);
    wait_until("the shift to 50% was never journaled", || {
        proxy.holding() == 1
    })
    .await;
    signal(&paused, libc::SIGSTOP);
    assert_eq!(env.weights().await, (90, 10));

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("waiting up to"),
        "it waited the lease out: {err}"
    );
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
    let keys = env.s3_keys().await;
    let mark = proxy.answered().len();

    signal(&paused, libc::SIGCONT);
    // Everything after the mark is the continued run's: the rollback has exited.
    wait_until("the continued run never renewed its lease", || {
        proxy.answered()[mark..].iter().any(|op| op == "UpdateItem")
    })
    .await;
    proxy.release();
    let (code, stdout, stderr) = texts(&paused.wait_with_output().await.unwrap());
    assert_eq!(code, Some(4), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("another run holds the service now"),
        "{stdout}\n{stderr}"
    );
    let answered = proxy.answered();
    assert_eq!(
        changes(&answered[mark..]),
        Vec::<&String>::new(),
        "{stdout}\n{stderr}"
    );
    assert_eq!(
        env.weights().await,
        (100, 0),
        "the continued run moved traffic"
    );
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
    assert_eq!(env.s3_keys().await, keys, "the continued run wrote to S3");
}
