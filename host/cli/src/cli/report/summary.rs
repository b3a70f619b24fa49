//! The machine-readable end of a run ([`Summary`], `--output json`) and the fold that
//! builds it from engine events. Pure: the reporter supplies the clock, the call count and
//! the redactor, and holds the lock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Serialize;

use crate::exit::Outcome;
use deployer_contract::{GateResult, GateStatus, StepOutcome};
use deployer_engine::describe;
use deployer_engine::events::{Event, short_release};
use deployer_engine::state::DeployResult;

/// The machine-readable end of a `run` or `rollback` (`--output json`).
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    /// Version of this document's shape; bumped only for incompatible changes.
    pub schema_version: u32,
    /// `run` or `rollback`.
    pub command: String,
    pub service: Option<String>,
    pub result: SummaryResult,
    /// The process's exit code: 0 success, 1 rolled back, 2 rollback failed, 3 bad input, 4 other.
    pub exit_code: u8,
    /// What happened, in a sentence (the error, for bad input and errors).
    pub detail: String,
    pub deployment: Option<String>,
    pub strategy: Option<String>,
    pub stable_release: Option<String>,
    pub new_release: Option<String>,
    /// An unfinished earlier deployment that was recovered first.
    pub recovered: Option<String>,
    /// The release `--image` made (absent for `--release`).
    pub image_release: Option<ImageReleaseSummary>,
    pub rollback_reason: Option<String>,
    /// The last verified share of traffic on the new release.
    pub traffic_new_percent: Option<u8>,
    pub duration_ms: u64,
    /// From the failing observation (gate result) to the first rollback action.
    pub rollback_latency_ms: Option<u64>,
    /// AWS API calls made (every attempt, retries included).
    pub aws_api_calls: Option<ApiCalls>,
    /// What people asked of the run from outside (`deployer abort`, `deployer promote`)
    /// and it acted on, in order.
    pub signals: Vec<SignalSummary>,
    /// The previous release, kept at full size without traffic after promotion
    /// (`scale-down-delay`).
    pub kept_warm: Option<KeptWarmSummary>,
    pub steps: Vec<StepSummary>,
    /// A release of several services (`deployer run release NAME`, `deployer rollback
    /// --release NAME`): how each service ended. Absent for a single service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseSummary>,
}

/// A release run: its services wave by wave, and how each ended.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ReleaseSummary {
    /// The `[releases.NAME]` table.
    pub name: String,
    /// This release run's id (its journal).
    pub id: String,
    pub waves: Vec<Vec<String>>,
    /// The service whose failure rolled the release back, when one did.
    pub failed_service: Option<String>,
    /// Why the release was rolled back.
    pub rollback_reason: Option<String>,
    /// An unfinished earlier run of the release that was taken back first.
    pub recovered: Option<String>,
    pub services: Vec<ReleaseServiceSummary>,
}

/// One service of a release run.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ReleaseServiceSummary {
    pub service: String,
    /// Its wave, from 1.
    pub wave: usize,
    pub strategy: String,
    /// The release it was deployed to.
    pub new_release: String,
    /// `promoted`, `rolled-back`, `rollback-failed`, `unchanged` (already live) or
    /// `not-started`.
    pub result: crate::cli::release::journal::ServiceResult,
    pub detail: String,
    /// How taking it back with the release ended, when the release was rolled back
    /// after it was promoted.
    pub undone: Option<crate::cli::release::journal::ServiceResult>,
    /// Its deployment as a single run's summary describes it (steps, gates, calls).
    pub run: Option<Box<Summary>>,
    /// The deployment that took it back with the release.
    pub rollback: Option<Box<Summary>>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct SignalSummary {
    /// `abort` or `promote`.
    pub kind: String,
    /// `promote --full`: straight to 100%.
    pub full: bool,
    /// Who sent it (`user@host`, or the GitHub actor and run).
    pub by: String,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct KeptWarmSummary {
    pub release: String,
    /// When it is scaled down at the earliest, ms since the Unix epoch.
    pub until_ms: u64,
}

/// How `--image` came to its release.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ImageReleaseSummary {
    pub made: ImageMade,
    /// The release deployed (`web:8`, `web:4`, or the image on EKS).
    pub release: String,
    /// The live release it was made from (empty on EKS, where the image is the release).
    pub from: String,
    /// The images asked for: `container=image`, or the image alone.
    pub images: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ImageMade {
    /// Registered by this run (a task definition revision, a launch template version).
    Registered,
    /// The newest revision was exactly this already (an earlier attempt's): reused.
    Reused,
    /// The live release runs these images already.
    Live,
    /// EKS: the image is the release.
    Image,
}

impl ImageMade {
    /// What this run did to get its release, when it made or reused one; `None` when
    /// the release line says it all.
    pub fn verb(self) -> Option<&'static str> {
        match self {
            ImageMade::Registered => Some("registered"),
            ImageMade::Reused => Some("reused"),
            ImageMade::Live | ImageMade::Image => None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ApiCalls {
    pub total: u32,
    /// Calls by `Service.Operation`.
    pub by_operation: std::collections::BTreeMap<String, u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SummaryResult {
    /// The new release is live on all traffic (for `rollback`: the previous release is).
    Promoted,
    /// The deployment failed and traffic is back on the stable release.
    RolledBack,
    /// The rollback did not finish: a person must look.
    RollbackFailed,
    /// Nothing needed doing (the release was already live).
    Unchanged,
    /// Arguments, config or plugin files were wrong; nothing was changed.
    BadInput,
    #[default]
    Error,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct StepSummary {
    pub seq: u32,
    /// The step in words, as `plan` prints it.
    pub step: String,
    /// Verified share of traffic on the new release after the step.
    pub traffic_new_percent: u8,
    /// AWS API calls the step made (absent when not counted).
    pub aws_api_calls: Option<u32>,
    pub gates: Vec<GateSummary>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct GateSummary {
    pub name: String,
    pub status: GateWord,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GateWord {
    Pass,
    Fail,
    Inconclusive,
    NoData,
}

impl From<GateStatus> for GateWord {
    fn from(status: GateStatus) -> Self {
        match status {
            GateStatus::Pass => GateWord::Pass,
            GateStatus::Fail => GateWord::Fail,
            GateStatus::Inconclusive => GateWord::Inconclusive,
            GateStatus::NoData => GateWord::NoData,
        }
    }
}

/// The JSON Schema of [`Summary`].
pub fn summary_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Summary);
    schema.insert("title".into(), "deployer run summary".into());
    schema.to_value()
}

/// A [`Summary`] under construction, with what the fold must carry between events.
#[derive(Debug)]
pub struct SummaryFold {
    summary: Summary,
    /// When a gate last reported a failure: the rollback-latency clock starts there, not
    /// at `RollingBack`, because the latency people care about is from the bad signal.
    failed_at: Option<Instant>,
    /// API calls made before the current step began, so a step's own calls can be told
    /// apart from the run's total.
    calls_at_step: Option<u32>,
}

impl Default for SummaryFold {
    fn default() -> Self {
        SummaryFold {
            summary: Summary {
                schema_version: 1,
                ..Summary::default()
            },
            failed_at: None,
            calls_at_step: None,
        }
    }
}

impl SummaryFold {
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The release `--image` made.
    pub fn image_release(&mut self, made: ImageReleaseSummary) {
        self.summary.image_release = Some(made);
    }

    /// The release run this summary describes: its result is the release's.
    pub fn release(&mut self, release: ReleaseSummary, result: SummaryResult, detail: String) {
        self.summary.release = Some(release);
        self.summary.result = result;
        self.summary.detail = detail;
    }

    /// Which command and service the summary describes.
    pub fn begin(&mut self, command: &str, service: Option<&str>) {
        self.summary.command = command.to_string();
        self.summary.service = service.map(str::to_string);
    }

    /// Take in one engine event. `calls_now` is the run's API-call total so far (`None`
    /// when calls are not counted); `now` is when the event arrived.
    pub fn apply(
        &mut self,
        event: &Event<'_>,
        calls_now: Option<u32>,
        now: Instant,
        scrub: &dyn Fn(&str) -> String,
    ) {
        let failing = |results: &[GateResult]| results.iter().any(|r| r.status == GateStatus::Fail);
        let observed = match event {
            Event::StepDone {
                outcome: StepOutcome::Gates(results),
                ..
            } => results.as_slice(),
            Event::Watched { results } => results,
            _ => &[],
        };
        let mut step_calls = None;
        match event {
            Event::Step { .. } => self.calls_at_step = calls_now,
            Event::StepDone { .. } => {
                let before = self.calls_at_step.take();
                step_calls = calls_now.zip(before).map(|(now, before)| now - before);
            }
            _ => {}
        }
        if failing(observed) {
            self.failed_at = Some(now);
        }
        if let Event::Undo { .. } = event
            && let Some(at) = self.failed_at.take()
        {
            self.summary.rollback_latency_ms =
                Some(now.saturating_duration_since(at).as_millis() as u64);
        }
        let summary = &mut self.summary;
        match event {
            Event::Started {
                id,
                stable,
                new,
                strategy,
                ..
            } => {
                summary.deployment = Some(id.to_string());
                summary.strategy = Some(strategy.to_string());
                summary.stable_release = stable.map(|s| short_release(s).to_string());
                summary.new_release = Some(short_release(new).to_string());
                summary.steps.clear();
                summary.rollback_reason = None;
                summary.traffic_new_percent = Some(0);
            }
            Event::Recovering {
                id, stable, new, ..
            } => {
                summary.recovered = Some(id.to_string());
                summary.deployment = Some(id.to_string());
                summary.stable_release = stable.map(|s| short_release(s).to_string());
                summary.new_release = Some(short_release(new).to_string());
            }
            Event::Resuming { id } => {
                summary.recovered = Some(id.to_string());
                summary.deployment = Some(id.to_string());
            }
            Event::UndoVerified { new_percent } | Event::TrafficReadBack { new_percent } => {
                summary.traffic_new_percent = Some(*new_percent);
            }
            Event::StepDone {
                seq,
                step,
                outcome,
                new_percent,
            } => {
                let gates = match outcome {
                    StepOutcome::Gates(results) => {
                        results.iter().map(|r| gate_summary(r, scrub)).collect()
                    }
                    StepOutcome::Done => Vec::new(),
                };
                summary.traffic_new_percent = Some(*new_percent);
                summary.steps.push(StepSummary {
                    seq: *seq,
                    step: scrub(&describe::step(step)),
                    traffic_new_percent: *new_percent,
                    aws_api_calls: step_calls,
                    gates,
                });
            }
            Event::Watched { results } => {
                if let Some(last) = summary.steps.last_mut() {
                    last.gates
                        .extend(results.iter().map(|r| gate_summary(r, scrub)));
                }
            }
            Event::RollingBack { reason } => {
                summary.rollback_reason = Some(scrub(reason));
            }
            Event::Finished { id, result, detail } => {
                summary.deployment = Some(id.to_string());
                summary.result = match result {
                    DeployResult::Promoted => SummaryResult::Promoted,
                    DeployResult::RolledBack => SummaryResult::RolledBack,
                    DeployResult::RollbackFailed => SummaryResult::RollbackFailed,
                };
                if *result == DeployResult::RolledBack {
                    summary.traffic_new_percent = Some(0);
                }
                summary.detail = scrub(detail);
            }
            Event::Signalled { signal, .. } => summary.signals.push(SignalSummary {
                kind: signal.kind.slot().to_string(),
                full: signal.kind == deployer_engine::state::SignalKind::Promote { full: true },
                by: scrub(&signal.by),
                reason: signal.reason.as_deref().map(scrub),
            }),
            Event::KeptWarm { release, until_ms } => {
                summary.kept_warm = Some(KeptWarmSummary {
                    release: short_release(release).to_string(),
                    until_ms: *until_ms,
                });
            }
            Event::Retiring { .. }
            | Event::AwaitingApproval { .. }
            | Event::Retrying { .. }
            | Event::AfterRollback { .. }
            | Event::Step { .. }
            | Event::Undo { .. }
            | Event::Reverting { .. } => {}
        }
    }

    /// The summary at the end of the invocation. `error` is the error that ended it,
    /// already redacted; `calls` the API calls by operation, when counted.
    pub fn close(
        &mut self,
        outcome: Outcome,
        error: Option<&str>,
        calls: Option<BTreeMap<String, u32>>,
        duration: Duration,
    ) -> Summary {
        let summary = &mut self.summary;
        summary.exit_code = outcome as u8;
        if let Some(by_operation) = calls {
            summary.aws_api_calls = Some(ApiCalls {
                total: by_operation.values().sum(),
                by_operation,
            });
        }
        summary.duration_ms = duration.as_millis() as u64;
        match (outcome, error) {
            (Outcome::BadInput, Some(text)) => {
                summary.result = SummaryResult::BadInput;
                summary.detail = text.to_string();
            }
            (_, Some(text)) => {
                summary.result = SummaryResult::Error;
                summary.detail = text.to_string();
            }
            // Nothing was deployed and nothing went wrong: the release was already live.
            (Outcome::Success, None)
                if summary.deployment.is_none() && summary.release.is_none() =>
            {
                summary.result = SummaryResult::Unchanged;
            }
            _ => {}
        }
        summary.clone()
    }
}

fn gate_summary(result: &GateResult, scrub: &dyn Fn(&str) -> String) -> GateSummary {
    GateSummary {
        name: scrub(&result.name),
        status: result.status.into(),
        detail: scrub(&result.detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deployer_contract::{LifecyclePoint, Step};
    use deployer_engine::state::journal::RollbackAction;

    fn gate(name: &str, status: GateStatus, detail: &str) -> GateResult {
        GateResult {
            name: name.into(),
            status,
            detail: detail.into(),
            observed: None,
        }
    }

    fn scrub(text: &str) -> String {
        text.replace("hunter2", "***")
    }

    #[test]
    fn a_canary_that_fails_its_bake_is_summarised_as_rolled_back() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let gates_step = Step::RunGates(LifecyclePoint::PreTraffic);
        let shift = Step::ShiftTraffic(10);
        let bake = Step::Bake(60_000);
        let passed = StepOutcome::Gates(vec![gate("smoke", GateStatus::Pass, "")]);
        let done = StepOutcome::Done;
        let watched = [gate("errors", GateStatus::Fail, "5% > 1% (key hunter2)")];
        let undo = RollbackAction::ShiftTraffic(0);

        let mut fold = SummaryFold::default();
        fold.begin("run", Some("web"));
        let events: [(Event<'_>, Option<u32>, Instant); 12] = [
            (
                Event::Recovering {
                    id: "d0",
                    reason: "left unfinished",
                    stable: Some("web:1"),
                    new: "web:2",
                },
                Some(0),
                at(0),
            ),
            (
                Event::Started {
                    id: "d1",
                    stable: Some("arn:aws:ecs:us-east-1:123456789012:task-definition/web:2"),
                    new: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
                    strategy: "canary",
                    target: "ecs",
                },
                Some(3),
                at(10),
            ),
            (
                Event::Step {
                    seq: 1,
                    step: &gates_step,
                },
                Some(3),
                at(20),
            ),
            (
                Event::StepDone {
                    seq: 1,
                    step: &gates_step,
                    outcome: &passed,
                    new_percent: 0,
                },
                Some(4),
                at(30),
            ),
            (
                Event::Step {
                    seq: 2,
                    step: &shift,
                },
                Some(4),
                at(40),
            ),
            (
                Event::StepDone {
                    seq: 2,
                    step: &shift,
                    outcome: &done,
                    new_percent: 10,
                },
                Some(9),
                at(50),
            ),
            (
                Event::Step {
                    seq: 3,
                    step: &bake,
                },
                Some(9),
                at(60),
            ),
            (Event::Watched { results: &watched }, Some(11), at(1_000)),
            (
                Event::RollingBack {
                    reason: "gate errors failed (key hunter2)",
                },
                Some(11),
                at(1_010),
            ),
            (
                Event::Reverting {
                    service: "web",
                    from: "web:3",
                    to: "web:2",
                },
                Some(11),
                at(1_020),
            ),
            (Event::Undo { action: &undo }, Some(12), at(1_250)),
            (
                Event::Finished {
                    id: "d1",
                    result: DeployResult::RolledBack,
                    detail: "rolled back to web:2",
                },
                Some(14),
                at(2_000),
            ),
        ];
        for (event, calls, now) in &events {
            fold.apply(event, *calls, *now, &scrub);
        }

        let summary = fold.summary();
        assert_eq!(summary.command, "run");
        assert_eq!(summary.service.as_deref(), Some("web"));
        assert_eq!(summary.result, SummaryResult::RolledBack);
        assert_eq!(summary.deployment.as_deref(), Some("d1"));
        assert_eq!(summary.recovered.as_deref(), Some("d0"));
        assert_eq!(summary.strategy.as_deref(), Some("canary"));
        assert_eq!(summary.stable_release.as_deref(), Some("web:2"));
        assert_eq!(summary.new_release.as_deref(), Some("web:3"));
        assert_eq!(
            summary.rollback_reason.as_deref(),
            Some("gate errors failed (key ***)")
        );
        assert_eq!(summary.detail, "rolled back to web:2");
        // Rolled back: whatever share the new release had, it has none now.
        assert_eq!(summary.traffic_new_percent, Some(0));
        // From the failing bake check to the first rollback action.
        assert_eq!(summary.rollback_latency_ms, Some(250));

        let steps: Vec<_> = summary
            .steps
            .iter()
            .map(|s| {
                (
                    s.seq,
                    s.step.as_str(),
                    s.traffic_new_percent,
                    s.aws_api_calls,
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                (1, describe::step(&gates_step).as_str(), 0, Some(1)),
                (2, describe::step(&shift).as_str(), 10, Some(5)),
            ]
        );
        let gates: Vec<_> = summary
            .steps
            .iter()
            .map(|s| {
                s.gates
                    .iter()
                    .map(|g| (g.name.as_str(), g.status, g.detail.as_str()))
                    .collect::<Vec<_>>()
            })
            .collect();
        // The bake's checks belong to the last finished step.
        assert_eq!(
            gates,
            [
                vec![("smoke", GateWord::Pass, "")],
                vec![("errors", GateWord::Fail, "5% > 1% (key ***)")],
            ]
        );
    }

    #[test]
    fn an_undo_without_a_failing_gate_has_no_rollback_latency() {
        let undo = RollbackAction::Discard;
        let mut fold = SummaryFold::default();
        fold.apply(&Event::Undo { action: &undo }, None, Instant::now(), &scrub);
        assert_eq!(fold.summary().rollback_latency_ms, None);
    }

    #[test]
    fn steps_without_a_call_counter_have_no_call_count() {
        let step = Step::Promote;
        let mut fold = SummaryFold::default();
        let now = Instant::now();
        fold.apply(
            &Event::Step {
                seq: 1,
                step: &step,
            },
            None,
            now,
            &scrub,
        );
        fold.apply(
            &Event::StepDone {
                seq: 1,
                step: &step,
                outcome: &StepOutcome::Done,
                new_percent: 100,
            },
            None,
            now,
            &scrub,
        );
        assert_eq!(fold.summary().steps[0].aws_api_calls, None);
        assert_eq!(fold.summary().traffic_new_percent, Some(100));
    }

    #[test]
    fn closing_fills_in_the_exit_and_the_error() {
        let mut fold = SummaryFold::default();
        fold.begin("run", Some("web"));
        let calls = BTreeMap::from([
            ("ECS.DescribeServices".to_string(), 3),
            ("ECS.UpdateService".to_string(), 1),
        ]);
        let summary = fold.close(
            Outcome::BadInput,
            Some("config: bad weight"),
            Some(calls),
            Duration::from_millis(1_500),
        );
        assert_eq!(summary.schema_version, 1);
        assert_eq!(summary.exit_code, 3);
        assert_eq!(summary.result, SummaryResult::BadInput);
        assert_eq!(summary.detail, "config: bad weight");
        assert_eq!(summary.duration_ms, 1_500);
        let calls = summary.aws_api_calls.unwrap();
        assert_eq!(calls.total, 4);
        assert_eq!(calls.by_operation["ECS.UpdateService"], 1);

        let mut fold = SummaryFold::default();
        let summary = fold.close(Outcome::Success, None, None, Duration::ZERO);
        assert_eq!(summary.result, SummaryResult::Unchanged);
        assert!(summary.aws_api_calls.is_none());

        let mut fold = SummaryFold::default();
        let summary = fold.close(Outcome::Error, Some("boom"), None, Duration::ZERO);
        assert_eq!(
            (summary.result, summary.detail.as_str()),
            (SummaryResult::Error, "boom")
        );
    }
}
