//! Safety rules the host enforces on every step, whatever a strategy asks for. A
//! refused step fails the rollout closed.
//!
//! Besides refusing steps, the guard knows which configured gates a strategy owes
//! ([`SafetyGuard::owed`]): a strategy may add checks, never remove them, so the host
//! runs the gates of a point itself when a strategy moves on without asking for them.

use thiserror::Error;

use deployer_contract::{LifecyclePoint, ScaleRequest, Side, Step, TargetInfo};

use crate::state::journal::{Action, Journal, RollbackAction};

/// The longest bake a strategy may ask for in one step.
pub const MAX_BAKE_MS: u64 = deployer_contract::MAX_BAKE.millis;

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
    /// The target is updated in place (one side) rather than run side by side.
    pub in_place: bool,
    /// Which gate points have run, as far as the rules about owed gates care.
    pub gates: GateLedger,
}

/// What the rules about owed gates remember of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateLedger {
    /// A step has changed the target (scaled, routed or shifted traffic, rolled).
    pub changed: bool,
    pub pre_deploy_ran: bool,
    pub pre_traffic_ran: bool,
    /// Traffic increased since post-traffic gates last ran.
    pub post_traffic_owed: bool,
    /// Post-deploy gates ran since the promotion.
    pub post_deploy_ran: bool,
}

/// Units a side needs to carry `percent` of the traffic of `desired` units. One
/// percentage point of slack absorbs rounding between units and whole percents. A
/// service sized to zero units needs none for any share: its stable side carries all
/// of its (no) traffic on zero units before a rollout starts, and the same must hold
/// for the new side after it.
pub fn units_needed(desired: u32, percent: u8) -> u32 {
    if percent == 0 || desired == 0 {
        return 0;
    }
    // In u64: `desired` times a percentage overflows u32 from 43 million units up, and
    // the result, at most `desired`, always fits back.
    let units = (u64::from(desired) * u64::from(percent.saturating_sub(1))).div_ceil(100);
    u32::try_from(units).unwrap_or(desired).max(1)
}

/// The largest share of traffic `units` healthy units can carry of a service sized
/// `desired`: the inverse of [`units_needed`].
pub fn share_supported(desired: u32, units: u32) -> u8 {
    (0..=100u8)
        .rev()
        .find(|percent| units_needed(desired, *percent) <= units)
        .unwrap_or(0)
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
            in_place: target.native_rolling,
            gates: GateLedger::default(),
        }
    }

    /// What the host knows to be true after every completed action of `journal`.
    pub fn replay(journal: &Journal, target: &TargetInfo) -> SafetyGuard {
        let mut guard = SafetyGuard::new(target);
        // A rollback onto a side kept warm starts with the units read from it then.
        guard.new_units = journal.warm_units().unwrap_or(0);
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
                Action::HostGates(point) => guard.apply(&Step::RunGates(*point)),
                Action::Rollback(RollbackAction::Discard)
                | Action::Prepare { .. }
                | Action::RetireWarm => {}
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
        let side_by_side_step = matches!(
            step,
            Step::Scale(_) | Step::ShiftTraffic(_) | Step::RouteTestTraffic
        );
        if self.in_place && side_by_side_step {
            return refuse(
                "the target is updated in place (one side): there is no second side to scale \
                 or route traffic to; use a rolling update"
                    .into(),
            );
        }
        match step {
            Step::RollingUpdate(_) if !self.in_place => {
                return refuse(
                    "the target runs two sides behind the load balancer: an in-place rolling \
                     update there could not be undone by moving traffic back"
                        .into(),
                );
            }
            Step::ShiftTraffic(percent) => {
                let percent = *percent;
                if percent > 100 {
                    return refuse(format!("{percent}% is not a traffic share (0-100)"));
                }
                if self.promoted && percent < 100 {
                    return refuse(format!(
                        "the new release was promoted: traffic stays 100% on it (asked {percent}%)"
                    ));
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
                    // Saturating: a guard replayed from a damaged journal may hold any
                    // share; the check must still answer, not wrap or panic.
                    Side::Stable => (100u8.saturating_sub(self.new_percent), "stable"),
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
            // A pause is a bake a person may end early: the same bound, so a run never
            // waits longer on one step than the longest bake would let it.
            Step::AwaitApproval(approval) if approval.timeout_ms > MAX_BAKE_MS => {
                return refuse(format!(
                    "an approval wait of {} ms is longer than 24 hours (the longest bake, {MAX_BAKE_MS} ms)",
                    approval.timeout_ms
                ));
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
            // Completing removes the old side: only once the new one carries everything.
            Step::Complete if self.new_percent != 100 => {
                return refuse(format!(
                    "only {}% of traffic is on the new release; completing would remove the side \
                     that carries the rest",
                    self.new_percent
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The configured gates that must run before `step` (the strategy did not ask for
    /// them): pre-deploy before the first change, pre-traffic before the first traffic
    /// increase, post-traffic after every increase before the next one, an approval
    /// pause or promotion (a person approves a share the gates have looked at),
    /// post-deploy between promotion and completion. One point at a time; ask again
    /// after those ran.
    pub fn owed(&self, step: &Step) -> Option<LifecyclePoint> {
        let ledger = &self.gates;
        let changes = matches!(
            step,
            Step::Scale(_)
                | Step::ShiftTraffic(_)
                | Step::RouteTestTraffic
                | Step::RollingUpdate(_)
        );
        let increases = match step {
            Step::ShiftTraffic(percent) => *percent > self.new_percent,
            Step::RollingUpdate(_) => true,
            _ => false,
        };
        if changes && !ledger.changed && !ledger.pre_deploy_ran {
            Some(LifecyclePoint::PreDeploy)
        } else if increases && !ledger.pre_traffic_ran {
            Some(LifecyclePoint::PreTraffic)
        } else if (increases || matches!(step, Step::Promote | Step::AwaitApproval(_)))
            && ledger.post_traffic_owed
        {
            Some(LifecyclePoint::PostTraffic)
        } else if *step == Step::Complete && !ledger.post_deploy_ran {
            Some(LifecyclePoint::PostDeploy)
        } else {
            None
        }
    }

    /// Record that `step` was carried out and verified.
    pub fn apply(&mut self, step: &Step) {
        let ledger = &mut self.gates;
        match step {
            Step::Scale(_) | Step::RouteTestTraffic => ledger.changed = true,
            Step::ShiftTraffic(percent) => {
                ledger.changed = true;
                ledger.post_traffic_owed |= *percent > self.new_percent;
            }
            Step::RollingUpdate(_) => {
                ledger.changed = true;
                ledger.post_traffic_owed = true;
            }
            Step::RunGates(LifecyclePoint::PreDeploy) => ledger.pre_deploy_ran = true,
            Step::RunGates(LifecyclePoint::PreTraffic) => ledger.pre_traffic_ran = true,
            Step::RunGates(LifecyclePoint::PostTraffic) => ledger.post_traffic_owed = false,
            Step::RunGates(LifecyclePoint::PostDeploy) => ledger.post_deploy_ran |= self.promoted,
            Step::Promote => ledger.post_deploy_ran = false,
            _ => {}
        }
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
            native_rolling: false,
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

    fn approval(timeout_ms: u64) -> Step {
        Step::AwaitApproval(deployer_contract::Approval {
            timeout_ms,
            on_timeout: deployer_contract::ApprovalTimeout::RollBack,
        })
    }

    #[test]
    fn an_approval_wait_is_bounded_like_a_bake() {
        let g = guard(3);
        assert!(g.check(&approval(MAX_BAKE_MS)).is_ok());
        let err = g.check(&approval(MAX_BAKE_MS + 1)).unwrap_err();
        assert!(err.reason.contains("longer than 24 hours"), "{err}");
        assert!(err.reason.contains("86400001 ms"), "{err}");
        assert!(err.step.starts_with("wait for approval (up to"), "{err}");
    }

    #[test]
    fn an_approval_pause_changes_nothing_the_guard_tracks() {
        let mut g = guard(4);
        g.apply(&scale(Side::New, 1));
        g.apply(&Step::ShiftTraffic(25));
        let before = g.clone();
        assert!(g.check(&approval(3_600_000)).is_ok());
        g.apply(&approval(3_600_000));
        assert_eq!(g, before);
        // Allowed in place too, and after promotion (before the old side goes).
        assert!(in_place(4).check(&approval(60_000)).is_ok());
        g.apply(&scale(Side::New, 4));
        g.apply(&Step::ShiftTraffic(100));
        g.apply(&Step::Promote);
        assert!(g.check(&approval(60_000)).is_ok());
    }

    #[test]
    fn a_person_approves_a_share_the_post_traffic_gates_have_seen() {
        let mut g = guard(4);
        g.apply(&scale(Side::New, 1));
        g.apply(&Step::RunGates(LifecyclePoint::PreTraffic));
        // Before any traffic moved there is nothing for post-traffic gates to look at.
        assert_eq!(g.owed(&approval(60_000)), None);
        g.apply(&Step::ShiftTraffic(25));
        assert_eq!(g.owed(&approval(60_000)), Some(LifecyclePoint::PostTraffic));
        g.apply(&Step::RunGates(LifecyclePoint::PostTraffic));
        assert_eq!(g.owed(&approval(60_000)), None);
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
    fn a_service_sized_to_zero_needs_no_units_for_any_share() {
        // Before a rollout its stable side carries 100% on zero units; so may the new.
        for percent in [0, 1, 50, 100] {
            assert_eq!(units_needed(0, percent), 0);
        }
        let mut g = guard(0);
        assert!(g.check(&scale(Side::New, 0)).is_ok());
        assert!(g.check(&Step::ShiftTraffic(100)).is_ok());
        g.apply(&Step::ShiftTraffic(100));
        assert!(g.check(&Step::Promote).is_ok());
        // A non-empty service still needs a unit for the smallest share.
        assert_eq!(units_needed(1, 1), 1);
    }

    #[test]
    fn a_damaged_share_above_100_does_not_wrap_the_stable_check() {
        let g = SafetyGuard {
            new_percent: 150,
            ..pair(4)
        };
        assert!(g.check(&scale(Side::Stable, 0)).is_ok());
    }

    #[test]
    fn rounding_between_units_and_percent_is_tolerated() {
        let mut g = guard(3);
        g.apply(&scale(Side::New, 1));
        assert!(g.check(&Step::ShiftTraffic(33)).is_ok());
        g.apply(&Step::ShiftTraffic(33));
        assert!(g.check(&scale(Side::Stable, 2)).is_ok());
    }

    fn in_place(desired: u32) -> SafetyGuard {
        SafetyGuard::new(&TargetInfo {
            kind: TargetKind::Simulated,
            desired_count: desired,
            native_rolling: true,
            test_traffic: false,
        })
    }

    fn pair(desired: u32) -> SafetyGuard {
        guard(desired)
    }

    #[test]
    fn after_promotion_traffic_stays_on_the_new_side() {
        let mut g = pair(4);
        g.apply(&scale(Side::New, 4));
        g.apply(&Step::ShiftTraffic(100));
        g.apply(&Step::Promote);
        for back in [0, 1, 50, 99] {
            let err = g.check(&Step::ShiftTraffic(back)).unwrap_err();
            assert!(err.reason.contains("stays 100%"), "{err}");
        }
        assert!(g.check(&Step::ShiftTraffic(100)).is_ok());
        assert!(g.check(&scale(Side::New, 0)).is_err());
        assert!(g.check(&Step::Complete).is_ok());
    }

    #[test]
    fn completing_needs_all_traffic_on_the_new_side() {
        // A guard replayed from a damaged journal, promoted with traffic elsewhere.
        let g = SafetyGuard {
            promoted: true,
            new_percent: 40,
            ..pair(4)
        };
        let err = g.check(&Step::Complete).unwrap_err();
        assert!(err.reason.contains("only 40%"), "{err}");
    }

    #[test]
    fn steps_must_fit_the_targets_shape() {
        let roll = Step::RollingUpdate(deployer_contract::RollingUpdate {
            min_healthy_percent: 50,
            max_percent: 100,
        });
        let err = pair(4).check(&roll).unwrap_err();
        assert!(err.reason.contains("could not be undone"), "{err}");
        assert!(in_place(4).check(&roll).is_ok());
        for step in [
            scale(Side::New, 1),
            Step::ShiftTraffic(0),
            Step::RouteTestTraffic,
        ] {
            let err = in_place(4).check(&step).unwrap_err();
            assert!(err.reason.contains("updated in place"), "{err}");
        }
    }

    /// Walk a script, running owed gates as the engine does; the points run, in order.
    fn owed_along(mut g: SafetyGuard, script: &[Step]) -> Vec<LifecyclePoint> {
        let mut ran = Vec::new();
        for step in script {
            while let Some(point) = g.owed(step) {
                ran.push(point);
                g.apply(&Step::RunGates(point));
            }
            if let Step::RunGates(point) = step {
                ran.push(*point);
            }
            g.apply(step);
        }
        ran
    }

    #[test]
    fn gates_a_strategy_skips_are_owed_where_they_belong() {
        use LifecyclePoint::*;
        let bare = [
            scale(Side::New, 4),
            Step::ShiftTraffic(25),
            Step::ShiftTraffic(25),
            Step::ShiftTraffic(100),
            Step::Promote,
            scale(Side::Stable, 0),
            Step::Complete,
        ];
        assert_eq!(
            owed_along(pair(4), &bare),
            [PreDeploy, PreTraffic, PostTraffic, PostTraffic, PostDeploy]
        );
        // Asked for by the strategy: nothing more.
        let full = [
            Step::RunGates(PreDeploy),
            scale(Side::New, 4),
            Step::RunGates(PreTraffic),
            Step::ShiftTraffic(50),
            Step::RunGates(PostTraffic),
            Step::ShiftTraffic(100),
            Step::RunGates(PostTraffic),
            Step::Promote,
            Step::RunGates(PostDeploy),
            Step::Complete,
        ];
        assert_eq!(
            owed_along(pair(4), &full),
            [PreDeploy, PreTraffic, PostTraffic, PostTraffic, PostDeploy]
        );
        // Post-deploy gates run before promotion do not count for after it.
        let early = [
            scale(Side::New, 4),
            Step::ShiftTraffic(100),
            Step::RunGates(PostTraffic),
            Step::RunGates(PostDeploy),
            Step::Promote,
            Step::Complete,
        ];
        assert_eq!(
            owed_along(pair(4), &early),
            [PreDeploy, PreTraffic, PostTraffic, PostDeploy, PostDeploy]
        );
        // In place: the rolling update is the traffic increase.
        let roll = [
            Step::RollingUpdate(deployer_contract::RollingUpdate {
                min_healthy_percent: 50,
                max_percent: 100,
            }),
            Step::Promote,
            Step::Complete,
        ];
        assert_eq!(
            owed_along(in_place(4), &roll),
            [PreDeploy, PreTraffic, PostTraffic, PostDeploy]
        );
    }
}
