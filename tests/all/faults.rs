//! Cloud faults during shifts and during rollback: throttling, 5xx, slow answers,
//! dropped connections and stale reads, injected by a proxy in front of moto. The run
//! retries through them (SDK backoff under one account-wide budget, then the engine's
//! own retries) and ends consistent: promoted with verified weights, or rolled back with
//! traffic on stable.

use deployer_tests::support::App;
use deployer_tests::support::fault_proxy::{Fault, FaultProxy};

use deployer_tests::support::config::ConfigBuilder;
use deployer_tests::support::env::EcsEnv;

use super::ecs::STEPS;

/// Write `config` with the AWS endpoint at a fault proxy in front of moto.
async fn through_proxy(env: &EcsEnv, config: ConfigBuilder) -> FaultProxy {
    let proxy = FaultProxy::start(&env.moto.endpoint).await;
    env.write(&config.aws(&proxy.endpoint));
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_promotes_through_throttling_errors_slowness_drops_and_stale_reads() {
    let env = EcsEnv::start(&[]).await;
    let good = App::start(200, "ok");
    let proxy = through_proxy(&env, env.task_sets(&good.url, STEPS)).await;
    proxy.arm("ModifyListener", Fault::Throttle, 0, 3);
    proxy.arm("DescribeListeners", Fault::Unavailable, 1, 2);
    proxy.arm("DescribeListeners", Fault::Stale, 2, 2);
    proxy.arm(
        "UpdateTaskSet",
        Fault::Slow(std::time::Duration::from_millis(400)),
        0,
        2,
    );
    proxy.arm("CreateTaskSet", Fault::Drop, 0, 1);
    proxy.arm("DescribeTargetHealth", Fault::Throttle, 2, 2);
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "web:2", "--output", "json"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["result"], "promoted");
    assert_eq!(env.weights().await, (0, 100));
    let served = proxy.served();
    for fault in [
        Fault::Throttle,
        Fault::Unavailable,
        Fault::Stale,
        Fault::Drop,
    ] {
        assert!(
            served.iter().any(|(_, f)| *f == fault),
            "{fault:?} was injected: {served:?}"
        );
    }
    // Every attempt is counted, retries included.
    let calls = summary["aws-api-calls"]["total"].as_u64().unwrap();
    assert!(
        calls as usize > served.len(),
        "{calls} calls, {} faults",
        served.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_keeps_trying_through_faults_until_traffic_is_safe() {
    let env = EcsEnv::start(&[]).await;
    let bad = App::start(500, "boom");
    // The smoke test fails after the first shift (post-traffic), so there is traffic to move back.
    let config = env.task_sets(&bad.url, STEPS).service("web", |s| {
        s.edit_gates("http", |g| g.strs("at", &["post-traffic"]))
    });
    let proxy = through_proxy(&env, config).await;
    // Skip the shifts of the rollout (test route + first shift), then fail the rollback's
    // weight change through more attempts than one SDK call makes.
    proxy.arm("ModifyListener", Fault::Throttle, 2, 7);
    proxy.arm("DeleteTaskSet", Fault::Unavailable, 0, 3);
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "web:2", "--output", "json"])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["result"], "rolled-back");
    assert_eq!(summary["traffic-new-percent"], 0);
    assert_eq!(env.weights().await, (100, 0), "traffic is back on stable");
    let throttled = proxy
        .served()
        .iter()
        .filter(|(op, _)| op == "ModifyListener")
        .count();
    assert_eq!(throttled, 7, "{:?}", proxy.served());
    assert!(
        err.contains("rollback action failed") && err.contains("retrying"),
        "the rollback says it is retrying: {err}"
    );
}

/// SIGINT and SIGTERM while `deployer rollback` is putting production back (its AWS
/// calls slowed down so the signals land midway): the rollback finishes — traffic
/// 100% on the release it restores, exit 0 — instead of dying with traffic split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_during_a_manual_rollback_let_it_finish() {
    let env = EcsEnv::start(&[]).await;
    let good = App::start(200, "ok");
    let proxy = through_proxy(&env, env.task_sets(&good.url, STEPS)).await;
    let (code, out, err) = env
        .deployer(&["run", "blue-green", "--release", "web:2"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let slow = Fault::Slow(std::time::Duration::from_millis(700));
    proxy.arm("UpdateTaskSet", slow, 0, 20);
    proxy.arm("ModifyListener", slow, 0, 20);
    let child = env.spawn_captured(&["rollback"]);
    let pid = child.id().unwrap() as i32;
    // Once the rollback is changing things (its first slow call has been answered).
    let started = std::time::Instant::now();
    while !proxy.served().iter().any(|(_, f)| *f == slow) {
        assert!(
            started.elapsed().as_secs() < 60,
            "the rollback never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGINT] {
        // SAFETY: kill(2) on the child's pid, which is still ours to signal.
        unsafe { libc::kill(pid, signal) };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("the rollback finishes first"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(env.weights().await, (100, 0), "web:1 is back behind blue");
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
}
