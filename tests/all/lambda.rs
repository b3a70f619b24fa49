//! Lambda functions end to end, against a real moto server (its Lambda keeps versions,
//! aliases and their routing config; provisioned concurrency is the test ground's, see
//! `support/moto_ecs.py`) and the real `deployer` binary: a canary moves the alias's
//! weights step by step and promotes, a metric over its bound rolls back, `deployer
//! rollback` returns, a run killed mid-canary is taken back, and the new version has its
//! provisioned concurrency READY before any traffic reaches it.

use std::time::{Duration, Instant};

use deployer_tests::support::Moto;
use deployer_tests::support::env::{LambdaEnv, sigkill};
use deployer_tests::support::fault_proxy::{Fault, FaultProxy};

type Alias = (String, Vec<(String, f64)>);

fn on(version: &str) -> Alias {
    (version.to_string(), Vec::new())
}

fn split(stable: &str, new: &str, weight: f64) -> Alias {
    (stable.to_string(), vec![(new.to_string(), weight)])
}

/// `deployer run STRATEGY ARGS…` while the alias is read every 20 ms: the exit code,
/// the output, and every state of the alias seen, in order, each once.
async fn run_watched(env: &LambdaEnv, args: &[&str]) -> (i32, String, Vec<Alias>) {
    let mut child = env.spawn_captured(args);
    let mut seen: Vec<Alias> = Vec::new();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        let now = env.alias().await;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the run hung");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let now = env.alias().await;
    if seen.last() != Some(&now) {
        seen.push(now);
    }
    (out.status.code().unwrap_or(-1), text, seen)
}

/// Wait until the alias is `state` (60 s at most).
async fn wait_for(env: &LambdaEnv, state: Alias) {
    let started = Instant::now();
    while env.alias().await != state {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the alias never became {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const STEPS: &str = r#"[{ weight = 10, bake = "1s" }, { weight = 40, bake = "1s" }]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_moves_the_alias_weights_step_by_step_then_rollback_returns() {
    let env = LambdaEnv::start_on(Moto::start(&[]), 0).await;
    env.write(&env.function().service("api", |s| s.canary_steps(STEPS)));

    let (code, out, seen) = run_watched(&env, &["run", "canary", "--release", "2"]).await;
    assert_eq!(code, 0, "{out}");
    // Every step as Lambda reported it, in order, and nothing else: no moment on a
    // third version, no weight the strategy did not ask for.
    assert_eq!(
        seen,
        vec![on("1"), split("1", "2", 0.1), split("1", "2", 0.4), on("2")],
        "{out}"
    );
    // The alias had no provisioned concurrency: nothing was provisioned for a version.
    assert_eq!(env.provisioned("2").await, None);

    let (code, out, err) = env.deployer(&["status"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("live:    2"), "{out}");

    // All at once: blue-green moves the alias in one step.
    let (code, out, seen) = run_watched(&env, &["run", "blue-green", "--release", "3"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(seen, vec![on("2"), on("3")], "{out}");

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.alias().await, on("2"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_metric_of_the_new_version_over_its_bound_rolls_back() {
    let env = LambdaEnv::start_on(Moto::start(&[]), 0).await;
    // CloudWatch's AWS/Lambda metrics of invocations through the alias, per version.
    env.write(&env.function().service("api", |s| {
        s.canary_steps(STEPS).gate("metric", &["post-traffic"], |g| {
            g.str("namespace", "AWS/Lambda")
                .str("metric", "Errors")
                .raw(
                    "dimensions",
                    r#"{ FunctionName = "api", Resource = "api:live", ExecutedVersion = "{new-release}" }"#,
                )
                .str("statistic", "Sum")
                .str("period", "60s")
                .str("window", "10m")
                .raw("max", "0.0")
        })
    }));
    let dimension = |name: &str, value: &str| {
        aws_sdk_cloudwatch::types::Dimension::builder()
            .name(name)
            .value(value)
            .build()
    };
    let errors = |version: &str, count: f64| {
        env.clients
            .cloudwatch
            .put_metric_data()
            .namespace("AWS/Lambda")
            .metric_data(
                aws_sdk_cloudwatch::types::MetricDatum::builder()
                    .metric_name("Errors")
                    .dimensions(dimension("FunctionName", "api"))
                    .dimensions(dimension("Resource", "api:live"))
                    .dimensions(dimension("ExecutedVersion", version))
                    .value(count)
                    .build(),
            )
            .send()
    };
    errors("2", 3.0).await.unwrap();

    let (code, out, seen) = run_watched(&env, &["run", "canary", "--release", "2"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Errors Sum is 3"), "{out}");
    // It reached its first step (verified there), failed, and the alias went back; the
    // step is too short for the watcher to be sure to see, but no other state appears.
    assert!(out.contains("weights verified: 10% new"), "{out}");
    assert_eq!(seen.last(), Some(&on("1")), "{out}");
    assert!(
        seen.iter()
            .all(|s| *s == on("1") || *s == split("1", "2", 0.1)),
        "{seen:?}"
    );

    // Version 3 serves without errors: it is promoted past the failed one.
    errors("3", 0.0).await.unwrap();
    let (code, out, _) = run_watched(&env, &["run", "canary", "--release", "3"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(env.alias().await, on("3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_canary_is_taken_back_by_rollback() {
    let env = LambdaEnv::start_on(Moto::start(&[]), 0).await;
    env.write(&env.function().service("api", |s| {
        s.canary_steps(r#"[{ weight = 25, bake = "5m" }]"#)
    }));
    let child = env.spawn(&["run", "canary", "--release", "2"]);
    wait_for(&env, split("1", "2", 0.25)).await;
    sigkill(child).await;
    assert_eq!(
        env.alias().await,
        split("1", "2", 0.25),
        "killed mid-canary"
    );

    // A person runs `rollback` (a new `run` would take it back first, then deploy).
    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.alias().await, on("1"), "{out}\n{err}");
    // Nothing was ever promoted before it: a second rollback has nothing to go back to.
    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(err.contains("no promoted deployment"), "{err}");
    assert_eq!(
        env.alias().await,
        on("1"),
        "a second rollback changes nothing"
    );
}

/// Weights as a test writes them: (version, weight).
type Weights = &'static [(&'static str, f64)];

/// Set the alias as a person in the console would: `version`, with `weights`.
async fn set_alias(env: &LambdaEnv, version: &str, weights: &[(&str, f64)]) {
    env.clients
        .lambda
        .update_alias()
        .function_name("api")
        .name("live")
        .function_version(version)
        .routing_config(
            aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
                .set_additional_version_weights(Some(
                    weights.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
                ))
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// A person changes the alias while the canary bakes at 10%: to a third version, and —
/// found by an outside tester — to states the run itself could have left (stopping the
/// canary, raising the weight, promoting by hand). The run's next write is refused as
/// stale and it stops; its rollback does not overwrite the person's choice either (exit
/// 2, saying so); `status` says the rollback failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_changed_by_someone_else_mid_canary_is_not_overwritten() {
    // (version, weights) as the person sets them, and how the run's refusal names it.
    let person: [(&str, Weights, &str); 4] = [
        ("3", &[], "version 3 with no weights"),
        ("1", &[], "version 1 with no weights"),
        ("1", &[("2", 0.9)], "version 1 with 90% to version 2"),
        ("2", &[], "version 2 with no weights"),
    ];
    for (version, weights, says) in person {
        let env = LambdaEnv::start_on(Moto::start(&[]), 0).await;
        env.write(&env.function().service("api", |s| {
            s.canary_steps(r#"[{ weight = 10, bake = "2s" }, { weight = 50 }]"#)
        }));
        let child = env.spawn_captured(&["run", "canary", "--release", "2"]);
        wait_for(&env, split("1", "2", 0.1)).await;
        set_alias(&env, version, weights).await;
        let set = env.alias().await;
        let out = child.wait_with_output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{says}: {text}");
        assert!(text.contains(says), "{says}: {text}");
        assert!(text.contains("deployer leaves it as it is"), "{text}");
        assert_eq!(env.alias().await, set, "the person's choice stands: {text}");
        // `status` does not call that idle and done.
        let (code, out, err) = env.deployer(&["status"]).await;
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(
            out.contains("ROLLBACK FAILED") && out.contains("run `deployer rollback`"),
            "{out}"
        );
    }
}

/// Two CI jobs, each with its own state (so no shared lock), deploy version 2 of one
/// function at once; the alias's provisioned concurrency makes both pass their checks
/// before either writes. Found by an outside tester: both reported promoted. Now the
/// second write is refused as stale: one job promotes, the other stops without
/// touching the alias again (or is refused at its start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_with_their_own_state_on_one_alias_never_both_win() {
    let env = LambdaEnv::start_on(Moto::start(&[]), 4).await;
    let config = env.function().service("api", |s| {
        s.canary_steps(r#"[{ weight = 10, bake = "2s" }]"#)
    });
    let other = tempfile::tempdir().unwrap();
    env.write(&config);
    config.write(other.path());
    let args = ["run", "canary", "--release", "2"];
    let a = env.spawn_captured(&args);
    let b = deployer_tests::support::cli::command(other.path(), &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (
        a.wait_with_output().await.unwrap(),
        b.wait_with_output().await.unwrap(),
    );
    let text = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
    };
    let codes = [a.status.code(), b.status.code()];
    let both = format!("A:\n{}\nB:\n{}", text(&a), text(&b));
    assert_eq!(
        codes.iter().filter(|c| **c == Some(0)).count(),
        1,
        "exactly one promotes: {codes:?}\n{both}"
    );
    let loser = if codes[0] == Some(0) { &b } else { &a };
    assert!(
        matches!(loser.status.code(), Some(2) | Some(4)),
        "the other stops (2) or is refused (4): {codes:?}\n{both}"
    );
    assert_eq!(
        env.alias().await,
        on("2"),
        "the winner's promotion stands: {both}"
    );
}

/// Found by a third outside round: an alias write that Lambda carried out but whose
/// answer was lost made its retry stale (the write had replaced the revision it named),
/// which the run took for someone else's change (exit 2). Lost on the first shift, the
/// run now recognises its own write and is promoted; lost on the rollback's write, the
/// rollback finishes (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_landed_but_lost_its_answer_is_the_runs_own() {
    for (weights, gate_fails, code, end) in [
        (r#""AdditionalVersionWeights":{"2":0.1}"#, false, 0, on("2")),
        (r#""AdditionalVersionWeights":{}"#, true, 1, on("1")),
    ] {
        let env = LambdaEnv::start_on(Moto::start(&[]), 0).await;
        let proxy = FaultProxy::start(&env.moto.endpoint).await;
        let down = deployer_tests::support::App::start(500, "boom");
        let config = deployer_tests::support::config::ConfigBuilder::new()
            .aws(&proxy.endpoint)
            .service("api", |s| {
                let s = s
                    .health_timeout("10s")
                    .target(|t| {
                        t.str("kind", "lambda")
                            .str("function", "api")
                            .str("alias", "live")
                    })
                    .canary_steps(r#"[{ weight = 10, bake = "1s" }]"#);
                if gate_fails {
                    s.http_gate(&["post-traffic"], &down.url, 1)
                } else {
                    s
                }
            });
        env.write(&config);
        proxy.arm_matching("UpdateAlias", weights, Fault::Lost, 0, 1);
        let (got, out, err) = env.deployer(&["run", "canary", "--release", "2"]).await;
        assert_eq!(got, code, "{weights}: {out}\n{err}");
        assert_eq!(
            proxy.count("UpdateAlias", Fault::Lost),
            1,
            "{weights}: the answer was lost"
        );
        assert!(!err.contains("changed by someone else"), "{weights}: {err}");
        assert_eq!(env.alias().await, end, "{weights}: {out}\n{err}");
    }
}

/// Found by a fourth outside round: the run's write reaches Lambda only after someone
/// else set exactly the state it asks (another job deploying the same version), so Lambda
/// refuses it as stale, and its answer is lost. The alias then looks as the run asked,
/// but the change is not the run's: it stops and leaves it (exit 2). Each write marks the
/// alias's description, which tells its own lost write from another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_jobs_identical_write_is_not_taken_for_a_lost_one() {
    let env = LambdaEnv::start_on(Moto::start(&[]), 0).await;
    let proxy = FaultProxy::start(&env.moto.endpoint).await;
    let config = deployer_tests::support::config::ConfigBuilder::new()
        .aws(&proxy.endpoint)
        .service("api", |s| {
            s.health_timeout("10s")
                .target(|t| {
                    t.str("kind", "lambda")
                        .str("function", "api")
                        .str("alias", "live")
                })
                .canary_steps(r#"[{ weight = 10, bake = "1s" }]"#)
        });
    env.write(&config);
    let late = Fault::LateLost(Duration::from_secs(2));
    proxy.arm_matching("UpdateAlias", r#"{"2":0.1}"#, late, 0, 1);
    let child = env.spawn_captured(&["run", "canary", "--release", "2"]);
    let started = Instant::now();
    while proxy.count("UpdateAlias", late) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the write never came"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The other job's write, while the run's is on its way.
    set_alias(&env, "1", &[("2", 0.1)]).await;
    let out = child.wait_with_output().await.unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("changed by someone else"), "{text}");
    assert_eq!(
        env.alias().await,
        split("1", "2", 0.1),
        "the other's write stands"
    );
}

/// Found by a third outside round: a person removed the new version's provisioned
/// concurrency during the 10% bake, and the canary went to 50% without it (no scale
/// step fell between). Each shift now puts the run's units back, READY, first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_removed_mid_canary_are_back_before_the_next_share() {
    let env = LambdaEnv::start_on(Moto::start(&[]), 2).await;
    env.write(&env.function().service("api", |s| {
        s.canary_steps(r#"[{ weight = 10, bake = "2s" }, { weight = 50, bake = "1s" }]"#)
    }));
    let mut child = env.spawn_captured(&["run", "canary", "--release", "2"]);
    wait_for(&env, split("1", "2", 0.1)).await;
    env.clients
        .lambda
        .delete_provisioned_concurrency_config()
        .function_name("api")
        .qualifier("2")
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if env.alias().await == split("1", "2", 0.5) {
            assert!(
                env.provisioned("2").await.is_some(),
                "version 2 carries 50% without its provisioned concurrency"
            );
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the run hung");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.alias().await, on("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_version_has_its_provisioned_concurrency_ready_before_any_traffic() {
    let env = LambdaEnv::start_on(Moto::start(&[]), 10).await;
    // Linear steps, CodeDeploy's "Linear25PercentEvery1Second".
    env.write(&env.function().service("api", |s| {
        s.strategy("canary", |p| {
            p.raw("linear", r#"{ step = 25, bake = "1s" }"#)
        })
    }));

    // Watch the alias and the new version's provisioned concurrency together: at no
    // moment may version 2 carry traffic without its share of 10 provisioned.
    let mut child = env.spawn_captured(&["run", "canary", "--release", "2"]);
    let started = Instant::now();
    let mut shares_seen = Vec::new();
    while child.try_wait().unwrap().is_none() {
        let provisioned = env.provisioned("2").await;
        let (version, weights) = env.alias().await;
        let share = match (version.as_str(), weights.as_slice()) {
            ("2", []) => 100,
            ("1", [(v, w)]) if v == "2" => (w * 100.0).round() as u32,
            _ => 0,
        };
        if share > 0 && share < 100 {
            // units_needed(10, share): 10 × (share − 1)% rounded up, at least 1.
            let needs = (10 * (share - 1)).div_ceil(100).max(1) as i32;
            assert!(
                provisioned.unwrap_or(0) >= needs,
                "version 2 carries {share}% with {provisioned:?} provisioned (needs {needs})"
            );
        }
        if shares_seen.last() != Some(&share) {
            shares_seen.push(share);
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the run hung");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = child.wait_with_output().await.unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(shares_seen, [0, 25, 50, 75, 100], "{text}");
    assert_eq!(env.alias().await, on("2"));
    // Promoted: the alias's own 10 serve version 2; the version's own are removed.
    assert_eq!(env.provisioned("live").await, Some(10));
    assert_eq!(env.provisioned("2").await, None, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_concurrency_that_fails_rolls_back_before_any_traffic() {
    let moto = Moto::start_with(&[], &[("MOTO_LAMBDA_PC_FAILS", "api:2")]);
    let env = LambdaEnv::start_on(moto, 4).await;
    env.write(&env.function().service("api", |s| s.canary_steps(STEPS)));
    let (code, out, seen) = run_watched(&env, &["run", "canary", "--release", "2"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FUNCTION_ERROR_INIT_FAILURE"), "{out}");
    assert_eq!(
        seen,
        vec![on("1")],
        "no traffic ever reached version 2: {out}"
    );
    assert_eq!(env.provisioned("2").await, None, "its provisioning removed");
    assert_eq!(
        env.provisioned("live").await,
        Some(4),
        "the alias's untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_deploys_the_functions_current_code_once() {
    let env = LambdaEnv::start_on(Moto::start(&[]), 0).await;
    env.write(&env.function().service("api", |s| s.canary_steps(STEPS)));
    let (code, out, err) = env.deployer(&["run", "blue-green", "--publish"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("deploying version 4"), "{err}");
    assert_eq!(env.alias().await, on("4"));
    // Nothing changed since: Lambda answers with version 4 again, which is live.
    let (code, out, err) = env.deployer(&["run", "blue-green", "--publish"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("already live"), "{out}\n{err}");
    assert_eq!(env.alias().await, on("4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_releases_and_configs_are_refused_before_anything_changes() {
    let env = LambdaEnv::start_on(Moto::start(&[]), 0).await;
    env.write(&env.function().service("api", |s| s.canary_steps(STEPS)));
    for (args, says) in [
        (vec!["run", "canary", "--release", "9"], "has no version 9"),
        (
            vec!["run", "canary", "--release", "$LATEST"],
            "not a published version",
        ),
        (
            vec!["run", "canary", "--release", "live"],
            "not a published version",
        ),
        (
            vec!["run", "canary", "--image", "repo/api:2"],
            "not an image: deploy with --release VERSION",
        ),
        (
            vec!["run", "rolling", "--release", "2"],
            "has versions, not units",
        ),
        (vec!["plan", "rolling"], "has versions, not units"),
        (
            vec![
                "run",
                "canary",
                "--release",
                "arn:aws:lambda:us-east-1:123456789012:function:other:2",
            ],
            "is not a version of this service's function",
        ),
    ] {
        let (code, out, err) = env.deployer(&args).await;
        assert_eq!(code, 3, "{args:?}\n{out}\n{err}");
        assert!(err.contains(says), "{args:?}\n{err}");
        assert_eq!(env.alias().await, on("1"), "{args:?}");
    }
    // A traffic table, a name Lambda would refuse: at their fields.
    env.write(&env.function().service("api", |s| {
        s.canary_steps(STEPS)
            .target(|t| t.str("alias", "42"))
            .traffic(|t| {
                t.str(
                    "listener-arn",
                    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/x/1/2",
                )
                .strs("target-groups", &["a", "b"])
            })
    }));
    let (code, out, err) = env.deployer(&["validate"]).await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("services.api.target.alias"), "{err}");
    assert!(err.contains("services.api.traffic"), "{err}");
    env.write(&env.function().service("api", |s| {
        s.canary_steps(STEPS)
            .settings(|t| t.str("scale-down-delay", "30m"))
    }));
    let (code, out, err) = env.deployer(&["validate"]).await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("services.api.scale-down-delay"), "{err}");

    // Two services on one alias would each move its weights under its own lock.
    env.write(
        &env.function()
            .service("api", |s| s.canary_steps(STEPS))
            .service("api2", |s| {
                s.canary_steps(STEPS).target(|t| {
                    t.str("kind", "lambda")
                        .str(
                            "function",
                            "arn:aws:lambda:us-east-1:123456789012:function:api",
                        )
                        .str("alias", "live")
                })
            }),
    );
    let (code, out, err) = env.deployer(&["validate"]).await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("services.api2.target") && err.contains("is service `api`'s too"),
        "{err}"
    );

    // Found by an outside tester: `validate` accepted what `run` refuses.
    for (config, field) in [
        (
            env.function().service("api", |s| {
                s.canary_steps(STEPS)
                    .strategy("rolling", |p| p.int("batch-size", 1))
            }),
            "services.api.strategies.rolling",
        ),
        (
            env.function()
                .service("api", |s| s.canary_steps(STEPS))
                .release(
                    "shop",
                    &[&["api"]],
                    "canary",
                    |t| t.raw("strategies", r#"{ api = "rolling" }"#),
                    Vec::new(),
                ),
            "releases.shop.strategies.api",
        ),
        (
            env.function().service("api", |s| {
                s.canary_steps(STEPS).target(|t| {
                    t.str(
                        "function",
                        "arn:aws:lambda:eu-west-1:123456789012:function:api",
                    )
                })
            }),
            "services.api.target.function",
        ),
    ] {
        env.write(&config);
        let (code, out, err) = env.deployer(&["validate"]).await;
        assert_eq!(code, 3, "{field}: {out}\n{err}");
        assert!(err.contains(field), "{field}: {err}");
    }
    // The same name and alias in another region is another function.
    env.write(
        &env.function()
            .service("api", |s| s.canary_steps(STEPS))
            .service("api-eu", |s| {
                s.canary_steps(STEPS)
                    .target(|t| {
                        t.str("kind", "lambda")
                            .str("function", "api")
                            .str("alias", "live")
                    })
                    .settings(|t| t.raw("aws", r#"{ region = "eu-west-1" }"#))
            }),
    );
    let (code, out, err) = env.deployer(&["validate"]).await;
    assert_eq!(code, 0, "{out}\n{err}");

    // A function or alias that does not exist: said, with where to look.
    for (field, value, says) in [
        ("function", "nope", "check `function` and `alias`"),
        ("alias", "nope", "check `function` and `alias`"),
    ] {
        env.write(&env.function().service("api", |s| {
            s.canary_steps(STEPS).target(|t| t.str(field, value))
        }));
        let (code, out, err) = env.deployer(&["run", "canary", "--release", "2"]).await;
        assert_ne!(code, 0, "{field}: {out}\n{err}");
        assert!(err.contains(says), "{field}: {err}");
        assert_eq!(env.alias().await, on("1"), "{field}");
    }

    // An alias another tool split: refused (exit 4) before anything is journaled, so no
    // rollback moves that tool's traffic.
    env.write(&env.function().service("api", |s| s.canary_steps(STEPS)));
    env.clients
        .lambda
        .update_alias()
        .function_name("api")
        .name("live")
        .routing_config(
            aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
                .additional_version_weights("3", 0.2)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "2"]).await;
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(err.contains("20% to version 3"), "{err}");
    assert_eq!(env.alias().await, split("1", "3", 0.2));
    // Found by an outside tester: --publish published a version before this refusal.
    let (code, out, err) = env.deployer(&["run", "canary", "--publish"]).await;
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(err.contains("not publishing"), "{err}");
    let versions = env
        .clients
        .lambda
        .list_versions_by_function()
        .function_name("api")
        .send()
        .await
        .unwrap();
    let versions: Vec<&str> = versions
        .versions()
        .iter()
        .filter_map(|v| v.version())
        .collect();
    assert_eq!(versions, ["$LATEST", "1", "2", "3"], "nothing published");

    // The plan says what a unit is on Lambda.
    env.write(&env.function().service("api", |s| s.canary_steps(STEPS)));
    let (code, out, err) = env.deployer(&["plan", "canary"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Lambda function api alias live"), "{out}");
    assert!(out.contains("provisioned concurrent execution"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_ships_in_a_release_of_several_services_and_comes_back_with_it() {
    let env = LambdaEnv::start_on(Moto::start(&[]), 0).await;
    env.write(
        &env.function()
            .service("api", |s| s.canary_steps(STEPS))
            .release("portfolio", &[&["api"]], "canary", |t| t, Vec::new()),
    );
    let (code, out, seen) =
        run_watched(&env, &["run", "release", "portfolio", "--release", "api=2"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        seen,
        vec![on("1"), split("1", "2", 0.1), split("1", "2", 0.4), on("2")],
        "{out}"
    );
    let (code, out, err) = env.deployer(&["rollback", "--release", "portfolio"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.alias().await, on("1"), "{out}\n{err}");
    // --publish is one function's: a release names each function's version.
    let (code, out, err) = env
        .deployer(&["run", "release", "portfolio", "--publish"])
        .await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert_eq!(env.alias().await, on("1"));
}
