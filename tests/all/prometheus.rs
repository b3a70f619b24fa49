//! Prometheus gates, the `query-prometheus` capability and the canary judge, against a
//! real Prometheus (Debian's) scraping two small apps on 127.0.0.1 — the new release and
//! the stable one — whose error rates the tests set while a load generator sends them
//! real requests. The apps label their counters with their release, so a query tells the
//! sides apart the way a team's would (`release="{new-release}"`).
//!
//! Each rollback test deploys in the ECS world on moto with the gate (or the judge as a
//! `bake` hook) and checks that the deployment came back to where it started. The SigV4
//! test signs against a server that recomputes the signature with botocore, the AWS
//! SDK for Python, not with the crate that signed it.

use std::sync::Arc;
use std::time::Duration;

use deployer_contract::{GateStatus, LifecyclePoint};
use deployer_engine::gates::{GateContext, Gates};
use deployer_plugin_host::capabilities::HostServices;
use deployer_plugin_host::hook::{HookContext, HookPlugin};
use deployer_plugin_host::{Grants, Limits, PluginSource};
use deployer_targets::gates::{Bound, CheckSpec, GateSpec, PrometheusCheck};
use deployer_targets::prometheus::{Prometheus as Client, PrometheusAuth, PrometheusSpec, Range};
use deployer_tests::support::App;
use deployer_tests::support::env::EcsEnv;
use deployer_tests::support::prometheus::{Load, MetricsApp, Prometheus, SigV4Prometheus};

use crate::ecs::STEPS;

/// The new side's 5xx ratio over the last 5 seconds, as a team would write it.
const NEW_ERROR_RATIO: &str = r#"sum(rate(http_requests_total{code="500",release="{new-release}"}[5s])) / sum(rate(http_requests_total{release="{new-release}"}[5s]))"#;

/// Two apps (stable `web:1` error-free, new `web:2` at `new_errors` %), traffic on both,
/// and Prometheus scraping them until both ratios have a value.
struct Ground {
    stable: MetricsApp,
    new: MetricsApp,
    _load: Load,
    prometheus: Prometheus,
}

async fn ground(stable_errors: u32, new_errors: u32) -> Ground {
    ground_for("web:1", stable_errors, "web:2", new_errors).await
}

async fn ground_for(stable: &str, stable_errors: u32, new: &str, new_errors: u32) -> Ground {
    let (stable_release, new_release) = (stable, new);
    let stable = MetricsApp::start(stable_release, stable_errors);
    let new = MetricsApp::start(new_release, new_errors);
    let load = Load::start(&[&stable, &new], 50);
    let prometheus = Prometheus::start(&[&stable, &new]);
    for release in [stable_release, new_release] {
        prometheus.instant_value(&NEW_ERROR_RATIO.replace("{new-release}", release));
    }
    Ground {
        stable,
        new,
        _load: load,
        prometheus,
    }
}

fn spec(url: &str) -> PrometheusSpec {
    PrometheusSpec {
        url: url.parse().unwrap(),
        auth: PrometheusAuth::None,
        timeout: Duration::from_secs(10),
    }
}

fn context(new: &str, stable: &str) -> GateContext {
    GateContext {
        deployment_id: "web-test".into(),
        service: "web".into(),
        new_release: new.into(),
        stable_release: Some(stable.into()),
        new_percent: 10,
        target_groups: Ok(None),
    }
}

/// The configured gate `check` against `prometheus`, run once as a post-traffic gate.
async fn gate(
    prometheus: Arc<Client>,
    check: PrometheusCheck,
    ctx: &GateContext,
) -> deployer_contract::GateResult {
    let specs = [GateSpec {
        name: "errors".into(),
        at: vec![deployer_engine::gates::GatePoint::PostTraffic],
        failures: 1,
        check: CheckSpec::Prometheus(check),
    }];
    let clients = deployer_tests::support::test_clients().await;
    let built = deployer_targets::gates::build(&specs, &clients, Some(&prometheus)).unwrap();
    let gates = deployer_engine::gates::ConfiguredGates::new(built);
    let mut results = gates.run(LifecyclePoint::PostTraffic, ctx).await;
    assert_eq!(results.len(), 1);
    results.remove(0)
}

fn threshold(max: f64, range: Option<Range>) -> PrometheusCheck {
    PrometheusCheck {
        query: NEW_ERROR_RATIO.into(),
        range,
        bound: Bound::Max(max),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_gate_passes_the_clean_side_fails_the_erroring_one_and_sees_no_data_for_neither()
 {
    let ground = ground(0, 50).await;
    let client = Arc::new(Client::new(spec(&ground.prometheus.url()), None).unwrap());
    let window = Some(Range {
        window: Duration::from_secs(3),
        step: Duration::from_secs(1),
    });
    for range in [None, window] {
        // The placeholder follows the release being deployed.
        let clean = gate(
            client.clone(),
            threshold(0.05, range),
            &context("web:1", "web:0"),
        )
        .await;
        assert_eq!(clean.status, GateStatus::Pass, "{clean:?}");
        assert!(clean.observed.unwrap() < 0.05, "{clean:?}");
        let bad = gate(
            client.clone(),
            threshold(0.05, range),
            &context("web:2", "web:1"),
        )
        .await;
        assert_eq!(bad.status, GateStatus::Fail, "{bad:?}");
        let ratio = bad.observed.unwrap();
        assert!(ratio > 0.2 && ratio < 0.8, "about half fail: {bad:?}");
        assert!(bad.detail.contains("must be at most 0.05"), "{bad:?}");
        let none = gate(
            client.clone(),
            threshold(0.05, range),
            &context("web:9", "web:1"),
        )
        .await;
        assert_eq!(none.status, GateStatus::NoData, "{none:?}");
    }
    // A floor judges the other way round.
    let mut floor = threshold(0.0, None);
    floor.bound = Bound::Min(0.2);
    let low = gate(client.clone(), floor, &context("web:1", "web:0")).await;
    assert_eq!(low.status, GateStatus::Fail, "{low:?}");

    // The app recovers: the same gate passes once the window holds only good answers.
    ground.new.set_error_percent(0);
    let mut passed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let result = gate(
            client.clone(),
            threshold(0.05, None),
            &context("web:2", "web:1"),
        )
        .await;
        if result.status == GateStatus::Pass {
            passed = true;
            break;
        }
    }
    assert!(passed, "the gate follows the error rate back down");
    let _ = &ground.stable;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_would_break_out_of_its_string_stays_one_label_value() {
    let ground = ground(0, 0).await;
    let client = Arc::new(Client::new(spec(&ground.prometheus.url()), None).unwrap());
    // Unescaped, each would select every series (`or up`) or fail to parse.
    for release in [
        r#"web:2"} or vector(1) or x{a=""#,
        "web:2'} or vector(1) or x{a='",
        r"web:2\",
    ] {
        let result = gate(
            client.clone(),
            threshold(0.05, None),
            &context(release, "web:1"),
        )
        .await;
        assert_eq!(
            result.status,
            GateStatus::NoData,
            "a release no series carries matches nothing: {result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_prometheus_refuses_fails_and_an_unreachable_server_is_inconclusive() {
    let ground = ground(0, 0).await;
    let client = Arc::new(Client::new(spec(&ground.prometheus.url()), None).unwrap());
    let mut check = threshold(1.0, None);
    // `validate` would have refused it; a gate built without config checking meets
    // Prometheus's own parser.
    check.query = "sum(http_requests_total".into();
    let refused = gate(client.clone(), check, &context("web:1", "web:0")).await;
    assert_eq!(refused.status, GateStatus::Fail, "{refused:?}");
    assert!(
        refused.detail.contains("Prometheus refused the query"),
        "{refused:?}"
    );

    let gone = Arc::new(Client::new(spec("http://127.0.0.1:9"), None).unwrap());
    let result = gate(gone, threshold(1.0, None), &context("web:1", "web:0")).await;
    assert_eq!(result.status, GateStatus::Inconclusive, "{result:?}");
    assert!(
        result.detail.contains("cannot reach Prometheus"),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amp_queries_are_signed_with_the_runs_credentials_and_a_bad_signature_is_refused() {
    deployer_tests::support::set_test_credentials();
    let clients = deployer_tests::support::test_clients().await;
    let amp = SigV4Prometheus::start("testing", "testing", "us-east-1");
    let signed = PrometheusSpec {
        url: amp.url().parse().unwrap(),
        auth: PrometheusAuth::SigV4 {
            region: Some("us-east-1".into()),
        },
        timeout: Duration::from_secs(10),
    };
    let client = Arc::new(Client::new(signed.clone(), Some(clients.config.clone())).unwrap());
    let mut check = threshold(1.0, None);
    check.query = r#"sum(rate(http_requests_total{release="{new-release}"}[5m]))"#.into();
    let result = gate(client.clone(), check.clone(), &context("web:2", "web:1")).await;
    assert_eq!(
        result.status,
        GateStatus::Pass,
        "botocore accepts the signature: {result:?}"
    );
    assert_eq!(result.observed, Some(0.5));
    // A range query too (another endpoint, another body).
    check.range = Some(Range {
        window: Duration::from_secs(60),
        step: Duration::from_secs(15),
    });
    let result = gate(client, check.clone(), &context("web:2", "web:1")).await;
    assert_ne!(result.status, GateStatus::Inconclusive, "{result:?}");

    // Signed for another region, or with a key the server does not know: refused.
    let other_region = PrometheusSpec {
        auth: PrometheusAuth::SigV4 {
            region: Some("eu-west-1".into()),
        },
        ..signed.clone()
    };
    let client = Arc::new(Client::new(other_region, Some(clients.config.clone())).unwrap());
    let result = gate(client, check.clone(), &context("web:2", "web:1")).await;
    assert_eq!(result.status, GateStatus::Inconclusive, "{result:?}");
    assert!(result.detail.contains("403"), "{result:?}");
    let stranger = SigV4Prometheus::start("testing", "another-secret", "us-east-1");
    let spec = PrometheusSpec {
        url: stranger.url().parse().unwrap(),
        ..signed
    };
    let client = Arc::new(Client::new(spec, Some(clients.config.clone())).unwrap());
    let result = gate(client, check, &context("web:2", "web:1")).await;
    assert_eq!(result.status, GateStatus::Inconclusive, "{result:?}");
    assert!(result.detail.contains("403"), "{result:?}");
    assert!(
        amp.requests().iter().filter(|r| r.accepted()).count() >= 2,
        "the signed queries reached the server"
    );
}

/// The run's metrics source (`cli::metrics`, what `deployer run` gives hooks) with
/// `prometheus` behind it.
async fn run_metrics(prometheus: &Prometheus) -> HostServices {
    let client = Arc::new(Client::new(spec(&prometheus.url()), None).unwrap());
    let clients = deployer_tests::support::test_clients().await;
    HostServices {
        metrics: Some(Arc::new(deployer::cli::metrics::RunMetrics::new(
            clients,
            Some(client),
        ))),
        ..HostServices::default()
    }
}

fn hook_context(params: serde_json::Value) -> HookContext {
    HookContext {
        point: LifecyclePoint::PostTraffic,
        deployment_id: "web-test".into(),
        service: "web".into(),
        new_release: "web:2".into(),
        stable_release: Some("web:1".into()),
        new_traffic_percent: 10,
        params: params.to_string(),
    }
}

/// The test probe hook granted `grant`, asking `promql` (a range query when `window`).
async fn probe(
    ground: &Ground,
    grant: &[&str],
    promql: &str,
    window: u32,
) -> deployer_contract::GateResult {
    let grants = Grants {
        prometheus_metrics: grant.iter().map(|m| m.to_string()).collect(),
        ..Grants::default()
    };
    probe_granted(ground, grants, promql, window).await
}

async fn probe_granted(
    ground: &Ground,
    grants: Grants,
    promql: &str,
    window: u32,
) -> deployer_contract::GateResult {
    let (host, _cache) = deployer_tests::host();
    let plugin = HookPlugin::load(
        &host,
        &deployer_tests::source("probe", deployer_tests::components::METRICS_HOOK),
        Limits::hook(),
        grants,
    )
    .unwrap();
    let params =
        serde_json::json!({ "promql": promql, "window_seconds": window, "step_seconds": 1 });
    plugin
        .run_with(&hook_context(params), run_metrics(&ground.prometheus).await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_reads_the_metrics_its_grant_names_and_nothing_else() {
    let ground = ground(0, 50).await;
    let granted = probe(
        &ground,
        &["http_requests_total"],
        r#"sum by (release) (http_requests_total)"#,
        0,
    )
    .await;
    assert_eq!(granted.status, GateStatus::Pass, "{granted:?}");
    assert!(
        granted.detail.contains("2 series") && granted.detail.contains("release=web:2"),
        "{granted:?}"
    );
    let range = probe(&ground, &["http_*"], "http_requests_total", 4).await;
    assert!(range.detail.contains("4 series"), "{range:?}");

    // What Prometheus itself exports about the scrapes (`up`, `scrape_*`) is not granted;
    // neither is a selector that names no metric.
    for (query, why) in [
        (
            "up",
            "metric `up` is not in this plugin's prometheus-metrics",
        ),
        (
            "http_requests_total + on() group_left sum(scrape_samples_scraped)",
            "`scrape_samples_scraped` is not in",
        ),
        (
            r#"{__name__=~"http_requests_total|up"}"#,
            "names its metrics exactly",
        ),
        (r#"{release="web:2"}"#, "selects no particular metric"),
    ] {
        let denied = probe(&ground, &["http_requests_total"], query, 0).await;
        assert_eq!(denied.status, GateStatus::Fail, "{query}: {denied:?}");
        assert!(
            denied.detail.contains("Denied") && denied.detail.contains(why),
            "{query}: {denied:?}"
        );
    }
    // Granted CloudWatch namespaces only: the import loads, PromQL is refused.
    let cloudwatch_only = Grants {
        metrics_namespaces: vec!["AWS/ApplicationELB".into()],
        ..Grants::default()
    };
    let ungranted = probe_granted(&ground, cloudwatch_only, "http_requests_total", 0).await;
    assert!(
        ungranted.detail.contains("Denied") && ungranted.detail.contains("prometheus-metrics"),
        "{ungranted:?}"
    );
}

/// The built-in judge comparing the error ratio of `web:2` with `web:1`'s.
async fn judge(ground: &Ground, min_samples: u32) -> deployer_contract::GateResult {
    let (host, _cache) = deployer_tests::host();
    let grants = Grants {
        prometheus_metrics: vec!["http_requests_total".into()],
        ..Grants::default()
    };
    let plugin = HookPlugin::load(
        &host,
        &PluginSource::Builtin("judge".into()),
        Limits::hook(),
        grants,
    )
    .unwrap();
    let params = serde_json::json!({
        "window": "20s",
        "step": "1s",
        "min-samples": min_samples,
        "metrics": [{
            "name": "error-rate",
            "prometheus": r#"sum(rate(http_requests_total{code="500",release="{release}"}[5s])) / sum(rate(http_requests_total{release="{release}"}[5s]))"#,
            "direction": "increase",
            "tolerance": 0.5,
            "min-difference": 0.02,
        }],
    });
    plugin
        .run_with(&hook_context(params), run_metrics(&ground.prometheus).await)
        .await
        .unwrap()
}

/// The judge's answer once Prometheus holds `samples` seconds of both sides.
async fn judged_after(
    ground: &Ground,
    seconds: u64,
    min_samples: u32,
) -> deployer_contract::GateResult {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    judge(ground, min_samples).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_passes_an_equal_canary_and_fails_a_clearly_worse_one() {
    // Both at 5%: samples differ point to point, the means do not.
    let equal = ground(5, 5).await;
    let result = judged_after(&equal, 12, 10).await;
    assert_eq!(result.status, GateStatus::Pass, "{result:?}");
    assert!(result.detail.contains("error-rate"), "{result:?}");
    drop(equal);

    let worse = ground(2, 40).await;
    let result = judged_after(&worse, 12, 10).await;
    assert_eq!(result.status, GateStatus::Fail, "{result:?}");
    assert!(result.observed.is_some_and(|p| p < 0.05), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_stays_inconclusive_until_it_has_enough_samples() {
    let ground = ground(2, 40).await;
    // Twenty seconds of window at one point a second hold at most 21 points a side.
    let result = judge(&ground, 500).await;
    assert_eq!(result.status, GateStatus::Inconclusive, "{result:?}");
    assert!(
        result.detail.contains("500"),
        "says how many it needs: {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_gate_lets_a_clean_canary_through_and_rolls_an_erroring_one_back() {
    let app = App::start(200, "ok");
    let clean = ground(0, 0).await;
    let env = EcsEnv::start(&[]).await;
    let with_gate = |env: &EcsEnv, ground: &Ground| {
        env.task_sets(&app.url, STEPS)
            .prometheus(&ground.prometheus.url(), |p| p)
            .service("web", |s| {
                s.gate("prometheus", &["post-traffic"], |g| {
                    g.str("query", NEW_ERROR_RATIO).raw("max", "0.05")
                })
            })
    };
    env.write(&with_gate(&env, &clean));
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.primary().await.0, "web:2");
    drop(clean);

    // web:3 errs on half its requests: the gate fails at the first step.
    let erring = ground_for("web:2", 0, "web:3", 50).await;
    env.write(&with_gate(&env, &erring));
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:3"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("must be at most 0.05"), "{out}");
    assert_eq!(env.primary().await.0, "web:2", "web:2 stays the release");
    assert_eq!(env.weights().await, (0, 100), "traffic back on web:2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_as_a_bake_hook_rolls_back_a_canary_worse_than_its_baseline() {
    let app = App::start(200, "ok");
    // The ECS world names the live release by its task definition's ARN, the new one as
    // `--release` gives it: the apps' labels follow what the judge is told.
    let ground = ground_for(
        "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1",
        2,
        "web:2",
        40,
    )
    .await;
    // Enough seconds in Prometheus for the judge's first look to hold its ten samples.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let env = EcsEnv::start(&[]).await;
    let params = r#"{ window = "20s", step = "1s", min-samples = 10, metrics = [{ name = "error-rate", direction = "increase", tolerance = 0.5, min-difference = 0.02, prometheus = 'sum(rate(http_requests_total{code="500",release="{release}"}[5s])) / sum(rate(http_requests_total{release="{release}"}[5s]))' }] }"#;
    let config = env
        .task_sets(
            &app.url,
            r#"[{ weight = 10, bake = "20s" }, { weight = 50 }]"#,
        )
        .prometheus(&ground.prometheus.url(), |p| p)
        .builtin_hook("judge", "judge", |t| {
            t.strs("prometheus-metrics", &["http_requests_total"])
        })
        .service("web", |s| s.hook("judge", &["bake"], params));
    env.write(&config);
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("hook:judge") && out.contains("error-rate"),
        "{out}"
    );
    assert_eq!(env.primary().await.0, "web:1", "web:1 stays the release");
    assert_eq!(env.weights().await, (100, 0), "traffic back on web:1");
}

/// A stand-in Prometheus that puts the `Authorization` header it was sent into its
/// answer, as labels of the one series it returns (value 5): as sent, upper-cased and
/// cut short — what a misconfigured relabelling or a proxy's error page does.
fn echoing_prometheus() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut auth, mut length) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_string();
                }
                if let Some(n) = lower.strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let answer = serde_json::json!({"status": "success", "data": {"resultType": "vector",
                "result": [{"metric": {"tok": auth, "upper": auth.to_uppercase(),
                    "cut": auth.get(..auth.len().saturating_sub(4)).unwrap_or_default()},
                    "value": [1, "5"]}]}})
            .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    url
}

/// Found by an outside tester: a server that echoed the bearer token put it in the
/// gate's detail, hence the output, the JSON summary and the journal (and, through the
/// capability, in a hook's hands).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_the_server_echoes_reaches_no_output_journal_or_summary() {
    const TOKEN: &str = "s3cr3t-T0KEN-xyz-81f2";
    // SAFETY: a variable of this test's own; no other test reads or writes it.
    unsafe { std::env::set_var("DEPLOYER_TEST_PROM_TOKEN", TOKEN) };
    let app = App::start(200, "ok");
    let env = EcsEnv::start(&[]).await;
    let config = env
        .task_sets(&app.url, STEPS)
        .prometheus(&echoing_prometheus(), |p| {
            p.str("bearer-token-env", "DEPLOYER_TEST_PROM_TOKEN")
        })
        .service("web", |s| {
            s.gate("prometheus", &["post-traffic"], |g| {
                g.str("query", "sum(x)").raw("max", "1.0")
            })
        });
    env.write(&config);
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "web:2", "--output", "json"])
        .await;
    assert_eq!(code, 1, "the echoed series is 5, over 1: {out}\n{err}");
    assert!(
        out.contains("Bearer ***"),
        "the label is shown, masked: {out}"
    );
    let journals = env.dir.path().join(".deployer/services/web/deployments");
    let journal = deployer_tests::support::journals_oldest_first(&journals)
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<String>();
    for (what, text) in [("stdout", &out), ("stderr", &err), ("journal", &journal)] {
        let text = text.to_ascii_lowercase();
        assert!(
            !text.contains(&TOKEN.to_ascii_lowercase()[..12]),
            "the token, or part of it, in {what}: {text}"
        );
    }

    // Unset, the run stops before any change, naming the setting.
    unsafe { std::env::set_var("DEPLOYER_TEST_PROM_TOKEN", "") };
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:3"]).await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("prometheus.bearer-token-env"), "{err}");
    assert_eq!(env.primary().await.0, "web:1");
}

#[test]
fn the_judges_promql_is_held_to_its_grant_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let params =
        |query: &str| format!("{{ metrics = [{{ name = \"errors\", prometheus = '{query}' }}] }}");
    let config = |query: &str| {
        deployer_tests::support::config::ConfigBuilder::new()
            .prometheus("http://127.0.0.1:9", |p| p)
            .service("web", |s| {
                s.ecs("prod", "web", 2)
                    .hook("judge", &["bake"], &params(query))
            })
            .builtin_hook("judge", "judge", |t| {
                t.strs("prometheus-metrics", &["http_requests_total"])
            })
    };
    let good = r#"sum(rate(http_requests_total{release="{release}"}[1m]))"#;
    let (code, out, err) = deployer_tests::support::cli::validate(dir.path(), &config(good));
    assert_eq!(code, 0, "{out}\n{err}");
    for (query, says) in [
        (
            r#"sum(rate(http_requests_total{release="{release}"}[1m])"#,
            "not PromQL",
        ),
        (
            r#"sum(up{job="{release}"})"#,
            "metric `up` is not in this plugin's prometheus-metrics",
        ),
    ] {
        let (code, out, err) = deployer_tests::support::cli::validate(dir.path(), &config(query));
        assert_eq!(code, 3, "{query}: {out}\n{err}");
        assert!(
            err.contains("services.web.hooks[0].params.metrics[0].prometheus")
                && err.contains(says),
            "{query}: {err}"
        );
    }
}
