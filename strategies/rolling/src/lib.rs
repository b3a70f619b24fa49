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

#[derive(Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum BatchSize {
    Count(u32),
    #[serde(deserialize_with = "percent")]
    Percent(u32),
}

fn percent<'de, D: serde::Deserializer<'de>>(de: D) -> Result<u32, D::Error> {
    let text = String::deserialize(de)?;
    text.strip_suffix('%')
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| serde::de::Error::custom("expected a count (2) or a percentage (\"25%\")"))
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
        errors
    }

    fn next(params: &Params, state: &RolloutState) -> Result<Step, String> {
        script::next_step(&plan(params, &state.target), &state.history, &params.gates)
    }
}

/// Units replaced per batch for `desired` units.
pub fn batch_units(params: &Params, desired: u32) -> u32 {
    let units = match params.batch_size {
        Some(BatchSize::Count(n)) => n,
        Some(BatchSize::Percent(p)) => (desired * p).div_ceil(100),
        // As many as may be down at once while keeping min-healthy.
        None => desired - (desired * params.min_healthy_percent).div_ceil(100),
    };
    units.clamp(1, desired.max(1))
}

/// The full script of a rolling update for `target`.
pub fn plan(params: &Params, target: &TargetInfo) -> Vec<Step> {
    let desired = target.desired_count;
    let batch = batch_units(params, desired);
    let mut steps = vec![Step::RunGates(LifecyclePoint::PreDeploy)];
    if target.native_rolling {
        let batch_percent = if desired == 0 {
            100
        } else {
            (batch * 100).div_ceil(desired)
        };
        // Surge by one batch when min-healthy forbids taking a batch down first.
        let max_percent = if params.min_healthy_percent + batch_percent > 100 {
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
        // units, move their share of traffic, then stop as many old ones).
        let mut moved = 0;
        while moved < desired {
            let next = (moved + batch).min(desired);
            steps.extend([
                scale(Side::New, next),
                Step::ShiftTraffic((next * 100 / desired) as u8),
                scale(Side::Stable, desired - next),
            ]);
            steps.push(Step::RunGates(LifecyclePoint::PostTraffic));
            if !params.bake.is_zero() {
                steps.push(Step::Bake(params.bake.millis));
            }
            moved = next;
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
}
