//! The `prometheus-metrics` grant: which PromQL a hook may send, and how much of the
//! answer it may get back.
//!
//! The check reads the query with a real PromQL parser, walks every series selector in
//! it and holds each to the grant. What the host then sends is not the hook's text but
//! the parsed query printed back: Prometheus runs exactly the expression that was
//! checked, so a query the parser and the server would read differently (the way a URL
//! once escaped the HTTP allow-list) cannot reach the server. Anything the check cannot
//! be sure of is refused: a selector without a fixed metric name, a `__name__` matched
//! by anything but `=`, `or` between matcher sets, and Prometheus's experimental
//! functions (`info()` reads `target_info` series the query never names).

use promql_parser::label::{METRIC_NAME, MatchOp};
use promql_parser::parser::{self, Expr, VectorSelector};

use crate::bindings::metrics::{PromqlQuery, Series};
use crate::bindings::types::CapabilityError;

/// Limits of one query and its answer.
pub mod limits {
    /// Bytes of PromQL.
    pub const MAX_QUERY_BYTES: usize = 8 << 10;
    /// Series in one answer.
    pub const MAX_SERIES: usize = 1000;
    /// Points in one answer, all series together (enough for a judge comparing 100k
    /// samples a side; Prometheus itself answers at most 11,000 points per series).
    pub const MAX_POINTS: usize = 250_000;
    /// Label pairs of one series.
    pub const MAX_LABELS: usize = 64;
    /// The longest window: 31 days.
    pub const MAX_WINDOW_SECONDS: u32 = 31 * 86_400;
    /// Points per series a range query may ask for (Prometheus refuses more than 11,000).
    pub const MAX_STEPS: u32 = 11_000;
}

/// `query` held to `grant`: the query to send (the checked expression, printed), or why
/// not.
///
/// # Errors
/// `denied` for a selector the grant does not cover, `invalid` for a query that does
/// not parse or a window and step out of range, `limit` for an oversized query.
pub fn check(grant: &[String], query: &PromqlQuery) -> Result<PromqlQuery, CapabilityError> {
    if grant.is_empty() {
        return Err(CapabilityError::Denied(
            "this plugin may not query Prometheus; add `prometheus-metrics = [\"METRIC\"]` to \
             its config"
                .into(),
        ));
    }
    if query.query.len() > limits::MAX_QUERY_BYTES {
        return Err(CapabilityError::Limit(format!(
            "a PromQL query is at most {} bytes",
            limits::MAX_QUERY_BYTES
        )));
    }
    check_range(query)?;
    let expr = parser::parse(&query.query)
        .map_err(|e| CapabilityError::Invalid(format!("the query is not PromQL: {e}")))?;
    let mut selectors = Vec::new();
    walk(&expr, &mut selectors)?;
    for selector in &selectors {
        let names = metric_names(selector)?;
        for name in names {
            if !granted(grant, name) {
                return Err(CapabilityError::Denied(format!(
                    "metric `{name}` is not in this plugin's prometheus-metrics"
                )));
            }
        }
    }
    Ok(PromqlQuery {
        query: expr.to_string(),
        ..query.clone()
    })
}

fn check_range(query: &PromqlQuery) -> Result<(), CapabilityError> {
    if query.window_seconds == 0 {
        return Ok(());
    }
    if query.window_seconds > limits::MAX_WINDOW_SECONDS {
        return Err(CapabilityError::Invalid(format!(
            "window-seconds is at most {} (31 days)",
            limits::MAX_WINDOW_SECONDS
        )));
    }
    if query.step_seconds == 0 {
        return Err(CapabilityError::Invalid(
            "a range query (window-seconds above 0) needs step-seconds of at least 1".into(),
        ));
    }
    if query.window_seconds / query.step_seconds > limits::MAX_STEPS {
        return Err(CapabilityError::Limit(format!(
            "window-seconds / step-seconds is at most {} points per series",
            limits::MAX_STEPS
        )));
    }
    Ok(())
}

/// Every series selector in `expr`, refusing what the check cannot vouch for.
fn walk<'a>(expr: &'a Expr, out: &mut Vec<&'a VectorSelector>) -> Result<(), CapabilityError> {
    match expr {
        Expr::Aggregate(e) => {
            walk(&e.expr, out)?;
            if let Some(param) = &e.param {
                walk(param, out)?;
            }
        }
        Expr::Unary(e) => walk(&e.expr, out)?,
        Expr::Binary(e) => {
            walk(&e.lhs, out)?;
            walk(&e.rhs, out)?;
        }
        Expr::Paren(e) => walk(&e.expr, out)?,
        Expr::Subquery(e) => walk(&e.expr, out)?,
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Call(call) => {
            if call.func.experimental {
                return Err(CapabilityError::Denied(format!(
                    "`{}()` is an experimental Prometheus function, which a plugin may not use",
                    call.func.name
                )));
            }
            for arg in &call.args.args {
                walk(arg, out)?;
            }
        }
        Expr::Extension(_) => {
            return Err(CapabilityError::Invalid(
                "the query holds an expression Prometheus does not know".into(),
            ));
        }
    }
    Ok(())
}

/// The metric names `selector` selects: at least one, each fixed.
fn metric_names(selector: &VectorSelector) -> Result<Vec<&str>, CapabilityError> {
    let shown = || selector.to_string();
    if !selector.matchers.or_matchers.is_empty() {
        return Err(CapabilityError::Denied(format!(
            "`{}`: `or` between label matchers is not allowed in a plugin's query",
            shown()
        )));
    }
    let mut names: Vec<&str> = selector.name.as_deref().into_iter().collect();
    for matcher in &selector.matchers.matchers {
        if matcher.name != METRIC_NAME {
            continue;
        }
        match matcher.op {
            MatchOp::Equal => names.push(&matcher.value),
            _ => {
                return Err(CapabilityError::Denied(format!(
                    "`{}`: a plugin's query names its metrics exactly (`__name__` only with `=`)",
                    shown()
                )));
            }
        }
    }
    if names.is_empty() {
        return Err(CapabilityError::Denied(format!(
            "`{}` selects no particular metric; a plugin's query names each metric it reads",
            shown()
        )));
    }
    Ok(names)
}

/// Whether `name` is in `grant`: an exact entry, or an entry `prefix*` it starts with.
pub fn granted(grant: &[String], name: &str) -> bool {
    grant.iter().any(|entry| match entry.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => entry == name,
    })
}

/// An answer within [`limits`], or the limit it broke (a source should stop reading
/// long before; this holds whichever source answered to the same bounds).
///
/// # Errors
/// `limit`, naming the bound.
pub fn within_limits(series: Vec<Series>) -> Result<Vec<Series>, CapabilityError> {
    if series.len() > limits::MAX_SERIES {
        return Err(CapabilityError::Limit(format!(
            "the answer has {} series; at most {} are handed to a plugin",
            series.len(),
            limits::MAX_SERIES
        )));
    }
    let points: usize = series.iter().map(|s| s.points.len()).sum();
    if points > limits::MAX_POINTS {
        return Err(CapabilityError::Limit(format!(
            "the answer has {points} points; at most {} are handed to a plugin",
            limits::MAX_POINTS
        )));
    }
    if series.iter().any(|s| s.labels.len() > limits::MAX_LABELS) {
        return Err(CapabilityError::Limit(format!(
            "a series has more than {} labels",
            limits::MAX_LABELS
        )));
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> PromqlQuery {
        PromqlQuery {
            query: text.into(),
            window_seconds: 0,
            step_seconds: 0,
        }
    }

    fn grant() -> Vec<String> {
        vec![
            "http_requests_total".into(),
            "http_request_duration_*".into(),
        ]
    }

    fn denied(text: &str) -> String {
        match check(&grant(), &query(text)) {
            Err(CapabilityError::Denied(why)) => why,
            other => panic!("`{text}` was not denied: {other:?}"),
        }
    }

    #[test]
    fn granted_metrics_pass_and_are_sent_as_parsed() {
        let checked = check(
            &grant(),
            &query(
                r#"sum(rate(http_requests_total{code=~"5..", release="a\"b"}[1m])) / sum(rate(http_requests_total[1m]))"#,
            ),
        )
        .unwrap();
        // What is sent parses back to the same expression.
        let again = parser::parse(&checked.query).unwrap();
        assert_eq!(again.to_string(), checked.query);
        assert!(
            checked.query.contains("http_requests_total"),
            "{}",
            checked.query
        );
        check(
            &grant(),
            &query("histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"),
        )
        .unwrap();
        check(&grant(), &query(r#"{__name__="http_requests_total"}"#)).unwrap();
    }

    #[test]
    fn selectors_outside_the_grant_are_denied_wherever_they_hide() {
        for text in [
            "up",
            "http_requests_total + on() group_left up",
            "sum(rate(http_requests_total[1m])) / scalar(sum(node_cpu_seconds_total))",
            "max_over_time((process_open_fds)[5m:30s])",
            "topk(scalar(count(secret_metric)), http_requests_total)",
            r#"label_replace(secret_metric, "a", "$1", "b", "(.*)")"#,
            "-http_requests_totalx",
            "http_requests_total unless http_requests_totally_secret",
        ] {
            let why = denied(text);
            assert!(
                why.contains("is not in this plugin's prometheus-metrics"),
                "{text}: {why}"
            );
        }
    }

    #[test]
    fn selectors_without_a_fixed_name_are_denied() {
        for text in [
            r#"{__name__=~"http_requests_total|secret_metric"}"#,
            r#"{__name__=~".+"}"#,
            r#"{job="api"}"#,
        ] {
            denied(text);
        }
    }

    #[test]
    fn selectors_prometheus_itself_would_refuse_are_refused_before_it() {
        for text in [
            r#"http_requests_total{__name__="secret_metric"}"#,
            r#"{__name__!="x"}"#,
            r#"http_requests_total{__name__=~".*"}"#,
        ] {
            assert!(
                matches!(
                    check(&grant(), &query(text)),
                    Err(CapabilityError::Invalid(_))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn experimental_functions_are_denied() {
        let why = denied(r#"info(http_requests_total, {k8s_cluster_name=~".+"})"#);
        assert!(why.contains("experimental"), "{why}");
    }

    #[test]
    fn a_missing_grant_bad_syntax_and_ranges_are_refused() {
        assert!(matches!(
            check(&[], &query("http_requests_total")),
            Err(CapabilityError::Denied(_))
        ));
        assert!(matches!(
            check(&grant(), &query("http_requests_total{")),
            Err(CapabilityError::Invalid(_))
        ));
        let mut q = query("http_requests_total");
        q.window_seconds = 600;
        assert!(matches!(
            check(&grant(), &q),
            Err(CapabilityError::Invalid(_))
        ));
        q.step_seconds = 0;
        q.window_seconds = limits::MAX_WINDOW_SECONDS + 1;
        assert!(matches!(
            check(&grant(), &q),
            Err(CapabilityError::Invalid(_))
        ));
        q.window_seconds = 86_400;
        q.step_seconds = 1;
        assert!(matches!(
            check(&grant(), &q),
            Err(CapabilityError::Limit(_))
        ));
        let long = format!("http_requests_total{{a=\"{}\"}}", "x".repeat(9000));
        assert!(matches!(
            check(&grant(), &query(&long)),
            Err(CapabilityError::Limit(_))
        ));
    }

    #[test]
    fn prefix_entries_match_prefixes_only() {
        let grant = grant();
        assert!(granted(&grant, "http_request_duration_seconds_bucket"));
        assert!(!granted(&grant, "http_request_duration"));
        assert!(!granted(&grant, "xhttp_requests_total"));
        assert!(!granted(&grant, "http_requests_total_x"));
    }
}
