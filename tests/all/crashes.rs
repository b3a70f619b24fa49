//! The real binary against moto, SIGKILLed as soon as its journal reaches each record of
//! a canary and a blue-green run in turn; then the next invocation (a new `run`, or
//! `rollback`) must leave one consistent release with all traffic on healthy targets.

use std::time::{Duration, Instant};

use deployer_tests::support::App;

use deployer_tests::support::env::{EcsEnv, sigkill};

/// The journals of service `web`, oldest first.
fn journals(env: &EcsEnv) -> Vec<std::path::PathBuf> {
    deployer_tests::support::journals_oldest_first(
        &env.dir.path().join(".deployer/services/web/deployments"),
    )
}

/// Start a deploy of `release` and SIGKILL it once its journal has `records` lines.
/// Returns whether the kill came before the process ended by itself.
async fn kill_at(env: &EcsEnv, strategy: &str, release: &str, records: usize) -> bool {
    let before = journals(env).len();
    let mut child = env.spawn(&["run", strategy, "--release", release]);
    let started = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            return false;
        }
        let files = journals(env);
        let len = if files.len() > before {
            std::fs::read_to_string(files.last().unwrap()).map_or(0, |t| t.lines().count())
        } else {
            0
        };
        if len >= records {
            sigkill(child).await;
            return true;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the run hung");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The live release by what the load balancer and ECS report: all traffic on one target
/// group, one task set, and it is the primary.
async fn consistent_release(env: &EcsEnv) -> String {
    let (blue, green) = env.weights().await;
    assert!(
        (blue, green) == (100, 0) || (blue, green) == (0, 100),
        "traffic split {blue}/{green} after recovery"
    );
    let (release, sets) = env.primary().await;
    assert_eq!(sets, 1, "one task set is left ({release})");
    release
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_each_journal_record_then_recovered() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, r#"[{ weight = 10 }, { weight = 50 }]"#).await;
    let mut live = "web:1".to_string();
    for strategy in ["canary", "blue-green"] {
        let mut records = 1;
        loop {
            let next = if live == "web:2" { "web:3" } else { "web:2" };
            let killed = kill_at(&env, strategy, next, records).await;
            if !killed {
                // The run finished before its journal got that long: every record was covered.
                live = consistent_release(&env).await;
                assert_eq!(live, next, "{strategy}: the run that finished promoted");
                break;
            }
            // Alternate the two ways back: a new run (recovers, then deploys) and `rollback`.
            if records % 2 == 1 {
                let (code, out, err) = env.deployer(&["run", strategy, "--release", next]).await;
                assert_eq!(
                    code, 0,
                    "{strategy} killed at record {records}: {out}\n{err}"
                );
                live = consistent_release(&env).await;
                assert_eq!(live, next, "{strategy} killed at record {records}: {out}");
            } else {
                let (code, out, err) = env.deployer(&["rollback"]).await;
                assert_eq!(
                    code, 0,
                    "{strategy} killed at record {records}: {out}\n{err}"
                );
                let now = consistent_release(&env).await;
                assert_eq!(
                    now, live,
                    "{strategy} killed at record {records}: back on {live}: {out}"
                );
            }
            records += 1;
        }
    }
}
