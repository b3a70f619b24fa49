//! A hook that asks the `metrics` capability what its params say and reports the answer:
//! how many datapoints and their sum, or the capability error. With `promql` it asks
//! Prometheus instead (`query-prometheus`, contract 0.3.1) and reports the series, their
//! labels and the sum of their points.

use std::collections::BTreeMap;

use deployer_plugin_sdk::hook::{HookContext, metrics, result};
use deployer_plugin_sdk::{GateResult, GateStatus, Hook, PluginInfo};
use serde::Deserialize;

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    promql: Option<String>,
    #[serde(default)]
    step_seconds: u32,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    metric: String,
    #[serde(default)]
    dimensions: BTreeMap<String, String>,
    #[serde(default = "sum")]
    statistic: String,
    #[serde(default = "minute")]
    period_seconds: u32,
    #[serde(default = "ten_minutes")]
    window_seconds: u32,
}

fn sum() -> String {
    "Sum".into()
}

fn minute() -> u32 {
    60
}

fn ten_minutes() -> u32 {
    600
}

struct MetricsProbe;

impl Hook for MetricsProbe {
    type Params = Params;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "metrics-probe".into(),
            version: "0.1.0".into(),
            description: "reports what the metrics capability answers".into(),
        }
    }

    fn run(params: &Params, _ctx: &HookContext) -> GateResult {
        if let Some(promql) = &params.promql {
            let query = metrics::PromqlQuery {
                query: promql.clone(),
                window_seconds: params.window_seconds,
                step_seconds: params.step_seconds,
            };
            return match metrics::query_prometheus(&query) {
                Ok(series) => {
                    let labels: Vec<String> = series
                        .iter()
                        .map(|s| {
                            let pairs: Vec<String> =
                                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                            format!("{{{}}}", pairs.join(","))
                        })
                        .collect();
                    let points: usize = series.iter().map(|s| s.points.len()).sum();
                    let total: f64 = series
                        .iter()
                        .flat_map(|s| s.points.iter())
                        .map(|p| p.value)
                        .filter(|v| v.is_finite())
                        .sum();
                    result(
                        "metrics-probe",
                        GateStatus::Pass,
                        format!(
                            "{} series {} with {points} points, total {total}",
                            series.len(),
                            labels.join(" ")
                        ),
                    )
                }
                Err(e) => result(
                    "metrics-probe",
                    GateStatus::Fail,
                    format!("prometheus: {e:?}"),
                ),
            };
        }
        let query = metrics::MetricQuery {
            namespace: params.namespace.clone(),
            name: params.metric.clone(),
            dimensions: params
                .dimensions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            statistic: params.statistic.clone(),
            period_seconds: params.period_seconds,
            window_seconds: params.window_seconds,
        };
        match metrics::query(&query) {
            Ok(points) => result(
                "metrics-probe",
                GateStatus::Pass,
                format!(
                    "{} points, total {}",
                    points.len(),
                    points.iter().map(|p| p.value).sum::<f64>()
                ),
            ),
            Err(e) => result("metrics-probe", GateStatus::Fail, format!("metrics: {e:?}")),
        }
    }
}

deployer_plugin_sdk::export_hook!(MetricsProbe);
