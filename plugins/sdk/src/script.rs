//! Follow a fixed script of steps through a rollout's history.
//!
//! Most strategies are a list of steps computed from their parameters. [`next_step`]
//! walks the history against that list, applies the [`GatePolicy`] to each gate result
//! and returns what comes next, so a strategy stays a pure function of its state: the
//! property the host relies on to resume a killed run or to simulate one in `plan`.

use serde::Deserialize;

use crate::params::Duration;
use crate::{GateResult, GateStatus, Step, StepOutcome, StepRecord};

/// What to do with a gate that could not decide.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Unclear {
    /// Wait `retry-interval` and run the gates again, up to `max-retries` times.
    Retry,
    /// Treat as a failure: roll back.
    Fail,
    /// Treat as a pass.
    Pass,
}

/// How gate results are judged. Parameter table `gates` of the built-in strategies.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct GatePolicy {
    /// An inconclusive gate (default: retry).
    pub inconclusive: Unclear,
    /// A gate with no data (default: fail, so a silent signal never promotes a release).
    pub no_data: Unclear,
    /// How many times unclear gates are re-run before the rollout is aborted.
    pub max_retries: u32,
    /// The wait between re-runs.
    pub retry_interval: Duration,
}

impl Default for GatePolicy {
    fn default() -> Self {
        GatePolicy {
            inconclusive: Unclear::Retry,
            no_data: Unclear::Fail,
            max_retries: 3,
            retry_interval: Duration::from_secs(30),
        }
    }
}

/// The verdict on one set of gate results.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Proceed,
    Retry(String),
    Fail(String),
}

impl GatePolicy {
    /// Problems with the policy as parameter table `field` (`gates`): a retry interval
    /// is waited as a `bake` step, so it is held to the host's longest bake.
    pub fn check(&self, field: &str) -> Vec<crate::ParamError> {
        crate::params::check_bake(format!("{field}.retry-interval"), self.retry_interval)
            .into_iter()
            .collect()
    }

    /// Judge one run of gates: any failure fails; unclear results follow the policy.
    pub fn judge(&self, results: &[GateResult]) -> Verdict {
        if let Some(failed) = results.iter().find(|r| r.status == GateStatus::Fail) {
            return Verdict::Fail(describe(failed, "failed"));
        }
        let mut retry = None;
        for result in results {
            let (policy, what) = match result.status {
                GateStatus::Inconclusive => (self.inconclusive, "was inconclusive"),
                GateStatus::NoData => (self.no_data, "had no data"),
                GateStatus::Pass | GateStatus::Fail => continue,
            };
            match policy {
                Unclear::Fail => return Verdict::Fail(describe(result, what)),
                Unclear::Retry => retry = retry.or_else(|| Some(describe(result, what))),
                Unclear::Pass => {}
            }
        }
        retry.map_or(Verdict::Proceed, Verdict::Retry)
    }
}

fn describe(result: &GateResult, what: &str) -> String {
    if result.detail.is_empty() {
        format!("gate `{}` {what}", result.name)
    } else {
        format!("gate `{}` {what}: {}", result.name, result.detail)
    }
}

/// The next step of `script` given the `history` of a rollout.
///
/// A gate run whose results the policy wants retried is followed by a `bake` of the
/// retry interval and the same `run-gates` step again.
///
/// # Errors
/// When the history does not match the script (the strategy or its parameters changed
/// while a deployment was in flight), or the script ran out without `complete`.
pub fn next_step(
    script: &[Step],
    history: &[StepRecord],
    policy: &GatePolicy,
) -> Result<Step, String> {
    let retry_wait = Step::Bake(policy.retry_interval.millis);
    let mut cursor = 0;
    let mut retries: u32 = 0;
    let mut waiting = false;
    for (n, record) in history.iter().enumerate() {
        if waiting {
            expect(n, &record.step, &retry_wait)?;
            waiting = false;
            continue;
        }
        let expected = script.get(cursor).ok_or_else(|| {
            format!(
                "history has more steps ({}) than the plan ({})",
                history.len(),
                script.len()
            )
        })?;
        expect(n, &record.step, expected)?;
        match &record.outcome {
            StepOutcome::Gates(results) => match policy.judge(results) {
                Verdict::Proceed => {
                    cursor += 1;
                    retries = 0;
                }
                Verdict::Retry(why) => {
                    // Saturating: `max-retries` may be u32::MAX ("retry forever").
                    retries = retries.saturating_add(1);
                    if retries > policy.max_retries {
                        return Ok(Step::Abort(format!("{why} (after {retries} attempts)")));
                    }
                    waiting = !policy.retry_interval.is_zero();
                }
                Verdict::Fail(why) => return Ok(Step::Abort(why)),
            },
            StepOutcome::Done => cursor += 1,
        }
    }
    if waiting {
        return Ok(retry_wait);
    }
    script
        .get(cursor)
        .cloned()
        .ok_or_else(|| "the plan ended without a `complete` step".to_string())
}

fn expect(n: usize, actual: &Step, expected: &Step) -> Result<(), String> {
    if actual == expected {
        Ok(())
    } else {
        Err(format!(
            "history step {} was {actual:?} but the plan says {expected:?}: \
             the strategy or its parameters changed during this deployment",
            n + 1
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LifecyclePoint;

    fn gate(status: GateStatus) -> GateResult {
        GateResult {
            name: "http:/health".into(),
            status,
            detail: String::new(),
            observed: None,
        }
    }

    fn done(step: Step) -> StepRecord {
        StepRecord {
            step,
            outcome: StepOutcome::Done,
        }
    }

    fn gates(statuses: &[GateStatus]) -> StepRecord {
        StepRecord {
            step: Step::RunGates(LifecyclePoint::PostTraffic),
            outcome: StepOutcome::Gates(statuses.iter().map(|s| gate(*s)).collect()),
        }
    }

    fn script() -> Vec<Step> {
        vec![
            Step::ShiftTraffic(10),
            Step::RunGates(LifecyclePoint::PostTraffic),
            Step::ShiftTraffic(100),
            Step::Complete,
        ]
    }

    #[test]
    fn follows_the_script_when_gates_pass() {
        let policy = GatePolicy::default();
        let history = [done(Step::ShiftTraffic(10)), gates(&[GateStatus::Pass])];
        assert_eq!(
            next_step(&script(), &history, &policy),
            Ok(Step::ShiftTraffic(100))
        );
        assert_eq!(
            next_step(&script(), &[], &policy),
            Ok(Step::ShiftTraffic(10))
        );
    }

    #[test]
    fn a_failed_gate_aborts() {
        let history = [
            done(Step::ShiftTraffic(10)),
            gates(&[GateStatus::Pass, GateStatus::Fail]),
        ];
        let next = next_step(&script(), &history, &GatePolicy::default()).unwrap();
        assert!(
            matches!(next, Step::Abort(ref why) if why.contains("http:/health` failed")),
            "{next:?}"
        );
    }

    #[test]
    fn no_data_fails_closed_by_default() {
        let history = [done(Step::ShiftTraffic(10)), gates(&[GateStatus::NoData])];
        let next = next_step(&script(), &history, &GatePolicy::default()).unwrap();
        assert!(
            matches!(next, Step::Abort(ref why) if why.contains("had no data")),
            "{next:?}"
        );
    }

    #[test]
    fn inconclusive_retries_after_a_wait_then_aborts() {
        let policy = GatePolicy {
            max_retries: 1,
            ..GatePolicy::default()
        };
        let wait = Step::Bake(30_000);
        let mut history = vec![
            done(Step::ShiftTraffic(10)),
            gates(&[GateStatus::Inconclusive]),
        ];
        assert_eq!(next_step(&script(), &history, &policy), Ok(wait.clone()));
        history.push(done(wait.clone()));
        assert_eq!(
            next_step(&script(), &history, &policy),
            Ok(Step::RunGates(LifecyclePoint::PostTraffic))
        );
        history.push(gates(&[GateStatus::Inconclusive]));
        let next = next_step(&script(), &history, &policy).unwrap();
        assert!(
            matches!(next, Step::Abort(ref why) if why.contains("after 2 attempts")),
            "{next:?}"
        );
    }

    #[test]
    fn a_retry_that_passes_moves_on() {
        let policy = GatePolicy::default();
        let history = [
            done(Step::ShiftTraffic(10)),
            gates(&[GateStatus::Inconclusive]),
            done(Step::Bake(30_000)),
            gates(&[GateStatus::Pass]),
        ];
        assert_eq!(
            next_step(&script(), &history, &policy),
            Ok(Step::ShiftTraffic(100))
        );
    }

    #[test]
    fn unclear_results_can_be_passed_by_policy() {
        let policy = GatePolicy {
            inconclusive: Unclear::Pass,
            no_data: Unclear::Pass,
            ..GatePolicy::default()
        };
        let history = [
            done(Step::ShiftTraffic(10)),
            gates(&[GateStatus::NoData, GateStatus::Inconclusive]),
        ];
        assert_eq!(
            next_step(&script(), &history, &policy),
            Ok(Step::ShiftTraffic(100))
        );
    }

    #[test]
    fn an_approval_pause_is_a_step_of_the_script_like_any_other() {
        let pause = Step::AwaitApproval(crate::Approval {
            timeout_ms: 3_600_000,
            on_timeout: crate::ApprovalTimeout::RollBack,
        });
        let script = [
            Step::ShiftTraffic(10),
            pause.clone(),
            Step::ShiftTraffic(100),
            Step::Complete,
        ];
        let policy = GatePolicy::default();
        let history = [done(Step::ShiftTraffic(10))];
        assert_eq!(next_step(&script, &history, &policy), Ok(pause.clone()));
        // Approved (or timed out with `continue`): the host records it done.
        let history = [done(Step::ShiftTraffic(10)), done(pause)];
        assert_eq!(
            next_step(&script, &history, &policy),
            Ok(Step::ShiftTraffic(100))
        );
    }

    #[test]
    fn a_diverging_history_is_an_error() {
        let history = [done(Step::ShiftTraffic(20))];
        let err = next_step(&script(), &history, &GatePolicy::default()).unwrap_err();
        assert!(err.contains("history step 1"), "{err}");
    }
}
