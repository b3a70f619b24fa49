//! `deployer plan`: run a strategy against a simulated target where every gate passes,
//! under the same safety rules as a real rollout, and list the steps. Touches no cloud.

use deployer_contract::{
    GateResult, GateStatus, RolloutState, Step, StepOutcome, StepRecord, TargetInfo,
};

use crate::safety::{SafetyGuard, SafetyViolation};
use crate::strategy::{Strategy, StrategyError};

/// A plan longer than this is a strategy that never finishes.
pub const MAX_STEPS: usize = 10_000;

/// The simulated rollout.
#[derive(Debug)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub ending: Ending,
}

#[derive(Debug, PartialEq)]
pub enum Ending {
    Completed,
    /// The strategy itself aborted (e.g. a parameter the target cannot satisfy).
    Aborted(String),
    /// A gate failed, so the host would roll back.
    RolledBack(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    #[error("step {number} would be refused by the host: {violation}")]
    Unsafe {
        number: usize,
        violation: SafetyViolation,
        /// The step refused.
        step: Step,
    },
    #[error("the strategy did not finish within {MAX_STEPS} steps")]
    Endless,
}

impl Plan {
    pub fn traffic_shifts(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::ShiftTraffic(_)))
            .count()
    }

    pub fn total_bake_ms(&self) -> u64 {
        self.steps
            .iter()
            .map(|s| if let Step::Bake(ms) = s { *ms } else { 0 })
            .sum()
    }
}

/// Why `steps` would not fit a run capped at `max_steps` steps and `max_duration`
/// (its bakes alone longer), with the fix; `None` when they fit. `run` refuses such a
/// plan before any change and `validate` at the strategy's field.
pub fn over_caps(
    steps: &[Step],
    max_steps: u32,
    max_duration: std::time::Duration,
) -> Option<String> {
    let bake_ms: u64 = steps
        .iter()
        .map(|s| if let Step::Bake(ms) = s { *ms } else { 0 })
        .sum();
    if u128::from(bake_ms) > max_duration.as_millis() {
        Some(format!(
            "the plan bakes for {} in all, longer than the service's max-duration ({}): raise max-duration or bake less",
            crate::describe::duration_ms(bake_ms),
            crate::describe::duration(max_duration)
        ))
    } else if steps.len() > max_steps as usize {
        Some(format!(
            "the plan takes {} steps, more than the service's max-steps ({max_steps}): raise max-steps or take fewer steps",
            steps.len()
        ))
    } else {
        None
    }
}

/// Simulate `strategy` with `params` (JSON) on `target`, every gate passing.
///
/// # Errors
/// A plugin failure, a step the safety rules refuse, or a strategy that never ends.
pub async fn simulate(
    strategy: &impl Strategy,
    params: &str,
    target: TargetInfo,
) -> Result<Plan, PlanError> {
    simulate_with(strategy, params, target, |_| Vec::new()).await
}

/// Like [`simulate`], with `gates(n)` giving the results of the `n`-th `run-gates`
/// step (from 1). A failed gate ends the simulation as the host would: rolled back.
///
/// # Errors
/// A plugin failure, a step the safety rules refuse, or a strategy that never ends.
pub async fn simulate_with(
    strategy: &impl Strategy,
    params: &str,
    target: TargetInfo,
    gates: impl FnMut(usize) -> Vec<GateResult>,
) -> Result<Plan, PlanError> {
    simulate_warm(strategy, params, target, 0, gates).await
}

/// Like [`simulate_with`], for a run whose new side starts with `warm_units` healthy
/// units (a rollback onto a side kept warm).
///
/// # Errors
/// A plugin failure, a step the safety rules refuse, or a strategy that never ends.
pub async fn simulate_warm(
    strategy: &impl Strategy,
    params: &str,
    target: TargetInfo,
    warm_units: u32,
    mut gates: impl FnMut(usize) -> Vec<GateResult>,
) -> Result<Plan, PlanError> {
    let mut gate_runs = 0;
    let mut guard = SafetyGuard::new(&target);
    guard.new_units = warm_units;
    let mut state = RolloutState {
        params: params.to_string(),
        target,
        history: Vec::new(),
    };
    while state.history.len() < MAX_STEPS {
        let step = strategy.next(&state).await?;
        let ending = match &step {
            Step::Abort(reason) => Some(Ending::Aborted(reason.clone())),
            _ => None,
        };
        if let Err(violation) = guard.check(&step) {
            return Err(PlanError::Unsafe {
                number: state.history.len() + 1,
                violation,
                step,
            });
        }
        guard.apply(&step);
        if let Some(ending) =
            ending.or_else(|| (step == Step::Complete).then_some(Ending::Completed))
        {
            let mut steps: Vec<Step> = state.history.into_iter().map(|r| r.step).collect();
            steps.push(step);
            return Ok(Plan { steps, ending });
        }
        let outcome = match step {
            Step::RunGates(_) => {
                gate_runs += 1;
                StepOutcome::Gates(gates(gate_runs))
            }
            _ => StepOutcome::Done,
        };
        let failed = match &outcome {
            StepOutcome::Gates(results) => results
                .iter()
                .find(|r| r.status == GateStatus::Fail)
                .map(|r| format!("gate `{}` failed: {}", r.name, r.detail)),
            StepOutcome::Done => None,
        };
        state.history.push(StepRecord { step, outcome });
        if let Some(reason) = failed {
            let steps = state.history.into_iter().map(|r| r.step).collect();
            return Ok(Plan {
                steps,
                ending: Ending::RolledBack(reason),
            });
        }
    }
    Err(PlanError::Endless)
}
