//! Run a strategy natively, without WASM, the way the host drives it.

use crate::{
    GateResult, RolloutState, Step, StepOutcome, StepRecord, Strategy, TargetInfo, TargetKind,
    strategy,
};

/// Upper bound on steps, so a strategy that never completes fails its test.
pub const MAX_STEPS: usize = 10_000;

/// A simulated target of `desired` units.
pub fn target(desired: u32, native_rolling: bool, test_traffic: bool) -> TargetInfo {
    TargetInfo {
        kind: TargetKind::Simulated,
        desired_count: desired,
        native_rolling,
        test_traffic,
    }
}

/// Drive `S` from start to `complete` or `abort`, with every gate passing.
///
/// # Errors
/// The strategy's error, or a rollout that does not end within [`MAX_STEPS`].
pub fn simulate<S: Strategy>(params: &str, target: TargetInfo) -> Result<Vec<Step>, String> {
    simulate_with::<S>(params, target, |_, _| Vec::new())
}

/// Like [`simulate`], with `gates(step, n)` supplying the results of the `n`-th
/// `run-gates` step (counting from 0).
///
/// # Errors
/// The strategy's error, or a rollout that does not end within [`MAX_STEPS`].
pub fn simulate_with<S: Strategy>(
    params: &str,
    target: TargetInfo,
    mut gates: impl FnMut(&Step, usize) -> Vec<GateResult>,
) -> Result<Vec<Step>, String> {
    let mut state = RolloutState {
        params: params.to_string(),
        target,
        history: Vec::new(),
    };
    let mut gate_runs = 0;
    while state.history.len() < MAX_STEPS {
        let step = strategy::next::<S>(&state)?;
        if matches!(step, Step::Complete | Step::Abort(_)) {
            let mut steps: Vec<Step> = state.history.into_iter().map(|r| r.step).collect();
            steps.push(step);
            return Ok(steps);
        }
        let outcome = if matches!(step, Step::RunGates(_)) {
            gate_runs += 1;
            StepOutcome::Gates(gates(&step, gate_runs - 1))
        } else {
            StepOutcome::Done
        };
        state.history.push(StepRecord { step, outcome });
    }
    Err(format!(
        "the strategy did not complete within {MAX_STEPS} steps"
    ))
}
