//! The gate's detail in words: one line per metric with its figures, e.g.
//! `error-rate: canary mean 0.21 vs baseline 0.02 (+950%, p=3e-9, 60/60 samples): worse
//! than allowed (at most +0.01)`.

use deployer_plugin_sdk::CapabilityError;

use crate::judge::{Comparison, Outcome, Side, Verdict};
use crate::params::{Direction, Metric};
use crate::query::Subject;

/// What came of `metric` (the `index`th), in one line.
pub fn line(
    index: usize,
    metric: &Metric,
    outcome: &Outcome,
    canary: Subject<'_>,
    baseline: Subject<'_>,
) -> String {
    let name = &metric.name;
    let side = |side: Side| match side {
        Side::Canary => format!("the canary ({})", canary.release),
        Side::Baseline => format!("the baseline ({})", baseline.release),
    };
    match outcome {
        Outcome::Judged(comparison) => {
            format!("{name}: {}", comparison_text(comparison, metric.direction))
        }
        Outcome::TooFew {
            canary: from_canary,
            baseline: from_baseline,
            needed,
        } => {
            let count = |n: usize, who: Side| {
                if n < *needed as usize {
                    format!("{n} of {needed} for {}", side(who))
                } else {
                    format!("{} has {n}", side(who))
                }
            };
            let (first, second) = (
                count(*from_canary, Side::Canary),
                count(*from_baseline, Side::Baseline),
            );
            format!(
                "{name}: too few samples: {first}, {second}; wait for more traffic, widen \
                 `window` or lower `min-samples`"
            )
        }
        Outcome::QueryFailed { side: who, error } => {
            let who = side(*who);
            match error {
                CapabilityError::Denied(why) => format!(
                    "{name}: querying {who} was denied: {why}; grant it in the judge's \
                     `prometheus-metrics` (or `metrics-namespaces`) in deployer.toml"
                ),
                CapabilityError::Invalid(why) => {
                    format!("{name}: the query for {who} is invalid: {why}; fix metrics[{index}]")
                }
                CapabilityError::Unavailable(why) => {
                    format!("{name}: could not query {who}: {why}")
                }
                CapabilityError::Limit(why) => format!(
                    "{name}: the query for {who} hit a limit: {why}; aggregate to fewer series \
                     or lengthen `step`"
                ),
            }
        }
    }
}

fn comparison_text(c: &Comparison, direction: Direction) -> String {
    let sign = match direction {
        Direction::Increase => "+",
        Direction::Decrease => "-",
        Direction::Either => "±",
    };
    let allowed = format!("at most {sign}{}", number(c.allowed));
    let verdict = match (c.verdict, direction) {
        (Verdict::NotSignificant, Direction::Either) => "no significant change".to_string(),
        (Verdict::NotSignificant, _) => "not significantly worse".to_string(),
        (Verdict::WithinTolerance, Direction::Either) => {
            format!("changed, but within tolerance ({allowed})")
        }
        (Verdict::WithinTolerance, _) => format!("worse, but within tolerance ({allowed})"),
        (Verdict::WorseThanAllowed, Direction::Either) => {
            format!("changed more than allowed ({allowed})")
        }
        (Verdict::WorseThanAllowed, _) => format!("worse than allowed ({allowed})"),
    };
    format!(
        "canary mean {} vs baseline {} ({}, p={}, {}/{} samples): {verdict}",
        number(c.canary_mean),
        number(c.baseline_mean),
        change(c.canary_mean, c.baseline_mean),
        p_value(c.p),
        c.canary_samples,
        c.baseline_samples,
    )
}

/// The canary's mean against the baseline's: relative (`+950%`), or absolute when the
/// baseline's is 0 (`+0.21`).
pub fn change(canary: f64, baseline: f64) -> String {
    let difference = canary - baseline;
    if difference == 0.0 {
        return "no change".to_string();
    }
    let sign = if difference > 0.0 { "+" } else { "-" };
    if baseline == 0.0 {
        format!("{sign}{}", number(difference.abs()))
    } else {
        format!(
            "{sign}{}%",
            number(difference.abs() / baseline.abs() * 100.0)
        )
    }
}

/// A p-value: three significant digits, or one in scientific notation below 0.001.
pub fn p_value(p: f64) -> String {
    if p > 0.0 && p < 1e-3 {
        format!("{p:.0e}")
    } else {
        number(p)
    }
}

/// `x` to three significant digits (never rounding its integer part), in scientific
/// notation when very large or very small; no trailing zeros.
pub fn number(x: f64) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    if !x.is_finite() {
        return x.to_string();
    }
    let magnitude = x.abs().log10().floor();
    if !(-3.0..6.0).contains(&magnitude) {
        let text = format!("{x:.2e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        return format!("{}e{exponent}", trim_zeros(mantissa));
    }
    let decimals = (2.0 - magnitude).max(0.0) as usize;
    trim_zeros(&format!("{x:.decimals$}")).to_string()
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_significant_digits() {
        for (x, shown) in [
            (0.0, "0"),
            (0.21, "0.21"),
            (0.02, "0.02"),
            (0.210_000_000_000_000_02, "0.21"),
            (4.999_999_999, "5"),
            (123.456, "123"),
            (1234.4, "1234"),
            (0.001_234_5, "0.00123"),
            (-7.5, "-7.5"),
            (0.000_012_34, "1.23e-5"),
            (2_500_000.0, "2.5e6"),
            (950.000_000_1, "950"),
        ] {
            assert_eq!(number(x), shown, "{x}");
        }
    }

    #[test]
    fn p_values_and_changes() {
        assert_eq!(p_value(3.1e-9), "3e-9");
        assert_eq!(p_value(0.0271), "0.0271");
        assert_eq!(p_value(1.0), "1");
        assert_eq!(p_value(0.0), "0");
        assert_eq!(change(0.21, 0.02), "+950%");
        assert_eq!(change(4.0, 5.0), "-20%");
        assert_eq!(change(0.21, 0.0), "+0.21");
        assert_eq!(change(-1.0, 0.0), "-1");
        assert_eq!(change(3.0, 3.0), "no change");
    }
}
