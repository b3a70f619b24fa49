//! Checks of single values, each returning what is wrong and how to fix it. The
//! resolver ([`super::resolve`]) calls them while it builds typed values, so a value is
//! checked exactly where it is turned into the type that needs it.

use std::path::Path;
use std::time::Duration;

use deployer_plugin_host::promql::limits::MAX_STEPS;

use super::schema::GateConfig;

/// `"30s"`, `"5m"`, `"1h30m"`, `"250ms"`: the duration syntax shared with plugins.
///
/// # Errors
/// A message saying what a duration looks like.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    deployer_contract::Duration::parse(text).map(|d| Duration::from_millis(d.millis))
}

/// The shortest a duration setting may be.
#[derive(Clone, Copy, Debug)]
pub struct Floor {
    /// At least this long; with `ZERO`, anything but zero.
    pub min: Duration,
    /// What a shorter one would do.
    pub why: &'static str,
    /// What leaving the setting out gives, when it can be left out.
    pub default: Option<Duration>,
}

impl Floor {
    /// A duration that can be anything but zero.
    pub const fn nonzero(why: &'static str, default: Option<Duration>) -> Floor {
        Floor {
            min: Duration::ZERO,
            why,
            default,
        }
    }

    /// What is wrong with `duration`, written `text`, if anything.
    pub fn problem(&self, text: &str, duration: Duration) -> Option<String> {
        if duration >= self.min && !duration.is_zero() {
            return None;
        }
        let what = if duration.is_zero() {
            "is zero"
        } else {
            "is too short"
        };
        let least = if self.min.is_zero() {
            "a duration above zero".to_string()
        } else {
            format!("at least \"{}\"", contract_duration(self.min))
        };
        let default = self
            .default
            .map(|d| {
                format!(
                    ", or leave it out for the default \"{}\"",
                    contract_duration(d)
                )
            })
            .unwrap_or_default();
        Some(format!(
            "`{text}` {what}: {}\n  fix: use {least}{default}",
            self.why
        ))
    }
}

/// `duration` as config writes it (`"30s"`, `"1h30m"`).
fn contract_duration(duration: Duration) -> deployer_contract::Duration {
    deployer_contract::Duration {
        millis: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
    }
}

/// What is wrong with an AWS endpoint URL (`[aws] endpoint-url`, `AWS_ENDPOINT_URL`),
/// if anything. The SDK panics on an empty one and fails obscurely on one without a
/// host, so both are caught before a client is built.
pub fn endpoint_problem(endpoint: &str) -> Option<String> {
    let fix = "\n  fix: use a URL such as \"https://vpce-0123.s3.eu-west-1.vpce.amazonaws.com\" \
               or \"http://127.0.0.1:5000\", or leave it out for AWS's own endpoints";
    let shown = deployer_engine::redact::printable(endpoint);
    // The URL parser drops tabs and newlines silently; the SDK does not.
    if endpoint.chars().any(char::is_control) {
        return Some(format!(
            "`{shown}` holds a control character (a newline?){fix}"
        ));
    }
    let url = match url::Url::parse(endpoint) {
        Ok(url) => url,
        Err(err) => return Some(format!("`{shown}` is not a URL ({err}){fix}")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!(
            "`{shown}` must start with http:// or https://{fix}"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Some(format!("`{shown}` names no host{fix}"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some(format!(
            "has credentials in it, which would be printed in logs; AWS credentials come \
             from the standard chain{fix}"
        ));
    }
    None
}

/// Whether `region` reads as an AWS region name (`us-east-1`, `us-gov-west-1`,
/// `cn-north-1`, `eu-central-2`): lowercase words joined by `-`, ending in a number.
pub fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && region.len() <= 32
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

/// The largest `desired-count` of an ECS service: Amazon ECS's "Tasks per service"
/// quota, 5,000 and not adjustable (Amazon ECS endpoints and quotas, AWS General
/// Reference). ECS would refuse more when deployer scales the service.
pub const MAX_ECS_DESIRED: u32 = 5_000;

/// The largest `desired-count` of an Auto Scaling group or a Kubernetes Deployment.
/// Neither has a documented limit per group or Deployment (an account's EC2 quotas
/// bound the first; Kubernetes is tested up to 150,000 pods a cluster), so this is
/// deployer's own: beyond any group or Deployment rolled out step by step, and far
/// enough below `u32` and the `i32` the Auto Scaling and Kubernetes APIs take that
/// every count derived from it (both sides at full size, units per percent) is exact.
pub const MAX_DESIRED: u32 = 10_000;

/// What is wrong with a target's `desired-count`, if anything; `max` is the largest its
/// kind of target takes, and `most` says what it is the most of.
pub fn desired_count_problem(count: u32, max: u32, most: &str) -> Option<String> {
    if count == 0 {
        // Nothing could carry a share of traffic or pass a health check: every strategy
        // would fail its first step, after changing things.
        return Some(format!(
            "0 units cannot run a release or carry traffic\n  fix: set the number of units \
             the service runs, from 1 to {max}"
        ));
    }
    (count > max).then(|| {
        format!(
            "{count} is more than {max}, the most {most}\n  fix: set the number of units the service runs, from 1 to {max}"
        )
    })
}

/// Why `rolling` is refused for a Lambda function, wherever it is given one.
pub const LAMBDA_NOT_ROLLING: &str =
    "`rolling` replaces units in batches, and a Lambda function has versions, not units";

/// What to deploy a Lambda function with instead.
pub const LAMBDA_STRATEGIES: &str =
    "canary (`linear = { step = 10, bake = \"1m\" }` for equal steps) or blue-green (all at once)";

/// What is wrong with a Lambda function's name, if anything: Lambda takes 1 to 64 of
/// letters, digits, `-` and `_`, or the function's ARN (without a version or alias:
/// the release names the version).
pub fn lambda_function_problem(function: &str) -> Option<String> {
    let name_ok = |name: &str| {
        (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let ok = match function.strip_prefix("arn:") {
        Some(_) => {
            let parts: Vec<&str> = function.split(':').collect();
            function.len() <= 140
                && parts.len() == 7
                && parts[2] == "lambda"
                && parts[5] == "function"
                && name_ok(parts[6])
        }
        None => name_ok(function),
    };
    (!ok).then(|| {
        format!(
            "`{}` is not a Lambda function name\n  fix: the function's name (1 to 64 letters, \
             digits, - or _) or its ARN, without a version or alias (the release names the \
             version; `alias` names the alias)",
            function.escape_debug()
        )
    })
}

/// What is wrong with a Lambda alias's name, if anything: 1 to 128 letters, digits, `-`
/// and `_`, not all digits (that would be a version).
pub fn lambda_alias_problem(alias: &str) -> Option<String> {
    let ok = (1..=128).contains(&alias.len())
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !alias.bytes().all(|b| b.is_ascii_digit());
    (!ok).then(|| {
        format!(
            "`{}` is not a Lambda alias name\n  fix: the alias production invokes (1 to 128 \
             letters, digits, - or _, not only digits: `live`, `prod`)",
            alias.escape_debug()
        )
    })
}

/// What is wrong with a plugin's `sha256`, if anything.
pub fn digest_problem(sha256: &str, path: &Path) -> Option<String> {
    let digest = sha256.trim().trim_start_matches("sha256:");
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!(
        "`{sha256}` is not a sha256 digest (64 hex digits)\n  fix: run `deployer plugin inspect {}` and copy its sha256",
        path.display()
    ))
}

/// "Set exactly one of" the in-place unit or the pair of a target (`group` / `groups`).
pub fn one_or_pair_problem(one: &str, two: &str) -> String {
    if one == "service" {
        // ECS: one service may be side by side too (task sets on the EXTERNAL controller).
        return format!(
            "set exactly one of {one} (one ECS service: task sets, or in place) or {two} = [blue, green] \
             (two services on the ECS deployment controller, side by side)"
        );
    }
    format!(
        "set exactly one of {one} (rolling in place) or {two} = [blue, green] (blue-green and canary)"
    )
}

/// What is wrong with the two units of a side-by-side target, if anything.
pub fn pair_problem(pair: &[String]) -> Option<&'static str> {
    match pair {
        [a, b] if a != b => None,
        _ => Some("needs exactly two different names (the blue and the green side)"),
    }
}

/// A side-by-side target without a traffic table.
pub fn pair_needs_traffic(two: &str) -> String {
    format!(
        "two sides need a [traffic] table: the listener and the two target groups the {two} sit behind, in the same order"
    )
}

pub const CLUSTER_AND_KUBECONFIG: &str =
    "set at most one of cluster (EKS access with AWS credentials) or kubeconfig";

pub const TARGET_GROUPS: &str =
    "needs exactly two different target group ARNs (the blue and the green side)";

pub const LISTENER_OR_RULE: &str =
    "set exactly one of listener-arn (the listener's default action) or rule-arn (a listener rule)";

/// The metric statistics a gate can judge.
pub const STATISTICS: [&str; 5] = ["Average", "Sum", "Maximum", "Minimum", "SampleCount"];

/// Problems a gate's fields have beyond their types, in the order they are reported.
/// The most HTTP requests one gate run may make: more is a load test, not a gate.
pub const MAX_GATE_REQUESTS: u32 = 10_000;

/// The most consecutive failures a gate may tolerate.
pub const MAX_GATE_FAILURES: u32 = 1_000;

/// The longest any gate duration (latency, interval, period, window) may be.
pub const MAX_GATE_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// What is wrong with a count setting that must be 1 to `max`, if anything.
fn count_problem(key: &str, value: Option<u32>, max: u32) -> Option<String> {
    let value = value?;
    (value == 0 || value > max).then(|| {
        format!("{key} = {value} is out of range: it must be 1 to {max}; or leave it out for the default")
    })
}

pub fn gate_problems(gate: &GateConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let mut durations: Vec<(&str, &Option<String>, Option<Floor>)> = Vec::new();
    let at = match gate {
        GateConfig::Http {
            at,
            max_latency,
            interval,
            min_success,
            url,
            expect_status,
            requests,
            ..
        } => {
            durations.extend([
                (
                    "max-latency",
                    max_latency,
                    Some(Floor::nonzero(
                        "every request would be too slow, failing the gate",
                        None,
                    )),
                ),
                ("interval", interval, None),
            ]);
            if min_success.is_some_and(|r| !(r > 0.0 && r <= 1.0)) {
                problems.push(
                    "min-success is a ratio above 0.0 and at most 1.0 (0.0 would pass with \
                     every request failing); e.g. min-success = 0.95"
                        .to_string(),
                );
            }
            if expect_status.is_some_and(|s| !(100..=599).contains(&s)) {
                problems.push(format!(
                    "expect-status {} is not an HTTP status code (100 to 599); e.g. \
                     expect-status = 200",
                    expect_status.unwrap_or_default()
                ));
            }
            if let Some(problem) = count_problem("requests", *requests, MAX_GATE_REQUESTS) {
                problems.push(problem);
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!("url `{url}` must start with http:// or https://"));
            }
            at
        }
        GateConfig::Alarm { at, alarms, .. } => {
            if alarms.is_empty() {
                problems.push("alarms lists no alarm names".to_string());
            }
            if alarms.iter().any(|a| a.trim().is_empty()) {
                problems.push("alarms lists an empty alarm name".to_string());
            }
            at
        }
        GateConfig::Metric {
            at,
            period,
            window,
            max,
            min,
            statistic,
            namespace,
            metric,
            ..
        } => {
            durations.extend([
                (
                    "period",
                    period,
                    Some(Floor {
                        min: Duration::from_secs(1),
                        why: "CloudWatch aggregates over periods of whole seconds, at least one",
                        default: Some(Duration::from_secs(60)),
                    }),
                ),
                (
                    "window",
                    window,
                    Some(Floor::nonzero(
                        "the gate would look at no data points at all",
                        Some(Duration::from_secs(300)),
                    )),
                ),
            ]);
            bound_problems(*max, *min, &mut problems);
            for (key, value) in [("namespace", namespace), ("metric", metric)] {
                if value.trim().is_empty() {
                    problems.push(format!(
                        "{key} is empty; e.g. namespace = \"AWS/ApplicationELB\""
                    ));
                }
            }
            if let Some(stat) = statistic
                && !STATISTICS.contains(&stat.as_str())
            {
                problems.push(format!(
                    "statistic `{stat}` is not one of Average, Sum, Maximum, Minimum, SampleCount"
                ));
            }
            at
        }
        GateConfig::Alb {
            at,
            max_5xx_percent,
            relative_to_stable,
            min_requests,
            max_response_time,
            min_healthy_hosts,
            period,
            window,
            ..
        } => {
            durations.extend([
                (
                    "max-response-time",
                    max_response_time,
                    Some(Floor::nonzero(
                        "every response would be too slow, failing the gate",
                        None,
                    )),
                ),
                (
                    "period",
                    period,
                    Some(Floor {
                        min: Duration::from_secs(60),
                        why: "load balancers publish their metrics per minute",
                        default: Some(Duration::from_secs(60)),
                    }),
                ),
                (
                    "window",
                    window,
                    Some(Floor {
                        min: Duration::from_secs(60),
                        why: "the gate would look at less than one minute's datapoint",
                        default: Some(Duration::from_secs(300)),
                    }),
                ),
            ]);
            if max_5xx_percent.is_none()
                && relative_to_stable.is_none()
                && max_response_time.is_none()
                && min_healthy_hosts.is_none()
            {
                problems.push(
                    "checks nothing: set at least one of max-5xx-percent, relative-to-stable, \
                     max-response-time, min-healthy-hosts; e.g. max-5xx-percent = 5.0"
                        .to_string(),
                );
            }
            for (key, value) in [
                ("max-5xx-percent", max_5xx_percent),
                ("relative-to-stable", relative_to_stable),
            ] {
                if value.is_some_and(|v| !(v.is_finite() && (0.0..=100.0).contains(&v))) {
                    problems.push(format!(
                        "{key} = {} is out of range: it is a percentage, a finite number from \
                         0.0 to 100.0; e.g. {key} = 5.0",
                        value.unwrap_or_default()
                    ));
                }
            }
            if let Some(problem) = count_problem("min-requests", *min_requests, 1_000_000_000) {
                problems.push(problem);
            }
            if let Some(problem) =
                count_problem("min-healthy-hosts", *min_healthy_hosts, MAX_DESIRED)
            {
                problems.push(problem);
            }
            if let Some(text) = period
                && let Ok(period) = parse_duration(text)
                // Shorter ones are refused by the floor above, with its own message.
                && period >= Duration::from_secs(60)
                && period.as_millis() % 60_000 != 0
            {
                problems.push(format!(
                    "period: `{text}` is not whole minutes: load balancers publish their \
                     metrics per minute\n  fix: use \"60s\", \"2m\", …"
                ));
            }
            at
        }
        GateConfig::Prometheus {
            at,
            query,
            window,
            step,
            max,
            min,
            ..
        } => {
            durations.extend([
                (
                    "window",
                    window,
                    Some(Floor {
                        min: Duration::from_secs(1),
                        why: "a range query needs a window of at least one step",
                        default: None,
                    }),
                ),
                (
                    "step",
                    step,
                    Some(Floor {
                        min: Duration::from_secs(1),
                        why: "one point per second is as fine as a gate needs (and Prometheus \
                              scrapes far less often)",
                        default: None,
                    }),
                ),
            ]);
            if let (Some(Ok(window)), Some(Ok(step))) = (
                window.as_deref().map(parse_duration),
                step.as_deref().map(parse_duration),
            ) {
                if step > window {
                    problems.push(
                        "step is longer than window: the window would hold at most one point\n  \
                         fix: a step shorter than the window (e.g. window = \"5m\", step = \"10s\")"
                            .to_string(),
                    );
                }
                let points = window.as_millis() / step.as_millis().max(1);
                if !step.is_zero() && points > u128::from(MAX_STEPS) {
                    problems.push(format!(
                        "window / step is {points} points; Prometheus answers at most \
                         {MAX_STEPS} per series\n  fix: use a longer step"
                    ));
                }
            }
            if step.is_some() && window.is_none() {
                problems.push(
                    "step without window: a step is the spacing of points within a window\n  \
                     fix: add window = \"5m\", or remove step to judge the value now"
                        .to_string(),
                );
            }
            bound_problems(*max, *min, &mut problems);
            if let Some(why) = promql_problem(query) {
                problems.push(why);
            }
            at
        }
    };
    if at.is_empty() {
        problems.push("at lists no lifecycle point; e.g. at = [\"post-traffic\"]".to_string());
    }
    let failures = match gate {
        GateConfig::Http { failures, .. }
        | GateConfig::Alarm { failures, .. }
        | GateConfig::Metric { failures, .. }
        | GateConfig::Alb { failures, .. }
        | GateConfig::Prometheus { failures, .. } => *failures,
    };
    if let Some(problem) = count_problem("failures", failures, MAX_GATE_FAILURES) {
        problems.push(problem);
    }
    for (key, text, floor) in durations {
        let Some(text) = text else { continue };
        match parse_duration(text) {
            Err(message) => problems.push(format!("{key}: {message}")),
            Ok(duration) => {
                if let Some(floor) = floor
                    && let Some(message) = floor.problem(text, duration)
                {
                    problems.push(format!("{key}: {message}"));
                } else if duration > MAX_GATE_DURATION {
                    problems.push(format!(
                        "{key}: `{text}` is longer than a day, longer than a run may last by \
                         default (max-duration); use a shorter one"
                    ));
                }
            }
        }
    }
    problems
}

/// Exactly one of `max` and `min`, a finite number.
fn bound_problems(max: Option<f64>, min: Option<f64>, problems: &mut Vec<String>) {
    if max.is_some() == min.is_some() {
        problems.push("set exactly one of max or min".to_string());
    }
    for (key, bound) in [("max", max), ("min", min)] {
        if bound.is_some_and(|b| !b.is_finite()) {
            problems.push(format!(
                "{key} is not a finite number (NaN and infinities compare with nothing); e.g. \
                 {key} = 5.0"
            ));
        }
    }
}

/// Why `query` (placeholders rendered with example values) is not PromQL, if it is not.
fn promql_problem(query: &str) -> Option<String> {
    use deployer_targets::gates::placeholders::{
        Syntax, Template, Values, promql_escape, promql_raw_placeholder,
    };
    if query.trim().is_empty() {
        return Some(
            "query is empty; e.g. query = 'sum(rate(http_requests_total{code=~\"5..\"}[1m]))'"
                .into(),
        );
    }
    if let Some(placeholder) = promql_raw_placeholder(query) {
        return Some(format!(
            "query: placeholder `{{{}}}` is inside a backtick string, where PromQL has no \
             escapes (a value holding a backtick would end it)\n  fix: put it in \"…\" or '…'",
            placeholder.name()
        ));
    }
    let rendered = Template::parse_as(Syntax::PromQl, query)
        .ok()?
        .render(&Values::example(), promql_escape)
        .ok()?;
    promql_parser::parser::parse(&rendered)
        .err()
        .map(|why| format!("query is not PromQL: {}", why.trim()))
}

/// Why a `prometheus-metrics` entry cannot grant anything, if it cannot: a metric name
/// (`http_requests_total`) or a prefix of one followed by `*` (`http_*`).
pub fn prometheus_grant_problem(entry: &str) -> Option<String> {
    let name = entry.strip_suffix('*').unwrap_or(entry);
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    (!valid).then(|| {
        format!(
            "`{}` is not a metric name or a prefix followed by `*`; e.g. \"http_requests_total\" \
             or \"http_request_duration_*\" (a plugin reads only the metrics named here)",
            deployer_engine::redact::printable(entry)
        )
    })
}

/// Problems with a gate's placeholders, as (sub-field, message): unknown names, stray
/// braces, and side placeholders (or an ALB gate) on service `service`, which has no
/// traffic table when `sides` is false.
pub fn placeholder_problems(
    gate: &GateConfig,
    service: &str,
    sides: bool,
) -> Vec<(String, String)> {
    use deployer_targets::gates::placeholders::{self, Placeholder, Syntax, Template};
    let no_sides = || {
        format!(
            "service `{service}` has no [services.{service}.traffic] table: it is updated in place, \
             with no new and stable side"
        )
    };
    let mut syntax = Syntax::Setting;
    let templated: Vec<(String, &str)> = match gate {
        GateConfig::Prometheus { query, .. } => {
            syntax = Syntax::PromQl;
            vec![("query".into(), query.as_str())]
        }
        GateConfig::Http { url, .. } => vec![("url".into(), url.as_str())],
        GateConfig::Alarm { alarms, .. } => alarms
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("alarms[{i}]"), a.as_str()))
            .collect(),
        GateConfig::Metric { dimensions, .. } => dimensions
            .iter()
            .map(|(k, v)| (format!("dimensions.{k}"), v.as_str()))
            .collect(),
        GateConfig::Alb { .. } => {
            if sides {
                return Vec::new();
            }
            return vec![(
                "kind".into(),
                format!(
                    "kind = \"alb\" watches the new side's target group, but {}\n  fix: configure \
                     the traffic table, or use kind = \"metric\" with the target group's dimensions",
                    no_sides()
                ),
            )];
        }
    };
    let mut problems = Vec::new();
    for (field, text) in templated {
        match Template::parse_as(syntax, text) {
            Err(message) => problems.push((field, message)),
            Ok(template) if !sides => {
                if let Some(side) = template.placeholders().find(|p| p.needs_sides()) {
                    let usable: Vec<String> = placeholders::PLACEHOLDERS
                        .iter()
                        .filter(|(p, ..)| !p.needs_sides())
                        .map(|(p, ..)| format!("{{{}}}", Placeholder::name(*p)))
                        .collect();
                    problems.push((
                        field,
                        format!(
                            "`{text}`: placeholder `{{{}}}` names a side's target group, but {}\n  \
                             fix: write the name itself; without a traffic table only {} can be used",
                            side.name(),
                            no_sides(),
                            usable.join(", ")
                        ),
                    ));
                }
            }
            Ok(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_refuses_zero_and_shorter_durations_saying_what_to_write() {
        let nonzero = Floor::nonzero("it would break", Some(Duration::from_secs(600)));
        assert_eq!(
            nonzero.problem("0s", Duration::ZERO).unwrap(),
            "`0s` is zero: it would break\n  fix: use a duration above zero, or leave it out for the default \"10m\""
        );
        assert_eq!(nonzero.problem("1ms", Duration::from_millis(1)), None);
        let second = Floor {
            min: Duration::from_secs(1),
            why: "too often",
            default: None,
        };
        assert_eq!(
            second.problem("999ms", Duration::from_millis(999)).unwrap(),
            "`999ms` is too short: too often\n  fix: use at least \"1s\""
        );
        assert!(
            second
                .problem("0ms", Duration::ZERO)
                .unwrap()
                .contains("is zero")
        );
        assert_eq!(second.problem("1s", Duration::from_secs(1)), None);
    }

    #[test]
    fn desired_counts_above_the_limit_are_refused() {
        assert!(desired_count_problem(0, MAX_ECS_DESIRED, "ECS").is_some());
        assert_eq!(desired_count_problem(1, MAX_ECS_DESIRED, "ECS"), None);
        assert_eq!(desired_count_problem(5_000, MAX_ECS_DESIRED, "ECS"), None);
        let message = desired_count_problem(5_001, MAX_ECS_DESIRED, "ECS runs").unwrap();
        assert!(
            message.starts_with("5001 is more than 5000, the most ECS runs"),
            "{message}"
        );
        assert!(message.contains("fix: "), "{message}");
        assert!(desired_count_problem(u32::MAX, MAX_DESIRED, "a group").is_some());
    }

    #[test]
    fn gate_durations_that_cannot_be_zero_are_refused_by_name() {
        let metric: GateConfig = toml::from_str(
            r#"
            kind = "metric"
            at = ["bake"]
            namespace = "AWS/ApplicationELB"
            metric = "HTTPCode_Target_5XX_Count"
            max = 1.0
            period = "500ms"
            window = "0s"
            "#,
        )
        .unwrap();
        let found = gate_problems(&metric);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("period: `500ms` is too short"),
            "{found:?}"
        );
        assert!(found[0].contains("fix: use at least \"1s\""), "{found:?}");
        assert!(found[1].starts_with("window: `0s` is zero"), "{found:?}");

        let http: GateConfig = toml::from_str(
            r#"
            kind = "http"
            at = ["post-traffic"]
            url = "http://localhost/health"
            max-latency = "0ms"
            interval = "0s"
            "#,
        )
        .unwrap();
        let found = gate_problems(&http);
        assert_eq!(found.len(), 1, "a zero interval is fine: {found:?}");
        assert!(
            found[0].starts_with("max-latency: `0ms` is zero"),
            "{found:?}"
        );
    }

    #[test]
    fn alb_gate_values_are_checked_with_their_ranges() {
        let alb = |keys: &str| -> Vec<String> {
            let gate: GateConfig =
                toml::from_str(&format!("kind = \"alb\"\nat = [\"bake\"]\n{keys}")).unwrap();
            gate_problems(&gate)
        };
        assert!(alb("max-5xx-percent = 5.0").is_empty());
        assert!(alb("relative-to-stable = 0.0\nperiod = \"2m\"\nwindow = \"1m\"").is_empty());
        let found = alb("");
        assert!(
            found[0].starts_with("checks nothing: set at least one of max-5xx-percent"),
            "{found:?}"
        );
        for (keys, says) in [
            (
                "max-5xx-percent = 100.5",
                "max-5xx-percent = 100.5 is out of range",
            ),
            (
                "max-5xx-percent = -1.0",
                "max-5xx-percent = -1 is out of range",
            ),
            (
                "relative-to-stable = nan",
                "relative-to-stable = NaN is out of range",
            ),
            (
                "max-5xx-percent = 5.0\nmin-requests = 0",
                "min-requests = 0 is out of range: it must be 1 to 1000000000",
            ),
            (
                "min-healthy-hosts = 10001",
                "min-healthy-hosts = 10001 is out of range: it must be 1 to 10000",
            ),
            (
                "max-5xx-percent = 5.0\nperiod = \"90s\"",
                "period: `90s` is not whole minutes",
            ),
            (
                "max-5xx-percent = 5.0\nperiod = \"30s\"",
                "period: `30s` is too short",
            ),
            (
                "max-response-time = \"0s\"",
                "max-response-time: `0s` is zero",
            ),
        ] {
            let found = alb(keys);
            assert_eq!(found.len(), 1, "{keys}: {found:?}");
            assert!(found[0].starts_with(says), "{keys}: {found:?}");
        }
    }
}
