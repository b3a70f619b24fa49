//! The rollout engine: asks the strategy for steps, checks them against the safety
//! rules, journals each before carrying it out through the driver, runs gates, and
//! rolls back on any failed gate, plugin failure, refused step, error or cancel.
//!
//! A run killed at any point leaves a journal whose last intent may be unfinished.
//! The next invocation finds it under the service's lock and either resumes it
//! (replaying the in-flight step, which is safe because steps are absolute) or rolls it
//! back, as configured.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::describe;
use super::driver::{Driver, DriverError};
use super::events::{Event, Sink, short_release};
use super::gates::{GateContext, Gates};
use super::safety::SafetyGuard;
use crate::plugin::bindings::types::{
    GateStatus, LifecyclePoint, RolloutState, ScaleRequest, Side, Step, StepOutcome, TargetInfo,
};
use crate::plugin::strategy::StrategyPlugin;
use crate::state::journal::RollbackAction;
use crate::state::local::now_ms;
use crate::state::{Action, DeployResult, Journal, Record, StateError, Store};

/// What to do with an unfinished deployment found at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumePolicy {
    /// Continue it where it stopped, if it is the same release, strategy and parameters.
    Resume,
    /// Roll it back first (the default: fail closed).
    Rollback,
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// How often continuous gates run during a bake.
    pub watch_interval: Duration,
    pub on_resume: ResumePolicy,
    /// Rollback actions are retried until this much time has passed.
    pub rollback_deadline: Duration,
    /// First wait between retries of a transient failure (doubles, capped at 30 s).
    pub retry_base: Duration,
    /// Transient failures of a forward step are retried this many times.
    pub step_retries: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            watch_interval: Duration::from_secs(30),
            on_resume: ResumePolicy::Rollback,
            rollback_deadline: Duration::from_secs(15 * 60),
            retry_base: Duration::from_secs(1),
            step_retries: 3,
        }
    }
}

/// What to deploy.
#[derive(Clone, Debug)]
pub struct DeployRequest {
    pub strategy: String,
    pub new_release: String,
    pub stable_release: Option<String>,
    pub params: String,
    pub target: TargetInfo,
}

/// How a deployment ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub id: String,
    pub result: DeployResult,
    pub detail: String,
    /// An unfinished earlier deployment this run resumed or rolled back first.
    pub recovered: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    State(#[from] StateError),
}

/// One engine per deployment run.
pub struct Engine<'a, D: Driver, G: Gates> {
    pub service: &'a str,
    pub strategy: &'a StrategyPlugin,
    pub driver: &'a D,
    pub gates: &'a G,
    pub store: &'a Store,
    pub settings: Settings,
    /// Cancelled on SIGINT/SIGTERM: the run rolls back.
    pub cancel: CancellationToken,
    /// Where progress goes (see [`Event`]).
    pub events: Sink<'a>,
}

/// A deployment in progress: its journal, what it knows, and its identity.
struct Run {
    id: String,
    journal: Journal,
    target: TargetInfo,
    params: String,
    ctx: GateContext,
}

enum Flow {
    Continue,
    RollBack(String),
}

impl<D: Driver, G: Gates> Engine<'_, D, G> {
    /// Deploy `request`, first recovering any unfinished deployment of the service.
    ///
    /// # Errors
    /// The service is locked by a live run, or the journal cannot be written (then
    /// nothing further was changed).
    pub async fn deploy(&self, request: DeployRequest) -> Result<Report, EngineError> {
        let id = new_id();
        let lock = self.store.lock(self.service, &id).await?;
        let result = self.deploy_locked(id, request).await;
        lock.release().await;
        result
    }

    async fn deploy_locked(
        &self,
        id: String,
        request: DeployRequest,
    ) -> Result<Report, EngineError> {
        let mut recovered = None;
        if let Some(journal) = self.store.active(self.service).await? {
            let old = journal.id().unwrap_or("?").to_string();
            let same = self.matches(&journal, &request);
            if let Some(report) = self.recover(journal, Some(&request)).await? {
                if report.result == DeployResult::Promoted && same {
                    return Ok(Report {
                        recovered: Some(old),
                        ..report
                    });
                }
                if report.result == DeployResult::RollbackFailed {
                    return Ok(report);
                }
                recovered = Some(old);
            }
        }
        let started = Record::Started {
            id: id.clone(),
            service: self.service.to_string(),
            strategy: request.strategy.clone(),
            strategy_digest: self.strategy.digest().to_string(),
            params: request.params.clone(),
            target: request.target,
            new_release: request.new_release.clone(),
            stable_release: request.stable_release.clone(),
            at_ms: now_ms(),
        };
        self.store.begin(self.service, &id, &started).await?;
        (self.events)(&Event::Started {
            id: &id,
            stable: request.stable_release.as_deref(),
            new: &request.new_release,
            strategy: &request.strategy,
            target: &self.driver.describe(),
        });
        let run = self.run_from(Journal {
            records: vec![started],
        });
        let report = self.drive(run).await?;
        Ok(Report {
            recovered,
            ..report
        })
    }

    /// Recover the service's unfinished deployment, if any, by rolling it back.
    ///
    /// # Errors
    /// The service is locked by a live run, or the journal cannot be read or written.
    pub async fn recover_active(&self) -> Result<Option<Report>, EngineError> {
        let lock = self.store.lock(self.service, &new_id()).await?;
        let result = match self.store.active(self.service).await {
            Ok(Some(journal)) => self.recover(journal, None).await,
            Ok(None) => Ok(None),
            Err(err) => Err(err.into()),
        };
        lock.release().await;
        result
    }

    /// Whether `journal` is a run of exactly `request`: same release, strategy
    /// component and parameters (only then may it be resumed).
    fn matches(&self, journal: &Journal, request: &DeployRequest) -> bool {
        matches!(
            journal.started(),
            Some(Record::Started { new_release, strategy, params, strategy_digest, .. })
                if *new_release == request.new_release
                    && *strategy == request.strategy
                    && *params == request.params
                    && strategy_digest == self.strategy.digest()
        )
    }

    async fn recover(
        &self,
        journal: Journal,
        request: Option<&DeployRequest>,
    ) -> Result<Option<Report>, EngineError> {
        let Some(id) = journal.id().map(str::to_string) else {
            return Ok(None);
        };
        if let Some((result, detail)) = journal.finished() {
            // Died between writing `Finished` and the history entry: finish the paperwork.
            let record = Record::Finished {
                result,
                detail: detail.to_string(),
                at_ms: now_ms(),
            };
            self.store
                .finish(self.service, &id, journal.records.len(), &record)
                .await?;
            return Ok(None);
        }
        let run = self.run_from(journal);
        // Died after the last step was carried out but before `Finished` was written:
        // the deployment is complete (the old side may already be gone); record it so.
        if run.journal.rollback_reason().is_none()
            && run.journal.is_done(&Action::Step(Step::Complete))
        {
            let detail = format!(
                "{} is live on 100% of traffic (the run finished before it was killed)",
                run.ctx.new_release
            );
            return self
                .finish(run, DeployResult::Promoted, detail)
                .await
                .map(Some);
        }
        let resumable = self.settings.on_resume == ResumePolicy::Resume
            && run.journal.rollback_reason().is_none()
            && request.is_some_and(|r| self.matches(&run.journal, r));
        if resumable {
            (self.events)(&Event::Resuming { id: &id });
            return self.drive(run).await.map(Some);
        }
        let reason = run
            .journal
            .rollback_reason()
            .map(str::to_string)
            .unwrap_or_else(|| format!("deployment {id} was interrupted before it finished"));
        (self.events)(&Event::Recovering {
            id: &id,
            reason: &reason,
        });
        self.roll_back(run, reason).await.map(Some)
    }

    fn run_from(&self, journal: Journal) -> Run {
        let Some(Record::Started {
            id,
            target,
            params,
            new_release,
            stable_release,
            ..
        }) = journal.started().cloned()
        else {
            unreachable!("journals begin with `Started`")
        };
        let ctx = GateContext {
            deployment_id: id.clone(),
            service: self.service.to_string(),
            new_release,
            stable_release,
            new_percent: 0,
        };
        Run {
            id,
            journal,
            target,
            params,
            ctx,
        }
    }

    async fn append(&self, run: &mut Run, record: Record) -> Result<(), StateError> {
        let index = run.journal.records.len();
        self.store
            .append(self.service, &run.id, index, &record)
            .await?;
        run.journal.records.push(record);
        Ok(())
    }

    /// Carry out the strategy's steps until it completes or something fails.
    async fn drive(&self, mut run: Run) -> Result<Report, EngineError> {
        if run.journal.rollback_reason().is_some() {
            let reason = run.journal.rollback_reason().unwrap().to_string();
            return self.roll_back(run, reason).await;
        }
        let mut guard = run.journal.guard(&run.target);
        run.ctx.new_percent = guard.new_percent;
        // The action in flight when an earlier run died is carried out again first.
        let mut pending = run.journal.in_flight().map(|(seq, a)| (seq, a.clone()));
        let prepared = run.journal.records.iter().any(|r| {
            matches!(
                r,
                Record::Intent {
                    action: Action::Prepare { .. },
                    ..
                }
            )
        });
        if !prepared {
            let seq = run.journal.next_seq();
            let action = Action::Prepare {
                release: run.ctx.new_release.clone(),
            };
            self.append(
                &mut run,
                Record::Intent {
                    seq,
                    action: action.clone(),
                },
            )
            .await?;
            pending = Some((seq, action));
        }
        loop {
            if self.cancel.is_cancelled() {
                return self
                    .roll_back(run, "cancelled (SIGINT/SIGTERM)".into())
                    .await;
            }
            let (seq, step) = match pending.take() {
                Some((seq, Action::Prepare { release })) => {
                    match self.retrying(|| self.driver.prepare(&release)).await {
                        Ok(()) => {
                            self.append(
                                &mut run,
                                Record::Done {
                                    seq,
                                    outcome: StepOutcome::Done,
                                },
                            )
                            .await?;
                            continue;
                        }
                        Err(err) => {
                            return self
                                .roll_back(run, format!("preparing {release}: {err}"))
                                .await;
                        }
                    }
                }
                Some((seq, Action::Step(step))) => (seq, step),
                Some((_, Action::Rollback(_))) => {
                    let reason = "an interrupted rollback".to_string();
                    return self.roll_back(run, reason).await;
                }
                None => {
                    let state = RolloutState {
                        params: run.params.clone(),
                        target: run.target,
                        history: run.journal.history(),
                    };
                    let step = match self.strategy.next(&state).await {
                        Ok(step) => step,
                        Err(err) => return self.roll_back(run, err.to_string()).await,
                    };
                    if let Step::Abort(reason) = &step {
                        return self
                            .roll_back(run, format!("the strategy aborted: {reason}"))
                            .await;
                    }
                    if let Err(violation) = guard.check(&step) {
                        return self.roll_back(run, violation.to_string()).await;
                    }
                    let seq = run.journal.next_seq();
                    self.append(
                        &mut run,
                        Record::Intent {
                            seq,
                            action: Action::Step(step.clone()),
                        },
                    )
                    .await?;
                    (seq, step)
                }
            };
            (self.events)(&Event::Step { seq, step: &step });
            let outcome = tokio::select! {
                outcome = self.execute(&step, &run.ctx) => outcome,
                () = self.cancel.cancelled() => {
                    return self.roll_back(run, "cancelled (SIGINT/SIGTERM)".into()).await;
                }
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(err) => {
                    return self
                        .roll_back(run, format!("{}: {err}", describe::step(&step)))
                        .await;
                }
            };
            self.append(
                &mut run,
                Record::Done {
                    seq,
                    outcome: outcome.clone(),
                },
            )
            .await?;
            guard.apply(&step);
            run.ctx.new_percent = guard.new_percent;
            (self.events)(&Event::StepDone {
                seq,
                step: &step,
                outcome: &outcome,
                new_percent: guard.new_percent,
            });
            match judge(&outcome) {
                Flow::RollBack(reason) => return self.roll_back(run, reason).await,
                Flow::Continue => {}
            }
            if step == Step::Complete {
                let detail = format!("{} is live on 100% of traffic", run.ctx.new_release);
                return self.finish(run, DeployResult::Promoted, detail).await;
            }
        }
    }

    async fn execute(&self, step: &Step, ctx: &GateContext) -> Result<StepOutcome, DriverError> {
        let done = Ok(StepOutcome::Done);
        match step {
            Step::Scale(ScaleRequest { side, count }) => self
                .retrying(|| self.driver.scale(*side, *count))
                .await
                .and(done),
            Step::ShiftTraffic(percent) => self
                .retrying(|| self.shift_verified(*percent))
                .await
                .and(done),
            Step::RouteTestTraffic => self
                .retrying(|| self.driver.route_test_traffic())
                .await
                .and(done),
            Step::RunGates(point) => Ok(StepOutcome::Gates(self.gates.run(*point, ctx).await)),
            Step::Bake(ms) => Ok(self.bake(Duration::from_millis(*ms), ctx).await),
            Step::RollingUpdate(update) => self
                .retrying(|| self.driver.rolling_update(&ctx.new_release, update))
                .await
                .and(done),
            Step::Promote => self.retrying(|| self.driver.promote()).await.and(done),
            Step::Complete => self.retrying(|| self.driver.finalize()).await.and(done),
            Step::Abort(reason) => Err(DriverError::Failed(reason.clone())),
        }
    }

    /// Wait, running the continuous gates every interval; stop early on a failure.
    async fn bake(&self, length: Duration, ctx: &GateContext) -> StepOutcome {
        let end = tokio::time::Instant::now() + length;
        loop {
            let now = tokio::time::Instant::now();
            if now >= end {
                return StepOutcome::Done;
            }
            tokio::time::sleep_until(end.min(now + self.settings.watch_interval)).await;
            let results = self.gates.watch(ctx).await;
            if !results.is_empty() {
                (self.events)(&Event::Watched { results: &results });
            }
            if results.iter().any(|r| r.status == GateStatus::Fail) {
                return StepOutcome::Gates(results);
            }
        }
    }

    /// Retry transient driver failures with exponential backoff.
    async fn retrying<T, F, Fut>(&self, op: F) -> Result<T, DriverError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, DriverError>>,
    {
        let mut wait = self.settings.retry_base;
        for attempt in 0.. {
            match op().await {
                Err(DriverError::Transient(msg)) if attempt < self.settings.step_retries => {
                    (self.events)(&Event::Retrying {
                        wait,
                        message: &msg,
                    });
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
                other => return other,
            }
        }
        unreachable!()
    }

    /// Shift traffic and check the share the load balancer reports back: the journal
    /// records what is verified, never what was merely asked for.
    async fn shift_verified(&self, percent: u8) -> Result<(), DriverError> {
        let verified = self.driver.shift_traffic(percent).await?;
        if verified == percent {
            Ok(())
        } else {
            Err(DriverError::Failed(format!(
                "weights read back as {verified}% new after setting {percent}%"
            )))
        }
    }

    /// Put production back on the stable release: stable to full size, traffic back to
    /// stable (verified), then the new side down and away. Each action is journaled and
    /// retried until it succeeds or the rollback deadline passes. Not cancellable.
    async fn roll_back(&self, mut run: Run, reason: String) -> Result<Report, EngineError> {
        (self.events)(&Event::RollingBack { reason: &reason });
        if run.journal.rollback_reason().is_none() {
            self.append(
                &mut run,
                Record::RollbackStarted {
                    reason: reason.clone(),
                    at_ms: now_ms(),
                },
            )
            .await?;
        }
        let rolled_in_place = run.journal.records.iter().any(|r| {
            matches!(
                r,
                Record::Intent {
                    action: Action::Step(Step::RollingUpdate(_)),
                    ..
                }
            )
        });
        let desired = run.target.desired_count;
        let actions = if rolled_in_place {
            vec![RollbackAction::RollingUndo]
        } else {
            vec![
                RollbackAction::Scale(ScaleRequest {
                    side: Side::Stable,
                    count: desired,
                }),
                RollbackAction::ShiftTraffic(0),
                RollbackAction::Scale(ScaleRequest {
                    side: Side::New,
                    count: 0,
                }),
                RollbackAction::Discard,
            ]
        };
        let deadline = tokio::time::Instant::now() + self.settings.rollback_deadline;
        for action in actions {
            let already = run.journal.is_done(&Action::Rollback(action.clone()));
            if already {
                continue;
            }
            let seq = run.journal.next_seq();
            self.append(
                &mut run,
                Record::Intent {
                    seq,
                    action: Action::Rollback(action.clone()),
                },
            )
            .await?;
            (self.events)(&Event::Undo { action: &action });
            let mut wait = self.settings.retry_base;
            loop {
                match self.rollback_action(&action, &run).await {
                    Ok(()) => break,
                    Err(err) if tokio::time::Instant::now() + wait < deadline => {
                        (self.events)(&Event::Retrying {
                            wait,
                            message: &format!("rollback action failed: {err}"),
                        });
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(30));
                    }
                    Err(err) => {
                        let detail = format!(
                            "rollback failed: {err}; traffic may still reach {} — restore it by hand",
                            run.ctx.new_release
                        );
                        return self.finish(run, DeployResult::RollbackFailed, detail).await;
                    }
                }
            }
            self.append(
                &mut run,
                Record::Done {
                    seq,
                    outcome: StepOutcome::Done,
                },
            )
            .await?;
        }
        run.ctx.new_percent = 0;
        for result in self.gates.run(LifecyclePoint::PostRollback, &run.ctx).await {
            (self.events)(&Event::AfterRollback { result: &result });
        }
        let detail = format!(
            "rolled back to {}: {reason}",
            run.ctx
                .stable_release
                .as_deref()
                .map_or("the stable release", short_release)
        );
        self.finish(run, DeployResult::RolledBack, detail).await
    }

    async fn rollback_action(&self, action: &RollbackAction, run: &Run) -> Result<(), DriverError> {
        match action {
            RollbackAction::Scale(ScaleRequest { side, count }) => {
                self.driver.scale(*side, *count).await
            }
            RollbackAction::ShiftTraffic(percent) => self.shift_verified(*percent).await,
            RollbackAction::RollingUndo => {
                let stable = run.ctx.stable_release.clone().ok_or_else(|| {
                    DriverError::Failed("no stable release is recorded to roll back to".into())
                })?;
                let update = crate::plugin::bindings::types::RollingUpdate {
                    min_healthy_percent: 100,
                    max_percent: 200,
                };
                self.driver.rolling_update(&stable, &update).await
            }
            RollbackAction::Discard => self.driver.discard_new().await,
        }
    }

    async fn finish(
        &self,
        mut run: Run,
        result: DeployResult,
        detail: String,
    ) -> Result<Report, EngineError> {
        let record = Record::Finished {
            result,
            detail: detail.clone(),
            at_ms: now_ms(),
        };
        let index = run.journal.records.len();
        self.store
            .finish(self.service, &run.id, index, &record)
            .await?;
        run.journal.records.push(record);
        (self.events)(&Event::Finished {
            id: &run.id,
            result,
            detail: &detail,
        });
        Ok(Report {
            id: run.id,
            result,
            detail,
            recovered: None,
        })
    }
}

/// Any failed gate rolls back, whatever the strategy would do next: the host fails
/// closed. Unclear results are the strategy's to judge.
fn judge(outcome: &StepOutcome) -> Flow {
    if let StepOutcome::Gates(results) = outcome
        && let Some(failed) = results.iter().find(|r| r.status == GateStatus::Fail)
    {
        return Flow::RollBack(format!("gate `{}` failed: {}", failed.name, failed.detail));
    }
    Flow::Continue
}

/// A deployment id that sorts by time: `d<ms>-<pid>`.
fn new_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "d{}-{}-{}",
        now_ms(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl SafetyGuard {
    /// Whether production traffic is entirely on the stable side.
    pub fn traffic_safe(&self) -> bool {
        self.new_percent == 0
    }
}
