//! Steps and gate points in words, for `plan`, logs and `history`.

use deployer_contract::{
    Approval, ApprovalTimeout, LifecyclePoint, RollingUpdate, ScaleRequest, Side, Step,
};

pub fn point(point: LifecyclePoint) -> &'static str {
    match point {
        LifecyclePoint::PreDeploy => "pre-deploy",
        LifecyclePoint::PreTraffic => "pre-traffic",
        LifecyclePoint::PostTraffic => "post-traffic",
        LifecyclePoint::PostDeploy => "post-deploy",
        LifecyclePoint::PostRollback => "post-rollback",
    }
}

/// `1h30m`-style text for milliseconds, the same syntax config uses.
pub fn duration_ms(ms: u64) -> String {
    deployer_contract::Duration { millis: ms }.to_string()
}

/// [`duration_ms`] of a `std` duration.
pub fn duration(d: std::time::Duration) -> String {
    duration_ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A time (ms since the Unix epoch) as people read it: `2026-12-01 14:30:05 UTC`.
pub fn utc(ms: u64) -> String {
    match i64::try_from(ms).map(jiff::Timestamp::from_millisecond) {
        Ok(Ok(at)) => at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        _ => format!("{ms} ms after the epoch"),
    }
}

/// An error with its causes on one line ("error sending request: connection refused"),
/// each cause once.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text += &format!(": {cause_text}");
        }
        source = cause.source();
    }
    text
}

pub fn step(step: &Step) -> String {
    match step {
        Step::Scale(ScaleRequest { side, count }) => {
            let side = match side {
                Side::Stable => "stable",
                Side::New => "new",
            };
            let units = if *count == 1 { "unit" } else { "units" };
            format!("scale {side} side to {count} {units}")
        }
        Step::ShiftTraffic(p) => format!(
            "shift traffic: {p}% new / {}% stable",
            100u8.saturating_sub(*p)
        ),
        Step::RouteTestTraffic => "route test traffic to the new side".into(),
        Step::RunGates(p) => format!("run {} gates", point(*p)),
        Step::Bake(ms) => format!("bake {}", duration_ms(*ms)),
        Step::RollingUpdate(RollingUpdate {
            min_healthy_percent,
            max_percent,
        }) => format!(
            "rolling update in place (min healthy {min_healthy_percent}%, max {max_percent}%)"
        ),
        Step::Promote => "promote the new release to stable".into(),
        Step::Complete => "complete".into(),
        Step::Abort(reason) => format!("abort: {reason}"),
        Step::AwaitApproval(Approval {
            timeout_ms,
            on_timeout,
        }) => {
            let then = match on_timeout {
                ApprovalTimeout::RollBack => "roll back",
                ApprovalTimeout::Continue => "continue",
            };
            format!(
                "wait for approval (up to {}, then {then})",
                duration_ms(*timeout_ms)
            )
        }
    }
}

/// A journaled action in words ("shift traffic: 50% new / 50% stable", "rollback:
/// remove the new side").
pub fn action(action: &crate::state::Action) -> String {
    use crate::state::Action;
    use crate::state::journal::RollbackAction;
    match action {
        Action::Prepare { release } => format!("create the new side for {release}"),
        Action::Step(s) => step(s),
        Action::HostGates(p) => format!("run {} gates (the strategy owed them)", point(*p)),
        Action::Rollback(RollbackAction::Scale(scale)) => {
            format!("rollback: {}", step(&Step::Scale(*scale)))
        }
        Action::Rollback(RollbackAction::ShiftTraffic(p)) => {
            format!("rollback: {}", step(&Step::ShiftTraffic(*p)))
        }
        Action::Rollback(RollbackAction::RollingUndo) => {
            "rollback: roll the stable release back out in place".to_string()
        }
        Action::Rollback(RollbackAction::Discard) => "rollback: remove the new side".to_string(),
        Action::RetireWarm => "scale down the side kept warm".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_ms(90_000), "1m30s");
        assert_eq!(duration_ms(5_400_000), "1h30m");
        assert_eq!(duration_ms(1500), "1500ms");
        assert_eq!(utc(1_796_098_205_000), "2026-12-01 04:10:05 UTC");
    }

    #[test]
    fn an_approval_pause_says_how_long_and_what_then() {
        let pause = |timeout_ms, on_timeout| {
            step(&Step::AwaitApproval(Approval {
                timeout_ms,
                on_timeout,
            }))
        };
        assert_eq!(
            pause(3_600_000, ApprovalTimeout::RollBack),
            "wait for approval (up to 1h, then roll back)"
        );
        assert_eq!(
            pause(90_000, ApprovalTimeout::Continue),
            "wait for approval (up to 1m30s, then continue)"
        );
    }
}
