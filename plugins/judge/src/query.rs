//! One metric's query for one side: `{release}` and `{service}` filled in, and the
//! samples taken from what the `metrics` capability answers.
//!
//! In PromQL a placeholder sits inside a string literal (`release="{release}"`), and the
//! value is escaped for that literal: `\` and the literal's own quote backslash-escaped
//! (and control characters written as escapes), so a release id can never end the
//! literal and change the query. Only the literal's own quote: Prometheus refuses `\'`
//! inside `"…"` and `\"` inside `'…'` ("unknown escape sequence"). A placeholder outside
//! a quoted literal, or in a `` `raw` `` one that cannot escape anything, is refused by
//! `validate` ([`promql_placeholders`]). CloudWatch dimension values are sent as they
//! are: they are values, not syntax.

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
            query: render_promql(text, subject),
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
            .map(|(name, value)| (name.clone(), render(value, subject)))
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

/// A placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    Release,
    Service,
}

impl Placeholder {
    fn value<'a>(self, subject: Subject<'a>) -> &'a str {
        match self {
            Placeholder::Release => subject.release,
            Placeholder::Service => subject.service,
        }
    }
}

/// A piece of a template: text as written, or a placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Placeholder(Placeholder),
}

/// `template` cut into text and placeholders, left to right.
fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let (mut rest, mut text_from) = (template, 0);
    let mut offset = 0;
    while let Some(at) = rest.find('{') {
        let tail = &rest[at..];
        let found = [
            (RELEASE, Placeholder::Release),
            (SERVICE, Placeholder::Service),
        ]
        .into_iter()
        .find(|(token, _)| tail.starts_with(token));
        let skip = match found {
            Some((token, which)) => {
                if text_from < offset + at {
                    out.push(Piece::Text(&template[text_from..offset + at]));
                }
                out.push(Piece::Placeholder(which));
                text_from = offset + at + token.len();
                at + token.len()
            }
            None => at + 1,
        };
        rest = &rest[skip..];
        offset += skip;
    }
    if text_from < template.len() {
        out.push(Piece::Text(&template[text_from..]));
    }
    out
}

/// `template` with every `{release}` and `{service}` replaced by the subject's value as
/// it is. One pass: a value that itself contains `{release}` is not replaced again.
pub fn render(template: &str, subject: Subject<'_>) -> String {
    let mut out = String::with_capacity(template.len() + subject.release.len());
    for piece in pieces(template) {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Placeholder(which) => out.push_str(which.value(subject)),
        }
    }
    out
}

/// Where a placeholder sits in a PromQL query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quoting {
    /// Inside a `"…"` or `'…'` literal, with that quote.
    Quoted(char),
    /// Inside a `` `…` `` literal, which has no escapes.
    Raw,
    /// Not inside a string literal.
    Unquoted,
}

/// What a PromQL lexer is inside of, as far as strings go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lexing {
    Code,
    Comment,
    String { quote: char, escaped: bool },
}

impl Lexing {
    fn after(mut self, text: &str) -> Lexing {
        for c in text.chars() {
            self = match self {
                Lexing::Code if matches!(c, '"' | '\'' | '`') => Lexing::String {
                    quote: c,
                    escaped: false,
                },
                Lexing::Code if c == '#' => Lexing::Comment,
                Lexing::Comment if c == '\n' => Lexing::Code,
                Lexing::String {
                    quote,
                    escaped: false,
                } if c == '\\' && quote != '`' => Lexing::String {
                    quote,
                    escaped: true,
                },
                Lexing::String {
                    quote,
                    escaped: false,
                } if c == quote => Lexing::Code,
                Lexing::String { quote, .. } => Lexing::String {
                    quote,
                    escaped: false,
                },
                other => other,
            };
        }
        self
    }

    fn quoting(self) -> Quoting {
        match self {
            Lexing::String { quote: '`', .. } => Quoting::Raw,
            Lexing::String { quote, .. } => Quoting::Quoted(quote),
            Lexing::Code | Lexing::Comment => Quoting::Unquoted,
        }
    }
}

/// Every placeholder of a PromQL `template`, with where it sits.
pub fn promql_placeholders(template: &str) -> Vec<(Placeholder, Quoting)> {
    let mut lexing = Lexing::Code;
    let mut out = Vec::new();
    for piece in pieces(template) {
        match piece {
            Piece::Text(text) => lexing = lexing.after(text),
            Piece::Placeholder(which) => out.push((which, lexing.quoting())),
        }
    }
    out
}

/// A PromQL `template` with the subject's values filled in, each escaped for the string
/// literal around it.
pub fn render_promql(template: &str, subject: Subject<'_>) -> String {
    let mut lexing = Lexing::Code;
    let mut out = String::with_capacity(template.len() + subject.release.len());
    for piece in pieces(template) {
        match piece {
            Piece::Text(text) => {
                out.push_str(text);
                lexing = lexing.after(text);
            }
            Piece::Placeholder(which) => {
                let value = which.value(subject);
                match lexing.quoting() {
                    Quoting::Quoted(quote) => out.push_str(&escape_promql(value, quote)),
                    // `validate` refuses these; were one to get here, the value goes in
                    // as it is and the host's PromQL check judges the result.
                    Quoting::Raw | Quoting::Unquoted => out.push_str(value),
                }
            }
        }
    }
    out
}

/// `value` escaped for the inside of a PromQL string literal quoted with `quote`.
pub fn escape_promql(value: &str, quote: char) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
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
            render("a{release}b{service}c{release}{x}{", subject),
            "ar{service}bscr{service}{x}{"
        );
        assert_eq!(render("no placeholders", CANARY), "no placeholders");
        assert_eq!(render("{releas{release}", CANARY), "{releasweb:3");
        assert_eq!(render("", CANARY), "");
        assert_eq!(render("{service}", CANARY), "web");
    }

    #[test]
    fn promql_values_are_escaped_for_the_literal_around_them() {
        assert_eq!(escape_promql(r#"a"b'c\d"#, '"'), r#"a\"b'c\\d"#);
        assert_eq!(escape_promql(r#"a"b'c\d"#, '\''), r#"a"b\'c\\d"#);
        assert_eq!(escape_promql("a\nb\u{1}", '"'), r"a\nb\u0001");
        assert_eq!(escape_promql("web:3", '"'), "web:3");
        let hostile = Subject {
            release: r#"x"} or secret_metric{a=""#,
            service: "it's",
        };
        assert_eq!(
            render_promql(r#"up{release="{release}", s='{service}'}"#, hostile),
            r#"up{release="x\"} or secret_metric{a=\"", s='it\'s'}"#
        );
        // Quotes and escapes written in the template itself are followed.
        assert_eq!(
            render_promql(r#"up{a="\"{", b="{release}"} # "{service}"#, hostile),
            r#"up{a="\"{", b="x\"} or secret_metric{a=\""} # "it's"#
        );
    }

    #[test]
    fn placeholders_are_located_inside_or_outside_literals() {
        use Placeholder::{Release, Service};
        assert_eq!(
            promql_placeholders(r#"up{r="{release}", s='x{service}'}"#),
            [
                (Release, Quoting::Quoted('"')),
                (Service, Quoting::Quoted('\''))
            ]
        );
        assert_eq!(
            promql_placeholders(
                "up{r=`{release}`} + {service} # \"\n+ up{a=\"\\\\\", b=\"{release}\"}"
            ),
            [
                (Release, Quoting::Raw),
                (Service, Quoting::Unquoted),
                (Release, Quoting::Quoted('"')),
            ]
        );
        assert_eq!(promql_placeholders("up"), []);
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
