//! One metric's query for one side: `{release}` and `{service}` filled in, and the
//! samples taken from what the `metrics` capability answers.
//!
//! For Prometheus the values are escaped for a PromQL string literal (`\`, `"` and `'`
//! backslash-escaped), since they are meant to sit inside a matcher's quotes
//! (`release="{release}"`); a release id can then never end the literal and change the
//! query. CloudWatch dimension values are sent as they are: they are values, not syntax.

use deployer_plugin_sdk::hook::metrics::{Datapoint, MetricQuery, PromqlQuery, Series};

use crate::params::{CloudWatch, Params, Source};

/// Replaced with the side's release: the canary's (`new-release`) or the baseline's
/// (`stable-release`).
pub const RELEASE: &str = "{release}";
/// Replaced with the service's name.
pub const SERVICE: &str = "{service}";

/// What a side's query is about.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub release: &'a str,
    pub service: &'a str,
}

/// A query ready for the capability.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    Prometheus(PromqlQuery),
    CloudWatch(MetricQuery),
}

/// The query of `source` for `subject`, over `params.window`.
pub fn build(source: Source<'_>, params: &Params, subject: Subject<'_>) -> Query {
    let window_seconds = seconds(params.window.millis);
    match source {
        Source::Prometheus(text) => Query::Prometheus(PromqlQuery {
            query: render(text, subject, escape_promql),
            window_seconds,
            step_seconds: seconds(params.step.millis),
        }),
        Source::CloudWatch(cloudwatch) => {
            Query::CloudWatch(cloudwatch_query(cloudwatch, window_seconds, subject))
        }
    }
}

fn cloudwatch_query(
    cloudwatch: &CloudWatch,
    window_seconds: u32,
    subject: Subject<'_>,
) -> MetricQuery {
    MetricQuery {
        namespace: cloudwatch.namespace.clone(),
        name: cloudwatch.metric.clone(),
        dimensions: cloudwatch
            .dimensions
            .iter()
            .map(|(name, value)| (name.clone(), render(value, subject, |v| v.to_string())))
            .collect(),
        statistic: cloudwatch.statistic.clone(),
        period_seconds: seconds(cloudwatch.period.millis),
        window_seconds,
    }
}

/// Whole seconds of `millis` (validated to be whole), saturating at `u32::MAX`.
fn seconds(millis: u64) -> u32 {
    u32::try_from(millis / 1000).unwrap_or(u32::MAX)
}

/// `template` with every `{release}` and `{service}` replaced by the subject's value
/// passed through `escape`. One pass: a value that itself contains `{release}` is not
/// replaced again.
pub fn render(template: &str, subject: Subject<'_>, escape: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + subject.release.len());
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix(RELEASE) {
            out.push_str(&escape(subject.release));
            rest = after;
        } else if let Some(after) = tail.strip_prefix(SERVICE) {
            out.push_str(&escape(subject.service));
            rest = after;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// `value` escaped for the inside of a PromQL string literal in `"…"` or `'…'`.
pub fn escape_promql(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Every finite value of every series (NaN and infinities are not measurements).
pub fn samples_of_series(series: &[Series]) -> Vec<f64> {
    series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|p| p.value)
        .filter(|v| v.is_finite())
        .collect()
}

/// Every finite value among `points`.
pub fn samples_of_points(points: &[Datapoint]) -> Vec<f64> {
    points
        .iter()
        .map(|p| p.value)
        .filter(|v| v.is_finite())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: Subject<'static> = Subject {
        release: "web:3",
        service: "web",
    };

    fn params(json: &str) -> Params {
        deployer_plugin_sdk::params::parse(json).unwrap()
    }

    #[test]
    fn placeholders_are_filled_in_once_each() {
        let subject = Subject {
            release: "r{service}",
            service: "s",
        };
        assert_eq!(
            render(
                "a{release}b{service}c{release}{x}{",
                subject,
                str::to_string
            ),
            "ar{service}bscr{service}{x}{"
        );
        assert_eq!(
            render("no placeholders", CANARY, str::to_string),
            "no placeholders"
        );
        assert_eq!(
            render("{releas{release}", CANARY, str::to_string),
            "{releasweb:3"
        );
    }

    #[test]
    fn promql_string_values_are_escaped() {
        assert_eq!(escape_promql(r#"a"b'c\d"#), r#"a\"b\'c\\d"#);
        assert_eq!(escape_promql("web:3"), "web:3");
        let hostile = Subject {
            release: r#"x"} or secret_metric{a=""#,
            service: "web",
        };
        assert_eq!(
            render(r#"up{release="{release}"}"#, hostile, escape_promql),
            r#"up{release="x\"} or secret_metric{a=\""}"#
        );
    }

    #[test]
    fn prometheus_queries_carry_window_and_step() {
        let p = params(
            r#"{"metrics":[{"name":"e","prometheus":"sum(errors{release=\"{release}\",service=\"{service}\"})"}],
                "window":"10m","step":"30s"}"#,
        );
        let query = build(p.metrics[0].source().unwrap(), &p, CANARY);
        assert_eq!(
            query,
            Query::Prometheus(PromqlQuery {
                query: r#"sum(errors{release="web:3",service="web"})"#.into(),
                window_seconds: 600,
                step_seconds: 30,
            })
        );
    }

    #[test]
    fn cloudwatch_dimension_values_are_filled_in_as_they_are() {
        let p = params(
            r#"{"metrics":[{"name":"l","cloudwatch":{"namespace":"App","metric":"Latency",
                "dimensions":{"Release":"{release}","Service":"svc-{service}"},"statistic":"Maximum","period":"30s"}}]}"#,
        );
        let subject = Subject {
            release: r#"we"b:3"#,
            service: "web",
        };
        let Query::CloudWatch(query) = build(p.metrics[0].source().unwrap(), &p, subject) else {
            panic!("not CloudWatch");
        };
        assert_eq!(query.namespace, "App");
        assert_eq!(query.name, "Latency");
        assert_eq!(
            query.dimensions,
            vec![
                ("Release".to_string(), r#"we"b:3"#.to_string()),
                ("Service".to_string(), "svc-web".to_string()),
            ]
        );
        assert_eq!(query.statistic, "Maximum");
        assert_eq!((query.period_seconds, query.window_seconds), (30, 300));
    }

    #[test]
    fn samples_are_the_finite_points_of_every_series() {
        let point = |value| Datapoint {
            timestamp_ms: 0,
            value,
        };
        let series = vec![
            Series {
                labels: vec![("pod".into(), "a".into())],
                points: vec![point(1.0), point(f64::NAN), point(2.0)],
            },
            Series {
                labels: vec![],
                points: vec![point(f64::INFINITY), point(3.0), point(f64::NEG_INFINITY)],
            },
        ];
        assert_eq!(samples_of_series(&series), vec![1.0, 2.0, 3.0]);
        assert_eq!(samples_of_points(&[point(f64::NAN), point(0.5)]), vec![0.5]);
    }
}
