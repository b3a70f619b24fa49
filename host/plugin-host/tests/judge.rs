//! The built-in canary judge as deployer runs it: the component embedded in the binary,
//! loaded as a hook with a `prometheus-metrics` grant, its PromQL checked by the host and
//! answered by a synthetic Prometheus that serves each release its own series.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deployer_contract::{GateResult, GateStatus, LifecyclePoint};
use deployer_plugin_host::bindings::metrics::{Datapoint, MetricQuery, PromqlQuery, Series};
use deployer_plugin_host::bindings::types::CapabilityError;
use deployer_plugin_host::capabilities::{BoxFuture, MetricsSource};
use deployer_plugin_host::hook::{HookContext, HookPlugin};
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Grants, HostServices, Limits, PluginHost, PluginSource};
use promql_parser::parser::{self, Expr};

const METRIC: &str = "http_request_errors";

/// Prometheus as far as the judge sees it: each query's `release` matcher picks the
/// samples served, split over series of `per_series` points.
struct Synthetic {
    by_release: HashMap<String, Vec<f64>>,
    per_series: usize,
    /// Every query as the host sent it.
    seen: Mutex<Vec<PromqlQuery>>,
}

impl Synthetic {
    fn new(by_release: &[(&str, Vec<f64>)]) -> Arc<Self> {
        Arc::new(Synthetic {
            by_release: by_release
                .iter()
                .map(|(release, samples)| (release.to_string(), samples.clone()))
                .collect(),
            per_series: 25,
            seen: Mutex::new(Vec::new()),
        })
    }

    /// The `release` matcher values of the queries received, in order.
    fn releases_seen(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .map(|q| release_of(&q.query).expect("a query without a release matcher"))
            .collect()
    }
}

/// The value of the first `release="…"` matcher in `query`, read by a PromQL parser.
fn release_of(query: &str) -> Option<String> {
    fn walk(expr: &Expr) -> Option<String> {
        match expr {
            Expr::VectorSelector(vs) => vs
                .matchers
                .matchers
                .iter()
                .find(|m| m.name == "release")
                .map(|m| m.value.clone()),
            Expr::MatrixSelector(ms) => walk(&Expr::VectorSelector(ms.vs.clone())),
            Expr::Aggregate(a) => walk(&a.expr),
            Expr::Call(call) => call.args.args.iter().find_map(|arg| walk(arg)),
            Expr::Paren(p) => walk(&p.expr),
            Expr::Binary(b) => walk(&b.lhs).or_else(|| walk(&b.rhs)),
            _ => None,
        }
    }
    walk(&parser::parse(query).ok()?)
}

impl MetricsSource for Synthetic {
    fn query(&self, _query: MetricQuery) -> BoxFuture<'_, Result<Vec<Datapoint>, CapabilityError>> {
        Box::pin(async { Err(CapabilityError::Unavailable("no CloudWatch here".into())) })
    }

    fn prometheus(
        &self,
        query: PromqlQuery,
    ) -> BoxFuture<'_, Result<Vec<Series>, CapabilityError>> {
        Box::pin(async move {
            let release = release_of(&query.query);
            self.seen.lock().unwrap().push(query);
            let samples = release
                .and_then(|r| self.by_release.get(&r))
                .cloned()
                .unwrap_or_default();
            Ok(samples
                .chunks(self.per_series)
                .enumerate()
                .map(|(i, chunk)| Series {
                    labels: vec![("pod".into(), format!("pod-{i}"))],
                    points: chunk
                        .iter()
                        .enumerate()
                        .map(|(t, &value)| Datapoint {
                            timestamp_ms: t as u64 * 15_000,
                            value,
                        })
                        .collect(),
                })
                .collect())
        })
    }
}

/// `n` values evenly over (centre - 1, centre + 1).
fn around(centre: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| centre - 1.0 + (2 * i + 1) as f64 / n as f64)
        .collect()
}

const PARAMS: &str = r#"{"metrics":[{"name":"error-rate","prometheus":"sum by (pod) (http_request_errors{release=\"{release}\", service=\"{service}\"})"}]}"#;

fn grants(metrics: &[&str]) -> Grants {
    Grants {
        prometheus_metrics: metrics.iter().map(|m| m.to_string()).collect(),
        ..Grants::default()
    }
}

fn load(grants: Grants) -> HookPlugin {
    let host = PluginHost::new(None).unwrap();
    HookPlugin::load(
        &host,
        &PluginSource::Builtin("judge".into()),
        Limits::hook(),
        grants,
    )
    .unwrap()
}

fn ctx(new: &str, stable: Option<&str>) -> HookContext {
    HookContext {
        point: LifecyclePoint::PostTraffic,
        deployment_id: "web-20261201-041230-7kq3".into(),
        service: "web".into(),
        new_release: new.into(),
        stable_release: stable.map(str::to_string),
        new_traffic_percent: 10,
        params: PARAMS.into(),
    }
}

async fn judge(plugin: &HookPlugin, ctx: &HookContext, source: &Arc<Synthetic>) -> GateResult {
    let services = HostServices {
        metrics: Some(source.clone()),
        ..HostServices::default()
    };
    plugin.run_with(ctx, services).await.unwrap()
}

#[tokio::test]
async fn the_same_distribution_on_both_sides_passes() {
    let plugin = load(grants(&[METRIC]));
    let source = Synthetic::new(&[("web:3", around(0.02, 60)), ("web:2", around(0.02, 60))]);
    let result = judge(&plugin, &ctx("web:3", Some("web:2")), &source).await;
    assert_eq!(result.status, GateStatus::Pass, "{result:?}");
    assert!(
        result
            .detail
            .starts_with("error-rate: canary mean 0.02 vs baseline 0.02")
            && result
                .detail
                .contains("60/60 samples): not significantly worse"),
        "{}",
        result.detail
    );
    let p = result.observed.expect("the p-value");
    assert!(p > 0.4 && p <= 1.0, "{p}");
}

#[tokio::test]
async fn a_canary_clearly_worse_fails_with_its_figures() {
    let plugin = load(grants(&[METRIC]));
    let source = Synthetic::new(&[("web:3", around(5.0, 60)), ("web:2", around(1.0, 60))]);
    let result = judge(&plugin, &ctx("web:3", Some("web:2")), &source).await;
    assert_eq!(result.status, GateStatus::Fail, "{result:?}");
    assert!(
        result
            .detail
            .starts_with("error-rate: canary mean 5 vs baseline 1 (+400%, p=")
            && result
                .detail
                .ends_with("60/60 samples): worse than allowed (at most +0.1)"),
        "{}",
        result.detail
    );
    assert!(result.observed.unwrap() < 1e-9, "{result:?}");
}

#[tokio::test]
async fn too_few_samples_are_inconclusive_and_non_finite_points_do_not_count() {
    let plugin = load(grants(&[METRIC]));
    let mut canary = around(5.0, 12);
    canary.extend([f64::NAN, f64::INFINITY, f64::NEG_INFINITY].repeat(5));
    let source = Synthetic::new(&[("web:3", canary), ("web:2", around(1.0, 60))]);
    let result = judge(&plugin, &ctx("web:3", Some("web:2")), &source).await;
    assert_eq!(result.status, GateStatus::Inconclusive, "{result:?}");
    assert_eq!(
        result.detail,
        "error-rate: too few samples: 12 of 20 for the canary (web:3), the baseline (web:2) \
         has 60; wait for more traffic, widen `window` or lower `min-samples`"
    );
    assert_eq!(result.observed, None);
}

#[tokio::test]
async fn a_first_deployment_has_no_data_and_queries_nothing() {
    let plugin = load(grants(&[METRIC]));
    let source = Synthetic::new(&[("web:1", around(1.0, 60))]);
    let result = judge(&plugin, &ctx("web:1", None), &source).await;
    assert_eq!(result.status, GateStatus::NoData, "{result:?}");
    assert!(
        result
            .detail
            .contains("no stable release to compare web:1 against"),
        "{}",
        result.detail
    );
    assert!(source.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_side_is_queried_with_its_own_release_escaped_for_promql() {
    let plugin = load(grants(&[METRIC]));
    // Quotes and a backslash: the escaped values must reach Prometheus as they are.
    let (new, stable) = (r#"web:3 "canary" \o/"#, "web:2 'stable'");
    let source = Synthetic::new(&[(new, around(1.0, 30)), (stable, around(1.0, 30))]);
    let result = judge(&plugin, &ctx(new, Some(stable)), &source).await;
    assert_eq!(result.status, GateStatus::Pass, "{result:?}");
    assert_eq!(source.releases_seen(), [new, stable]);
    let seen = source.seen.lock().unwrap();
    assert!(
        seen.iter()
            .all(|q| q.window_seconds == 300 && q.step_seconds == 15),
        "{seen:?}"
    );
    assert!(
        seen[0].query.contains(r#"service="web""#),
        "{}",
        seen[0].query
    );
}

#[tokio::test]
async fn a_metric_outside_the_grant_fails_the_gate_without_reaching_prometheus() {
    let plugin = load(grants(&["some_other_metric"]));
    let source = Synthetic::new(&[("web:3", around(1.0, 60)), ("web:2", around(1.0, 60))]);
    let result = judge(&plugin, &ctx("web:3", Some("web:2")), &source).await;
    assert_eq!(result.status, GateStatus::Fail, "{result:?}");
    assert!(
        result.detail.starts_with(
            "error-rate: querying the canary (web:3) was denied: metric `http_request_errors` is \
             not in this plugin's prometheus-metrics"
        ),
        "{}",
        result.detail
    );
    assert!(source.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn its_parameters_are_checked_by_the_component_with_field_paths() {
    let plugin = load(grants(&[METRIC]));
    assert_eq!(plugin.info().await.unwrap().name, "judge");
    assert_eq!(plugin.validate(PARAMS).await.unwrap(), Ok(()));
    let errors = plugin
        .validate(r#"{"metrics":[{"name":"a","prometheus":"up{release=\"{release}\"}"},{"name":"b","prometheus":"up","tolerance":-1}]}"#)
        .await
        .unwrap()
        .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["metrics[1].prometheus", "metrics[1].tolerance"]);
}

#[test]
fn the_judge_is_a_built_in_hook_only_and_no_strategy_is_a_hook() {
    let host = PluginHost::new(None).unwrap();
    let as_strategy = StrategyPlugin::load(
        &host,
        &PluginSource::Builtin("judge".into()),
        Limits::strategy(),
    );
    let error = as_strategy
        .err()
        .expect("the judge loaded as a strategy")
        .to_string();
    assert!(
        error.contains("there is no built-in strategy `judge` (built-in strategies: canary, blue-green, rolling); `judge` is a built-in hook"),
        "{error}"
    );
    let as_hook = HookPlugin::load(
        &host,
        &PluginSource::Builtin("canary".into()),
        Limits::hook(),
        Grants::default(),
    );
    let error = as_hook.err().expect("canary loaded as a hook").to_string();
    assert!(
        error.contains("there is no built-in hook `canary` (built-in hooks: judge); `canary` is a built-in strategy"),
        "{error}"
    );
    // Without a metrics grant the judge (which imports `metrics`) is refused at load.
    let ungranted = HookPlugin::load(
        &host,
        &PluginSource::Builtin("judge".into()),
        Limits::hook(),
        Grants::default(),
    );
    let error = ungranted.err().expect("loaded without a grant").to_string();
    assert!(error.contains("prometheus-metrics"), "{error}");
}
