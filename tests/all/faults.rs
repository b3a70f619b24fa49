//! Cloud faults during shifts and during rollback: throttling, 5xx, slow answers,
//! dropped connections and stale reads, injected by a proxy in front of moto. The run
//! retries through them (SDK backoff under one account-wide budget, then the engine's
//! own retries) and ends consistent: promoted with verified weights, or rolled back with
//! traffic on stable. A permanent error (access denied) is not retried: a rollback that
//! meets one ends at once, saying so.

use deployer_tests::support::App;
use deployer_tests::support::fault_proxy::{ALWAYS, Fault, FaultProxy};

use deployer_tests::support::config::ConfigBuilder;
use deployer_tests::support::env::EcsEnv;

use super::ecs::STEPS;

/// Write `config` with the AWS endpoint at a fault proxy in front of moto.
pub(crate) async fn through_proxy(env: &EcsEnv, config: ConfigBuilder) -> FaultProxy {
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

/// Wait for `child` and return its output; fail (killing it) as soon as the proxy has
/// injected `fault` into `operation` more than `limit` times: the error is being retried.
/// Counted, not timed: a permanent error retried to the rollback's 15-minute deadline
/// fails here after a few attempts.
pub(crate) async fn output_within_attempts(
    child: tokio::process::Child,
    proxy: &FaultProxy,
    operation: &str,
    fault: Fault,
    limit: usize,
) -> std::process::Output {
    let output = child.wait_with_output();
    tokio::pin!(output);
    loop {
        tokio::select! {
            out = &mut output => return out.unwrap(),
            () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                let attempts = proxy.count(operation, fault);
                assert!(
                    attempts <= limit,
                    "{operation} answered {fault:?} {attempts} times, more than {limit}: \
                     the error is being retried"
                );
            }
        }
    }
}

/// Access denied, in each protocol's own error shape as the proxy answers it, reaches the
/// host through the SDK's real parsers as a permanent error with its code: ECS (JSON,
/// `AccessDeniedException`), ELBv2 (query XML, `AccessDenied`), S3 (REST XML,
/// `AccessDenied`, 403), DynamoDB (JSON). The SDK makes one attempt of each. Disarmed,
/// the same calls go through: the proxy named the operations right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_in_every_protocol_is_parsed_as_a_permanent_error() {
    use deployer_engine::driver::DriverError;
    use deployer_targets::aws::classify;
    let env = EcsEnv::start(&[]).await;
    let proxy = FaultProxy::start(&env.moto.endpoint).await;
    let clients =
        deployer_targets::aws::Clients::new(Some("us-east-1"), Some(&proxy.endpoint)).await;
    let denied = Fault::AccessDenied;
    for op in [
        "DescribeServices",
        "DescribeListeners",
        "PutObject",
        "GetItem",
    ] {
        proxy.arm(op, denied, 0, ALWAYS);
    }
    let permanent = |err: DriverError, code: &str| match err {
        DriverError::Failed(message) => assert!(message.contains(code), "{message}"),
        transient => panic!("{code} was judged worth retrying: {transient}"),
    };
    let ecs = clients
        .ecs
        .describe_services()
        .cluster("prod")
        .services("web");
    permanent(
        classify("describing", ecs.clone().send().await.unwrap_err()),
        "AccessDeniedException",
    );
    let elb = clients
        .elb
        .describe_listeners()
        .listener_arns(&env.world.listener);
    permanent(
        classify("reading", elb.clone().send().await.unwrap_err()),
        ": AccessDenied:",
    );
    let put = || {
        clients
            .s3
            .put_object()
            .bucket("deployer-state")
            .key("probe/object")
            .body(b"x".to_vec().into())
    };
    let err = put().send().await.unwrap_err();
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(403),
        "{err:?}"
    );
    permanent(classify("writing", err), ": AccessDenied:");
    let get_item = clients
        .dynamodb
        .get_item()
        .table_name("deployer-locks")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("probe".into()),
        );
    let err = get_item.clone().send().await.unwrap_err();
    assert_eq!(
        aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&err),
        Some("AccessDeniedException"),
        "{err:?}"
    );
    for op in [
        "DescribeServices",
        "DescribeListeners",
        "PutObject",
        "GetItem",
    ] {
        assert_eq!(proxy.count(op, denied), 1, "{op} was attempted once");
        proxy.disarm(op);
    }
    ecs.send().await.unwrap();
    elb.send().await.unwrap();
    put().send().await.unwrap();
    get_item.send().await.unwrap();
    let answered = proxy.answered();
    for op in [
        "DescribeServices",
        "DescribeListeners",
        "PutObject",
        "GetItem",
    ] {
        assert_eq!(
            answered.iter().filter(|a| *a == op).count(),
            2,
            "{op}: {answered:?}"
        );
    }
}

/// A canary whose smoke test fails after its first shift, whose rollback then meets
/// access denied on the listener (a permanent error): the rollback ends at once with
/// exit 2, naming the error and the traffic left on the new release, after one attempt
/// (not retried to its 15-minute deadline). `deployer rollback` meeting the same error
/// ends the same way; once the permission is back, `deployer rollback` finishes that
/// rollback: traffic 100% on web:1, web:2's task set gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_ends_a_rollback_at_once_and_a_later_rollback_finishes_it() {
    let env = EcsEnv::start(&[]).await;
    let bad = App::start(500, "boom");
    let config = env.task_sets(&bad.url, STEPS).service("web", |s| {
        s.edit_gates("http", |g| g.strs("at", &["post-traffic"]))
    });
    let proxy = through_proxy(&env, config).await;
    // The rollout's own listener changes (test route, first shift) go through; every
    // later one is refused.
    let denied = Fault::AccessDenied;
    proxy.arm("ModifyListener", denied, 2, ALWAYS);
    let run = env.spawn_captured(&["run", "canary", "--release", "web:2", "--output", "json"]);
    let out = output_within_attempts(run, &proxy, "ModifyListener", denied, 3).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["result"], "rollback-failed", "{stdout}");
    let detail = summary["detail"].as_str().unwrap();
    assert!(
        detail.contains("AccessDenied") && detail.contains("10% of traffic may still reach web:2"),
        "{detail}"
    );
    assert_eq!(proxy.count("ModifyListener", denied), 1, "one attempt");
    assert_eq!(
        env.weights().await,
        (90, 10),
        "the rollback could not move it"
    );

    // A person runs `deployer rollback` before the permission is back.
    let rollback = env.spawn_captured(&["rollback", "--output", "json"]);
    let out = output_within_attempts(rollback, &proxy, "ModifyListener", denied, 4).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["result"], "rollback-failed", "{stdout}");
    assert!(
        summary["detail"].as_str().unwrap().contains("AccessDenied"),
        "{stdout}"
    );
    assert_eq!(proxy.count("ModifyListener", denied), 2, "one attempt more");
    assert_eq!(env.weights().await, (90, 10));

    proxy.disarm("ModifyListener");
    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (100, 0), "traffic is back on web:1");
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
}

/// After blue-green promoted web:2, `deployer rollback` (web:1 redeployed beside it)
/// meets access denied on the listener: it ends after one attempt of each listener
/// change, exit 2, naming `AccessDenied`; traffic never left web:2. With the permission
/// back, `deployer rollback` finishes that failed rollback (web:1's new side removed,
/// web:2 still live on 100%), and the next one puts web:1 back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_ends_a_manual_rollback_at_once() {
    let env = EcsEnv::start(&[]).await;
    let good = App::start(200, "ok");
    let proxy = through_proxy(&env, env.task_sets(&good.url, STEPS)).await;
    let (code, out, err) = env
        .deployer(&["run", "blue-green", "--release", "web:2"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let denied = Fault::AccessDenied;
    proxy.arm("ModifyListener", denied, 0, ALWAYS);
    let rollback = env.spawn_captured(&["rollback", "--output", "json"]);
    let out = output_within_attempts(rollback, &proxy, "ModifyListener", denied, 3).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["result"], "rollback-failed", "{stdout}");
    assert!(
        summary["detail"].as_str().unwrap().contains("AccessDenied"),
        "{stdout}"
    );
    // The redeploy's shift to web:1, then its own rollback's shift back: once each.
    assert_eq!(proxy.count("ModifyListener", denied), 2, "{stderr}");
    assert_eq!(env.weights().await, (0, 100), "traffic never left web:2");
    assert_eq!(
        env.primary().await,
        ("web:2".to_string(), 2),
        "web:1's new side is left"
    );

    proxy.disarm("ModifyListener");
    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("retrying the failed rollback"), "{out}");
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(env.primary().await, ("web:2".to_string(), 1));
    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (100, 0), "web:1 is back");
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
}
