//! ECS + ALB end to end, against a real moto server, real HTTP apps and the real
//! `deployer` binary: promotion with verified weights, automatic rollback on a failed
//! smoke test or alarm, manual rollback, a SIGKILL mid-canary, and concurrent runs.

use deployer_tests::support::App;
use deployer_tests::support::cli::deployer_bin;
use deployer_tests::support::env::EcsEnv;
use deployer_tests::support::listener::{Listener, Reply};

pub(crate) const STEPS: &str = r#"[{ weight = 10, bake = "300ms" }, { weight = 50 }]"#;

/// `deployer.toml` of the ECS world: `web` on task sets, smoke-tested against `app`.
pub(crate) fn config(env: &EcsEnv, app: &App, canary_steps: &str) {
    env.write(&env.task_sets(&app.url, canary_steps));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_promotes_with_verified_weights() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, STEPS).await;
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("promoted"), "{out}");
    assert_eq!(env.journal_shifts(), [10, 50, 100]);
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(
        env.primary().await,
        ("web:2".to_string(), 1),
        "old task set removed"
    );

    let (_, history, _) = env.deployer(&["history"]).await;
    assert!(
        history.contains("promoted") && history.contains("web:1") && history.contains("web:2"),
        "{history}"
    );
    let (_, status, _) = env.deployer(&["status"]).await;
    assert!(
        status.contains("state:   idle") && status.contains("live:    web:2"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_smoke_test_rolls_the_canary_back() {
    let bad = App::start(500, "boom");
    let env = EcsEnv::with_task_sets(&bad.url, STEPS).await;
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("rolled back"), "{out}");
    assert!(out.contains("0/5 requests"), "{out}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(
        env.primary().await,
        ("web:1".to_string(), 1),
        "new task set removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_rolls_back_blue_green_and_canary() {
    for strategy in ["blue-green", "canary"] {
        let good = App::start(200, "ok");
        let env = EcsEnv::with_task_sets(&good.url, STEPS).await;
        env.set_alarm(aws_sdk_cloudwatch::types::StateValue::Alarm)
            .await;
        let (code, out, err) = env.deployer(&["run", strategy, "--release", "web:2"]).await;
        assert_eq!(code, 1, "{strategy}: {out}\n{err}");
        assert!(out.contains("web-5xx: ALARM"), "{strategy}: {out}");
        assert_eq!(env.weights().await, (100, 0), "{strategy}");
        assert_eq!(env.primary().await.0, "web:1", "{strategy}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_promotes_then_manual_rollback_restores_the_previous_release() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, STEPS).await;
    let (code, out, err) = env
        .deployer(&["run", "blue-green", "--release", "web:2"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(env.primary().await, ("web:2".to_string(), 1));

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (100, 0), "web:1 is back behind blue");
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
    let (_, history, _) = env.deployer(&["history"]).await;
    assert_eq!(history.matches("promoted").count(), 2, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_never_gets_healthy_rolls_back() {
    let env = EcsEnv::start(&["web:3"]).await;
    let good = App::start(200, "ok");
    config(&env, &good, STEPS);
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:3"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("became healthy within"), "{out}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
}

const NO_TRAFFIC: &str = "the canary never shifted traffic";

/// Wait until the canary holds some production traffic.
async fn wait_for_traffic(env: &EcsEnv) {
    env.wait_for_weights(NO_TRAFFIC, |(_, green)| green > 0)
        .await;
}

/// A canary of web:2, SIGKILLed once it holds some production traffic.
async fn kill_mid_canary(env: &EcsEnv) {
    let args = ["run", "canary", "--release", "web:2"];
    env.kill_when(&args, NO_TRAFFIC, |(_, green)| green > 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_canary_then_rollback_leaves_no_traffic_on_the_new_side() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, r#"[{ weight = 10, bake = "1h" }]"#).await;
    kill_mid_canary(&env).await;
    assert_eq!(
        env.weights().await,
        (90, 10),
        "killed with traffic on the canary"
    );
    let (_, status, _) = env.deployer(&["status"]).await;
    assert!(status.contains("deploying web:2 over"), "{status}");

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
    let (_, status, _) = env.deployer(&["status"]).await;
    assert!(status.contains("state:   idle"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_canary_then_a_new_run_recovers_and_deploys() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, r#"[{ weight = 10, bake = "2s" }]"#).await;
    kill_mid_canary(&env).await;

    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("recovered unfinished deployment") || out.contains("rolled back"),
        "{out}"
    );
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(env.primary().await, ("web:2".to_string(), 1));
    let (_, history, _) = env.deployer(&["history"]).await;
    assert!(
        history.contains("rolled-back") && history.contains("promoted"),
        "{history}"
    );
}

/// Run web:2 and, once it has shifted traffic, web:3: the first promotes, the second is
/// refused (exit code 4) while the first holds the service.
async fn two_concurrent_runs(env: &EcsEnv) {
    let first = env
        .command(&["run", "canary", "--release", "web:2"])
        .output();
    let second = async {
        wait_for_traffic(env).await;
        env.deployer(&["run", "canary", "--release", "web:3"]).await
    };
    let (first, (code, out, err)) = tokio::join!(first, second);
    let first = first.unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        err.contains("already being deployed by deployment"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_runs_one_wins_one_is_refused() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, r#"[{ weight = 10, bake = "2s" }]"#).await;
    two_concurrent_runs(&env).await;
    assert_eq!(env.primary().await.0, "web:2");
}

fn settled(release: &str) -> (String, String, String) {
    (
        release.to_string(),
        release.to_string(),
        "COMPLETED".to_string(),
    )
}

/// The ECS world with the in-place service `api` smoke-tested against `app` (tasks of
/// the task definitions in `broken` never get healthy), and `deployer run rolling` of
/// `release` on it.
async fn rolling_in_place(
    broken: &[&str],
    app: &App,
    release: &str,
) -> (EcsEnv, i32, String, String) {
    let env = EcsEnv::start(broken).await;
    env.write(&env.in_place(&app.url));
    let (code, out, err) = env
        .deployer(&["run", "rolling", "--release", release])
        .await;
    (env, code, out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_in_place_promotes_a_good_release_and_manual_rollback_undoes_it() {
    let good = App::start(200, "ok");
    let (env, code, out, err) = rolling_in_place(&[], &good, "web:2").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.api().await, settled("web:2"));

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.api().await, settled("web:1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_in_place_rolls_back_on_a_failed_smoke_test() {
    let bad = App::start(503, "down");
    let (env, code, out, err) = rolling_in_place(&[], &bad, "web:2").await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("0/3 requests"), "{out}");
    assert_eq!(
        env.api().await,
        settled("web:1"),
        "the stable release was rolled back out"
    );
}

/// Found by an outside tester: a gate that fails before the rolling update began left
/// nothing to undo, yet the rollback asked the in-place service to scale a stable side
/// and reported ROLLBACK FAILED (exit 2, "remove what is left by hand").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_in_place_stopped_by_a_pre_deploy_gate_rolls_back_having_changed_nothing() {
    let bad = App::start(503, "down");
    let env = EcsEnv::start(&[]).await;
    env.write(
        &env.in_place(&bad.url)
            .service("api", |s| s.http_gate(&["pre-deploy"], &bad.url, 2)),
    );
    let (code, out, err) = env
        .deployer(&["run", "rolling", "--release", "web:2"])
        .await;
    assert_eq!(code, 1, "a rollback, not a failed one: {out}\n{err}");
    assert!(
        !out.contains("ROLLBACK FAILED") && !err.contains("by hand"),
        "{out}\n{err}"
    );
    assert_eq!(env.api().await, settled("web:1"));
    let (code, out, _) = env.deployer(&["status"]).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_in_place_rolls_back_when_the_circuit_breaker_trips() {
    let good = App::start(200, "ok");
    let (env, code, out, err) = rolling_in_place(&["web:3"], &good, "web:3").await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("circuit breaker"), "{out}");
    assert_eq!(env.api().await, settled("web:1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_by_side_strategy_on_an_in_place_service_is_refused_before_any_change() {
    let env = EcsEnv::start(&[]).await;
    let good = App::start(200, "ok");
    env.write(
        &env.in_place(&good.url)
            .service("api", |s| s.canary_steps("[{ weight = 10 }]")),
    );
    let (code, _, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("uses the ECS deployment controller"), "{err}");
    assert_eq!(env.api().await, settled("web:1"));
    assert!(
        !env.dir
            .path()
            .join(".deployer/services/api/deployments")
            .exists(),
        "nothing was journaled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_on_a_listener_rule_leaves_the_default_action_alone() {
    let env = EcsEnv::start(&[]).await;
    let good = App::start(200, "ok");
    // The rule in place of the listener's default action.
    env.write(&env.task_sets(&good.url, STEPS).service("web", |s| {
        s.traffic(|t| t.remove("listener-arn").str("rule-arn", &env.world.rule))
    }));
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let router = deployer_targets::aws::alb::AlbRouter {
        elb: env.clients.elb.clone(),
        production: deployer_targets::aws::alb::Route::Rule(env.world.rule.clone()),
        test_listener: None,
    };
    let rule = router.weights().await.unwrap();
    assert_eq!(
        deployer_targets::aws::alb::share_of(&rule, &env.world.green),
        100
    );
    assert_eq!(
        env.weights().await,
        (100, 0),
        "the listener's default action is another service's"
    );
}

/// A traffic step is three AWS calls — the service's task sets (which group is which
/// side), the route's actions, and the write, whose answer is the read-back — on a
/// listener's default action and on a listener rule alike: the budget BENCHMARKS.md's
/// deployment overhead and release benchmarks hold every step to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_step_is_three_calls_on_a_listener_and_on_a_rule() {
    let good = App::start(200, "ok");
    for route in ["listener", "rule"] {
        let env = EcsEnv::start(&[]).await;
        let config = env.task_sets(&good.url, STEPS);
        env.write(&match route {
            "rule" => config.service("web", |s| {
                s.traffic(|t| t.remove("listener-arn").str("rule-arn", &env.world.rule))
            }),
            _ => config,
        });
        let (code, out, err) = env
            .deployer(&["run", "canary", "--release", "web:2", "--output", "json"])
            .await;
        assert_eq!(code, 0, "{route}: {out}\n{err}");
        let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
        let shifts: Vec<(String, u64)> = summary["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"].as_str().unwrap().starts_with("shift traffic"))
            .map(|s| {
                (
                    s["step"].as_str().unwrap().to_string(),
                    s["aws-api-calls"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(shifts.len(), 3, "{route}: 10%, 50%, 100%: {shifts:?}");
        assert!(
            shifts.iter().all(|(_, calls)| *calls == 3),
            "{route}: {shifts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_plugins_gate_the_rollout_with_only_their_granted_capabilities() {
    for (url, expected) in [("GOOD", 0), ("http://evil.example.net/steal", 1)] {
        let env = EcsEnv::start(&[]).await;
        let good = App::start(200, "ok");
        let wasm = env.dir.path().join("probe.wasm");
        std::fs::copy(deployer_tests::components::HOSTILE_HOOK, &wasm).unwrap();
        let digest = deployer_plugin_host::sha256_hex(&std::fs::read(&wasm).unwrap());
        let url = if url == "GOOD" {
            good.url.clone()
        } else {
            url.to_string()
        };
        env.write(
            &env.task_sets(&good.url, STEPS)
                .service("web", |s| {
                    s.hook(
                        "probe",
                        &["pre-traffic"],
                        &format!(r#"{{ url = "{url}" }}"#),
                    )
                })
                .hook_plugin("probe", "probe.wasm", &digest, |p| {
                    p.bool("kv", true).strs("http-allow", &["127.0.0.1"])
                }),
        );
        let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
        assert_eq!(code, expected, "{url}: {out}\n{err}");
        if expected == 1 {
            assert!(
                out.contains("hook:probe") && out.contains("not on this plugin's http-allow list"),
                "{out}"
            );
            assert_eq!(env.weights().await, (100, 0));
        }
    }
}

/// The state backend [`with_aws_state`] configures, for a test to write to directly.
fn state_store(env: &EcsEnv) -> deployer_targets::state::aws::AwsStore {
    deployer_targets::state::aws::AwsStore::new(
        env.clients.s3.clone(),
        env.clients.dynamodb.clone(),
        "deployer-state",
        "deployer-locks",
        "shop/",
        std::time::Duration::from_secs(30),
    )
}

/// The ECS world with `web` on task sets (see [`config`]), its journals and locks in S3
/// and DynamoDB.
async fn with_aws_state(app: &App, canary_steps: &str) -> EcsEnv {
    let env = EcsEnv::start(&[]).await;
    env.write(
        &env.task_sets(&app.url, canary_steps)
            .aws_state("deployer-state", "deployer-locks", "shop/")
            .lease("5s"),
    );
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_and_dynamodb_backend_journals_locks_and_reports() {
    let good = App::start(200, "ok");
    let env = with_aws_state(&good, r#"[{ weight = 10, bake = "2s" }]"#).await;
    two_concurrent_runs(&env).await;

    let keys = env.s3_keys().await;
    assert!(
        keys.iter()
            .any(|k| k.starts_with("shop/services/web/deployments/")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("shop/services/web/history/")),
        "{keys:?}"
    );
    assert!(
        !env.dir.path().join(".deployer").exists(),
        "nothing was kept locally"
    );
    let (_, history, _) = env.deployer(&["history"]).await;
    assert!(history.contains("promoted"), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_aws_backend_a_killed_runs_lease_is_taken_over_by_rollback() {
    let good = App::start(200, "ok");
    let env = with_aws_state(&good, r#"[{ weight = 10, bake = "1h" }]"#).await;
    kill_mid_canary(&env).await;

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_from_ci_rolls_back() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, r#"[{ weight = 10, bake = "1h" }]"#).await;
    let child = env.spawn_captured(&["run", "canary", "--release", "web:2"]);
    wait_for_traffic(&env).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("cancelled"), "{stdout}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudwatch_metric_over_its_bound_rolls_back() {
    let env = EcsEnv::start(&[]).await;
    let good = App::start(200, "ok");
    env.write(&env.task_sets(&good.url, STEPS).service("web", |s| {
        s.gate("metric", &["post-traffic"], |g| {
            g.str("namespace", "Shop")
                .str("metric", "CheckoutErrors")
                .raw("dimensions", r#"{ Service = "web" }"#)
                .str("statistic", "Sum")
                .str("period", "60s")
                .str("window", "10m")
                .raw("max", "5.0")
        })
    }));
    let put = |value: f64| {
        env.clients
            .cloudwatch
            .put_metric_data()
            .namespace("Shop")
            .metric_data(
                aws_sdk_cloudwatch::types::MetricDatum::builder()
                    .metric_name("CheckoutErrors")
                    .dimensions(
                        aws_sdk_cloudwatch::types::Dimension::builder()
                            .name("Service")
                            .value("web")
                            .build(),
                    )
                    .value(value)
                    .build(),
            )
            .send()
    };
    put(42.0).await.unwrap();
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("CheckoutErrors Sum is 42"), "{out}");
    assert_eq!(env.weights().await, (100, 0));
}

/// The plugin guide's commands, from scaffold to a deployment that uses the hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_hook_is_built_tested_and_used_in_a_run() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, STEPS).await;
    let dir = env.dir.path();
    let plain = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(deployer_bin());
        cmd.args(args).current_dir(dir).env(
            "DEPLOYER_CACHE_DIR",
            std::env::temp_dir().join("deployer-e2e-cache"),
        );
        cmd
    };
    // The SDK of this checkout, as a contributor would point at it; a user outside any
    // checkout gets it from crates.io by version (`plugin_sdk` builds that way).
    let sdk = deployer_tests::support::cli::repo("plugins/sdk");
    let sdk = sdk.to_str().unwrap();
    let out = plain(&[
        "plugin",
        "new",
        "ready-check",
        "--kind",
        "hook",
        "--sdk-path",
        sdk,
    ])
    .output()
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crate_dir = dir.join("ready-check");
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!(
            "deployer-plugin-sdk = {{ path = {}, ",
            toml_str(sdk)
        )),
        "{manifest}"
    );

    let unit =
        tokio::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["test", "--quiet"])
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", crate_dir.join("target"))
            .output()
            .await
            .unwrap();
    assert!(
        unit.status.success(),
        "{}",
        String::from_utf8_lossy(&unit.stderr)
    );

    let built = plain(&["plugin", "build", "ready-check"])
        .output()
        .await
        .unwrap();
    let built_out = String::from_utf8_lossy(&built.stdout).into_owned();
    assert!(
        built.status.success(),
        "{built_out}{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = crate_dir.join("target/ready-check.wasm");
    let digest = deployer_plugin_host::sha256_hex(&std::fs::read(&wasm).unwrap());
    assert!(
        built_out.contains(&format!("sha256 = \"{digest}\"")),
        "{built_out}"
    );

    let tested = plain(&[
        "plugin",
        "test",
        "ready-check/target/ready-check.wasm",
        "--scenario",
        "ready-check/scenario.toml",
    ])
    .output()
    .await
    .unwrap();
    let tested_out = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "{tested_out}");
    assert_eq!(
        tested_out.matches("(as expected)").count(),
        2,
        "{tested_out}"
    );

    // Use it: a pre-traffic hook that checks the release's health URL.
    env.write(
        &env.task_sets(&good.url, STEPS)
            .service("web", |s| {
                let params = format!(r#"{{ url = "{}" }}"#, good.url);
                s.hook("ready-check", &["pre-traffic"], &params)
            })
            .hook_plugin(
                "ready-check",
                "ready-check/target/ready-check.wasm",
                &digest,
                |p| p.strs("http-allow", &["127.0.0.1"]),
            ),
    );
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (0, 100));
}

/// The probe hook (`tests/components/hostile-hook`) copied next to `env`'s config, and its
/// digest.
fn probe_plugin(env: &EcsEnv) -> String {
    let wasm = env.dir.path().join("probe.wasm");
    std::fs::copy(deployer_tests::components::HOSTILE_HOOK, &wasm).unwrap();
    deployer_plugin_host::sha256_hex(&std::fs::read(&wasm).unwrap())
}

/// `text` as a TOML string.
fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_in_a_deployment_reaches_nothing_its_grant_does_not_name() {
    // One pre-traffic hook per trick, each aimed at a listener on 127.0.0.1. The grant
    // names `localhost`, so the system resolver's loopback answer is what refuses it.
    let listener = Listener::start(Reply::Ok);
    let good = App::start(200, "ok");
    let env = EcsEnv::start(&[]).await;
    let digest = probe_plugin(&env);
    let p = listener.port;
    let url = |url: String| format!("{{ url = {} }}", toml_str(&url));
    let tricks: Vec<(String, &str)> = vec![
        (url(format!("http://localhost:{p}/")), "Denied"),
        (url(format!("http://LOCALHOST:{p}/")), "Denied"),
        (url(format!("https://localhost:{p}/")), "Denied"),
        (url(format!("http://localhost.:{p}/")), "Denied"),
        (
            url(format!("http://%6c%6f%63%61%6c%68%6f%73%74:{p}/")),
            "Denied",
        ),
        (url(format!("http://127.0.0.1:{p}/")), "Denied"),
        (url(format!("http://2130706433:{p}/")), "Denied"),
        (url(format!("http://0x7f.1:{p}/")), "Denied"),
        (url(format!("http://127.1:{p}/")), "Denied"),
        (url(format!("http://0177.0.0.1:{p}/")), "Denied"),
        (url(format!("http://0.0.0.0:{p}/")), "Denied"),
        (url(format!("http://[::1]:{p}/")), "Denied"),
        (url(format!("http://[::ffff:127.0.0.1]:{p}/")), "Denied"),
        (
            url(format!("http://127.0.0.1:{p}#@ok.example.com/")),
            "Denied",
        ),
        (
            url(format!("http://ok.example.com@127.0.0.1:{p}/")),
            "Invalid",
        ),
        (
            url(format!("http://ok.example.com\\@127.0.0.1:{p}/")),
            "Invalid",
        ),
        (
            url(format!("http://127\u{3002}0\u{3002}0\u{3002}1:{p}/")),
            "Invalid",
        ),
        (url(format!("http:127.0.0.1:{p}/")), "Invalid"),
        (
            format!(
                "{{ url = \"http://localhost:{p}/\", method = \"POST\", body_bytes = 1048577 }}"
            ),
            "Limit",
        ),
        (
            format!("{{ url = \"http://localhost:{p}/\", headers = 65 }}"),
            "Limit",
        ),
    ];
    let mut config = env.task_sets(&good.url, STEPS);
    for (params, _) in &tricks {
        config = config.service("web", |s| s.hook("probe", &["pre-traffic"], params));
    }
    env.write(&config.hook_plugin("probe", "probe.wasm", &digest, |t| {
        t.bool("kv", true)
            .strs("http-allow", &["*.example.com", "localhost"])
    }));
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "web:2", "--output", "json"])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["result"], "rolled-back", "{out}");
    let hooks: Vec<&serde_json::Value> = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|step| step["gates"].as_array().unwrap())
        .filter(|gate| gate["name"] == "hook:probe")
        .collect();
    assert_eq!(hooks.len(), tricks.len(), "every hook ran: {out}");
    for ((params, kind), gate) in tricks.iter().zip(hooks) {
        let detail = gate["detail"].as_str().unwrap();
        assert!(
            gate["status"] == "fail"
                && detail.starts_with(&format!("http: CapabilityError::{kind}(")),
            "{params}: {gate}"
        );
    }
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(listener.settled(), 0, "{:?}", listener.requests());
}

/// Lines of `text` as a terminal or a CI log runner splits them.
fn screen_lines(text: &str) -> Vec<&str> {
    text.split(['\n', '\r', '\u{2028}', '\u{2029}', '\u{85}'])
        .collect()
}

/// `deployer run canary` with the probe hook at pre-traffic with `params`, as inside
/// GitHub Actions: (exit code, stdout, stderr).
async fn run_probe_in_ci(params: &str) -> (i32, String, String) {
    let good = App::start(200, "ok");
    let env = EcsEnv::start(&[]).await;
    let digest = probe_plugin(&env);
    env.write(
        &env.task_sets(&good.url, STEPS)
            .service("web", |s| s.hook("probe", &["pre-traffic"], params))
            .hook_plugin("probe", "probe.wasm", &digest, |t| {
                t.bool("kv", true)
                    .strs("http-allow", &["hooks.example.com"])
            }),
    );
    let out = env
        .command(&["run", "canary", "--release", "web:2"])
        .env("GITHUB_ACTIONS", "true")
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a plugin wrote cannot pass for a line of deployer's own or a workflow command: no
/// line (split as terminals and log viewers may split them) starts with a workflow
/// command carrying the plugin's `marker`, and no escape sequence or bell reaches the
/// terminal.
fn assert_not_forged(stdout: &str, stderr: &str, marker: &str) {
    let mut found = Vec::new();
    for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
        for line in screen_lines(text) {
            let line_start = line.trim_start();
            if ["::error::", "::warning::", "::notice::"]
                .iter()
                .any(|command| line_start.starts_with(&format!("{command}{marker}")))
            {
                found.push(format!("{name} has a forged line {line:?}"));
            }
        }
        if text.contains(['\u{1b}', '\u{7}']) {
            found.push(format!("{name} carries raw control characters"));
        }
    }
    assert!(
        found.is_empty(),
        "{}\nstdout: {stdout:?}\nstderr: {stderr:?}",
        found.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hooks_log_lines_cannot_forge_ours_or_leak_a_secret() {
    const TOKEN: &str = "tok-5ecret-9f8e7d6c";
    let message = "done\n::error::forged\r::warning::forged\u{1b}[2J\u{1b}]0;title\u{7}\u{2028}::error::forged\u{85}::error::forged";
    let params = format!(
        "{{ mode = \"log\", message = {}, token = {} }}",
        toml_str(message),
        toml_str(TOKEN)
    );
    let (code, out, err) = run_probe_in_ci(&params).await;
    assert_eq!(code, 0, "{out}\n{err}");
    // The lines arrived, each on one line of its own, escaped.
    assert!(
        err.contains(
            "deployer: [plugin probe] info: done\\n::error::forged\\r::warning::forged\\u{1b}[2J"
        ),
        "{err}"
    );
    assert!(
        err.contains("deployer: [plugin probe] warn: token is ***"),
        "{err}"
    );
    assert_not_forged(&out, &err, "forged");
    assert!(
        !err.contains(['\u{2028}', '\u{85}']),
        "line separators arrive escaped: {err:?}"
    );
    assert!(
        !out.contains(TOKEN) && !err.contains(TOKEN),
        "the secret leaked:\n{out}\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hooks_gate_detail_cannot_forge_our_lines() {
    // The same text as a failing gate's detail, which deployer prints in its log and
    // its final report.
    let message = "nope\n::error::forged-detail\r::warning::forged-detail\u{1b}[2J\u{2028}::error::forged-detail";
    let params = format!("{{ mode = \"detail\", message = {} }}", toml_str(message));
    let (code, out, err) = run_probe_in_ci(&params).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("hook:probe"), "{err}");
    assert_not_forged(&out, &err, "forged-detail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hooks_metric_queries_are_answered_by_cloudwatch_in_its_namespaces_only() {
    let good = App::start(200, "ok");
    let env = EcsEnv::start(&[]).await;
    let wasm = env.dir.path().join("metrics.wasm");
    std::fs::copy(deployer_tests::components::METRICS_HOOK, &wasm).unwrap();
    let digest = deployer_plugin_host::sha256_hex(&std::fs::read(&wasm).unwrap());
    env.clients
        .cloudwatch
        .put_metric_data()
        .namespace("Shop")
        .metric_data(
            aws_sdk_cloudwatch::types::MetricDatum::builder()
                .metric_name("CheckoutErrors")
                .dimensions(
                    aws_sdk_cloudwatch::types::Dimension::builder()
                        .name("Service")
                        .value("web")
                        .build(),
                )
                .value(42.0)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let query = |namespace: &str| {
        format!(
            r#"{{ namespace = "{namespace}", metric = "CheckoutErrors", dimensions = {{ Service = "web" }} }}"#
        )
    };
    env.write(
        &env.task_sets(&good.url, STEPS)
            .service("web", |s| {
                s.hook("metrics", &["pre-traffic"], &query("Shop")).hook(
                    "metrics",
                    &["pre-traffic"],
                    &query("AWS/ApplicationELB"),
                )
            })
            .hook_plugin("metrics", "metrics.wasm", &digest, |t| {
                t.strs("metrics-namespaces", &["Shop"])
            }),
    );
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "web:2", "--output", "json"])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let details: Vec<&str> = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|step| step["gates"].as_array().unwrap())
        .filter(|gate| gate["name"] == "hook:metrics")
        .map(|gate| gate["detail"].as_str().unwrap())
        .collect();
    // Granted: the datapoint put into CloudWatch (moto) comes back.
    assert_eq!(details[0], "1 points, total 42", "{out}");
    // Not granted: refused by the host, no call made.
    assert!(
        details[1].starts_with("metrics: CapabilityError::Denied(")
            && details[1].contains("not in this plugin's metrics-namespaces"),
        "{out}"
    );
    assert_eq!(env.weights().await, (100, 0));
}

/// An S3 journal write whose answer was lost and is sent again (what a timeout, a
/// dropped connection or the SDK's own retry does) is recognised as ours; a different
/// record under the same key is another run's, and stops this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_journal_write_sent_twice_is_ours_a_different_one_is_anothers() {
    use deployer_engine::state::{Record, StateError};
    let good = App::start(200, "ok");
    let env = with_aws_state(&good, STEPS).await;
    let store = state_store(&env);
    let record = |reason: &str| Record::RollbackStarted {
        reason: reason.into(),
        at_ms: 1,
    };
    store.append("web", "d1", 3, &record("ours")).await.unwrap();
    // The same bytes again: our own write, already done.
    store.append("web", "d1", 3, &record("ours")).await.unwrap();
    // Other bytes under the same key: another run's record.
    let err = store
        .append("web", "d1", 3, &record("theirs"))
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Superseded { .. }), "{err}");
    assert!(err.lost_the_service());
    assert_eq!(
        env.s3_keys()
            .await
            .iter()
            .filter(|k| k.contains("d1/"))
            .count(),
        1
    );
}

/// Send `signal` to `child`.
fn signal(child: &tokio::process::Child, signal: i32) {
    let pid = child.id().unwrap() as i32;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// A run paused (SIGSTOP) with traffic on the canary, past its lease: `deployer
/// rollback` waits the lease out, takes the service over and rolls back. The paused
/// run, continued (SIGCONT), finds its lease gone and stops (exit 4, saying so) without
/// changing anything: traffic stays 100% on stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_aws_backend_a_run_paused_past_its_lease_changes_nothing_after_a_takeover() {
    let good = App::start(200, "ok");
    let env = EcsEnv::start(&[]).await;
    env.write(
        &env.task_sets(&good.url, r#"[{ weight = 10, bake = "1h" }]"#)
            .aws_state("deployer-state", "deployer-locks", "shop/")
            .lease("5s"),
    );
    let paused = env.spawn_captured(&["run", "canary", "--release", "web:2"]);
    wait_for_traffic(&env).await;
    signal(&paused, libc::SIGSTOP);

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("waiting up to"),
        "it waited the lease out: {err}"
    );
    assert_eq!(env.weights().await, (100, 0));
    let keys_after_rollback = env.s3_keys().await;

    signal(&paused, libc::SIGCONT);
    let out = paused.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("another run holds the service now"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(
        env.weights().await,
        (100, 0),
        "the paused run changed traffic"
    );
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
    assert_eq!(
        env.s3_keys().await,
        keys_after_rollback,
        "the paused run wrote to the journal"
    );
}

/// The same pause with the local backend: the paused run still holds the OS lock, so a
/// second command is refused (exit 4, naming it) instead of acting beside it; continued
/// and then cancelled, the first run rolls back as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_local_backend_a_paused_run_keeps_its_lock_and_nobody_acts_beside_it() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, r#"[{ weight = 10, bake = "1h" }]"#).await;
    let paused = env.spawn_captured(&["run", "canary", "--release", "web:2"]);
    wait_for_traffic(&env).await;
    signal(&paused, libc::SIGSTOP);
    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        err.contains("already being deployed by deployment"),
        "{err}"
    );
    assert_eq!(
        env.weights().await,
        (90, 10),
        "nobody acted beside the paused run"
    );

    signal(&paused, libc::SIGCONT);
    signal(&paused, libc::SIGTERM);
    let out = paused.wait_with_output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
}

/// A plugin's time limit counts only time deployer runs. A run paused (SIGSTOP) for
/// longer than its hook's 3 s limit while the hook computes, then continued, lets the
/// hook finish and promotes: it does not find the hook over time and roll back a release
/// nothing was wrong with (a CI runner suspended mid-deploy does this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_longer_than_a_hooks_time_limit_does_not_count_against_it() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let env = EcsEnv::start(&[]).await;
    let wasm = env.dir.path().join("busy.wasm");
    std::fs::copy(deployer_tests::components::BUSY_HOOK, &wasm).unwrap();
    let digest = deployer_plugin_host::sha256_hex(&std::fs::read(&wasm).unwrap());
    // The hook is the only gate where the pause lands: a request of an HTTP gate in
    // flight during a pause may time out, which is a different matter.
    env.write(
        &env.config()
            .service("web", |s| {
                env.task_set_web(s.health_timeout("5s"))
                    .canary_steps(STEPS)
                    .hook("busy", &["pre-traffic"], "{ ms = 2000 }")
            })
            .hook_plugin("busy", "busy.wasm", &digest, |t| {
                t.bool("clock", true).str("timeout", "3s")
            }),
    );
    let mut run = env.spawn_captured(&["run", "canary", "--release", "web:2"]);
    let mut lines = BufReader::new(run.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    let started = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stderr.push_str(&line);
            stderr.push('\n');
            if line.contains("[plugin busy] info: busy") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(started, Ok(true), "the hook never started: {stderr}");
    signal(&run, libc::SIGSTOP);
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    signal(&run, libc::SIGCONT);
    while let Some(line) = lines.next_line().await.unwrap() {
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let out = run.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("time limit"), "{stderr}");
    assert_eq!(env.weights().await, (0, 100));
}

/// Deployment ids changed form (`d1796048620720-4700-0` before, `api-20261201-041230-7kq3`
/// now): an S3 history holding both is read oldest first by when each began, not by key,
/// where `api-…` sorts before `d…` and `rollback` would take the old one for the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_history_with_old_and_new_ids_reads_in_the_order_they_ran() {
    use deployer_contract::{TargetInfo, TargetKind};
    use deployer_engine::state::names::deployment_id;
    use deployer_engine::state::{DeployResult, Record};
    let good = App::start(200, "ok");
    let env = with_aws_state(&good, STEPS).await;
    let store = state_store(&env);
    let new_id = deployment_id("api");
    let ran = [
        (
            "d1796048620720-4700-0".to_string(),
            1_796_048_620_720,
            "api:1",
        ),
        (new_id.clone(), 1_796_048_900_000, "api:2"),
    ];
    for (id, at_ms, release) in &ran {
        let started = Record::Started {
            id: id.clone(),
            service: "api".into(),
            strategy: "canary".into(),
            strategy_digest: "0".into(),
            params: "{}".into(),
            target: TargetInfo {
                kind: TargetKind::EcsService,
                desired_count: 1,
                native_rolling: false,
                test_traffic: false,
            },
            new_release: release.to_string(),
            stable_release: None,
            at_ms: *at_ms,
            undoes: None,
            scaling: None,
            warm_units: None,
        };
        store.begin("api", id, &started).await.unwrap();
        let reason = "gate `smoke` failed: 0/5".to_string();
        let rolling_back = Record::RollbackStarted {
            reason: reason.clone(),
            at_ms: at_ms + 1,
        };
        store.append("api", id, 1, &rolling_back).await.unwrap();
        let finished = Record::Finished {
            result: DeployResult::RolledBack,
            detail: format!("rolled back: {reason}"),
            at_ms: at_ms + 2,
        };
        store.finish("api", id, 2, &finished).await.unwrap();
    }
    let keys = env.s3_keys().await;
    let history_keys: Vec<&String> = keys.iter().filter(|k| k.contains("/history/")).collect();
    assert!(
        history_keys[0].ends_with(&new_id),
        "the new id sorts first by key: {history_keys:?}"
    );
    let ids: Vec<String> = store
        .recent("api", 10, None)
        .await
        .unwrap()
        .entries
        .iter()
        .rev()
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(ids, ["d1796048620720-4700-0".to_string(), new_id]);
}
