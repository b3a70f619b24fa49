//! Safety rules the host enforces on every step, whatever a strategy (or a hook with
//! the `actions` capability) asks for. A refused step fails the rollout closed.

use thiserror::Error;

use deployer_contract::{ScaleRequest, Side, Step, TargetInfo};

use crate::state::journal::{Action, Journal, RollbackAction};

/// The longest bake a strategy may ask for in one step.
pub const MAX_BAKE_MS: u64 = 24 * 3_600_000;

/// A step the host refuses to carry out.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("refused `{step}`: {reason}")]
pub struct SafetyViolation {
    pub step: String,
    pub reason: String,
}

/// What the host knows to be true about the deployment, updated only after a step was
/// carried out and verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyGuard {
    pub desired: u32,
    /// Verified percentage of production traffic on the new side.
    pub new_percent: u8,
    pub stable_units: u32,
    pub new_units: u32,
    pub promoted: bool,
}

/// Units a side needs to carry `percent` of the traffic of `desired` units. One
/// percentage point of slack absorbs rounding between units and whole percents.
pub fn units_needed(desired: u32, percent: u8) -> u32 {
    if percent == 0 {
        return 0;
    }
    // In u64: `desired` times a percentage overflows u32 from 43 million units up, and
    // the result, at most `desired`, always fits back.
    let units = (u64::from(desired) * u64::from(percent.saturating_sub(1))).div_ceil(100);
    u32::try_from(units).unwrap_or(desired).max(1)
}

impl SafetyGuard {
    /// The state before a rollout: everything on the stable side.
    pub fn new(target: &TargetInfo) -> Self {
        SafetyGuard {
            desired: target.desired_count,
            new_percent: 0,
            stable_units: target.desired_count,
            new_units: 0,
            promoted: false,
        }
    }

    /// What the host knows to be true after every completed action of `journal`.
    pub fn replay(journal: &Journal, target: &TargetInfo) -> SafetyGuard {
        let mut guard = SafetyGuard::new(target);
        for (action, _) in journal.completed() {
            match action {
                Action::Step(step) => guard.apply(step),
                Action::Rollback(RollbackAction::Scale(request)) => {
                    guard.apply(&Step::Scale(*request))
                }
                Action::Rollback(RollbackAction::ShiftTraffic(p)) => {
                    guard.apply(&Step::ShiftTraffic(*p))
                }
                Action::Rollback(RollbackAction::RollingUndo) => {
                    guard.new_units = 0;
                    guard.stable_units = guard.desired;
                    guard.new_percent = 0;
                }
                Action::Rollback(RollbackAction::Discard) | Action::Prepare { .. } => {}
            }
        }
        guard
    }

    /// Whether `step` may be carried out now.
    ///
    /// # Errors
    /// The rule it breaks.
    pub fn check(&self, step: &Step) -> Result<(), SafetyViolation> {
        let refuse = |reason: String| {
            Err(SafetyViolation {
                step: super::describe::step(step),
                reason,
            })
        };
        match step {
            Step::ShiftTraffic(percent) => {
                let percent = *percent;
                if percent > 100 {
                    return refuse(format!("{percent}% is not a traffic share (0-100)"));
                }
                let new_needs = units_needed(self.desired, percent);
                if self.new_units < new_needs {
                    return refuse(format!(
                        "the new side has {} healthy unit(s) but {percent}% of traffic needs {new_needs}",
                        self.new_units
                    ));
                }
                let stable_needs = units_needed(self.desired, 100 - percent);
                if self.stable_units < stable_needs {
                    return refuse(format!(
                        "the stable side has {} unit(s) but {}% of traffic needs {stable_needs}",
                        self.stable_units,
                        100 - percent
                    ));
                }
            }
            Step::Scale(ScaleRequest { side, count }) => {
                let count = *count;
                if count > self.desired.saturating_mul(2).max(1) {
                    return refuse(format!(
                        "{count} units is more than twice the desired count ({})",
                        self.desired
                    ));
                }
                let (share, name) = match side {
                    Side::Stable => (100 - self.new_percent, "stable"),
                    Side::New => (self.new_percent, "new"),
                };
                let needs = units_needed(self.desired, share);
                if count < needs {
                    return refuse(format!(
                        "the {name} side still carries {share}% of traffic, which needs {needs} unit(s); \
                         move the traffic off it before scaling it down"
                    ));
                }
            }
            Step::RouteTestTraffic if self.new_units == 0 => {
                return refuse("the new side has no units to receive test traffic".into());
            }
            Step::Bake(ms) if *ms > MAX_BAKE_MS => {
                return refuse(format!("a bake of {ms} ms is longer than 24 hours"));
            }
            Step::Promote if self.new_percent != 100 => {
                return refuse(format!(
                    "only {}% of traffic is on the new release; promote after shifting 100%",
                    self.new_percent
                ));
            }
            Step::Complete if !self.promoted => {
                return refuse("the new release was never promoted".into());
            }
            _ => {}
        }
        Ok(())
    }

    /// Record that `step` was carried out and verified.
    pub fn apply(&mut self, step: &Step) {
        match step {
            Step::ShiftTraffic(percent) => self.new_percent = *percent,
            Step::Scale(ScaleRequest {
                side: Side::Stable,
                count,
            }) => self.stable_units = *count,
            Step::Scale(ScaleRequest {
                side: Side::New,
                count,
            }) => self.new_units = *count,
            // The target replaced the units in place: everything now runs the new release.
            Step::RollingUpdate(_) => {
                self.new_units = self.desired;
                self.stable_units = 0;
                self.new_percent = 100;
            }
            Step::Promote => self.promoted = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deployer_contract::TargetKind;

    fn guard(desired: u32) -> SafetyGuard {
        SafetyGuard::new(&TargetInfo {
            kind: TargetKind::Simulated,
            desired_count: desired,
            native_rolling: true,
            test_traffic: false,
        })
    }

    fn scale(side: Side, count: u32) -> Step {
        Step::Scale(ScaleRequest { side, count })
    }

    #[test]
    fn never_drains_stable_while_it_carries_traffic() {
        let mut g = guard(4);
        g.apply(&scale(Side::New, 4));
        g.apply(&Step::ShiftTraffic(50));
        let err = g.check(&scale(Side::Stable, 0)).unwrap_err();
        assert!(
            err.reason.contains("stable side still carries 50%"),
            "{err}"
        );
        assert!(g.check(&scale(Side::Stable, 2)).is_ok());
        g.apply(&Step::ShiftTraffic(100));
        assert!(g.check(&scale(Side::Stable, 0)).is_ok());
    }

    #[test]
    fn traffic_needs_capacity_on_the_receiving_side() {
        let mut g = guard(10);
        assert!(g.check(&Step::ShiftTraffic(10)).is_err());
        g.apply(&scale(Side::New, 1));
        assert!(g.check(&Step::ShiftTraffic(10)).is_ok());
        assert!(g.check(&Step::ShiftTraffic(50)).is_err());
        assert!(g.check(&Step::ShiftTraffic(101)).is_err());
    }

    #[test]
    fn promotion_needs_all_traffic_and_completion_needs_promotion() {
        let mut g = guard(2);
        assert!(g.check(&Step::Promote).is_err());
        assert!(g.check(&Step::Complete).is_err());
        g.apply(&scale(Side::New, 2));
        g.apply(&Step::ShiftTraffic(100));
        assert!(g.check(&Step::Promote).is_ok());
        g.apply(&Step::Promote);
        assert!(g.check(&Step::Complete).is_ok());
    }

    #[test]
    fn runaway_scale_and_bake_are_refused() {
        let g = guard(3);
        assert!(g.check(&scale(Side::New, 7)).is_err());
        assert!(g.check(&Step::Bake(MAX_BAKE_MS + 1)).is_err());
    }

    #[test]
    fn units_needed_does_not_overflow_for_any_desired_count() {
        assert_eq!(units_needed(u32::MAX, 100), 4_252_017_623);
        assert_eq!(units_needed(u32::MAX, 1), 1);
        let mut g = guard(u32::MAX);
        g.apply(&scale(Side::New, u32::MAX));
        assert!(g.check(&Step::ShiftTraffic(100)).is_ok());
    }

    #[test]
    fn rounding_between_units_and_percent_is_tolerated() {
        let mut g = guard(3);
        g.apply(&scale(Side::New, 1));
        assert!(g.check(&Step::ShiftTraffic(33)).is_ok());
        g.apply(&Step::ShiftTraffic(33));
        assert!(g.check(&scale(Side::Stable, 2)).is_ok());
    }
}
