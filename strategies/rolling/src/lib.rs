//! Built-in rolling strategy: replace the old release by the new one in batches while
//! keeping a minimum of healthy units.
//!
//! On targets that roll natively (ECS deployment controller, Kubernetes Deployment, ASG
//! instance refresh) it hands the target one `rolling-update` with the derived bounds and
//! gates the result. Elsewhere it runs the batches itself: each batch moves capacity and
//! the matching share of traffic to the new side, runs gates and bakes; those batches
//! always start new units before stopping old ones, so the minimum is never at risk.
//!
//! Parameters (`[services.NAME.strategies.rolling]`):
//! - `batch-size`: units per batch, as a count (`2`) or a percentage (`"25%"`).
//!   Default: as many as `min-healthy-percent` allows, at least one.
//! - `min-healthy-percent` (default `100`): healthy units never drop below this share of
//!   the desired count; with 100 every batch starts new units before stopping old ones.
//! - `bake` (default `"0s"`): wait after each batch (after the whole update natively).
//! - `gates`: how inconclusive / no-data gate results are handled.

use deployer_plugin_sdk::params::check_bake;
use deployer_plugin_sdk::script::{self, GatePolicy};
use deployer_plugin_sdk::{
    Duration, LifecyclePoint, ParamError, PluginInfo, RollingUpdate, RolloutState, ScaleRequest,
    Side, Step, Strategy, TargetInfo, param_error,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Params {
    #[serde(default)]
    pub batch_size: Option<BatchSize>,
    #[serde(default = "full")]
    pub min_healthy_percent: u32,
    #[serde(default)]
    pub bake: Duration,
    #[serde(default)]
    pub gates: GatePolicy,
}

fn full() -> u32 {
    100
}

#[derive(Debug, PartialEq)]
pub enum BatchSize {
    Count(u32),
    Percent(u32),
}

/// By hand rather than `#[serde(untagged)]`, whose only error is "data did not match
/// any variant of untagged enum BatchSize": this one says what was given and what a
/// batch size looks like.
impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Expected;
        impl serde::de::Visitor<'_> for Expected {
            type Value = BatchSize;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a count (2) or a percentage (\"25%\")")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<BatchSize, E> {
                u32::try_from(n)
                    .map(BatchSize::Count)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<BatchSize, E> {
                u64::try_from(n)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<BatchSize, E> {
                text.strip_suffix('%')
                    .and_then(|n| n.trim().parse().ok())
                    .map(BatchSize::Percent)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(text), &self))
            }
        }
        de.deserialize_any(Expected)
    }
}

pub struct Rolling;

impl Strategy for Rolling {
    type Params = Params;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "rolling".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Batched in-place replacement with a minimum-healthy bound".into(),
        }
    }

    fn check(params: &Params) -> Vec<ParamError> {
        let mut errors = Vec::new();
        if params.min_healthy_percent > 100 {
            errors.push(param_error(
                "min-healthy-percent",
                format!(
                    "is {}; use a percentage from 0 to 100",
                    params.min_healthy_percent
                ),
            ));
        }
        match params.batch_size {
            Some(BatchSize::Count(0)) | Some(BatchSize::Percent(0)) => {
                errors.push(param_error("batch-size", "must be at least 1 (or \"1%\")"))
            }
            Some(BatchSize::Percent(p)) if p > 100 => errors.push(param_error(
                "batch-size",
                format!("is {p}%; use a percentage from 1% to 100%"),
            )),
            _ => {}
        }
        errors.extend(check_bake("bake", params.bake));
        errors.extend(params.gates.check("gates"));
        errors
    }

    fn next(params: &Params, state: &RolloutState) -> Result<Step, String> {
        script::next_step(&plan(params, &state.target), &state.history, &params.gates)
    }
}

/// The most batches one rolling update run by deployer may take. Each batch is up to
/// five steps, so this keeps a plan within the host's 10,000-step simulation; a
/// service's `max-steps` (1,000 by default) may cap it lower, and the host says so.
pub const MAX_BATCHES: u32 = 1_000;

/// `percent`% of `desired` units, rounded up; at most `desired`.
fn share(desired: u32, percent: u32) -> u32 {
    // In u64: `desired * percent` passes u32::MAX from 42,949,673 units up. With the
    // percentage at most 100 the result is at most `desired`, so it always fits back.
    let units = (u64::from(desired) * u64::from(percent.min(100))).div_ceil(100);
    u32::try_from(units).unwrap_or(desired)
}

/// Units replaced per batch for `desired` units.
pub fn batch_units(params: &Params, desired: u32) -> u32 {
    let units = match params.batch_size {
        Some(BatchSize::Count(n)) => n,
        Some(BatchSize::Percent(p)) => share(desired, p),
        // As many as may be down at once while keeping min-healthy.
        None => desired - share(desired, params.min_healthy_percent),
    };
    units.clamp(1, desired.max(1))
}

/// Why the batches deployer would run itself are too many, with the fix; `None` when
/// they fit (always, on a target that rolls natively).
fn too_many_batches(params: &Params, target: &TargetInfo) -> Option<String> {
    if target.native_rolling {
        return None;
    }
    let desired = target.desired_count;
    let batch = batch_units(params, desired);
    let batches = desired.div_ceil(batch);
    (batches > MAX_BATCHES).then(|| {
        format!(
            "batch-size gives {batches} batches of {batch} unit(s) for {desired} units, more than \
             the {MAX_BATCHES} a rolling update may take: set batch-size to at least {} units",
            desired.div_ceil(MAX_BATCHES)
        )
    })
}

/// The full script of a rolling update for `target`: a single `abort` when it would
/// take more than [`MAX_BATCHES`] batches.
pub fn plan(params: &Params, target: &TargetInfo) -> Vec<Step> {
    if let Some(why) = too_many_batches(params, target) {
        return vec![Step::Abort(why)];
    }
    let desired = target.desired_count;
    let batch = batch_units(params, desired);
    let mut steps = vec![Step::RunGates(LifecyclePoint::PreDeploy)];
    if target.native_rolling {
        let batch_percent = if desired == 0 {
            100
        } else {
            // In u64 (see `share`); at most 100 as the batch is at most `desired`.
            let percent = (u64::from(batch) * 100).div_ceil(u64::from(desired));
            u32::try_from(percent).unwrap_or(100)
        };
        // Surge by one batch when min-healthy forbids taking a batch down first.
        let max_percent = if params.min_healthy_percent.saturating_add(batch_percent) > 100 {
            100 + batch_percent
        } else {
            100
        };
        steps.push(Step::RollingUpdate(RollingUpdate {
            min_healthy_percent: params.min_healthy_percent,
            max_percent,
        }));
        steps.push(Step::RunGates(LifecyclePoint::PostTraffic));
        if !params.bake.is_zero() {
            steps.push(Step::Bake(params.bake.millis));
        }
        steps.push(Step::Promote);
    } else {
        // Batches run against weighted target groups: a side may never hold less
        // capacity than its traffic share, so each batch surges first (start new
        // units, move their share of traffic, then stop as many old ones). At least
        // one batch: a service sized to zero units still moves its traffic.
        let mut moved: u32 = 0;
        loop {
            let next = moved.saturating_add(batch).min(desired);
            // Rounded down, so the stable side keeps capacity for what it still carries.
            let percent = if desired == 0 {
                100
            } else {
                u64::from(next) * 100 / u64::from(desired)
            };
            steps.extend([
                scale(Side::New, next),
                Step::ShiftTraffic(u8::try_from(percent).unwrap_or(100)),
                scale(Side::Stable, desired - next),
            ]);
            steps.push(Step::RunGates(LifecyclePoint::PostTraffic));
            if !params.bake.is_zero() {
                steps.push(Step::Bake(params.bake.millis));
            }
            moved = next;
            if moved >= desired {
                break;
            }
        }
        steps.push(Step::Promote);
    }
    steps.extend([Step::RunGates(LifecyclePoint::PostDeploy), Step::Complete]);
    steps
}

fn scale(side: Side, count: u32) -> Step {
    Step::Scale(ScaleRequest { side, count })
}

deployer_plugin_sdk::export_strategy!(Rolling);

#[cfg(test)]
mod tests {
    use super::*;
    use deployer_plugin_sdk::testing::{simulate, target};

    #[test]
    fn native_targets_get_one_rolling_update_with_surge_at_full_min_healthy() {
        let steps = simulate::<Rolling>(r#"{"batch-size":1}"#, target(4, true, false)).unwrap();
        assert!(steps.contains(&Step::RollingUpdate(RollingUpdate {
            min_healthy_percent: 100,
            max_percent: 125,
        })));
        assert_eq!(steps.last(), Some(&Step::Complete));
    }

    #[test]
    fn native_targets_without_surge_when_min_healthy_allows() {
        let steps =
            simulate::<Rolling>(r#"{"min-healthy-percent":50}"#, target(4, true, false)).unwrap();
        assert!(steps.contains(&Step::RollingUpdate(RollingUpdate {
            min_healthy_percent: 50,
            max_percent: 100,
        })));
    }

    #[test]
    fn batches_keep_healthy_units_at_or_above_the_minimum() {
        for (params, desired) in [
            (r#"{"batch-size":2}"#, 5),
            (r#"{"batch-size":"50%","min-healthy-percent":50}"#, 4),
            (r#"{"min-healthy-percent":75}"#, 8),
            ("{}", 3),
        ] {
            let parsed: Params =
                deployer_plugin_sdk::strategy::validate::<Rolling>(params).unwrap();
            let min = (desired * parsed.min_healthy_percent).div_ceil(100);
            let steps = simulate::<Rolling>(params, target(desired, false, false)).unwrap();
            let (mut old, mut new) = (desired, 0);
            for step in &steps {
                if let Step::Scale(ScaleRequest { side, count }) = step {
                    match side {
                        Side::Stable => old = *count,
                        Side::New => new = *count,
                    }
                    assert!(
                        old + new >= min,
                        "{params}: {old}+{new} < {min} at {step:?}"
                    );
                }
            }
            assert_eq!((old, new), (0, desired), "{params}");
            assert!(steps.contains(&Step::ShiftTraffic(100)), "{params}");
        }
    }

    #[test]
    fn batch_size_validation_names_the_field() {
        for bad in [
            r#"{"batch-size":0}"#,
            r#"{"batch-size":"150%"}"#,
            r#"{"batch-size":"some"}"#,
        ] {
            let errors = deployer_plugin_sdk::strategy::validate::<Rolling>(bad).unwrap_err();
            assert_eq!(errors[0].field, "batch-size", "{bad}");
        }
    }

    #[test]
    fn a_batch_size_of_the_wrong_kind_is_named_without_rust_words() {
        for (bad, given) in [
            (r#"{"batch-size":true}"#, "boolean `true`"),
            (r#"{"batch-size":-2}"#, "integer `-2`"),
            (r#"{"batch-size":4294967296}"#, "integer `4294967296`"),
            (r#"{"batch-size":"25"}"#, "string \"25\""),
            (r#"{"batch-size":[2]}"#, "sequence"),
        ] {
            let errors = deployer_plugin_sdk::strategy::validate::<Rolling>(bad).unwrap_err();
            let message = &errors[0].message;
            assert!(
                message.contains(given)
                    && message.contains("a count (2) or a percentage (\"25%\")")
                    && !message.contains("untagged"),
                "{bad}: {message}"
            );
        }
        for good in [r#"{"batch-size":2}"#, r#"{"batch-size":"25%"}"#] {
            assert!(
                deployer_plugin_sdk::strategy::validate::<Rolling>(good).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn batch_sizes_do_not_wrap_at_any_size() {
        let percent = |p| Params {
            batch_size: Some(BatchSize::Percent(p)),
            ..deployer_plugin_sdk::params::parse("{}").unwrap()
        };
        assert_eq!(batch_units(&percent(100), u32::MAX), u32::MAX);
        assert_eq!(batch_units(&percent(50), 100_000_000), 50_000_000);
        let default: Params =
            deployer_plugin_sdk::params::parse(r#"{"min-healthy-percent":75}"#).unwrap();
        assert_eq!(batch_units(&default, 100_000_000), 25_000_000);
        let steps =
            simulate::<Rolling>(r#"{"batch-size":"50%"}"#, target(u32::MAX, false, false)).unwrap();
        let shifts: Vec<&Step> = steps
            .iter()
            .filter(|s| matches!(s, Step::ShiftTraffic(_)))
            .collect();
        assert_eq!(shifts, [&Step::ShiftTraffic(50), &Step::ShiftTraffic(100)]);
    }

    #[test]
    fn too_many_batches_abort_before_any_change_naming_the_numbers() {
        let steps =
            simulate::<Rolling>(r#"{"batch-size":1}"#, target(4_000, false, false)).unwrap();
        let [Step::Abort(why)] = steps.as_slice() else {
            panic!("{steps:?}")
        };
        assert_eq!(
            why,
            "batch-size gives 4000 batches of 1 unit(s) for 4000 units, more than the 1000 a \
             rolling update may take: set batch-size to at least 4 units"
        );
        let steps =
            simulate::<Rolling>(r#"{"batch-size":4}"#, target(4_000, false, false)).unwrap();
        assert_eq!(steps.last(), Some(&Step::Complete));
        // Natively the target runs the batches: no limit.
        let steps = simulate::<Rolling>(r#"{"batch-size":1}"#, target(4_000, true, false)).unwrap();
        assert_eq!(steps.last(), Some(&Step::Complete));
    }

    #[test]
    fn a_service_sized_to_zero_still_moves_its_traffic() {
        let steps = simulate::<Rolling>("{}", target(0, false, false)).unwrap();
        assert!(steps.contains(&Step::ShiftTraffic(100)), "{steps:?}");
        assert_eq!(steps.last(), Some(&Step::Complete));
    }
}
