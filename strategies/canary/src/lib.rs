//! Built-in canary strategy: shift production traffic to the new release in weighted
//! steps, with gates after each shift and a bake time before the next.
//!
//! Parameters (`[services.NAME.strategies.canary]`):
//! - `steps`: list of `{ weight = 1..=100, bake = "5m", pause = "approval" }`, weights
//!   strictly increasing; `bake` and `pause` are optional. A final step to 100% is added
//!   when the list stops short of it. `pause = "approval"` waits, after the step's gates
//!   and bake, until a person runs `deployer promote` (or `deployer abort`).
//! - or `linear = { step = 10, bake = "1m" }`: equal steps of `step`% (1 to 99), each
//!   baked, then 100% — CodeDeploy's "Linear10PercentEvery1Minute". One of the two.
//! - `approval-timeout` (default `"1h"`, at most `"24h"`): how long a pause waits.
//! - `on-approval-timeout` (`"roll-back"`, the default, or `"continue"`): what happens
//!   when nobody answered in time.
//! - `scale-with-traffic` (default `true`): size the new side to its traffic share
//!   before each shift instead of bringing it up to full size at once.
//! - `gates`: how inconclusive / no-data gate results are handled (see the SDK's
//!   `GatePolicy`).

use deployer_plugin_sdk::params::{check_approval_timeout, check_bake};
use deployer_plugin_sdk::script::{self, GatePolicy};
use deployer_plugin_sdk::{
    Approval, ApprovalTimeout, Duration, LifecyclePoint, ParamError, PluginInfo, RolloutState,
    ScaleRequest, Side, Step, Strategy, TargetInfo, param_error,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Params {
    #[serde(default)]
    pub steps: Vec<CanaryStep>,
    /// Equal steps instead of `steps`.
    #[serde(default)]
    pub linear: Option<Linear>,
    #[serde(default = "yes")]
    pub scale_with_traffic: bool,
    #[serde(default)]
    pub gates: GatePolicy,
    /// How long a `pause = "approval"` waits (default [`DEFAULT_APPROVAL_TIMEOUT`]).
    #[serde(default)]
    pub approval_timeout: Option<Duration>,
    /// What happens when nobody approved in time (default: roll back).
    #[serde(default)]
    pub on_approval_timeout: Option<OnTimeout>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryStep {
    pub weight: u32,
    #[serde(default)]
    pub bake: Duration,
    #[serde(default)]
    pub pause: Option<Pause>,
}

/// `linear`: the same share added at every step, each step baked the same.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linear {
    /// Percent of traffic added at each step, 1 to 99.
    pub step: u32,
    #[serde(default)]
    pub bake: Duration,
}

/// What a step waits for after its gates and bake.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Pause {
    /// A person's `deployer promote`.
    Approval,
}

/// `on-approval-timeout`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OnTimeout {
    /// Roll back: nobody said the release is good.
    #[default]
    RollBack,
    /// Carry on as if approved.
    Continue,
}

/// How long a pause waits for approval unless `approval-timeout` says otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(3600);

impl Params {
    /// The `await-approval` step a `pause = "approval"` becomes.
    pub fn approval(&self) -> Approval {
        Approval {
            timeout_ms: self
                .approval_timeout
                .unwrap_or(DEFAULT_APPROVAL_TIMEOUT)
                .millis,
            on_timeout: match self.on_approval_timeout.unwrap_or_default() {
                OnTimeout::RollBack => ApprovalTimeout::RollBack,
                OnTimeout::Continue => ApprovalTimeout::Continue,
            },
        }
    }

    fn pauses(&self) -> bool {
        self.steps.iter().any(|s| s.pause.is_some())
    }
}

fn yes() -> bool {
    true
}

pub struct Canary;

impl Strategy for Canary {
    type Params = Params;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "canary".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Weighted traffic steps with gates and bake times".into(),
        }
    }

    fn check(params: &Params) -> Vec<ParamError> {
        let mut errors = Vec::new();
        match (&params.linear, params.steps.is_empty()) {
            (Some(_), false) => errors.push(param_error(
                "linear",
                "is set with `steps`; give one: `steps` for shares of your choosing, or \
                 `linear` for equal ones",
            )),
            (Some(linear), true) => {
                if !(1..=99).contains(&linear.step) {
                    errors.push(param_error(
                        "linear.step",
                        format!(
                            "is {}; it is the percent of traffic added at each step, from 1 to 99",
                            linear.step
                        ),
                    ));
                }
                errors.extend(check_bake("linear.bake".to_string(), linear.bake));
            }
            (None, true) => errors.push(param_error(
                "steps",
                "needs at least one step, e.g. steps = [{ weight = 10, bake = \"5m\" }], or \
                 linear = { step = 10, bake = \"1m\" }",
            )),
            (None, false) => {}
        }
        // Weights rise from 1 to 100, so no valid canary has more than 100 steps; say
        // so once rather than once per step (a config of 100,000 steps took minutes).
        if params.steps.len() > 100 {
            errors.push(param_error(
                "steps",
                format!(
                    "has {} steps; weights rise from 1% to 100%, so a canary has at most 100",
                    params.steps.len()
                ),
            ));
            return errors;
        }
        let mut previous = 0;
        for (i, step) in params.steps.iter().enumerate() {
            if step.weight == 0 || step.weight > 100 {
                errors.push(param_error(
                    format!("steps[{i}].weight"),
                    format!("is {}; a weight is a percentage from 1 to 100", step.weight),
                ));
            } else if step.weight <= previous {
                errors.push(param_error(
                    format!("steps[{i}].weight"),
                    format!(
                        "is {} after {previous}; weights must increase from step to step",
                        step.weight
                    ),
                ));
            }
            previous = previous.max(step.weight);
            errors.extend(check_bake(format!("steps[{i}].bake"), step.bake));
        }
        errors.extend(params.gates.check("gates"));
        if let Some(timeout) = params.approval_timeout {
            errors.extend(check_approval_timeout("approval-timeout", timeout));
        }
        // Settings for a pause no step takes are most likely a forgotten `pause`.
        if !params.pauses() {
            for (field, set) in [
                ("approval-timeout", params.approval_timeout.is_some()),
                ("on-approval-timeout", params.on_approval_timeout.is_some()),
            ] {
                if set {
                    errors.push(param_error(
                        field,
                        "is set but no step waits for approval; add pause = \"approval\" to a \
                         step (e.g. { weight = 25, pause = \"approval\" }) or remove it",
                    ));
                }
            }
        }
        errors
    }

    fn next(params: &Params, state: &RolloutState) -> Result<Step, String> {
        script::next_step(&plan(params, &state.target), &state.history, &params.gates)
    }
}

/// The full script of a canary rollout for `target`.
pub fn plan(params: &Params, target: &TargetInfo) -> Vec<Step> {
    let desired = target.desired_count;
    let mut steps = vec![Step::RunGates(LifecyclePoint::PreDeploy)];
    let mut weights: Vec<(u32, Duration, Option<Pause>)> = match &params.linear {
        // `check` keeps the step within 1..=99; clamped so `plan` stays finite anyway.
        Some(linear) => (1..)
            .map(|i| i * linear.step.clamp(1, 100))
            .take_while(|w| *w < 100)
            .map(|w| (w, linear.bake, None))
            .collect(),
        None => params
            .steps
            .iter()
            .map(|s| (s.weight, s.bake, s.pause))
            .collect(),
    };
    if weights.last().is_none_or(|(w, _, _)| *w < 100) {
        weights.push((100, Duration::ZERO, None));
    }
    let mut new_count = 0;
    for (i, (weight, bake, pause)) in weights.into_iter().enumerate() {
        let wanted = if params.scale_with_traffic {
            units_for(desired, weight)
        } else {
            desired
        };
        if wanted > new_count {
            steps.push(scale(Side::New, wanted));
            new_count = wanted;
        }
        if i == 0 {
            // Not to an empty new side (a service sized to zero units): the host
            // refuses to route test traffic to no units, and there is nothing to test.
            if target.test_traffic && new_count > 0 {
                steps.push(Step::RouteTestTraffic);
            }
            steps.push(Step::RunGates(LifecyclePoint::PreTraffic));
        }
        // `check` keeps weights within 1..=100; `plan` is public, so clamp anyway rather
        // than let 300 wrap to 44.
        steps.push(Step::ShiftTraffic(
            u8::try_from(weight.min(100)).unwrap_or(100),
        ));
        steps.push(Step::RunGates(LifecyclePoint::PostTraffic));
        if !bake.is_zero() {
            steps.push(Step::Bake(bake.millis));
        }
        // After the gates and the bake: the person approves a share that has been
        // watched, not one that just started taking traffic.
        if pause == Some(Pause::Approval) {
            steps.push(Step::AwaitApproval(params.approval()));
        }
    }
    steps.extend([
        Step::Promote,
        scale(Side::Stable, 0),
        Step::RunGates(LifecyclePoint::PostDeploy),
        Step::Complete,
    ]);
    steps
}

/// Units needed to carry `weight`% of the traffic of `desired` units: at least one,
/// except for a service sized to zero units, which needs none.
pub fn units_for(desired: u32, weight: u32) -> u32 {
    if desired == 0 {
        return 0;
    }
    // In u64: `desired * weight` passes u32::MAX from 42,949,673 units up. With the
    // weight at most 100 the result is at most `desired`, so it always fits back.
    let units = (u64::from(desired) * u64::from(weight.min(100))).div_ceil(100);
    u32::try_from(units).unwrap_or(desired).max(1)
}

fn scale(side: Side, count: u32) -> Step {
    Step::Scale(ScaleRequest { side, count })
}

deployer_plugin_sdk::export_strategy!(Canary);

#[cfg(test)]
mod tests {
    use super::*;
    use deployer_plugin_sdk::testing::{simulate, simulate_with, target};
    use deployer_plugin_sdk::{GateResult, GateStatus};

    const PARAMS: &str = r#"{"steps":[{"weight":10,"bake":"5m"},{"weight":50,"bake":"10m"}]}"#;

    #[test]
    fn a_good_rollout_steps_through_every_weight_then_promotes() {
        let steps = simulate::<Canary>(PARAMS, target(4, true, false)).unwrap();
        let shifts: Vec<u8> = steps
            .iter()
            .filter_map(|s| match s {
                Step::ShiftTraffic(w) => Some(*w),
                _ => None,
            })
            .collect();
        assert_eq!(shifts, [10, 50, 100]);
        assert!(steps.contains(&Step::Bake(300_000)));
        assert!(steps.contains(&Step::Bake(600_000)));
        assert_eq!(steps.last(), Some(&Step::Complete));
        // The stable side is only scaled down after promotion.
        let promote = steps.iter().position(|s| *s == Step::Promote).unwrap();
        let drain = steps
            .iter()
            .position(|s| *s == scale(Side::Stable, 0))
            .unwrap();
        assert!(promote < drain);
    }

    fn shifts(steps: &[Step]) -> Vec<u8> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::ShiftTraffic(w) => Some(*w),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn linear_shifts_equal_steps_each_baked_then_all() {
        let linear = |step: u32| {
            simulate::<Canary>(
                &format!(r#"{{"linear":{{"step":{step},"bake":"1m"}}}}"#),
                target(4, true, false),
            )
            .unwrap()
        };
        let steps = linear(10);
        assert_eq!(shifts(&steps), [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        assert_eq!(
            steps.iter().filter(|s| **s == Step::Bake(60_000)).count(),
            9,
            "every share below 100% baked"
        );
        assert_eq!(shifts(&linear(33)), [33, 66, 99, 100]);
        assert_eq!(shifts(&linear(50)), [50, 100]);
        assert_eq!(shifts(&linear(99)), [99, 100]);
        assert_eq!(shifts(&linear(1)).len(), 100);
    }

    #[test]
    fn linear_is_one_or_the_other_with_steps_and_its_step_is_a_share() {
        let fields = |params: &str| -> Vec<String> {
            match deployer_plugin_sdk::strategy::validate::<Canary>(params) {
                Ok(_) => Vec::new(),
                Err(errors) => errors.into_iter().map(|e| e.field).collect(),
            }
        };
        assert_eq!(
            fields(r#"{"linear":{"step":10},"steps":[{"weight":10}]}"#),
            ["linear"]
        );
        assert_eq!(fields(r#"{"linear":{"step":0}}"#), ["linear.step"]);
        assert_eq!(fields(r#"{"linear":{"step":100}}"#), ["linear.step"]);
        assert_eq!(
            fields(r#"{"linear":{"step":10,"bake":"25h"}}"#),
            ["linear.bake"]
        );
        assert_eq!(fields(r#"{}"#), ["steps"]);
        assert!(fields(r#"{"linear":{"step":25,"bake":"30s"}}"#).is_empty());
    }

    #[test]
    fn the_new_side_grows_with_its_traffic_share() {
        let steps = simulate::<Canary>(PARAMS, target(4, true, false)).unwrap();
        let sizes: Vec<u32> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Scale(ScaleRequest {
                    side: Side::New,
                    count,
                }) => Some(*count),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, [1, 2, 4]);
    }

    #[test]
    fn test_traffic_is_routed_before_the_first_shift_when_available() {
        let steps = simulate::<Canary>(PARAMS, target(2, true, true)).unwrap();
        let route = steps
            .iter()
            .position(|s| *s == Step::RouteTestTraffic)
            .unwrap();
        let first_shift = steps
            .iter()
            .position(|s| matches!(s, Step::ShiftTraffic(_)))
            .unwrap();
        assert!(route < first_shift);
    }

    #[test]
    fn a_failing_gate_aborts_instead_of_shifting_further() {
        // The third gate run (counted from 1, as scenarios count them) fails.
        let steps = simulate_with::<Canary>(PARAMS, target(4, true, false), |_, n| {
            let status = if n == 3 {
                GateStatus::Fail
            } else {
                GateStatus::Pass
            };
            vec![GateResult {
                name: "http:/health".into(),
                status,
                detail: "3/10 requests failed".into(),
                observed: Some(0.7),
            }]
        })
        .unwrap();
        assert!(matches!(steps.last(), Some(Step::Abort(why)) if why.contains("3/10")));
        assert!(!steps.contains(&Step::ShiftTraffic(50)));
    }

    #[test]
    fn parameter_errors_name_the_field() {
        let bad = r#"{"steps":[{"weight":50},{"weight":20},{"weight":300}]}"#;
        let errors = deployer_plugin_sdk::strategy::validate::<Canary>(bad).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["steps[1].weight", "steps[2].weight"]);
        let unknown =
            deployer_plugin_sdk::strategy::validate::<Canary>(r#"{"stepz":[]}"#).unwrap_err();
        assert!(
            unknown[0].message.contains("unknown field `stepz`"),
            "{:?}",
            unknown
        );
    }

    #[test]
    fn unit_counts_do_not_wrap_at_any_size() {
        // 100,000,000 units at 100% came out as 14,100,655 in u32 arithmetic.
        assert_eq!(units_for(100_000_000, 100), 100_000_000);
        assert_eq!(units_for(u32::MAX, 100), u32::MAX);
        assert_eq!(units_for(u32::MAX, 1), 42_949_673);
        assert_eq!(units_for(1, 1), 1);
        assert_eq!(units_for(0, 50), 0);
    }

    fn approval(timeout_ms: u64, on_timeout: ApprovalTimeout) -> Step {
        Step::AwaitApproval(Approval {
            timeout_ms,
            on_timeout,
        })
    }

    #[test]
    fn a_step_may_wait_for_approval_after_its_gates_and_bake() {
        let params = r#"{"steps":[{"weight":25,"bake":"5m","pause":"approval"},{"weight":50}]}"#;
        let steps = simulate::<Canary>(params, target(4, false, false)).unwrap();
        let pause = approval(3_600_000, ApprovalTimeout::RollBack);
        let at = steps.iter().position(|s| *s == pause).unwrap();
        assert_eq!(
            steps[at - 3..=at + 2],
            [
                Step::ShiftTraffic(25),
                Step::RunGates(LifecyclePoint::PostTraffic),
                Step::Bake(300_000),
                pause.clone(),
                scale(Side::New, 2),
                Step::ShiftTraffic(50),
            ]
        );
        assert_eq!(steps.iter().filter(|s| **s == pause).count(), 1);
        assert_eq!(steps.last(), Some(&Step::Complete));
    }

    #[test]
    fn the_approval_timeout_and_what_follows_it_are_parameters() {
        let params = r#"{"steps":[{"weight":10,"pause":"approval"},{"weight":100,"pause":"approval"}],
            "approval-timeout":"30m","on-approval-timeout":"continue"}"#;
        let steps = simulate::<Canary>(params, target(2, false, false)).unwrap();
        let pause = approval(1_800_000, ApprovalTimeout::Continue);
        let pauses: Vec<usize> = (0..steps.len()).filter(|i| steps[*i] == pause).collect();
        assert_eq!(pauses.len(), 2, "{steps:?}");
        // The last one waits at 100%, before promotion.
        assert_eq!(steps[pauses[1] - 2], Step::ShiftTraffic(100));
        assert_eq!(steps[pauses[1] + 1], Step::Promote);
    }

    #[test]
    fn bad_approval_settings_are_refused_by_field_with_the_fix() {
        let validate = deployer_plugin_sdk::strategy::validate::<Canary>;
        let err = validate(r#"{"steps":[{"weight":10,"pause":"aproval"}]}"#).unwrap_err();
        assert_eq!(err[0].field, "steps[0].pause");
        assert!(err[0].message.contains("expected `approval`"), "{err:?}");
        let err = validate(
            r#"{"steps":[{"weight":10,"pause":"approval"}],"on-approval-timeout":"rollback"}"#,
        )
        .unwrap_err();
        assert_eq!(err[0].field, "on-approval-timeout");
        assert!(
            err[0]
                .message
                .contains("expected `roll-back` or `continue`"),
            "{err:?}"
        );
        let err =
            validate(r#"{"steps":[{"weight":10,"pause":"approval"}],"approval-timeout":"25h"}"#)
                .unwrap_err();
        assert_eq!(err[0].field, "approval-timeout");
        assert!(err[0].message.contains("is 25h"), "{err:?}");
        let err =
            validate(r#"{"steps":[{"weight":10,"pause":"approval"}],"approval-timeout":"0s"}"#)
                .unwrap_err();
        assert_eq!(err[0].field, "approval-timeout");
        let err = validate(
            r#"{"steps":[{"weight":10}],"approval-timeout":"2h","on-approval-timeout":"continue"}"#,
        )
        .unwrap_err();
        let fields: Vec<&str> = err.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["approval-timeout", "on-approval-timeout"]);
        assert!(
            err[0].message.contains("no step waits for approval"),
            "{err:?}"
        );
        assert!(
            validate(r#"{"steps":[{"weight":10,"pause":"approval"}],"approval-timeout":"24h"}"#)
                .is_ok()
        );
    }

    #[test]
    fn without_a_pause_the_plan_is_what_it_was() {
        let steps = simulate::<Canary>(PARAMS, target(4, true, false)).unwrap();
        assert!(!steps.iter().any(|s| matches!(s, Step::AwaitApproval(_))));
    }

    #[test]
    fn bakes_the_host_would_refuse_are_refused_by_field() {
        let long = r#"{"steps":[{"weight":10,"bake":"25h"}],"gates":{"retry-interval":"48h"}}"#;
        let errors = deployer_plugin_sdk::strategy::validate::<Canary>(long).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["steps[0].bake", "gates.retry-interval"]);
        assert!(errors[0].message.contains("is 25h"), "{errors:?}");
    }
}
