//! The host's own strategy for `deployer rollback` on a side-by-side target: move
//! production back to the release the last deployment replaced (the new side of this
//! run), in one step or in several (`--steps 50,0 --bake 2m`) with the service's gates
//! between them, then promote it.
//!
//! When the old release's side was kept warm (`scale-down-delay`), the rollback starts
//! with its units (journaled as the run's `warm_units`) and scales nothing: it is a
//! traffic flip, verified by reading the weights back. Otherwise the side is brought to
//! full size first. Like every strategy it is a pure script the engine asks one step at
//! a time, and every step meets the safety rules.

use serde::{Deserialize, Serialize};

use deployer_contract::{RolloutState, ScaleRequest, Side, Step};

use crate::strategy::{Strategy, StrategyError};

/// What the walk back does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WalkBack {
    /// The share of traffic left on the release being rolled away from after each
    /// step, falling to 0 (`[0]`: all at once).
    pub steps: Vec<u8>,
    /// How long each step but the last bakes, the continuous gates watching.
    pub bake_ms: u64,
    /// Healthy units the side of the release rolled back to already has.
    #[serde(default)]
    pub warm_units: u32,
}

impl WalkBack {
    /// Why `steps` cannot be walked, in words naming the fix; `None` when they can.
    pub fn problem(steps: &[u8]) -> Option<String> {
        if steps.is_empty() {
            return Some("give at least one step, ending with 0 (e.g. `--steps 50,0`)".into());
        }
        if let Some(bad) = steps.iter().find(|s| **s > 100) {
            return Some(format!("{bad} is not a share of traffic (0-100)"));
        }
        if steps.windows(2).any(|w| w[1] >= w[0]) {
            return Some(format!(
                "each step must leave less traffic on the current release than the one before \
                 (got {}); e.g. `--steps 75,50,0`",
                join(steps)
            ));
        }
        if steps.last() != Some(&0) {
            return Some(format!(
                "the last step must be 0, so the rollback ends with all traffic on the release \
                 it goes back to (got {}); e.g. `--steps {},0`",
                join(steps),
                join(steps)
            ));
        }
        None
    }

    /// The whole walk for a service of `desired` units.
    pub fn script(&self, desired: u32) -> Vec<Step> {
        let mut script = Vec::new();
        if self.warm_units < desired {
            script.push(Step::Scale(ScaleRequest {
                side: Side::New,
                count: desired,
            }));
        }
        for &left in &self.steps {
            script.push(Step::ShiftTraffic(100 - left.min(100)));
            if left > 0 && self.bake_ms > 0 {
                script.push(Step::Bake(self.bake_ms));
            }
        }
        script.push(Step::Promote);
        script.push(Step::Complete);
        script
    }

    /// As the strategy's parameters (JSON).
    pub fn params(&self) -> String {
        serde_json::to_string(self).expect("walk-back parameters serialize")
    }
}

fn join(steps: &[u8]) -> String {
    steps
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The walk back as a [`Strategy`]: its parameters are a [`WalkBack`].
pub struct WalkBackStrategy;

/// Names the code that decides, for the journal: a resumed run continues only with the
/// same script.
pub const WALK_BACK_DIGEST: &str = "host:walk-back@1";

impl Strategy for WalkBackStrategy {
    fn name(&self) -> &str {
        "rollback"
    }

    fn digest(&self) -> &str {
        WALK_BACK_DIGEST
    }

    async fn next(&self, state: &RolloutState) -> Result<Step, StrategyError> {
        let walk: WalkBack = serde_json::from_str(&state.params)
            .map_err(|e| StrategyError(format!("rollback parameters: {e}")))?;
        if let Some(problem) = WalkBack::problem(&walk.steps) {
            return Err(StrategyError(format!("rollback steps: {problem}")));
        }
        Ok(walk
            .script(state.target.desired_count)
            .get(state.history.len())
            .cloned()
            .unwrap_or(Step::Complete))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_must_fall_to_zero() {
        assert!(WalkBack::problem(&[0]).is_none());
        assert!(WalkBack::problem(&[50, 0]).is_none());
        assert!(WalkBack::problem(&[]).unwrap().contains("at least one"));
        assert!(WalkBack::problem(&[50]).unwrap().contains("`--steps 50,0`"));
        assert!(
            WalkBack::problem(&[50, 60, 0])
                .unwrap()
                .contains("less traffic")
        );
        assert!(
            WalkBack::problem(&[50, 50, 0])
                .unwrap()
                .contains("less traffic")
        );
        assert!(WalkBack::problem(&[150, 0]).unwrap().contains("150"));
    }

    #[test]
    fn a_warm_side_is_not_scaled_and_bakes_sit_between_steps() {
        let warm = WalkBack {
            steps: vec![50, 0],
            bake_ms: 120_000,
            warm_units: 4,
        };
        assert_eq!(
            warm.script(4),
            [
                Step::ShiftTraffic(50),
                Step::Bake(120_000),
                Step::ShiftTraffic(100),
                Step::Promote,
                Step::Complete
            ]
        );
        let cold = WalkBack {
            warm_units: 3,
            steps: vec![0],
            ..warm
        };
        assert_eq!(
            cold.script(4)[0],
            Step::Scale(ScaleRequest {
                side: Side::New,
                count: 4
            })
        );
        assert_eq!(cold.script(4)[1], Step::ShiftTraffic(100));
    }
}
