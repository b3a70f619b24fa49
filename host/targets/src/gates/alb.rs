//! The built-in ALB gate: the new side's target group as CloudWatch's AWS/ApplicationELB
//! sees it (5xx ratio, response time, healthy hosts), optionally against the stable
//! side's 5xx ratio. One GetMetricData call per check.
//!
//! CloudWatch is eventually consistent: a target group without datapoints in the window
//! is "no data", and the gate's `no-data` setting says what that counts as (a pass with
//! the "no data" detail unless configured otherwise). ALBs publish
//! `HTTPCode_Target_5XX_Count` only for minutes that had some, so requests without it
//! count as no errors.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};

use deployer_contract::{GateResult, GateStatus};
use deployer_engine::driver::DriverError;

use super::placeholders::{Resolver, Unresolved, target_group_dimension};

/// What a window without datapoints counts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoData {
    Pass,
    /// Reported as `no-data`: the strategy's `gates.no-data` policy decides.
    NoData,
    Fail,
}

/// What the ALB gate checks on the new side's target group.
#[derive(Clone, Debug, PartialEq)]
pub struct AlbCheck {
    /// The new side's 5xx share of requests may be at most this many percent.
    pub max_5xx_percent: Option<f64>,
    /// The new side's 5xx percentage may exceed the stable side's by at most this many
    /// points.
    pub relative_to_stable: Option<f64>,
    /// Below this many requests in the window a side's 5xx ratio is not judged.
    pub min_requests: u32,
    /// The worst period's average `TargetResponseTime` may be at most this.
    pub max_response_time: Option<Duration>,
    /// `HealthyHostCount` (its minimum in the window) must be at least this.
    pub min_healthy_hosts: Option<u32>,
    pub period: Duration,
    pub window: Duration,
    pub no_data: NoData,
}

#[derive(Clone, Debug)]
pub struct AlbGate {
    pub client: Client,
    pub resolver: std::sync::Arc<Resolver>,
    pub check: AlbCheck,
}

/// One measure's verdict.
enum Verdict {
    Pass(String),
    Fail(String),
    NoData(String),
}

/// The datapoints of each query, by id.
struct Series(Vec<(String, Vec<f64>)>);

impl Series {
    fn get(&self, id: &str) -> &[f64] {
        self.0
            .iter()
            .find(|(i, _)| i == id)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    fn sum(&self, id: &str) -> Option<f64> {
        let values = self.get(id);
        (!values.is_empty()).then(|| values.iter().sum())
    }
}

fn percent(errors: f64, requests: f64) -> f64 {
    errors * 100.0 / requests
}

impl AlbGate {
    pub async fn run(&self, name: &str, ctx: &deployer_engine::gates::GateContext) -> GateResult {
        let result = |status, detail: String, observed| GateResult {
            name: name.to_string(),
            status,
            detail,
            observed,
        };
        let unresolved = |why: Unresolved| {
            // Throttled while describing: ask again at the next check.
            let status = if why.transient {
                GateStatus::Inconclusive
            } else {
                GateStatus::Fail
            };
            result(status, why.message, None)
        };
        let groups = match &ctx.target_groups {
            Ok(Some(groups)) => groups.clone(),
            Ok(None) => {
                return result(
                    GateStatus::Fail,
                    format!(
                        "service {} has no second side this run (updated in place): the ALB gate has no new side's target group to watch",
                        ctx.service
                    ),
                    None,
                );
            }
            Err(why) => return result(GateStatus::Fail, why.clone(), None),
        };
        let dimension = |arn: &str| {
            target_group_dimension(arn)
                .map(str::to_string)
                .ok_or_else(|| Unresolved {
                    message: format!("`{arn}` is not a target group ARN"),
                    transient: false,
                })
        };
        let (new_tg, stable_tg) = match (dimension(&groups.new), dimension(&groups.stable)) {
            (Ok(new), Ok(stable)) => (new, stable),
            (Err(why), _) | (_, Err(why)) => return unresolved(why),
        };
        let lb = match self.resolver.load_balancer(&groups.new).await {
            Ok(lb) => lb,
            Err(why) => return unresolved(why),
        };
        let series = match self.query(&new_tg, &stable_tg, &lb).await {
            Ok(series) => series,
            Err(DriverError::Transient(message)) => {
                return result(
                    GateStatus::Inconclusive,
                    format!("{message} (transient: checked again next time)"),
                    None,
                );
            }
            Err(DriverError::Failed(message)) => return result(GateStatus::Fail, message, None),
        };
        let mut verdicts = Vec::new();
        let window = humanize(self.check.window);
        let new_requests = series.sum("new_requests");
        let new_errors = series.sum("new_5xx").unwrap_or(0.0);
        let min = f64::from(self.check.min_requests);
        // The new side's ratio, when there were enough requests to judge it.
        let mut new_ratio = None;
        if self.check.max_5xx_percent.is_some() || self.check.relative_to_stable.is_some() {
            match new_requests {
                None => verdicts.push(Verdict::NoData(format!(
                    "no RequestCount datapoints for the new side ({new_tg}) in the last {window}"
                ))),
                Some(requests) if requests < min => verdicts.push(Verdict::Pass(format!(
                    "new {}/{} requests failed: fewer than min-requests {}, so the 5xx ratio is not judged",
                    count(new_errors),
                    count(requests),
                    self.check.min_requests
                ))),
                Some(requests) => new_ratio = Some((new_errors, requests)),
            }
        }
        let observed = new_ratio.map(|(e, r)| percent(e, r));
        if let (Some(max), Some((errors, requests))) = (self.check.max_5xx_percent, new_ratio) {
            let ratio = percent(errors, requests);
            let text = format!(
                "new ({new_tg}) {}/{} = {ratio:.1}% 5xx",
                count(errors),
                count(requests)
            );
            verdicts.push(if ratio > max {
                Verdict::Fail(format!("{text} > max {max:.1}%"))
            } else {
                Verdict::Pass(format!("{text} <= max {max:.1}%"))
            });
        }
        if let (Some(margin), Some((errors, requests))) = (self.check.relative_to_stable, new_ratio)
        {
            let ratio = percent(errors, requests);
            let stable_errors = series.sum("stable_5xx").unwrap_or(0.0);
            match series.sum("stable_requests") {
                Some(stable) if stable >= min => {
                    let base = percent(stable_errors, stable);
                    let text = format!(
                        "new {ratio:.1}% 5xx vs stable {}/{} = {base:.1}% + margin {margin:.1}",
                        count(stable_errors),
                        count(stable)
                    );
                    verdicts.push(if ratio > base + margin {
                        Verdict::Fail(format!("{text} = {:.1}%: over", base + margin))
                    } else {
                        Verdict::Pass(format!("{text} = {:.1}%: within", base + margin))
                    });
                }
                stable => verdicts.push(Verdict::Pass(format!(
                    "stable side had {} requests, fewer than min-requests {}: not compared with it",
                    count(stable.unwrap_or(0.0)),
                    self.check.min_requests
                ))),
            }
        }
        if let Some(max) = self.check.max_response_time {
            let worst = series.get("new_latency").iter().copied().reduce(f64::max);
            verdicts.push(match worst {
                None => Verdict::NoData(format!(
                    "no TargetResponseTime datapoints for the new side in the last {window}"
                )),
                Some(seconds) => {
                    let text = format!("new TargetResponseTime average {:.0}ms", seconds * 1000.0);
                    let max_ms = max.as_secs_f64() * 1000.0;
                    if seconds > max.as_secs_f64() {
                        Verdict::Fail(format!("{text} > max {max_ms:.0}ms"))
                    } else {
                        Verdict::Pass(format!("{text} <= max {max_ms:.0}ms"))
                    }
                }
            });
        }
        if let Some(least) = self.check.min_healthy_hosts {
            let lowest = series.get("new_healthy").iter().copied().reduce(f64::min);
            verdicts.push(match lowest {
                None => Verdict::NoData(format!(
                    "no HealthyHostCount datapoints for the new side in the last {window}"
                )),
                Some(hosts) => {
                    let text = format!("new HealthyHostCount minimum {}", count(hosts));
                    if hosts < f64::from(least) {
                        Verdict::Fail(format!("{text} < min {least}"))
                    } else {
                        Verdict::Pass(format!("{text} >= min {least}"))
                    }
                }
            });
        }
        let failed = verdicts.iter().any(|v| matches!(v, Verdict::Fail(_)));
        let no_data = verdicts.iter().any(|v| matches!(v, Verdict::NoData(_)));
        let mut detail = verdicts
            .iter()
            .map(|v| match v {
                Verdict::Pass(text) | Verdict::Fail(text) => text.clone(),
                Verdict::NoData(text) => format!("no data: {text}"),
            })
            .collect::<Vec<_>>()
            .join("; ");
        let status = if failed {
            GateStatus::Fail
        } else if no_data {
            let (status, counts) = match self.check.no_data {
                NoData::Pass => (GateStatus::Pass, "passes"),
                NoData::NoData => (GateStatus::NoData, "is reported as no-data"),
                NoData::Fail => (GateStatus::Fail, "fails"),
            };
            detail += &format!(" (with no data the gate {counts}: its no-data setting)");
            status
        } else {
            GateStatus::Pass
        };
        result(status, detail, observed)
    }

    /// Every series the check needs, in one GetMetricData call.
    async fn query(&self, new_tg: &str, stable_tg: &str, lb: &str) -> Result<Series, DriverError> {
        let check = &self.check;
        let period = i32::try_from(check.period.as_secs()).unwrap_or(60).max(60);
        let query = |id: &str, metric: &str, tg: &str, stat: &str| {
            MetricDataQuery::builder()
                .id(id)
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace("AWS/ApplicationELB")
                                .metric_name(metric)
                                .dimensions(
                                    Dimension::builder().name("TargetGroup").value(tg).build(),
                                )
                                .dimensions(
                                    Dimension::builder().name("LoadBalancer").value(lb).build(),
                                )
                                .build(),
                        )
                        .period(period)
                        .stat(stat)
                        .build(),
                )
                .return_data(true)
                .build()
        };
        let mut queries = vec![
            query("new_5xx", "HTTPCode_Target_5XX_Count", new_tg, "Sum"),
            query("new_requests", "RequestCount", new_tg, "Sum"),
        ];
        if check.relative_to_stable.is_some() {
            queries.push(query(
                "stable_5xx",
                "HTTPCode_Target_5XX_Count",
                stable_tg,
                "Sum",
            ));
            queries.push(query("stable_requests", "RequestCount", stable_tg, "Sum"));
        }
        if check.max_response_time.is_some() {
            queries.push(query(
                "new_latency",
                "TargetResponseTime",
                new_tg,
                "Average",
            ));
        }
        if check.min_healthy_hosts.is_some() {
            queries.push(query("new_healthy", "HealthyHostCount", new_tg, "Minimum"));
        }
        let now = SystemTime::now();
        // The end is exclusive: reach a period past now so the current minute counts.
        let out = self
            .client
            .get_metric_data()
            .set_metric_data_queries(Some(queries))
            .start_time(DateTime::from(now - check.window))
            .end_time(DateTime::from(
                now + check.period.max(Duration::from_secs(60)),
            ))
            .send()
            .await
            .map_err(|err| crate::aws::classify("reading AWS/ApplicationELB metrics", err))?;
        Ok(Series(
            out.metric_data_results()
                .iter()
                .map(|r| (r.id().unwrap_or_default().to_string(), r.values().to_vec()))
                .collect(),
        ))
    }
}

/// A count as written: `12`, not `12.0`.
fn count(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// `5m`, `90s`: a window as config writes it.
fn humanize(duration: Duration) -> String {
    deployer_contract::Duration {
        millis: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
    }
    .to_string()
}
