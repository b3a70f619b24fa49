//! Checks of single values, each returning what is wrong and how to fix it. The
//! resolver ([`super::resolve`]) calls them while it builds typed values, so a value is
//! checked exactly where it is turned into the type that needs it.

use std::path::Path;
use std::time::Duration;

use super::schema::GateConfig;

/// `"30s"`, `"5m"`, `"1h30m"`, `"250ms"`: the duration syntax shared with plugins.
///
/// # Errors
/// A message saying what a duration looks like.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    deployer_contract::Duration::parse(text).map(|d| Duration::from_millis(d.millis))
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
pub fn gate_problems(gate: &GateConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let mut durations = Vec::new();
    let at = match gate {
        GateConfig::Http {
            at,
            max_latency,
            interval,
            min_success,
            url,
            ..
        } => {
            durations.extend([max_latency, interval]);
            if min_success.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                problems.push("min-success is a ratio from 0.0 to 1.0".to_string());
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
            at
        }
        GateConfig::Metric {
            at,
            period,
            window,
            max,
            min,
            statistic,
            ..
        } => {
            durations.extend([period, window]);
            if max.is_some() == min.is_some() {
                problems.push("set exactly one of max or min".to_string());
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
    };
    if at.is_empty() {
        problems.push("at lists no lifecycle point; e.g. at = [\"post-traffic\"]".to_string());
    }
    for text in durations.into_iter().flatten() {
        if let Err(message) = parse_duration(text) {
            problems.push(message);
        }
    }
    problems
}
