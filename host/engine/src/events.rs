//! What the engine reports while it works. The engine only emits events; the CLI decides
//! how they look (plain lines, a live terminal view, JSON, CI annotations).

use std::fmt;
use std::time::Duration;

use crate::describe;
use crate::state::journal::RollbackAction;
use crate::state::{DeployResult, Signal};
use deployer_contract::{GateResult, GateStatus, Step, StepOutcome};

/// One thing that happened in a run.
#[derive(Debug)]
pub enum Event<'a> {
    Started {
        id: &'a str,
        stable: Option<&'a str>,
        new: &'a str,
        strategy: &'a str,
        target: &'a str,
    },
    /// An unfinished deployment is carried on.
    Resuming {
        id: &'a str,
    },
    /// An unfinished deployment (from `stable` to `new`) is rolled back before
    /// anything else happens.
    Recovering {
        id: &'a str,
        reason: &'a str,
        stable: Option<&'a str>,
        new: &'a str,
    },
    /// A step was journaled and is being carried out.
    Step {
        seq: u32,
        step: &'a Step,
    },
    /// A step finished; `new_percent` is the verified share of traffic on the new side.
    StepDone {
        seq: u32,
        step: &'a Step,
        outcome: &'a StepOutcome,
        new_percent: u8,
    },
    /// The gates watched during a bake were checked.
    Watched {
        results: &'a [GateResult],
    },
    /// A transient cloud failure; the action is retried after `wait`.
    Retrying {
        wait: Duration,
        message: &'a str,
    },
    RollingBack {
        reason: &'a str,
    },
    /// `rollback` replaces the live release with the one it replaced.
    Reverting {
        service: &'a str,
        from: &'a str,
        to: &'a str,
    },
    /// One rollback action is being carried out.
    Undo {
        action: &'a RollbackAction,
    },
    /// A rollback's traffic shift was read back from the load balancer as asked.
    UndoVerified {
        new_percent: u8,
    },
    /// At the end of a rollback, production traffic as read from the load balancer
    /// (not as the journal records it).
    TrafficReadBack {
        new_percent: u8,
    },
    /// A post-rollback gate or hook ran (it cannot change the outcome).
    AfterRollback {
        result: &'a GateResult,
    },
    Finished {
        id: &'a str,
        result: DeployResult,
        detail: &'a str,
    },
    /// The run acted on a person's signal (`deployer abort`, `deployer promote`);
    /// `effect` says what it does about it.
    Signalled {
        signal: &'a Signal,
        effect: &'a str,
    },
    /// The promoted run keeps the old side (`release`) at full size without traffic
    /// until `until_ms` (`scale-down-delay`).
    KeptWarm {
        release: &'a str,
        until_ms: u64,
    },
    /// The run waits for a person: `deployer promote` continues it, `deployer abort`
    /// rolls it back; at `until_ms` it rolls back (or goes on, `continues`).
    AwaitingApproval {
        service: &'a str,
        until_ms: u64,
        continues: bool,
    },
    /// The side a promoted deployment kept warm is scaled down now.
    Retiring {
        release: &'a str,
        deployment: &'a str,
    },
}

impl Event<'_> {
    /// Events a line-by-line log leaves out: a step that finished with nothing to show.
    pub fn is_quiet(&self) -> bool {
        matches!(
            self,
            Event::StepDone { step, outcome, .. }
                if !matches!(outcome, StepOutcome::Gates(g) if !g.is_empty())
                    && !matches!(step, Step::ShiftTraffic(_))
        )
    }
}

/// Where events go.
pub type Sink<'a> = &'a (dyn Fn(&Event<'_>) + Send + Sync);

/// An ECS task definition ARN as people write it (`web:42`); anything else unchanged.
pub fn short_release(release: &str) -> &str {
    release
        .rsplit_once(":task-definition/")
        .map_or(release, |(_, short)| short)
}

pub fn status_word(status: GateStatus) -> &'static str {
    match status {
        GateStatus::Pass => "pass",
        GateStatus::Fail => "fail",
        GateStatus::Inconclusive => "inconclusive",
        GateStatus::NoData => "no-data",
    }
}

pub fn result_word(result: DeployResult) -> &'static str {
    match result {
        DeployResult::Promoted => "promoted",
        DeployResult::RolledBack => "rolled back",
        DeployResult::RollbackFailed => "ROLLBACK FAILED",
    }
}

/// A deployment's result and what happened, as one phrase: `rolled back to web:2: gate
/// `smoke` failed: …`, `promoted: web:3 is live on 100% of traffic`, `ROLLBACK FAILED: …`.
///
/// The engine's details are sentences that may already begin with their result (a
/// rollback's "rolled back to web:2: …", a failed rollback's "rollback failed: …"), and
/// journals written by earlier versions keep theirs: the result is said once either way.
pub fn outcome(result: DeployResult, detail: &str) -> String {
    let (word, said) = match result {
        DeployResult::Promoted => ("promoted", "promoted"),
        DeployResult::RolledBack => ("rolled back", "rolled back"),
        DeployResult::RollbackFailed => ("ROLLBACK FAILED", "rollback failed"),
    };
    match detail.get(..said.len()) {
        Some(head) if head.eq_ignore_ascii_case(said) => format!("{word}{}", &detail[said.len()..]),
        _ if detail.is_empty() => word.to_string(),
        _ => format!("{word}: {detail}"),
    }
}

/// Gate results on one line, separated by `; `.
fn gate_lines(f: &mut fmt::Formatter<'_>, results: &[GateResult]) -> fmt::Result {
    for (i, result) in results.iter().enumerate() {
        if i > 0 {
            write!(f, "; ")?;
        }
        gate_line(f, result)?;
    }
    Ok(())
}

fn gate_line(f: &mut fmt::Formatter<'_>, result: &GateResult) -> fmt::Result {
    write!(f, "gate {}: {}", result.name, status_word(result.status))?;
    if !result.detail.is_empty() {
        write!(f, " ({})", result.detail)?;
    }
    Ok(())
}

/// The plain one-line form, as logged when output is not a terminal.
impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Started {
                id,
                stable,
                new,
                strategy,
                target,
            } => write!(
                f,
                "deployment {id}: {} → {} with `{strategy}` on {target}",
                stable.map_or("(nothing)", short_release),
                short_release(new)
            ),
            Event::Resuming { id } => write!(f, "resuming unfinished deployment {id}"),
            Event::Recovering { id, reason, .. } => {
                write!(f, "rolling back unfinished deployment {id}: {reason}")
            }
            Event::Step { seq, step } => write!(f, "step {seq}: {}", describe::step(step)),
            Event::StepDone {
                seq,
                step,
                outcome,
                new_percent,
            } => match (step, outcome) {
                (_, StepOutcome::Gates(results)) => {
                    write!(f, "step {seq}: ")?;
                    if results.is_empty() {
                        return write!(f, "no gates configured here");
                    }
                    gate_lines(f, results)
                }
                (Step::ShiftTraffic(_), _) => write!(
                    f,
                    "step {seq}: weights verified: {new_percent}% new / {}% stable",
                    100u8.saturating_sub(*new_percent)
                ),
                _ => write!(f, "step {seq}: done"),
            },
            Event::Watched { results } => {
                write!(f, "bake check: ")?;
                gate_lines(f, results)
            }
            Event::Retrying { wait, message } => {
                if wait.is_zero() {
                    write!(f, "transient failure, retrying: {message}")
                } else {
                    write!(
                        f,
                        "transient failure, retrying in {}: {message}",
                        crate::describe::duration(*wait)
                    )
                }
            }
            Event::RollingBack { reason } => write!(f, "rolling back: {reason}"),
            Event::Reverting { service, from, to } => write!(
                f,
                "rolling {service} back from {} to {}",
                short_release(from),
                short_release(to)
            ),
            Event::Undo { action } => match action {
                RollbackAction::Scale(scale) => {
                    write!(f, "rollback: {}", describe::step(&Step::Scale(*scale)))
                }
                // Verified only once read back: see `UndoVerified`.
                RollbackAction::ShiftTraffic(p) => {
                    write!(f, "rollback: {}", describe::step(&Step::ShiftTraffic(*p)))
                }
                RollbackAction::RollingUndo => {
                    write!(f, "rollback: roll the stable release back out in place")
                }
                RollbackAction::Discard => write!(f, "rollback: remove the new side"),
            },
            Event::UndoVerified { new_percent } => write!(
                f,
                "rollback: weights verified: {new_percent}% new / {}% stable",
                100 - new_percent
            ),
            Event::TrafficReadBack { new_percent } => write!(
                f,
                "traffic read back from the load balancer: {new_percent}% new / {}% stable",
                100 - new_percent
            ),
            Event::AfterRollback { result } => {
                write!(f, "post-rollback ")?;
                gate_line(f, result)
            }
            Event::Finished { id, result, detail } => {
                write!(f, "deployment {id}: {}", outcome(*result, detail))
            }
            Event::Signalled { signal, effect } => write!(f, "{}: {effect}", signal.describe()),
            Event::AwaitingApproval {
                service,
                until_ms,
                continues,
            } => write!(
                f,
                "waiting for approval until {}: `deployer promote --service {service}` continues, \
                 `deployer abort --service {service}` rolls back; unanswered, it {}",
                describe::utc(*until_ms),
                if *continues { "goes on" } else { "rolls back" }
            ),
            Event::KeptWarm { release, until_ms } => write!(
                f,
                "{} stays at full size without traffic until {} (scale-down-delay): \
                 `deployer rollback` until then only moves traffic back",
                short_release(release),
                describe::utc(*until_ms)
            ),
            Event::Retiring {
                release,
                deployment,
            } => write!(
                f,
                "scaling down {}, kept warm after deployment {deployment}",
                short_release(release)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_definition_arns_read_as_family_and_revision() {
        assert_eq!(
            short_release("arn:aws:ecs:us-east-1:123456789012:task-definition/web:2"),
            "web:2"
        );
        assert_eq!(short_release("web:3"), "web:3");
        assert_eq!(short_release("registry/app:v1"), "registry/app:v1");
    }

    /// Each result is said once, whether or not the detail begins with it (journals of
    /// earlier versions included).
    #[test]
    fn a_result_is_said_once() {
        let finished = |result, detail| {
            Event::Finished {
                id: "web-20261201-041230-7kq3",
                result,
                detail,
            }
            .to_string()
        };
        assert_eq!(
            finished(
                DeployResult::RolledBack,
                "rolled back to web:2: gate `alarm:x` failed: ALARM"
            ),
            "deployment web-20261201-041230-7kq3: rolled back to web:2: gate `alarm:x` failed: ALARM"
        );
        assert_eq!(
            outcome(DeployResult::RolledBack, "gate `smoke` failed"),
            "rolled back: gate `smoke` failed"
        );
        assert_eq!(
            outcome(DeployResult::Promoted, "web:3 is live on 100% of traffic"),
            "promoted: web:3 is live on 100% of traffic"
        );
        assert_eq!(
            outcome(
                DeployResult::RollbackFailed,
                "rollback failed after traffic was back on web:2: timeout"
            ),
            "ROLLBACK FAILED after traffic was back on web:2: timeout"
        );
        assert_eq!(
            outcome(
                DeployResult::RollbackFailed,
                "rollback failed: timeout; 25% of traffic may still reach web:3"
            ),
            "ROLLBACK FAILED: timeout; 25% of traffic may still reach web:3"
        );
        assert_eq!(
            outcome(DeployResult::RollbackFailed, "could not shift traffic back"),
            "ROLLBACK FAILED: could not shift traffic back"
        );
        // A multi-byte character where the result word would end is no panic.
        assert_eq!(
            outcome(DeployResult::Promoted, "promote→d"),
            "promoted: promote→d"
        );
        assert_eq!(outcome(DeployResult::RolledBack, ""), "rolled back");
    }
}
