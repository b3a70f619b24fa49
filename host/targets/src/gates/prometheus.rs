//! The Prometheus gate: a PromQL query, now or over a window, against a bound.
//!
//! Every finite point of every series the query returns is judged, and the worst one
//! decides (one bad pod or one bad minute is enough to stop a rollout). A query that
//! returns no series, or only NaN (a ratio of two rates with no traffic), is `no-data`:
//! a missing signal is never taken for a healthy one.

use std::sync::Arc;

use deployer_contract::{GateResult, GateStatus};

use super::cloudwatch::Bound;
use crate::prometheus::{Prometheus, QueryError, Range};

/// A PromQL query against a bound.
#[derive(Clone, Debug, PartialEq)]
pub struct PrometheusCheck {
    /// PromQL; may hold placeholders (`{new-release}`), rendered per run and escaped
    /// for a PromQL string.
    pub query: String,
    /// Over the last `window`, one point per `step`; `None`: once, now.
    pub range: Option<Range>,
    pub bound: Bound,
}

#[derive(Clone, Debug)]
pub struct PrometheusGate {
    pub client: Arc<Prometheus>,
    pub check: PrometheusCheck,
}

impl PrometheusGate {
    pub async fn run(&self, name: &str) -> GateResult {
        let result = |status, detail: String, observed| GateResult {
            name: name.to_string(),
            status,
            detail,
            observed,
        };
        let series = match self.client.query(&self.check.query, self.check.range).await {
            Ok(series) => series,
            // A query Prometheus refuses will never pass: fail rather than wait.
            Err(QueryError::Refused(why)) => {
                return result(
                    GateStatus::Fail,
                    format!("Prometheus refused the query: {why}"),
                    None,
                );
            }
            Err(why) => return result(GateStatus::Inconclusive, why.to_string(), None),
        };
        let mut worst: Option<(f64, &std::collections::BTreeMap<String, String>)> = None;
        for s in &series {
            for &(_, value) in &s.points {
                if value.is_nan() {
                    continue; // no measurement (0/0)
                }
                if worst.is_none_or(|(w, _)| self.check.bound.worse(value, w)) {
                    worst = Some((value, &s.labels));
                }
            }
        }
        let over = match self.check.range {
            Some(range) => format!(" over the last {:?}", range.window),
            None => String::new(),
        };
        let Some((value, labels)) = worst else {
            return result(
                GateStatus::NoData,
                if series.is_empty() {
                    format!("the query returned no series{over}")
                } else {
                    format!(
                        "the query's {} series hold no number{over} (NaN)",
                        series.len()
                    )
                },
                None,
            );
        };
        let (status, bound) = self.check.bound.judge(value);
        let which = if labels.is_empty() {
            String::new()
        } else {
            let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!(" for {{{}}}", shown.join(", "))
        };
        result(
            status,
            format!(
                "{} is {value}{which}{over} (must be {bound}; worst of {} series)",
                if series.len() == 1 && labels.is_empty() {
                    "the value"
                } else {
                    "the worst value"
                },
                series.len()
            ),
            Some(value),
        )
    }
}
