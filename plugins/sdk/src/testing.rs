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
/// `run-gates` step, counting from 1 as `deployer plugin test` scenarios do
/// (`gates = { 2 = "fail" }` is `n == 2` here).
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
            StepOutcome::Gates(gates(&step, gate_runs))
        } else {
            StepOutcome::Done
        };
        state.history.push(StepRecord { step, outcome });
    }
    Err(format!(
        "the strategy did not complete within {MAX_STEPS} steps"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LifecyclePoint, PluginInfo};

    /// Runs the post-traffic gates three times, then completes.
    struct ThreeGateRuns;

    impl Strategy for ThreeGateRuns {
        type Params = serde_json::Value;

        fn info() -> PluginInfo {
            PluginInfo {
                name: "three-gate-runs".into(),
                version: "0".into(),
                description: String::new(),
            }
        }

        fn next(_: &Self::Params, state: &RolloutState) -> Result<Step, String> {
            Ok(if state.history.len() < 3 {
                Step::RunGates(LifecyclePoint::PostTraffic)
            } else {
                Step::Complete
            })
        }
    }

    /// Gate runs are numbered from 1, as in `deployer plugin test` scenarios, so the
    /// same number means the same run in a unit test and in a scenario.
    #[test]
    fn gate_runs_are_counted_from_one() {
        let mut seen = Vec::new();
        let steps = simulate_with::<ThreeGateRuns>("{}", target(4, false, false), |step, n| {
            assert_eq!(*step, Step::RunGates(LifecyclePoint::PostTraffic));
            seen.push(n);
            Vec::new()
        })
        .unwrap();
        assert_eq!(seen, [1, 2, 3]);
        assert_eq!(steps.last(), Some(&Step::Complete));
    }
}
