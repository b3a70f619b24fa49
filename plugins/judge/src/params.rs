//! The judge's parameters (`params` of a `[[services.NAME.hooks]]` entry, arriving as
//! JSON), their defaults, and every check `validate` makes, each naming its field and
//! saying the fix.

use std::collections::{BTreeMap, HashMap};

use deployer_plugin_sdk::{Duration, ParamError, param_error};
use serde::Deserialize;

use crate::query::{Placeholder, Quoting, RELEASE, SERVICE, promql_placeholders};

pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
pub const DEFAULT_STEP: Duration = Duration::from_secs(15);
pub const DEFAULT_MIN_SAMPLES: u32 = 20;
pub const DEFAULT_CONFIDENCE: f64 = 0.95;
pub const DEFAULT_TOLERANCE: f64 = 0.1;
pub const DEFAULT_STATISTIC: &str = "Average";
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);

/// The fewest samples a side `min-samples` may ask for: below it the normal
/// approximation the test uses is too rough to trust.
pub const LEAST_MIN_SAMPLES: u32 = 8;

/// The host's bounds on a Prometheus range query (`deployer_plugin_host::promql::limits`):
/// a window of at most 31 days, at most 11,000 points per series.
const MAX_WINDOW: Duration = Duration::from_secs(31 * 86_400);
const MAX_STEPS: u64 = 11_000;

/// The statistics the `metrics` capability accepts for CloudWatch.
pub const STATISTICS: [&str; 5] = ["Average", "Sum", "Maximum", "Minimum", "SampleCount"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Params {
    pub metrics: Vec<Metric>,
    /// How far back each query looks.
    #[serde(default = "default_window")]
    pub window: Duration,
    /// The spacing of points in a Prometheus range query.
    #[serde(default = "default_step")]
    pub step: Duration,
    /// Samples each side needs before the judge decides anything.
    #[serde(default = "default_min_samples")]
    pub min_samples: u32,
    /// How sure the judge must be that a change is real before it fails a metric.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Metric {
    pub name: String,
    /// A PromQL query.
    #[serde(default)]
    pub prometheus: Option<String>,
    /// A CloudWatch metric.
    #[serde(default)]
    pub cloudwatch: Option<CloudWatch>,
    /// Which change is bad.
    #[serde(default)]
    pub direction: Direction,
    /// The relative change of the canary's mean over the baseline's that is always
    /// allowed.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// The absolute change that is always allowed (for baselines near 0).
    #[serde(default)]
    pub min_difference: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CloudWatch {
    pub namespace: String,
    pub metric: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    #[serde(default = "default_statistic")]
    pub statistic: String,
    #[serde(default = "default_period")]
    pub period: Duration,
}

/// Which change of a metric is bad.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// A higher canary is worse (error rates, latencies).
    #[default]
    Increase,
    /// A lower canary is worse (throughput, success rates).
    Decrease,
    /// Any change is bad.
    Either,
}

/// Where a metric's samples come from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    Prometheus(&'a str),
    CloudWatch(&'a CloudWatch),
}

impl Metric {
    /// The metric's source; `None` until `check` has passed (neither or both set).
    pub fn source(&self) -> Option<Source<'_>> {
        match (&self.prometheus, &self.cloudwatch) {
            (Some(query), None) => Some(Source::Prometheus(query)),
            (None, Some(cloudwatch)) => Some(Source::CloudWatch(cloudwatch)),
            _ => None,
        }
    }
}

fn default_window() -> Duration {
    DEFAULT_WINDOW
}

fn default_step() -> Duration {
    DEFAULT_STEP
}

fn default_min_samples() -> u32 {
    DEFAULT_MIN_SAMPLES
}

fn default_confidence() -> f64 {
    DEFAULT_CONFIDENCE
}

fn default_tolerance() -> f64 {
    DEFAULT_TOLERANCE
}

fn default_statistic() -> String {
    DEFAULT_STATISTIC.to_string()
}

fn default_period() -> Duration {
    DEFAULT_PERIOD
}

/// Every problem with `params`, each naming its field.
pub fn check(params: &Params) -> Vec<ParamError> {
    let mut errors = Vec::new();
    if params.metrics.is_empty() {
        errors.push(param_error(
            "metrics",
            "needs at least one metric, e.g. metrics = [{ name = \"error-rate\", prometheus = \
             \"sum(rate(http_requests_total{code=~\\\"5..\\\", release=\\\"{release}\\\"}[1m]))\" }]",
        ));
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, metric) in params.metrics.iter().enumerate() {
        check_metric(&format!("metrics[{i}]"), metric, params.window, &mut errors);
        if let Some(first) = names.get(metric.name.as_str()) {
            errors.push(param_error(
                format!("metrics[{i}].name"),
                format!(
                    "`{}` is also the name of metrics[{first}]; give each metric its own name \
                     (it is how the gate's detail tells them apart)",
                    metric.name
                ),
            ));
        } else {
            names.insert(&metric.name, i);
        }
    }
    check_window_and_step(params, &mut errors);
    if params.min_samples < LEAST_MIN_SAMPLES {
        errors.push(param_error(
            "min-samples",
            format!(
                "is {}; the judge needs at least {LEAST_MIN_SAMPLES} samples a side for its \
                 test to mean anything (the default is {DEFAULT_MIN_SAMPLES}): raise it, and \
                 widen `window` if the metric has fewer points",
                params.min_samples
            ),
        ));
    }
    if !(params.confidence.is_finite() && (0.5..1.0).contains(&params.confidence)) {
        errors.push(param_error(
            "confidence",
            format!(
                "is {}; a confidence is at least 0.5 and below 1, e.g. 0.95 (a change must be \
                 95% sure to fail the canary)",
                params.confidence
            ),
        ));
    }
    errors
}

fn check_metric(field: &str, metric: &Metric, window: Duration, errors: &mut Vec<ParamError>) {
    if metric.name.trim().is_empty() {
        errors.push(param_error(
            format!("{field}.name"),
            "is empty; name the metric, e.g. name = \"error-rate\" (the gate's detail reports \
             it by this name)",
        ));
    }
    match (&metric.prometheus, &metric.cloudwatch) {
        (Some(_), Some(_)) => errors.push(param_error(
            field,
            "sets both `prometheus` and `cloudwatch`; a metric comes from one of them: remove \
             the other, or make it a metric of its own",
        )),
        (None, None) => errors.push(param_error(
            field,
            "sets neither `prometheus` nor `cloudwatch`; add the query, e.g. prometheus = \
             \"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{release=\\\"{release}\\\"}[1m])))\"",
        )),
        (Some(query), None) => check_promql(&format!("{field}.prometheus"), query, errors),
        (None, Some(cloudwatch)) => {
            check_cloudwatch(&format!("{field}.cloudwatch"), cloudwatch, window, errors);
        }
    }
    for (key, value) in [
        ("tolerance", metric.tolerance),
        ("min-difference", metric.min_difference),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            let example = if key == "tolerance" {
                "0.1 allows a canary mean up to 10% worse than the baseline's"
            } else {
                "0.01 allows a change of 0.01 whatever the baseline"
            };
            errors.push(param_error(
                format!("{field}.{key}"),
                format!("is {value}; it must be a number of at least 0: {example}"),
            ));
        }
    }
}

fn check_promql(field: &str, query: &str, errors: &mut Vec<ParamError>) {
    if query.trim().is_empty() {
        errors.push(param_error(
            field,
            "is empty; give a PromQL query that selects one release with `{release}`, e.g. \
             \"sum(rate(http_requests_total{release=\\\"{release}\\\"}[1m]))\"",
        ));
        return;
    }
    let placeholders = promql_placeholders(query);
    if !placeholders.iter().any(|(p, _)| *p == Placeholder::Release) {
        errors.push(param_error(
            field,
            format!(
                "does not contain `{RELEASE}`, so the canary and the baseline would be the same \
                 query; select the release with it, e.g. `http_requests_total{{release=\"{RELEASE}\"}}` \
                 (`{SERVICE}` is the service's name)"
            ),
        ));
    }
    // A value is escaped for the quoted literal around it; elsewhere it could not be.
    for (placeholder, quoting) in placeholders {
        let token = match placeholder {
            Placeholder::Release => RELEASE,
            Placeholder::Service => SERVICE,
        };
        let problem = match quoting {
            Quoting::Quoted(_) => continue,
            Quoting::Raw => "is inside a `raw` string, which has no escapes",
            Quoting::Unquoted => "is not inside a quoted string",
        };
        errors.push(param_error(
            field,
            format!(
                "`{token}` {problem}; it stands for a label value, so quote it: e.g. \
                 release=\"{RELEASE}\" or service=\"{SERVICE}\""
            ),
        ));
        break;
    }
}

fn check_cloudwatch(
    field: &str,
    cloudwatch: &CloudWatch,
    window: Duration,
    errors: &mut Vec<ParamError>,
) {
    for (key, value, example) in [
        ("namespace", &cloudwatch.namespace, "\"AWS/ApplicationELB\""),
        ("metric", &cloudwatch.metric, "\"TargetResponseTime\""),
    ] {
        if value.trim().is_empty() {
            errors.push(param_error(
                format!("{field}.{key}"),
                format!("is empty; name it, e.g. {key} = {example}"),
            ));
        }
    }
    if !cloudwatch.dimensions.values().any(|v| v.contains(RELEASE)) {
        errors.push(param_error(
            format!("{field}.dimensions"),
            format!(
                "no dimension value contains `{RELEASE}`, so the canary and the baseline would \
                 be the same metric; select the release in a dimension, e.g. dimensions = {{ \
                 TaskDefinition = \"{RELEASE}\" }}"
            ),
        ));
    }
    if !STATISTICS.contains(&cloudwatch.statistic.as_str()) {
        errors.push(param_error(
            format!("{field}.statistic"),
            format!(
                "is `{}`; use one of {}",
                cloudwatch.statistic,
                STATISTICS.join(", ")
            ),
        ));
    }
    let period = cloudwatch.period;
    let secs = period.millis / 1000;
    if !period.millis.is_multiple_of(1000)
        || !(matches!(secs, 1 | 5 | 10 | 30) || (secs > 0 && secs.is_multiple_of(60)))
    {
        errors.push(param_error(
            format!("{field}.period"),
            format!("is {period}; CloudWatch periods are 1s, 5s, 10s, 30s or a multiple of 60s"),
        ));
    } else if period > window {
        errors.push(param_error(
            format!("{field}.period"),
            format!(
                "is {period}, longer than `window` ({window}): no period would fit; shorten \
                 it or widen the window"
            ),
        ));
    }
}

fn check_window_and_step(params: &Params, errors: &mut Vec<ParamError>) {
    let (window, step) = (params.window, params.step);
    let whole = |field: &str, value: Duration, errors: &mut Vec<ParamError>| {
        if value.millis < 1000 || !value.millis.is_multiple_of(1000) {
            errors.push(param_error(
                field,
                format!("is {value}; it must be a whole number of seconds, at least 1s"),
            ));
            false
        } else {
            true
        }
    };
    let window_ok = whole("window", window, errors);
    let step_ok = whole("step", step, errors);
    if window_ok && window > MAX_WINDOW {
        errors.push(param_error(
            "window",
            format!("is {window}; a window is at most 31 days (744h)"),
        ));
        return;
    }
    if !(window_ok && step_ok) {
        return;
    }
    if step > window {
        errors.push(param_error(
            "step",
            format!(
                "is {step}, longer than `window` ({window}); the step spaces the points within \
                 the window, e.g. step = \"15s\" for window = \"5m\""
            ),
        ));
    } else if window.millis / step.millis > MAX_STEPS {
        errors.push(param_error(
            "step",
            format!(
                "is {step}: {} points per series over {window}, more than the {MAX_STEPS} \
                 Prometheus answers; lengthen the step or shorten the window",
                window.millis / step.millis
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Params, Vec<ParamError>> {
        deployer_plugin_sdk::params::parse::<Params>(json)
    }

    /// `(field, message)` of every problem with `json`.
    fn problems(json: &str) -> Vec<(String, String)> {
        let errors = match parse(json) {
            Ok(params) => check(&params),
            Err(errors) => errors,
        };
        errors.into_iter().map(|e| (e.field, e.message)).collect()
    }

    const GOOD: &str = r#"{"metrics":[{"name":"error-rate","prometheus":"sum(rate(errors_total{release=\"{release}\"}[1m]))"}]}"#;

    #[test]
    fn defaults() {
        let params = parse(GOOD).unwrap();
        assert!(check(&params).is_empty());
        assert_eq!(params.window, Duration::from_secs(300));
        assert_eq!(params.step, Duration::from_secs(15));
        assert_eq!(params.min_samples, 20);
        assert_eq!(params.confidence, 0.95);
        let metric = &params.metrics[0];
        assert_eq!(metric.direction, Direction::Increase);
        assert_eq!(metric.tolerance, 0.1);
        assert_eq!(metric.min_difference, 0.0);
        assert!(matches!(metric.source(), Some(Source::Prometheus(_))));
    }

    #[test]
    fn a_full_cloudwatch_metric_parses() {
        let params = parse(
            r#"{"metrics":[{"name":"latency","direction":"either","tolerance":0.2,"min-difference":0.01,
                "cloudwatch":{"namespace":"App","metric":"Latency","dimensions":{"Release":"{release}","Service":"{service}"},
                "statistic":"Maximum","period":"1m"}}],
                "window":"10m","step":"30s","min-samples":10,"confidence":0.99}"#,
        )
        .unwrap();
        assert_eq!(check(&params), vec![]);
        let Some(Source::CloudWatch(cw)) = params.metrics[0].source() else {
            panic!("not CloudWatch");
        };
        assert_eq!(cw.statistic, "Maximum");
        assert_eq!(cw.period, Duration::from_secs(60));
        assert_eq!(params.metrics[0].direction, Direction::Either);
    }

    #[test]
    fn every_problem_names_its_field() {
        let found = problems(
            r#"{"metrics":[
                {"name":"a","prometheus":"up"},
                {"name":"a","prometheus":"x{release=\"{release}\"}","tolerance":-1,"min-difference":-0.5},
                {"name":" ","prometheus":"x{release=\"{release}\"}","cloudwatch":{"namespace":"N","metric":"M"}},
                {"name":"d"},
                {"name":"e","cloudwatch":{"namespace":"","metric":"M","statistic":"p99","period":"45s"}}
               ],
               "min-samples":3,"confidence":1.0}"#,
        );
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metrics[0].prometheus",
                "metrics[1].tolerance",
                "metrics[1].min-difference",
                "metrics[1].name",
                "metrics[2].name",
                "metrics[2]",
                "metrics[3]",
                "metrics[4].cloudwatch.namespace",
                "metrics[4].cloudwatch.dimensions",
                "metrics[4].cloudwatch.statistic",
                "metrics[4].cloudwatch.period",
                "min-samples",
                "confidence",
            ],
            "{found:#?}"
        );
        let message = |field: &str| {
            found
                .iter()
                .find(|(f, _)| f == field)
                .map(|(_, m)| m.as_str())
                .unwrap()
        };
        assert!(message("metrics[0].prometheus").contains("does not contain `{release}`"));
        assert!(message("metrics[1].name").contains("also the name of metrics[0]"));
        assert!(
            message("metrics[1].tolerance").starts_with("is -1; it must be a number of at least 0")
        );
        assert!(message("metrics[2]").contains("sets both"));
        assert!(message("metrics[3]").contains("sets neither"));
        assert!(message("metrics[4].cloudwatch.statistic").contains("use one of Average, Sum"));
        assert!(message("metrics[4].cloudwatch.period").contains("is 45s; CloudWatch periods"));
        assert!(message("min-samples").starts_with("is 3; the judge needs at least 8"));
        assert!(message("confidence").starts_with("is 1; a confidence is at least 0.5"));
    }

    #[test]
    fn windows_and_steps_are_whole_seconds_within_what_prometheus_answers() {
        let with = |extra: &str| {
            let json = format!("{},{extra}}}", GOOD.strip_suffix('}').unwrap());
            problems(&json)
        };
        assert_eq!(with(r#""window":"1h","step":"1s""#), vec![]);
        let found = with(r#""window":"1500ms","step":"0s""#);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, "window");
        assert!(
            found[0]
                .1
                .contains("is 1500ms; it must be a whole number of seconds")
        );
        assert_eq!(found[1].0, "step");
        let found = with(r#""window":"1m","step":"2m""#);
        assert_eq!(found[0].0, "step");
        assert!(
            found[0].1.contains("longer than `window` (1m)"),
            "{found:?}"
        );
        let found = with(r#""window":"24h","step":"1s""#);
        assert!(found[0].1.contains("86400 points per series"), "{found:?}");
        let found = with(r#""window":"800h""#);
        assert!(found[0].1.contains("at most 31 days"), "{found:?}");
    }

    #[test]
    fn shape_errors_name_the_field() {
        let found = problems(r#"{"metrics":[{"name":"a","prometheus":"x","direction":"up"}]}"#);
        assert_eq!(found[0].0, "metrics[0].direction");
        assert!(found[0].1.contains("unknown variant `up`"), "{found:?}");
        let found = problems(r#"{"metrics":[],"windw":"5m"}"#);
        assert_eq!(found[0].0, "windw");
        let found = problems(r#"{"metrics":[]}"#);
        assert_eq!(found[0].0, "metrics");
        assert!(found[0].1.contains("needs at least one metric"));
    }

    #[test]
    fn promql_placeholders_must_be_quoted_label_values() {
        for (query, says) in [
            (
                "up{release=`{release}`}",
                "`{release}` is inside a `raw` string",
            ),
            (
                "up{release=\"{release}\"} + {service}",
                "`{service}` is not inside a quoted string",
            ),
        ] {
            let json = format!(
                r#"{{"metrics":[{{"name":"a","prometheus":{}}}]}}"#,
                serde_json_string(query)
            );
            let found = problems(&json);
            assert_eq!(found.len(), 1, "{query}: {found:?}");
            assert_eq!(found[0].0, "metrics[0].prometheus");
            assert!(found[0].1.starts_with(says), "{query}: {}", found[0].1);
        }
        assert_eq!(
            problems(&format!(
                r#"{{"metrics":[{{"name":"a","prometheus":{}}}]}}"#,
                serde_json_string("up{release='{release}', job=\"{service}\"}")
            )),
            vec![]
        );
    }

    /// `text` as a JSON string literal.
    fn serde_json_string(text: &str) -> String {
        let escaped: String = text
            .chars()
            .flat_map(|c| match c {
                '"' => vec!['\\', '"'],
                '\\' => vec!['\\', '\\'],
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }

    #[test]
    fn a_cloudwatch_period_longer_than_the_window_is_refused() {
        let found = problems(
            r#"{"metrics":[{"name":"a","cloudwatch":{"namespace":"N","metric":"M","dimensions":{"R":"{release}"},"period":"10m"}}]}"#,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "metrics[0].cloudwatch.period");
        assert!(found[0].1.contains("longer than `window` (5m)"));
    }
}
