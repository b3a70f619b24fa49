//! Judging a canary: each metric queried for both sides and compared, then one gate
//! result for all of them.
//!
//! The metric source is a parameter ([`Fetch`]), so the whole judgement runs natively in
//! unit tests; the component passes the `metrics` capability.

use deployer_plugin_sdk::hook::HookContext;
use deployer_plugin_sdk::{CapabilityError, GateResult, GateStatus};

use crate::params::{Direction, Metric, Params};
use crate::query::{self, Query, Subject};
use crate::report;
use crate::stats::{self, Alternative};

/// The samples a query answers (finite values only), or the capability's error.
pub type Fetch<'a> = dyn FnMut(&Query) -> Result<Vec<f64>, CapabilityError> + 'a;

/// The gate result's name; the host shows the configured gate name instead.
pub const NAME: &str = "judge";

/// Which release a query was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The new release.
    Canary,
    /// The stable release.
    Baseline,
}

/// What came of one metric.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Judged(Comparison),
    /// Fewer than `min-samples` on a side.
    TooFew {
        canary: usize,
        baseline: usize,
        needed: u32,
    },
    /// The capability refused or failed a side's query.
    QueryFailed {
        side: Side,
        error: CapabilityError,
    },
}

/// One metric's canary against its baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub canary_mean: f64,
    pub baseline_mean: f64,
    pub canary_samples: usize,
    pub baseline_samples: usize,
    /// Mann–Whitney p-value in the bad direction (two-sided for `either`).
    pub p: f64,
    /// The change always allowed: max(tolerance × |baseline mean|, min-difference).
    pub allowed: f64,
    pub verdict: Verdict,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The test found no significant change in the bad direction.
    NotSignificant,
    /// A significant change in the bad direction, but of the means no more than allowed.
    WithinTolerance,
    /// Significant, and more than allowed: the metric fails.
    WorseThanAllowed,
}

impl Outcome {
    pub fn status(&self) -> GateStatus {
        match self {
            Outcome::Judged(c) if c.verdict == Verdict::WorseThanAllowed => GateStatus::Fail,
            Outcome::Judged(_) => GateStatus::Pass,
            Outcome::TooFew { .. } => GateStatus::Inconclusive,
            Outcome::QueryFailed { error, .. } => match error {
                // A grant or a query that is wrong stays wrong: retrying cannot help.
                CapabilityError::Denied(_) | CapabilityError::Invalid(_) => GateStatus::Fail,
                // A backend down, or more data than a plugin is handed: may pass later.
                CapabilityError::Unavailable(_) | CapabilityError::Limit(_) => {
                    GateStatus::Inconclusive
                }
            },
        }
    }
}

/// Compare `canary` with `baseline` (finite samples) for `metric`.
pub fn compare(
    metric: &Metric,
    confidence: f64,
    mut canary: Vec<f64>,
    mut baseline: Vec<f64>,
) -> Comparison {
    let canary_mean = stats::mean(&canary);
    let baseline_mean = stats::mean(&baseline);
    let alternative = match metric.direction {
        Direction::Increase => Alternative::Greater,
        Direction::Decrease => Alternative::Less,
        Direction::Either => Alternative::TwoSided,
    };
    let test = stats::mann_whitney(&mut canary, &mut baseline, alternative);
    let change = canary_mean - baseline_mean;
    let bad_change = match metric.direction {
        Direction::Increase => change,
        Direction::Decrease => -change,
        Direction::Either => change.abs(),
    };
    let allowed = (metric.tolerance * baseline_mean.abs()).max(metric.min_difference);
    let verdict = if test.p >= 1.0 - confidence {
        Verdict::NotSignificant
    } else if bad_change > allowed {
        Verdict::WorseThanAllowed
    } else {
        Verdict::WithinTolerance
    };
    Comparison {
        canary_mean,
        baseline_mean,
        canary_samples: canary.len(),
        baseline_samples: baseline.len(),
        p: test.p,
        allowed,
        verdict,
    }
}

/// Judge every metric of `params` for the deployment in `ctx`, querying through `fetch`.
pub fn evaluate(params: &Params, ctx: &HookContext, fetch: &mut Fetch<'_>) -> GateResult {
    let Some(stable) = ctx.stable_release.as_deref() else {
        return GateResult {
            name: NAME.into(),
            status: GateStatus::NoData,
            detail: format!(
                "no stable release to compare {} against (a first deployment?): there is no \
                 baseline, so nothing to judge",
                ctx.new_release
            ),
            observed: None,
        };
    };
    let canary = Subject {
        release: &ctx.new_release,
        service: &ctx.service,
    };
    let baseline = Subject {
        release: stable,
        service: &ctx.service,
    };
    let outcomes: Vec<Outcome> = params
        .metrics
        .iter()
        .map(|metric| judge_metric(params, metric, canary, baseline, fetch))
        .collect();
    let statuses: Vec<GateStatus> = outcomes.iter().map(Outcome::status).collect();
    let status = if statuses.contains(&GateStatus::Fail) {
        GateStatus::Fail
    } else if statuses.contains(&GateStatus::Inconclusive) {
        GateStatus::Inconclusive
    } else {
        GateStatus::Pass
    };
    let observed = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Judged(c) => Some(c.p),
            _ => None,
        })
        .reduce(f64::min);
    let detail = params
        .metrics
        .iter()
        .zip(&outcomes)
        .enumerate()
        .map(|(index, (metric, outcome))| report::line(index, metric, outcome, canary, baseline))
        .collect::<Vec<_>>()
        .join("; ");
    GateResult {
        name: NAME.into(),
        status,
        detail,
        observed,
    }
}

fn judge_metric(
    params: &Params,
    metric: &Metric,
    canary: Subject<'_>,
    baseline: Subject<'_>,
    fetch: &mut Fetch<'_>,
) -> Outcome {
    let Some(source) = metric.source() else {
        // `validate` refuses such a metric before any run; say so if one gets here.
        return Outcome::QueryFailed {
            side: Side::Canary,
            error: CapabilityError::Invalid(
                "the metric sets neither or both of `prometheus` and `cloudwatch`".into(),
            ),
        };
    };
    let canary_samples = match fetch(&query::build(source, params, canary)) {
        Ok(samples) => samples,
        Err(error) => {
            return Outcome::QueryFailed {
                side: Side::Canary,
                error,
            };
        }
    };
    let baseline_samples = match fetch(&query::build(source, params, baseline)) {
        Ok(samples) => samples,
        Err(error) => {
            return Outcome::QueryFailed {
                side: Side::Baseline,
                error,
            };
        }
    };
    let needed = params.min_samples as usize;
    if canary_samples.len() < needed || baseline_samples.len() < needed {
        return Outcome::TooFew {
            canary: canary_samples.len(),
            baseline: baseline_samples.len(),
            needed: params.min_samples,
        };
    }
    Outcome::Judged(compare(
        metric,
        params.confidence,
        canary_samples,
        baseline_samples,
    ))
}

#[cfg(test)]
mod tests {
    use deployer_plugin_sdk::LifecyclePoint;
    use deployer_plugin_sdk::hook::metrics::PromqlQuery;

    use super::*;

    fn params(json: &str) -> Params {
        let params: Params = deployer_plugin_sdk::params::parse(json).unwrap();
        assert_eq!(crate::params::check(&params), vec![]);
        params
    }

    fn metric(direction: &str, tolerance: f64, min_difference: f64) -> Metric {
        let json = format!(
            r#"{{"metrics":[{{"name":"m","prometheus":"x{{r=\"{{release}}\"}}","direction":"{direction}",
                "tolerance":{tolerance},"min-difference":{min_difference}}}]}}"#
        );
        params(&json).metrics.remove(0)
    }

    fn ctx(stable: Option<&str>) -> HookContext {
        HookContext {
            point: LifecyclePoint::PostTraffic,
            deployment_id: "web-1".into(),
            service: "web".into(),
            new_release: "web:3".into(),
            stable_release: stable.map(str::to_string),
            new_traffic_percent: 10,
            params: String::new(),
        }
    }

    /// `n` values spread evenly over (centre - 1, centre + 1), their mean `centre`.
    fn around(centre: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| centre - 1.0 + (2 * i + 1) as f64 / n as f64)
            .collect()
    }

    #[test]
    fn equal_distributions_pass() {
        let c = compare(
            &metric("increase", 0.1, 0.0),
            0.95,
            around(5.0, 60),
            around(5.0, 60),
        );
        assert_eq!(c.verdict, Verdict::NotSignificant);
        assert_eq!(c.canary_mean, c.baseline_mean);
        assert!(c.p > 0.4, "{c:?}");
    }

    #[test]
    fn a_clear_shift_in_the_bad_direction_fails() {
        let c = compare(
            &metric("increase", 0.1, 0.0),
            0.95,
            around(10.0, 60),
            around(5.0, 60),
        );
        assert_eq!(c.verdict, Verdict::WorseThanAllowed);
        assert!(c.p < 1e-9, "{c:?}");
        assert!((c.allowed - 0.1 * c.baseline_mean).abs() < 1e-12);
    }

    #[test]
    fn the_direction_is_respected() {
        // The canary got better (lower): not a failure for `increase`, one for `decrease`
        // when lower is worse, and one for `either`.
        let better = || (around(2.0, 60), around(5.0, 60));
        let (c, b) = better();
        let verdict = compare(&metric("increase", 0.1, 0.0), 0.95, c, b);
        assert_eq!(verdict.verdict, Verdict::NotSignificant);
        assert!(verdict.p > 0.999);
        let (c, b) = better();
        let verdict = compare(&metric("decrease", 0.1, 0.0), 0.95, c, b);
        assert_eq!(verdict.verdict, Verdict::WorseThanAllowed);
        let (c, b) = better();
        let verdict = compare(&metric("either", 0.1, 0.0), 0.95, c, b);
        assert_eq!(verdict.verdict, Verdict::WorseThanAllowed);
    }

    #[test]
    fn ties_everywhere_pass() {
        let c = compare(
            &metric("either", 0.1, 0.0),
            0.95,
            vec![0.0; 40],
            vec![0.0; 40],
        );
        assert_eq!(c.verdict, Verdict::NotSignificant);
        assert_eq!(c.p, 1.0);
    }

    #[test]
    fn a_significant_change_within_tolerance_passes() {
        // +4% on a baseline of 5: significant with this many samples, inside 10%.
        let c = compare(
            &metric("increase", 0.1, 0.0),
            0.95,
            around(5.2, 2000),
            around(5.0, 2000),
        );
        assert!(c.p < 0.05, "{c:?}");
        assert_eq!(c.verdict, Verdict::WithinTolerance);
        // With no tolerance it fails.
        let c = compare(
            &metric("increase", 0.0, 0.0),
            0.95,
            around(5.2, 2000),
            around(5.0, 2000),
        );
        assert_eq!(c.verdict, Verdict::WorseThanAllowed);
    }

    #[test]
    fn min_difference_covers_baselines_near_zero() {
        // Errors 0 → 0.01 of the time: infinitely worse relatively, allowed absolutely.
        let canary: Vec<f64> = (0..400)
            .map(|i| if i % 20 == 0 { 1.0 } else { 0.0 })
            .collect();
        let baseline = vec![0.0; 400];
        let c = compare(
            &metric("increase", 0.1, 0.1),
            0.95,
            canary.clone(),
            baseline.clone(),
        );
        assert!(c.p < 0.05, "{c:?}");
        assert_eq!(c.allowed, 0.1);
        assert_eq!(c.verdict, Verdict::WithinTolerance);
        let c = compare(&metric("increase", 0.1, 0.0), 0.95, canary, baseline);
        assert_eq!(c.verdict, Verdict::WorseThanAllowed);
    }

    /// A fetch answering from `canary` or `baseline` by the release in the query, and
    /// recording the queries.
    fn source<'a>(
        canary: &'a [f64],
        baseline: &'a [f64],
        seen: &'a mut Vec<Query>,
    ) -> impl FnMut(&Query) -> Result<Vec<f64>, CapabilityError> + 'a {
        move |query| {
            seen.push(query.clone());
            let Query::Prometheus(PromqlQuery { query: text, .. }) = query else {
                panic!("not Prometheus: {query:?}");
            };
            Ok(if text.contains("web:3") {
                canary.to_vec()
            } else {
                baseline.to_vec()
            })
        }
    }

    const TWO_METRICS: &str = r#"{"metrics":[
        {"name":"error-rate","prometheus":"errors{release=\"{release}\"}","min-difference":0.01},
        {"name":"latency","prometheus":"latency{release=\"{release}\",service=\"{service}\"}","direction":"either"}
    ]}"#;

    #[test]
    fn every_metric_is_queried_for_each_side_and_named_in_the_detail() {
        let (canary, baseline) = (around(5.0, 30), around(5.0, 30));
        let mut seen = Vec::new();
        let result = evaluate(
            &params(TWO_METRICS),
            &ctx(Some("web:2")),
            &mut source(&canary, &baseline, &mut seen),
        );
        assert_eq!(result.status, GateStatus::Pass, "{result:?}");
        let texts: Vec<String> = seen
            .iter()
            .map(|q| match q {
                Query::Prometheus(q) => q.query.clone(),
                Query::CloudWatch(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            texts,
            [
                r#"errors{release="web:3"}"#,
                r#"errors{release="web:2"}"#,
                r#"latency{release="web:3",service="web"}"#,
                r#"latency{release="web:2",service="web"}"#,
            ]
        );
        assert!(
            result
                .detail
                .starts_with("error-rate: canary mean 5 vs baseline 5 (no change, p=0.5")
                && result
                    .detail
                    .contains("30/30 samples): not significantly worse; latency: "),
            "{}",
            result.detail
        );
        assert!(
            result.detail.ends_with("no significant change"),
            "{}",
            result.detail
        );
        assert!(result.observed.is_some());
    }

    #[test]
    fn one_failing_metric_fails_the_gate_and_observed_is_the_smallest_p() {
        let mut calls = 0;
        let mut fetch = |query: &Query| {
            calls += 1;
            let Query::Prometheus(q) = query else {
                unreachable!()
            };
            // error-rate: canary 0.21 vs 0.02; latency: the same on both sides.
            Ok(
                match (q.query.starts_with("errors"), q.query.contains("web:3")) {
                    (true, true) => (0..60).map(|i| 0.2 + (i % 3) as f64 * 0.01).collect(),
                    (true, false) => (0..60).map(|i| 0.01 + (i % 3) as f64 * 0.01).collect(),
                    (false, _) => around(100.0, 60),
                },
            )
        };
        let result = evaluate(&params(TWO_METRICS), &ctx(Some("web:2")), &mut fetch);
        assert_eq!(calls, 4);
        assert_eq!(result.status, GateStatus::Fail);
        assert!(
            result.detail.starts_with(
                "error-rate: canary mean 0.21 vs baseline 0.02 (+950%, p=5e-22, 60/60 samples): \
                 worse than allowed (at most +0.01); latency: canary mean 100 vs baseline 100"
            ),
            "{}",
            result.detail
        );
        // SciPy: mannwhitneyu(canary, baseline, alternative="greater",
        // method="asymptotic").pvalue == 4.919881718856831e-22.
        let p = result.observed.unwrap();
        assert!((p / 4.919881718856831e-22 - 1.0).abs() < 1e-9, "{p}");
    }

    #[test]
    fn too_few_samples_are_inconclusive_never_a_pass() {
        let (canary, baseline) = (around(5.0, 3), around(5.0, 60));
        let mut seen = Vec::new();
        let result = evaluate(
            &params(TWO_METRICS),
            &ctx(Some("web:2")),
            &mut source(&canary, &baseline, &mut seen),
        );
        assert_eq!(result.status, GateStatus::Inconclusive);
        assert!(
            result.detail.starts_with(
                "error-rate: too few samples: 3 of 20 for the canary (web:3), the baseline \
                 (web:2) has 60; wait for more traffic, widen `window` or lower `min-samples`"
            ),
            "{}",
            result.detail
        );
        assert_eq!(result.observed, None);
        // Nothing at all is no better.
        let mut seen = Vec::new();
        let result = evaluate(
            &params(TWO_METRICS),
            &ctx(Some("web:2")),
            &mut source(&[], &[], &mut seen),
        );
        assert_eq!(result.status, GateStatus::Inconclusive);
    }

    #[test]
    fn a_fail_outweighs_an_inconclusive_metric() {
        let mut fetch = |query: &Query| {
            let Query::Prometheus(q) = query else {
                unreachable!()
            };
            if q.query.starts_with("errors") {
                Ok(if q.query.contains("web:3") {
                    around(9.0, 50)
                } else {
                    around(1.0, 50)
                })
            } else {
                Err(CapabilityError::Unavailable("connection refused".into()))
            }
        };
        let result = evaluate(&params(TWO_METRICS), &ctx(Some("web:2")), &mut fetch);
        assert_eq!(result.status, GateStatus::Fail);
        assert!(
            result
                .detail
                .ends_with("latency: could not query the canary (web:3): connection refused"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn capability_errors_fail_when_config_is_wrong_and_are_inconclusive_otherwise() {
        let cases = [
            (
                CapabilityError::Denied(
                    "metric `errors` is not in this plugin's prometheus-metrics".into(),
                ),
                GateStatus::Fail,
                "error-rate: querying the baseline (web:2) was denied: metric `errors` is not in this plugin's prometheus-metrics; grant it in the judge's `prometheus-metrics` (or `metrics-namespaces`) in deployer.toml",
            ),
            (
                CapabilityError::Invalid("the query is not PromQL: x".into()),
                GateStatus::Fail,
                "error-rate: the query for the baseline (web:2) is invalid: the query is not PromQL: x; fix metrics[0]",
            ),
            (
                CapabilityError::Unavailable("timed out".into()),
                GateStatus::Inconclusive,
                "error-rate: could not query the baseline (web:2): timed out",
            ),
            (
                CapabilityError::Limit("the answer has 2000 series".into()),
                GateStatus::Inconclusive,
                "error-rate: the query for the baseline (web:2) hit a limit: the answer has 2000 series; aggregate to fewer series or lengthen `step`",
            ),
        ];
        for (error, status, detail) in cases {
            let params = params(
                r#"{"metrics":[{"name":"error-rate","prometheus":"errors{release=\"{release}\"}"}]}"#,
            );
            let mut fetch = |query: &Query| {
                let Query::Prometheus(q) = query else {
                    unreachable!()
                };
                if q.query.contains("web:3") {
                    Ok(around(1.0, 30))
                } else {
                    Err(error.clone())
                }
            };
            let result = evaluate(&params, &ctx(Some("web:2")), &mut fetch);
            assert_eq!(result.status, status, "{error:?}");
            assert_eq!(result.detail, detail);
        }
    }

    #[test]
    fn without_a_stable_release_there_is_no_data_and_no_query() {
        let mut fetch = |_: &Query| -> Result<Vec<f64>, CapabilityError> {
            panic!("queried without a baseline")
        };
        let result = evaluate(&params(TWO_METRICS), &ctx(None), &mut fetch);
        assert_eq!(result.status, GateStatus::NoData);
        assert_eq!(
            result.detail,
            "no stable release to compare web:3 against (a first deployment?): there is no \
             baseline, so nothing to judge"
        );
    }
}
