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

use deployer_contract::{
    Approval, ApprovalTimeout, GateResult, GateStatus, LifecyclePoint, RollingUpdate, RolloutState,
    ScaleRequest, Side, Step, StepOutcome, TargetInfo, TargetKind,
};

use crate::describe;
use crate::driver::{Driver, DriverError, Shape, Target};
use crate::events::{Event, Sink, short_release};
use crate::gates::{GateContext, Gates};
use crate::plan::PlanError;
use crate::safety::SafetyGuard;
use crate::state::journal::RollbackAction;
use crate::state::local::now_ms;
use crate::state::{
    Action, DeployResult, Fence, Journal, Lease, Record, Signal, SignalKind, StateError, Store,
    journal_of, unfenced,
};
use crate::strategy::Strategy;

/// What to do with an unfinished deployment found at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumePolicy {
    /// Continue it where it stopped, if it is the same release, strategy and parameters.
    Resume,
    /// Roll it back first (the default: fail closed).
    Rollback,
}

/// The shortest pause between two checks of the continuous gates during a bake. Each
/// check calls the gates' backends (CloudWatch, HTTP endpoints, hooks); a shorter (or
/// zero) `watch_interval` is taken as this, so a bake never calls them in a busy loop.
pub const MIN_WATCH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct Settings {
    /// How often continuous gates run during a bake; at least [`MIN_WATCH_INTERVAL`].
    pub watch_interval: Duration,
    pub on_resume: ResumePolicy,
    /// Rollback actions are retried until this much time has passed.
    pub rollback_deadline: Duration,
    /// First wait between retries of a transient failure (doubles, capped at 30 s).
    pub retry_base: Duration,
    /// Transient failures of a forward step are retried this many times.
    pub step_retries: u32,
    pub preflight: Preflight,
    /// A strategy that asks for more steps than this is rolled back (`max-steps`).
    pub max_steps: u32,
    /// A run older than this is rolled back, whatever it is doing (`max-duration`): no
    /// strategy holds the service's lock forever.
    pub max_duration: Duration,
    /// During a rollback, a stable side whose healthy units stop growing short of full
    /// size for this long gets all the traffic anyway.
    pub stable_stall: Duration,
    /// After promotion the old release's side stays at full size, without traffic, this
    /// long (`scale-down-delay`), so a rollback meanwhile only moves traffic. Zero: it
    /// is scaled down as the deployment completes.
    pub scale_down_delay: Duration,
}

/// Defaults of the run's caps: far above what the built-in strategies need (a canary of
/// 100 steps takes about 400), and a day, the longest bake one step may ask for.
pub const DEFAULT_MAX_STEPS: u32 = 1_000;
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            watch_interval: Duration::from_secs(30),
            on_resume: ResumePolicy::Rollback,
            rollback_deadline: Duration::from_secs(15 * 60),
            retry_base: Duration::from_secs(1),
            step_retries: 3,
            preflight: Preflight::Simulate,
            max_steps: DEFAULT_MAX_STEPS,
            max_duration: DEFAULT_MAX_DURATION,
            stable_stall: Duration::from_secs(120),
            scale_down_delay: Duration::ZERO,
        }
    }
}

/// What to deploy.
#[derive(Clone, Debug)]
pub struct DeployRequest {
    /// The strategy's name, as config or the command line gave it.
    pub strategy: String,
    pub new_release: String,
    /// Strategy parameters (a JSON object).
    pub params: String,
    /// What the strategy is told about the target. `native_rolling` is set from what
    /// the target turns out to be before the deployment starts.
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
    /// After a rollback: the share of production traffic on the new release as read
    /// from the load balancer at its end; `None` when it was not read (an in-place
    /// target has no weights, or the read failed).
    pub traffic_read_back: Option<u8>,
}

/// What `deploy` did.
#[derive(Clone, Debug, PartialEq)]
pub enum Deployed {
    /// A deployment ran (or an unfinished one of the same request was finished).
    /// `earlier` is the report of an unfinished deployment that was rolled back first.
    Finished {
        earlier: Option<Report>,
        report: Report,
    },
    /// An unfinished deployment was found and its rollback failed: nothing else was done.
    RecoveryFailed(Report),
    /// The release asked for is already live (after any recovery): nothing to do.
    AlreadyLive { release: String },
}

impl Deployed {
    /// The report of what ran; `None` when nothing needed doing.
    pub fn into_report(self) -> Option<Report> {
        match self {
            Deployed::Finished { report, .. } | Deployed::RecoveryFailed(report) => Some(report),
            Deployed::AlreadyLive { .. } => None,
        }
    }
}

/// What `roll_back` did.
#[derive(Clone, Debug, PartialEq)]
pub enum RolledBack {
    /// An unfinished deployment was rolled back (the service is on its stable release).
    Recovered(Report),
    /// The last promoted release was replaced by the one before it.
    Redeployed(Report),
    /// The last deployment already was a rollback (of deployment `deployment`), which
    /// left `release` live: nothing to do.
    AlreadyRolledBack { release: String, deployment: String },
}

/// What `tidy` did.
#[derive(Clone, Debug, PartialEq)]
pub enum Tidied {
    /// Nothing was waiting.
    Nothing,
    /// The side kept warm stays until `until_ms`.
    NotDue { release: String, until_ms: u64 },
    /// The side kept warm was scaled down (or an unfinished deployment rolled back).
    Done(Report),
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    State(#[from] StateError),
    /// What the target is could not be read.
    #[error("{0}")]
    Target(DriverError),
    /// The same, before anything was changed.
    #[error("checking service `{service}` before deploying: {source}")]
    Preflight {
        service: String,
        source: DriverError,
    },
    /// The strategy's plan would be refused or never ends: nothing was changed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The strategy's steps do not fit the target (side by side on an in-place target,
    /// or the reverse): nothing was changed. The message says which and what to do.
    #[error("{0}")]
    Unfit(String),
    /// `roll_back` found nothing to go back to, or the service is not where deployer
    /// left it.
    #[error("{0}")]
    CannotRollBack(String),
}

/// Whether the plan is checked against the safety rules before a deployment starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preflight {
    /// Simulate the strategy first and refuse, before any change, a plan the host would
    /// refuse (the default).
    #[default]
    Simulate,
    /// Let the run itself meet every step: only for tests of the runtime safety guard,
    /// which must stop what a simulation would have refused.
    Skip,
}

/// Everything an [`Engine`] is made of.
pub struct Parts<'a, S, T, G, St> {
    pub service: &'a str,
    pub strategy: &'a S,
    pub target: &'a T,
    pub gates: &'a G,
    pub store: &'a St,
    pub settings: Settings,
    /// Cancelled on SIGINT/SIGTERM: the run rolls back.
    pub cancel: CancellationToken,
    /// Where progress goes (see [`Event`]).
    pub events: Sink<'a>,
}

/// One engine per invocation: deploys a release of one service, or rolls it back.
pub struct Engine<'a, S: Strategy, T: Target, G: Gates, St: Store> {
    service: &'a str,
    strategy: &'a S,
    target: &'a T,
    gates: &'a G,
    store: &'a St,
    settings: Settings,
    cancel: CancellationToken,
    events: Sink<'a>,
    /// The held lock's check, while a locked operation runs.
    fence: std::sync::Mutex<Fence>,
    /// The lock's check when someone else took the lock for this engine and holds it
    /// across its operations (a release takes all its services' locks first).
    held: Option<Fence>,
    /// The id the next locked operation's deployment gets, when the caller chose it (a
    /// release journals it before the deployment begins).
    next_id: std::sync::Mutex<Option<String>>,
}

/// A deployment in progress: its journal, what it knows, and its identity.
struct Run {
    id: String,
    journal: Journal,
    target: TargetInfo,
    params: String,
    ctx: GateContext,
    /// Rolling back: a journal write that keeps failing does not stop the rollback;
    /// the records wait in memory (from `unwritten` on) and are written when the store
    /// answers again (once it failed for good, when the rollback ends).
    lenient: bool,
    unwritten: Option<usize>,
    /// A journal write of this run failed for good (the store, not a lost lease): a
    /// rollback then stops trying per action and writes what waits when it ends.
    store_failed: bool,
    /// The driver was asked for the sides' target groups (`ctx.target_groups`).
    groups_asked: bool,
    /// Ids of the signals this run has acted on (journaled as `Record::Signal`).
    seen: std::collections::HashSet<String>,
    /// A person asked for 100% now (`deployer promote --full`): the host takes the run
    /// to promotion itself instead of asking the strategy.
    full: bool,
}

/// A journal write in the forward run that failed: this run lost the service (stop,
/// exit 4), or the store is down (roll back, journaling as well as it can).
macro_rules! journaled {
    ($runner:ident, $run:ident, $write:expr) => {
        match $write {
            Ok(value) => value,
            Err(err) if err.lost_the_service() => return Err(err.into()),
            Err(err) => {
                return $runner
                    .roll_back($run, format!("writing the journal failed: {err}"))
                    .await;
            }
        }
    };
}

enum Flow {
    Continue,
    RollBack(String),
}

/// One deployment in flight on one driver: the engine's work once the lock is held.
struct Runner<'e, 'a, S: Strategy, T: Target, G: Gates, St: Store> {
    engine: &'e Engine<'a, S, T, G, St>,
    driver: T::Driver,
}

impl<'a, S: Strategy, T: Target, G: Gates, St: Store> std::ops::Deref
    for Runner<'_, 'a, S, T, G, St>
{
    type Target = Engine<'a, S, T, G, St>;

    fn deref(&self) -> &Self::Target {
        self.engine
    }
}

impl<'a, S: Strategy, T: Target, G: Gates, St: Store> Engine<'a, S, T, G, St> {
    pub fn new(parts: Parts<'a, S, T, G, St>) -> Self {
        let Parts {
            service,
            strategy,
            target,
            gates,
            store,
            settings,
            cancel,
            events,
        } = parts;
        Engine {
            service,
            strategy,
            target,
            gates,
            store,
            settings,
            cancel,
            events,
            fence: std::sync::Mutex::new(unfenced()),
            held: None,
            next_id: std::sync::Mutex::new(None),
        }
    }

    /// The next deployment this engine begins is `id` (a valid deployment id of the
    /// service): a release writes it into its own journal before the deployment begins,
    /// so what the release did can be told from what another run did later.
    #[must_use]
    pub fn with_deployment_id(self, id: String) -> Self {
        *self
            .next_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(id);
        self
    }

    /// This engine's operations run under a lock the caller holds (and releases), whose
    /// check is `fence`, instead of taking the service's lock each. A release takes the
    /// locks of all its services, in one order, before anything changes, and keeps them
    /// until it ends: two releases sharing services cannot deadlock, and no single run
    /// slips in between two waves.
    #[must_use]
    pub fn holding(mut self, fence: Fence) -> Self {
        self.held = Some(fence);
        self
    }

    /// What `deploy` checks before anything changes: the target can be read and the
    /// strategy's plan fits it and would be accepted. A release checks every service so
    /// before its first wave begins.
    ///
    /// # Errors
    /// As [`Engine::deploy`] before its lock.
    pub async fn preflight(&self, request: &DeployRequest) -> Result<(), EngineError> {
        let mut request = request.clone();
        let shape = self
            .target
            .inspect()
            .await
            .map_err(|source| EngineError::Preflight {
                service: self.service.to_string(),
                source,
            })?;
        request.target.native_rolling = !shape.side_by_side;
        if request.target.desired_count == 0 {
            request.target.desired_count = self.live_units(&shape)?;
        }
        self.check_fits(&request, &shape, 0).await
    }

    /// Deploy `request`. Before anything changes, the target is read and the strategy's
    /// plan checked against it; then, under the service's lock, an unfinished earlier
    /// deployment is resumed (same request, `on-interrupted = "resume"`) or rolled back,
    /// and the release is deployed unless it is live already.
    ///
    /// # Errors
    /// Nothing changed: the target cannot be read, the plan does not fit it or would be
    /// refused, or the service is locked by a live run. Or the journal cannot be written
    /// (then nothing further was changed).
    pub async fn deploy(&self, mut request: DeployRequest) -> Result<Deployed, EngineError> {
        let shape = self
            .target
            .inspect()
            .await
            .map_err(|source| EngineError::Preflight {
                service: self.service.to_string(),
                source,
            })?;
        request.target.native_rolling = !shape.side_by_side;
        let sized_from_live = request.target.desired_count == 0;
        if sized_from_live {
            request.target.desired_count = self.live_units(&shape)?;
        }
        self.check_fits(&request, &shape, 0).await?;
        self.locked(async |id| {
            let (mut recovered, mut earlier) = (None, None);
            let active = self.store.active(self.service).await?;
            if let Some(journal) = active {
                if is_warm(&journal) {
                    // The new release needs the side the last deployment kept warm.
                    self.recover(journal, None).await?;
                } else {
                    let old = journal.id().unwrap_or("?").to_string();
                    let same = self.matches(&journal, &request);
                    // Carried on, it is this run's deployment: how it ends is how this run
                    // ends. Rolled back (a gate failed, a person aborted it), it must not be
                    // begun again in the same breath.
                    let resumed = same
                        && self.settings.on_resume == ResumePolicy::Resume
                        && journal.rollback_reason().is_none()
                        && journal.finished().is_none();
                    match self.recover(journal, Some(&request)).await? {
                        Some(report)
                            if resumed && report.result == DeployResult::RolledBack
                                || report.result == DeployResult::Promoted && same =>
                        {
                            return Ok(Deployed::Finished {
                                earlier: None,
                                report: Report {
                                    recovered: Some(old),
                                    ..report
                                },
                            });
                        }
                        Some(report) if report.result == DeployResult::RollbackFailed => {
                            return Ok(Deployed::RecoveryFailed(report));
                        }
                        Some(report) => (recovered, earlier) = (Some(old), Some(report)),
                        None => {}
                    }
                }
            }
            // Recovery may have changed what is live.
            let shape = self.target.inspect().await.map_err(EngineError::Target)?;
            if sized_from_live {
                request.target.desired_count = self.live_units(&shape)?;
            }
            self.refuse_blocked(&shape)?;
            if self
                .target
                .same_release(&shape.primary_release, &request.new_release)
            {
                return Ok(Deployed::AlreadyLive {
                    release: request.new_release,
                });
            }
            let report = self.start(id, request, &shape, None, 0).await?;
            Ok(Deployed::Finished {
                earlier,
                report: Report {
                    recovered,
                    ..report
                },
            })
        })
        .await
    }

    /// Back to the last good release, now: an unfinished deployment is rolled back; a
    /// finished one is undone by deploying the release it replaced with this engine's
    /// strategy (`strategy` and `params` name it for the journal).
    ///
    /// # Errors
    /// The service is locked, the journal cannot be read or written, or there is nothing
    /// to roll back to.
    /// `params(warm)` gives the strategy's parameters, knowing how many healthy units the
    /// side of the release rolled back to already has (`warm`, 0 when cold): a side kept
    /// warm after its deployment (`scale-down-delay`) takes the traffic back without
    /// being scaled.
    pub async fn roll_back(
        &self,
        strategy: &str,
        params: impl Fn(u32) -> String,
    ) -> Result<RolledBack, EngineError> {
        self.locked(async |id| {
            // Promoted with its old side still up: the deployment to undo, traffic moving
            // back onto that side. It is ended (as promoted, its side left up) only once
            // nothing can refuse the rollback, so a refusal leaves it as it was: warm,
            // and scaled down in time.
            let mut warm_journal = None;
            if let Some(journal) = self.store.active(self.service).await? {
                if is_warm(&journal) {
                    warm_journal = Some(journal);
                } else if let Some(report) = self.recover(journal, None).await?
                    // None or promoted: the run had finished and only its paperwork was
                    // left; it is undone below like any finished deployment.
                    && report.result != DeployResult::Promoted
                {
                    return Ok(RolledBack::Recovered(report));
                }
            }
            // Two entries of the history index, not the whole history: its length must
            // not slow a rollback down.
            let latest = self.store.latest(self.service).await?;
            // The newest deployment's own rollback failed: finish putting traffic back on
            // its stable release (as a new, journaled rollback of it) rather than
            // redeploying an older release beside what it left behind.
            if warm_journal.is_none()
                && let Some(failed) = &latest.finished
                && failed.result == DeployResult::RollbackFailed
            {
                let failed = journal_of(self.store, self.service, failed).await?;
                return self
                    .retry_rollback(id, &failed)
                    .await
                    .map(RolledBack::Recovered);
            }
            let last = match &warm_journal {
                Some(journal) => journal.clone(),
                None => {
                    let promoted = latest.promoted.as_ref().ok_or_else(|| {
                        EngineError::CannotRollBack(format!(
                            "service `{}` has no promoted deployment to roll back",
                            self.service
                        ))
                    })?;
                    journal_of(self.store, self.service, promoted).await?
                }
            };
            let (previous, current, undoes) = match last.started() {
                // A second `rollback` (a double click, a retried CI job) finds the first
                // one's redeploy: going on would put back the release just rolled away
                // from. There is nothing left to do.
                Some(Record::Started {
                    new_release,
                    undoes: Some(undone),
                    ..
                }) => {
                    return Ok(RolledBack::AlreadyRolledBack {
                        release: new_release.clone(),
                        deployment: undone.clone(),
                    });
                }
                Some(Record::Started {
                    id: last_id,
                    stable_release: Some(previous),
                    new_release,
                    target,
                    ..
                }) if !previous.is_empty() => (
                    previous.clone(),
                    (new_release.clone(), *target),
                    last_id.clone(),
                ),
                _ => {
                    return Err(EngineError::CannotRollBack(
                        "the last deployment recorded no previous release".into(),
                    ));
                }
            };
            let (current, target) = current;
            let shape = self.target.inspect().await.map_err(EngineError::Target)?;
            if !self.target.same_release(&shape.primary_release, &current) {
                return Err(EngineError::CannotRollBack(format!(
                    "the live release is {}, not {current} which deployer last deployed; refusing to guess",
                    shape.primary_release
                )));
            }
            (self.events)(&Event::Reverting {
                service: self.service,
                from: &current,
                to: &previous,
            });
            let warm = self.warm_units(&shape, &previous, target.desired_count).await?;
            let request = DeployRequest {
                strategy: strategy.to_string(),
                new_release: previous,
                params: params(warm),
                target: TargetInfo {
                    native_rolling: !shape.side_by_side,
                    ..target
                },
            };
            self.check_fits(&request, &shape, warm).await?;
            // The side kept warm is what makes the idle side busy; anything else that
            // does is refused as before.
            if warm == 0 {
                self.refuse_blocked(&shape)?;
            }
            if let Some(journal) = warm_journal {
                self.close_warm(journal, &id).await?;
            }
            self.start(id, request, &shape, Some(undoes), warm)
                .await
                .map(RolledBack::Redeployed)
        })
        .await
    }

    /// Healthy units of the side that runs `previous` now, at most `desired`: a side
    /// kept warm after the deployment being undone. 0 on an in-place target, when no
    /// side runs it, and when the target cannot tell.
    async fn warm_units(
        &self,
        shape: &Shape,
        previous: &str,
        desired: u32,
    ) -> Result<u32, EngineError> {
        if !shape.side_by_side {
            return Ok(0);
        }
        let driver = self
            .target
            .driver(true, &shape.primary_release, previous, desired)
            .map_err(EngineError::Target)?;
        Ok(match driver.healthy_units(Side::New).await {
            Ok(Some(units)) => units.min(desired),
            _ => 0,
        })
    }

    /// Scale down the side the last deployment kept warm once its `scale-down-delay` has
    /// passed (at once with `force`), and roll back an unfinished deployment no run is
    /// carrying on: what a scheduled `deployer tidy` is for.
    ///
    /// # Errors
    /// The service is locked by a live run, the journal cannot be read or written, or
    /// the scale-down failed (the next command tries again).
    pub async fn tidy(&self, force: bool) -> Result<Tidied, EngineError> {
        self.locked(async |_| {
            let Some(journal) = self.store.active(self.service).await? else {
                return Ok(Tidied::Nothing);
            };
            if is_warm(&journal)
                && let Some((release, until_ms)) = journal.kept_warm()
                && now_ms() < until_ms
                && !force
            {
                return Ok(Tidied::NotDue {
                    release: release.to_string(),
                    until_ms,
                });
            }
            Ok(match self.recover(journal, None).await? {
                Some(report) => Tidied::Done(report),
                None => Tidied::Nothing,
            })
        })
        .await
    }

    /// Recover the service's unfinished deployment, if any, by rolling it back.
    ///
    /// # Errors
    /// The service is locked by a live run, or the journal cannot be read or written.
    pub async fn recover_active(&self) -> Result<Option<Report>, EngineError> {
        self.locked(async |_| match self.store.active(self.service).await? {
            Some(journal) => self.recover(journal, None).await,
            None => Ok(None),
        })
        .await
    }

    /// Whether `journal` is a run of exactly `request`: same release, strategy
    /// component and parameters (only then may it be resumed).
    /// The size of the new side for a service configured without a desired count: what
    /// the live side runs now, as its autoscaler left it.
    fn live_units(&self, shape: &Shape) -> Result<u32, EngineError> {
        match shape.live_units {
            Some(units) if units > 0 || shape.serves_on_demand => Ok(units),
            found => Err(EngineError::Target(DriverError::Failed(format!(
                "service `{}` has no desired-count in its config, so the new side is sized from the live \
                 one, but {}; set `desired-count` under the service's target",
                self.service,
                match found {
                    Some(_) => "the live side runs 0 units",
                    None => "this target cannot tell how many units the live side runs",
                }
            )))),
        }
    }

    /// A target another deployment (not this service's journal: a second CI job with its
    /// own state, a person) is using is refused before anything is journaled: rolling
    /// back a deployment that never began would move that other deployment's traffic.
    fn refuse_blocked(&self, shape: &Shape) -> Result<(), EngineError> {
        match &shape.blocked {
            Some(why) => Err(EngineError::Preflight {
                service: self.service.to_string(),
                source: DriverError::Failed(why.clone()),
            }),
            None => Ok(()),
        }
    }

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

    /// Run `work` holding the service's lock, with a new deployment id.
    async fn locked<R>(
        &self,
        work: impl AsyncFnOnce(String) -> Result<R, EngineError>,
    ) -> Result<R, EngineError> {
        let chosen = self
            .next_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let id = chosen.unwrap_or_else(|| new_id(self.service));
        if let Some(held) = &self.held {
            held()?;
            *self
                .fence
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = held.clone();
            self.store.prepare(self.service).await?;
            return work(id).await;
        }
        let lock = self.store.lock(self.service, &id).await?;
        *self
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = lock.fence();
        // Under the lock, so that a store bringing its layout up to date (building its
        // history index) races no other writer; the lock is released whatever happens.
        let result = match self.store.prepare(self.service).await {
            Ok(()) => work(id).await,
            Err(err) => Err(err.into()),
        };
        *self
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = unfenced();
        lock.release().await;
        result
    }

    /// Roll back again, as deployment `id`, the deployment `failed` whose rollback failed:
    /// the same releases, every rollback action taken afresh (they are idempotent), the
    /// last shift to stable always made.
    async fn retry_rollback(&self, id: String, failed: &Journal) -> Result<Report, EngineError> {
        let Some(Record::Started {
            id: failed_id,
            strategy,
            strategy_digest,
            params,
            target,
            new_release,
            stable_release: Some(stable),
            ..
        }) = failed.started().cloned()
        else {
            return Err(EngineError::CannotRollBack(
                "the last deployment's rollback failed and it recorded no stable release to go back to; restore it by hand".into(),
            ));
        };
        let shape = self.target.inspect().await.map_err(EngineError::Target)?;
        let driver = self
            .target
            .driver(
                shape.side_by_side,
                &stable,
                &new_release,
                target.desired_count,
            )
            .map_err(EngineError::Target)?;
        let started = Record::Started {
            id: id.clone(),
            service: self.service.to_string(),
            strategy,
            strategy_digest,
            params,
            target,
            new_release: new_release.clone(),
            stable_release: Some(stable.clone()),
            at_ms: now_ms(),
            undoes: Some(failed_id.clone()),
            // What the failed deployment found before it began: its ending restored
            // that already, and restoring it again changes nothing.
            scaling: failed.scaling().cloned(),
            warm_units: failed.warm_units(),
        };
        self.store.begin(self.service, &id, &started).await?;
        (self.events)(&Event::Reverting {
            service: self.service,
            from: &new_release,
            to: &stable,
        });
        let runner = Runner {
            engine: self,
            driver,
        };
        let run = runner.run_from(Journal {
            records: vec![started],
        })?;
        runner
            .roll_back(
                run,
                format!("retrying the failed rollback of deployment {failed_id}"),
            )
            .await
    }

    /// Refuse, before changing anything, a strategy whose plan the host would refuse or
    /// whose steps the target cannot take: side-by-side steps on an in-place target, or
    /// an in-place update on one deployed side by side.
    async fn check_fits(
        &self,
        request: &DeployRequest,
        shape: &Shape,
        warm: u32,
    ) -> Result<(), EngineError> {
        if self.settings.preflight == Preflight::Skip {
            return Ok(());
        }
        let simulated = crate::plan::simulate_warm(
            self.strategy,
            &request.params,
            request.target,
            warm,
            |_| Vec::new(),
        )
        .await;
        let steps = match simulated {
            Ok(plan) => plan.steps,
            Err(PlanError::Unsafe {
                number,
                violation,
                step,
            }) => {
                // A step of the wrong shape for the target: say what would fit instead.
                let one = std::slice::from_ref(&step);
                if let Some(problem) = fit_problem(
                    &request.strategy,
                    request.target.kind,
                    one,
                    shape.side_by_side,
                ) {
                    return Err(EngineError::Unfit(problem));
                }
                return Err(PlanError::Unsafe {
                    number,
                    violation,
                    step,
                }
                .into());
            }
            Err(err) => return Err(err.into()),
        };
        if let Some(problem) =
            crate::plan::over_caps(&steps, self.settings.max_steps, self.settings.max_duration)
        {
            return Err(EngineError::Unfit(format!(
                "`{}`: {problem}",
                request.strategy
            )));
        }
        match fit_problem(
            &request.strategy,
            request.target.kind,
            &steps,
            shape.side_by_side,
        ) {
            Some(problem) => Err(EngineError::Unfit(problem)),
            None => Ok(()),
        }
    }

    /// Journal `request` as deployment `id` and carry it out on a driver for `shape`.
    /// The caller has checked that its plan fits (`check_fits`): a deploy before it took
    /// the lock, a rollback once it knew what is live.
    async fn start(
        &self,
        id: String,
        request: DeployRequest,
        shape: &Shape,
        undoes: Option<String>,
        warm: u32,
    ) -> Result<Report, EngineError> {
        let stable_release = Some(shape.primary_release.clone());
        let driver = self
            .target
            .driver(
                shape.side_by_side,
                &shape.primary_release,
                &request.new_release,
                request.target.desired_count,
            )
            .map_err(EngineError::Target)?;
        let started = Record::Started {
            id: id.clone(),
            service: self.service.to_string(),
            strategy: request.strategy.clone(),
            strategy_digest: self.strategy.digest().to_string(),
            params: request.params.clone(),
            target: request.target,
            new_release: request.new_release.clone(),
            stable_release: stable_release.clone(),
            at_ms: now_ms(),
            undoes,
            scaling: shape.scaling.clone(),
            warm_units: (warm > 0).then_some(warm),
        };
        self.store.begin(self.service, &id, &started).await?;
        (self.events)(&Event::Started {
            id: &id,
            stable: stable_release.as_deref(),
            new: &request.new_release,
            strategy: &request.strategy,
            target: &driver.describe(),
        });
        let runner = Runner {
            engine: self,
            driver,
        };
        let run = runner.run_from(Journal {
            records: vec![started],
        })?;
        runner.drive(run).await
    }

    /// Finish or roll back the unfinished deployment `journal`, on a driver for *its*
    /// releases.
    async fn recover(
        &self,
        journal: Journal,
        request: Option<&DeployRequest>,
    ) -> Result<Option<Report>, EngineError> {
        match self.runner_for(&journal).await? {
            Some(runner) => runner.recover(journal, request).await,
            None => Ok(None),
        }
    }

    /// End the warm deployment `journal` as promoted, its old side left up for the
    /// rollback `by` that undoes it.
    async fn close_warm(&self, journal: Journal, by: &str) -> Result<(), EngineError> {
        if let Some(runner) = self.runner_for(&journal).await? {
            let run = runner.run_from(journal)?;
            runner.close_warm(run, by).await?;
        }
        Ok(())
    }

    /// A runner on a driver for the releases of `journal` (`None`: it has no start).
    async fn runner_for(
        &self,
        journal: &Journal,
    ) -> Result<Option<Runner<'_, 'a, S, T, G, St>>, EngineError> {
        let (stable, new, desired) = match journal.started() {
            Some(Record::Started {
                stable_release,
                new_release,
                target,
                ..
            }) => (
                stable_release.clone().unwrap_or_default(),
                new_release.clone(),
                target.desired_count,
            ),
            _ => return Ok(None),
        };
        let shape = self.target.inspect().await.map_err(EngineError::Target)?;
        let driver = self
            .target
            .driver(shape.side_by_side, &stable, &new, desired)
            .map_err(EngineError::Target)?;
        Ok(Some(Runner {
            engine: self,
            driver,
        }))
    }
}

/// Why `strategy`'s `steps` cannot run on a target of `kind` that is (or is not)
/// deployed side by side, and what to do; `None` when they fit. `plan` asks too, so it
/// refuses what `run` would refuse, in the same words.
pub fn fit_problem(
    strategy: &str,
    kind: TargetKind,
    steps: &[Step],
    side_by_side: bool,
) -> Option<String> {
    let in_place = steps.iter().any(|s| matches!(s, Step::RollingUpdate(_)));
    let two_sides = steps.iter().any(|s| {
        matches!(
            s,
            Step::Scale(_) | Step::ShiftTraffic(_) | Step::RouteTestTraffic
        )
    });
    let (two, one) = match kind {
        TargetKind::AutoScalingGroup => (
            "two Auto Scaling groups (groups = [blue, green])",
            "a single Auto Scaling group (group = \"NAME\"), updated in place; use `rolling`, or configure groups = [blue, green] with a traffic table",
        ),
        TargetKind::EksDeployment => (
            "two Deployments (deployments = [blue, green])",
            "a single Deployment (deployment = \"NAME\"), updated in place; use `rolling`, or configure deployments = [blue, green] with a traffic table",
        ),
        TargetKind::EcsService | TargetKind::Simulated => (
            "task sets (EXTERNAL controller) or two services",
            "the ECS service, which uses the ECS deployment controller (in place); use `rolling`, or configure two services side by side (services = [blue, green] with a traffic table; see docs/targets.md)",
        ),
    };
    if side_by_side && in_place {
        Some(format!(
            "`{strategy}` asks for an in-place update, but the service deploys side by side with {two}"
        ))
    } else if !side_by_side && two_sides {
        Some(format!(
            "`{strategy}` runs two releases side by side, but the target is {one}"
        ))
    } else {
        None
    }
}

impl<S: Strategy, T: Target, G: Gates, St: Store> Runner<'_, '_, S, T, G, St> {
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
        let run = self.run_from(journal)?;
        // Promoted, with its old side kept warm: the scale-down it waits for is done now
        // (a deploy needs that side; a rollback onto it never comes here).
        if run.journal.rollback_reason().is_none() && run.journal.kept_warm().is_some() {
            return self.retire(run).await.map(Some);
        }
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
        // Died after promoting, before or while removing the old side: traffic was
        // verified 100% on the new release, which is the stable one now, and the old
        // side may be gone. Rolling back would move traffic off a healthy release onto
        // one that may no longer exist; finishing is what the run had left to do.
        if run.journal.rollback_reason().is_none()
            && run.journal.is_done(&Action::Step(Step::Promote))
        {
            return self.complete_promoted(run).await.map(Some);
        }
        let resumable = self.settings.on_resume == ResumePolicy::Resume
            && run.journal.rollback_reason().is_none()
            && request.is_some_and(|r| self.matches(&run.journal, r));
        if resumable {
            (self.events)(&Event::Resuming { id: &id });
            // While nobody ran, the stable side may have been scaled (by hand, by an
            // autoscaler that was not held): bring it back to the size its journal says
            // before the safety rules, which count journaled units, let traffic move on.
            let stable_units = SafetyGuard::replay(&run.journal, &run.target).stable_units;
            if !run.target.native_rolling && stable_units > 0 {
                self.still_holds()?;
                if let Err(err) = self
                    .retrying(|| self.driver.scale(Side::Stable, stable_units))
                    .await
                {
                    let reason = format!(
                        "the stable side could not be brought back to its {stable_units} unit(s) \
                         before resuming: {err}"
                    );
                    return self.roll_back(run, reason).await.map(Some);
                }
            }
            return self.drive(run).await.map(Some);
        }
        let reason = run
            .journal
            .rollback_reason()
            .map(str::to_string)
            .unwrap_or_else(|| "its run was interrupted before it finished".to_string());
        (self.events)(&Event::Recovering {
            id: &id,
            reason: &reason,
            stable: run.ctx.stable_release.as_deref(),
            new: &run.ctx.new_release,
        });
        self.roll_back(run, reason).await.map(Some)
    }

    /// The run `journal` records, or an error naming the damage when it does not begin
    /// with `Started`.
    fn run_from(&self, journal: Journal) -> Result<Run, StateError> {
        let Some(Record::Started {
            id,
            target,
            params,
            new_release,
            stable_release,
            ..
        }) = journal.started().cloned()
        else {
            return Err(StateError::Corrupt {
                path: format!("journal of service {}", self.service).into(),
                line: 1,
                reason: "it does not begin with a `started` record".into(),
            });
        };
        // Gates keep what they kept in the killed run (a hook's key/value store).
        for (gate, state) in journal.gate_states() {
            self.gates.restore(gate, state);
        }
        let ctx = GateContext {
            deployment_id: id.clone(),
            service: self.service.to_string(),
            new_release,
            stable_release,
            new_percent: 0,
            target_groups: Ok(None),
        };
        let seen = journal.signals().map(|s| s.id.clone()).collect();
        let full = journal
            .signals()
            .any(|s| s.kind == SignalKind::Promote { full: true });
        Ok(Run {
            id,
            journal,
            target,
            params,
            ctx,
            lenient: false,
            unwritten: None,
            store_failed: false,
            groups_asked: false,
            seen,
            full,
        })
    }

    /// Finish a promoted run a killed invocation left: remove the old side (journaled,
    /// idempotent) and record the deployment as promoted. No strategy is consulted: the
    /// one that began the run may not be the one this invocation was given.
    async fn complete_promoted(&self, mut run: Run) -> Result<Report, EngineError> {
        let complete = Action::Step(Step::Complete);
        let seq = match run.journal.in_flight() {
            Some((seq, action)) if *action == complete => seq,
            _ => self.intend(&mut run, complete).await?,
        };
        (self.events)(&Event::Resuming { id: &run.id });
        self.still_holds()?;
        if let Err(err) = self.retrying(|| self.driver.finalize()).await {
            // Traffic is on the new release either way; what is left is the old side.
            let detail = format!(
                "{} is live on 100% of traffic, but cleaning up after it failed: {err}",
                run.ctx.new_release
            );
            return self.finish(run, DeployResult::Promoted, detail).await;
        }
        self.done(&mut run, seq, StepOutcome::Done).await?;
        let detail = format!(
            "{} is live on 100% of traffic (the run was promoted before it was killed)",
            run.ctx.new_release
        );
        self.finish(run, DeployResult::Promoted, detail).await
    }

    /// Journal the intent to carry out `action` (before it is carried out); its number.
    async fn intend(&self, run: &mut Run, action: Action) -> Result<u32, StateError> {
        let seq = run.journal.next_seq();
        self.append(run, Record::Intent { seq, action }).await?;
        Ok(seq)
    }

    /// Journal that action `seq` was carried out, with its outcome.
    async fn done(&self, run: &mut Run, seq: u32, outcome: StepOutcome) -> Result<(), StateError> {
        self.append(run, Record::Done { seq, outcome }).await
    }

    /// How long the run may still go on before its max-duration (counted from the
    /// `Started` record, so a resumed run does not get a fresh allowance).
    fn time_left(&self, run: &Run) -> Duration {
        let started = match run.journal.started() {
            Some(Record::Started { at_ms, .. }) => *at_ms,
            _ => now_ms(),
        };
        let limit = u64::try_from(self.settings.max_duration.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(started.saturating_add(limit).saturating_sub(now_ms()))
    }

    /// Run the gates of `point` that a strategy owed (journaled as the host's own
    /// action, resumed like any other); the reason to roll back when one failed.
    async fn run_owed_gates(
        &self,
        run: &mut Run,
        guard: &mut SafetyGuard,
        in_flight: Option<u32>,
        point: LifecyclePoint,
    ) -> Result<Option<String>, StateError> {
        let seq = match in_flight {
            Some(seq) => seq,
            None => self.intend(run, Action::HostGates(point)).await?,
        };
        let step = Step::RunGates(point);
        (self.events)(&Event::Step { seq, step: &step });
        let outcome = StepOutcome::Gates(self.gates.run(point, &run.ctx).await);
        self.save_gate_states(run).await?;
        self.done(run, seq, outcome.clone()).await?;
        guard.apply(&step);
        (self.events)(&Event::StepDone {
            seq,
            step: &step,
            outcome: &outcome,
            new_percent: guard.new_percent,
        });
        Ok(match judge(&outcome) {
            Flow::RollBack(reason) => Some(reason),
            Flow::Continue => None,
        })
    }

    /// Journal each gate state that differs from the last one journaled for that gate
    /// (before the gate step's `Done`, so a resumed run that repeats the step sees the
    /// state the hooks left).
    async fn save_gate_states(&self, run: &mut Run) -> Result<(), StateError> {
        let changed: Vec<Record> = {
            let saved = run.journal.gate_states();
            self.gates
                .states()
                .into_iter()
                .filter(|(gate, state)| saved.get(gate.as_str()) != Some(&state))
                .map(|(gate, state)| Record::GateState { gate, state })
                .collect()
        };
        for record in changed {
            self.append(run, record).await?;
        }
        Ok(())
    }

    /// Append `record` to the journal, retrying a failing store briefly. Forward, a
    /// record that could not be written is an error (the action it announces is not
    /// taken). Rolling back, it is kept in memory with any before it and the rollback
    /// goes on: taking traffic off a failed release matters more than its paperwork.
    async fn append(&self, run: &mut Run, record: Record) -> Result<(), StateError> {
        run.journal.records.push(record);
        // Rolling back after the store failed: trying it again before every action would
        // cost each one the store's retries (seconds, or minutes against a store that
        // does not answer) while traffic may still be on the new release. The records
        // wait and are written when the rollback ends (`finish`).
        if run.lenient && run.store_failed {
            run.unwritten.get_or_insert(run.journal.records.len() - 1);
            return Ok(());
        }
        match self.flush(run).await {
            Ok(()) => Ok(()),
            Err(err) if run.lenient && !err.lost_the_service() => {
                (self.events)(&Event::Retrying {
                    wait: Duration::ZERO,
                    message: &format!(
                        "journal write failed, the rollback goes on and writes it later: {err}"
                    ),
                });
                Ok(())
            }
            Err(err) => {
                run.journal.records.pop();
                run.unwritten = None;
                Err(err)
            }
        }
    }

    /// Whether this run still holds the service's lock (see [`Fence`]): checked before
    /// every journal write and every change to the target, so a run that lost its lease
    /// (paused past it, renewals failing) changes nothing more.
    fn still_holds(&self) -> Result<(), StateError> {
        let fence = self
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        fence()
    }

    /// Resolves once this run no longer holds the service's lock (checked every second).
    async fn lease_lost(&self) -> StateError {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Err(err) = self.still_holds() {
                return err;
            }
        }
    }

    /// Records a rollback could not write yet, written now.
    async fn flush_pending(&self, run: &mut Run) -> Result<(), StateError> {
        if run.unwritten.is_some() {
            self.flush(run).await
        } else {
            Ok(())
        }
    }

    /// Write every record not yet in the store, in order; each write retried a few
    /// times with backoff.
    async fn flush(&self, run: &mut Run) -> Result<(), StateError> {
        let last = run.journal.records.len();
        let from = run.unwritten.unwrap_or(last.saturating_sub(1));
        for index in from..last {
            let mut wait = self.settings.retry_base;
            let mut attempt = 0;
            loop {
                self.still_holds()?;
                match self
                    .store
                    .append(self.service, &run.id, index, &run.journal.records[index])
                    .await
                {
                    Ok(()) => break,
                    // Rolling back, one retry: the rollback goes on without the record.
                    Err(err)
                        if attempt < if run.lenient { 1 } else { 3 } && !err.lost_the_service() =>
                    {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                        attempt += 1;
                    }
                    Err(err) => {
                        run.unwritten = Some(index);
                        run.store_failed |= !err.lost_the_service();
                        return Err(err);
                    }
                }
            }
        }
        run.unwritten = None;
        Ok(())
    }

    /// Ask the driver for the sides' target groups, once per run and only when a gate
    /// needs them. Asked before the run changes anything (a forward run before it
    /// prepares, a rollback before it undoes), the driver names them by the releases it
    /// was built for, so a resumed run, or the rollback of a killed one, gets the same
    /// groups the run began with.
    async fn learn_target_groups(&self, run: &mut Run) {
        if run.groups_asked || !self.gates.need_target_groups() {
            return;
        }
        run.groups_asked = true;
        run.ctx.target_groups = self
            .retrying(|| self.driver.target_groups())
            .await
            .map_err(|err| format!("reading the sides' target groups failed: {err}"));
    }

    /// Carry out the strategy's steps until it completes or something fails.
    async fn drive(&self, mut run: Run) -> Result<Report, EngineError> {
        if let Some(reason) = run.journal.rollback_reason() {
            let reason = reason.to_string();
            return self.roll_back(run, reason).await;
        }
        // Before the first change (the journal's `started` record says what is being
        // suspended); again on resume, which changes nothing if it was done.
        if let Some(saved) = run.journal.scaling().cloned() {
            self.still_holds()?;
            if let Err(err) = self.retrying(|| self.driver.suspend_scaling(&saved)).await {
                let reason = format!("suspending the service's own scaling failed: {err}");
                return self.roll_back(run, reason).await;
            }
        }
        self.learn_target_groups(&mut run).await;
        let mut guard = SafetyGuard::replay(&run.journal, &run.target);
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
            let action = Action::Prepare {
                release: run.ctx.new_release.clone(),
            };
            let seq = journaled!(self, run, self.intend(&mut run, action.clone()).await);
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
                    self.still_holds()?;
                    match self.retrying(|| self.driver.prepare(&release)).await {
                        Ok(()) => {
                            journaled!(
                                self,
                                run,
                                self.done(&mut run, seq, StepOutcome::Done).await
                            );
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
                Some((seq, Action::HostGates(point))) => {
                    let owed = self
                        .run_owed_gates(&mut run, &mut guard, Some(seq), point)
                        .await;
                    if let Some(reason) = journaled!(self, run, owed) {
                        return self.roll_back(run, reason).await;
                    }
                    continue;
                }
                Some((_, Action::Rollback(_))) => {
                    let reason = "an interrupted rollback".to_string();
                    return self.roll_back(run, reason).await;
                }
                // Only a promoted run that kept its old side warm scales it down.
                Some((_, Action::RetireWarm)) => return self.retire(run).await,
                None => {
                    let taken = run.journal.history().len();
                    if taken >= self.settings.max_steps as usize {
                        let reason = format!(
                            "the strategy asked for more than {} steps (the service's max-steps)",
                            self.settings.max_steps
                        );
                        return self.roll_back(run, reason).await;
                    }
                    let state = RolloutState {
                        params: run.params.clone(),
                        target: run.target,
                        history: run.journal.history(),
                    };
                    let step = if run.full && !run.target.native_rolling {
                        full_promotion(&guard)
                    } else {
                        match self.strategy.next(&state).await {
                            Ok(step) => step,
                            Err(err) => return self.roll_back(run, err.to_string()).await,
                        }
                    };
                    if let Step::Abort(reason) = &step {
                        return self
                            .roll_back(run, format!("the strategy aborted: {reason}"))
                            .await;
                    }
                    if let Err(violation) = guard.check(&step) {
                        return self.roll_back(run, violation.to_string()).await;
                    }
                    // A strategy may add checks, never remove them: gates it owes
                    // before this step run first, as the host's own action.
                    while let Some(point) = guard.owed(&step) {
                        if !self.gates.configured(point) {
                            guard.apply(&Step::RunGates(point));
                            continue;
                        }
                        let owed = self.run_owed_gates(&mut run, &mut guard, None, point).await;
                        if let Some(reason) = journaled!(self, run, owed) {
                            return self.roll_back(run, reason).await;
                        }
                    }
                    let seq = journaled!(
                        self,
                        run,
                        self.intend(&mut run, Action::Step(step.clone())).await
                    );
                    (seq, step)
                }
            };
            // The strategy's scale-down of the old side after promotion is what the
            // scale-down-delay postpones: recorded as asked, carried out when the delay
            // ends (`retire`) or, if the run dies before completing, by the recovery
            // that completes it. Not shown as a step: the run says what it keeps when it
            // completes.
            if guard.promoted
                && matches!(step, Step::Scale(ScaleRequest { side: Side::Stable, count }) if count < guard.stable_units)
                && self.warm_release(&run).is_some()
            {
                journaled!(self, run, self.done(&mut run, seq, StepOutcome::Done).await);
                guard.apply(&step);
                continue;
            }
            (self.events)(&Event::Step { seq, step: &step });
            if step == Step::Complete
                && let Some(release) = self.warm_release(&run)
            {
                return self.keep_warm(run, seq, release).await;
            }
            // An approval pause's deadline is journaled as it begins: a resumed run waits
            // for what is left of it.
            let mut until_ms = None;
            if let Step::AwaitApproval(approval) = &step {
                let until = match run.journal.waiting_until(seq) {
                    Some(until) => until,
                    None => {
                        let until = now_ms().saturating_add(approval.timeout_ms);
                        let waiting = Record::Waiting {
                            seq,
                            until_ms: until,
                        };
                        journaled!(self, run, self.append(&mut run, waiting).await);
                        until
                    }
                };
                until_ms = Some(until);
            }
            let left = self.time_left(&run);
            self.still_holds()?;
            let outcome = tokio::select! {
                outcome = self.execute(&step, &run.ctx, run.target.desired_count, until_ms) => outcome,
                () = self.cancel.cancelled() => {
                    return self.roll_back(run, "cancelled (SIGINT/SIGTERM)".into()).await;
                }
                signal = self.signalled(&run, &step) => {
                    let signal_record = Record::Signal { signal: signal.clone() };
                    journaled!(self, run, self.append(&mut run, signal_record).await);
                    run.seen.insert(signal.id.clone());
                    match signal.kind {
                        SignalKind::Abort => {
                            (self.events)(&Event::Signalled { signal: &signal, effect: "rolling back" });
                            return self.roll_back(run, signal.describe()).await;
                        }
                        SignalKind::Promote { full } => {
                            run.full |= full;
                            let effect = if full && !run.target.native_rolling {
                                "the wait ends now; traffic goes straight to 100%, the remaining gates still run"
                            } else {
                                "the wait ends now"
                            };
                            (self.events)(&Event::Signalled { signal: &signal, effect });
                            Ok(StepOutcome::Done)
                        }
                    }
                }
                // A long step (a bake) must not outlive the lease: stop when it is lost.
                lost = self.lease_lost() => return Err(lost.into()),
                () = tokio::time::sleep(left) => {
                    let reason = format!(
                        "the run went on longer than the service's max-duration ({})",
                        describe::duration(self.settings.max_duration)
                    );
                    return self.roll_back(run, reason).await;
                }
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                // Promoted, post-deploy gates passed: what failed is removing what is
                // left of the old side (task set, a version's provisioned concurrency).
                // Traffic stays where it is, as when a recovered run's clean-up fails;
                // moving it back over a clean-up would undo a good release.
                Err(err) if step == Step::Complete => {
                    let detail = format!(
                        "{} is live on 100% of traffic, but cleaning up after it failed: {err}",
                        run.ctx.new_release
                    );
                    return self.finish(run, DeployResult::Promoted, detail).await;
                }
                Err(err) => {
                    return self
                        .roll_back(run, format!("{}: {err}", describe::step(&step)))
                        .await;
                }
            };
            if matches!(step, Step::RunGates(_) | Step::Bake(_)) {
                journaled!(self, run, self.save_gate_states(&mut run).await);
            }
            journaled!(self, run, self.done(&mut run, seq, outcome.clone()).await);
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

    /// Carry out `step`; `until_ms` is when an approval pause gives up.
    async fn execute(
        &self,
        step: &Step,
        ctx: &GateContext,
        desired: u32,
        until_ms: Option<u64>,
    ) -> Result<StepOutcome, DriverError> {
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
            Step::Bake(ms) => Ok(self.bake(Duration::from_millis(*ms), ctx, desired).await),
            Step::RollingUpdate(update) => self
                .retrying(|| self.driver.rolling_update(&ctx.new_release, update))
                .await
                .and(done),
            Step::Promote => self.retrying(|| self.driver.promote()).await.and(done),
            Step::Complete => self.retrying(|| self.driver.finalize()).await.and(done),
            Step::Abort(reason) => Err(DriverError::Failed(reason.clone())),
            Step::AwaitApproval(approval) => {
                let until_ms =
                    until_ms.unwrap_or_else(|| now_ms().saturating_add(approval.timeout_ms));
                Ok(self.await_approval(approval, until_ms, ctx, desired).await)
            }
        }
    }

    /// The first signal meant for this run that it has not acted on: an abort at any
    /// time, a promote only while `step` waits (a bake; otherwise it stays for the next
    /// wait). Looks at once, then every watch interval. A backend that cannot be read
    /// is asked again at the next look: the journal writes, which need it too, decide
    /// whether the run can go on.
    async fn signalled(&self, run: &Run, step: &Step) -> Signal {
        let waits = matches!(step, Step::Bake(_) | Step::AwaitApproval(_));
        let interval = self.settings.watch_interval.max(MIN_WATCH_INTERVAL);
        loop {
            if let Ok(signals) = self.store.signals(self.service).await {
                let fresh: Vec<&Signal> = signals
                    .iter()
                    .filter(|s| s.deployment == run.id && !run.seen.contains(&s.id))
                    .collect();
                if let Some(abort) = fresh.iter().find(|s| s.kind == SignalKind::Abort) {
                    return (*abort).clone();
                }
                if waits
                    && let Some(promote) = fresh
                        .iter()
                        .find(|s| matches!(s.kind, SignalKind::Promote { .. }))
                {
                    return (*promote).clone();
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// The stable release whose side stays warm when this run completes, if it keeps
    /// one: a `scale-down-delay`, two sides, and a stable release to keep.
    fn warm_release(&self, run: &Run) -> Option<String> {
        if self.settings.scale_down_delay.is_zero() || run.target.native_rolling {
            return None;
        }
        if let Some((release, _)) = run.journal.kept_warm() {
            return Some(release.to_string()); // a resumed run that began keeping it
        }
        run.ctx.stable_release.clone().filter(|r| !r.is_empty())
    }

    /// Complete the promoted run `seq` without scaling the old side down: it stays at
    /// full size, without traffic, for the scale-down-delay. The service's own scaling
    /// is restored first, as any ending does (if that fails, nothing is kept and the
    /// next command completes the run as usual). `KeptWarm` is journaled before the
    /// step is done, so a kill at any point leaves a journal that says what is running:
    /// the deployment stays unfinished until that side is scaled down.
    async fn keep_warm(
        &self,
        mut run: Run,
        seq: u32,
        release: String,
    ) -> Result<Report, EngineError> {
        if let Some(saved) = run.journal.scaling().cloned() {
            self.still_holds()?;
            if let Err(err) = self.retrying(|| self.driver.restore_scaling(&saved)).await {
                return Err(EngineError::Target(DriverError::Failed(format!(
                    "deployment {}: {} is live on 100% of traffic, but restoring the service's own \
                     scaling failed: {err}. The next `deployer run` or `deployer rollback` on this \
                     service restores it and scales {} down",
                    run.id,
                    short_release(&run.ctx.new_release),
                    short_release(&release)
                ))));
            }
        }
        let until_ms = match run.journal.kept_warm() {
            Some((_, until_ms)) => until_ms,
            None => {
                let delay =
                    u64::try_from(self.settings.scale_down_delay.as_millis()).unwrap_or(u64::MAX);
                let until_ms = now_ms().saturating_add(delay);
                let kept = Record::KeptWarm {
                    release: release.clone(),
                    until_ms,
                };
                journaled!(self, run, self.append(&mut run, kept).await);
                until_ms
            }
        };
        journaled!(self, run, self.done(&mut run, seq, StepOutcome::Done).await);
        (self.events)(&Event::StepDone {
            seq,
            step: &Step::Complete,
            outcome: &StepOutcome::Done,
            new_percent: 100,
        });
        (self.events)(&Event::KeptWarm {
            release: &release,
            until_ms,
        });
        let detail = format!(
            "{} is live on 100% of traffic; {} stays warm until {}",
            short_release(&run.ctx.new_release),
            short_release(&release),
            describe::utc(until_ms)
        );
        (self.events)(&Event::Finished {
            id: &run.id,
            result: DeployResult::Promoted,
            detail: &detail,
        });
        Ok(Report {
            id: run.id,
            result: DeployResult::Promoted,
            detail,
            recovered: None,
            traffic_read_back: None,
        })
    }

    /// Scale down the side promoted run `run` kept warm, journaled, and finish it.
    async fn retire(&self, mut run: Run) -> Result<Report, EngineError> {
        let (release, until_ms) = match run.journal.kept_warm() {
            Some((release, until_ms)) => (release.to_string(), until_ms),
            None => return self.complete_promoted(run).await,
        };
        (self.events)(&Event::Retiring {
            release: &release,
            deployment: &run.id,
        });
        // A side that serves traffic is never scaled down: the weights were changed by
        // hand, or by something deployer does not know of.
        self.still_holds()?;
        let serving = match self.retrying(|| self.driver.traffic_share()).await {
            Ok(Some(new)) if new < 100 => Some(format!("{}% of traffic", 100 - new)),
            Ok(_) => None,
            Err(err) => Some(format!("traffic that cannot be read ({err})")),
        };
        if let Some(serving) = serving {
            return Err(EngineError::Target(DriverError::Failed(format!(
                "{} was kept warm after deployment {}, and the load balancer gives it {serving}; \
                 it is not scaled down while it may serve. Put all traffic back on {} (or run \
                 `deployer rollback` to move it all to {}), then run this command again",
                short_release(&release),
                run.id,
                short_release(&run.ctx.new_release),
                short_release(&release)
            ))));
        }
        let retire = Action::RetireWarm;
        let seq = match run.journal.in_flight() {
            Some((seq, action)) if *action == retire => seq,
            _ => self.intend(&mut run, retire).await?,
        };
        self.still_holds()?;
        if let Err(err) = self.retrying(|| self.driver.finalize()).await {
            return Err(EngineError::Target(DriverError::Failed(format!(
                "scaling down {}, kept warm after deployment {}, failed: {err}; the next deployer \
                 command on the service (or `deployer tidy`) tries again",
                short_release(&release),
                run.id
            ))));
        }
        self.done(&mut run, seq, StepOutcome::Done).await?;
        let detail = format!(
            "{} is live on 100% of traffic; {} was kept warm until {} and is scaled down",
            short_release(&run.ctx.new_release),
            short_release(&release),
            describe::utc(until_ms)
        );
        self.finish(run, DeployResult::Promoted, detail).await
    }

    /// Finish the promoted run `run` that kept its old side warm, leaving that side as
    /// it is: a rollback is about to move traffic back onto it.
    async fn close_warm(&self, run: Run, by: &str) -> Result<Report, EngineError> {
        let release = run
            .journal
            .kept_warm()
            .map(|(r, _)| r.to_string())
            .unwrap_or_default();
        let detail = format!(
            "{} was live on 100% of traffic; rolled back by deployment {by} while {} was warm",
            short_release(&run.ctx.new_release),
            short_release(&release)
        );
        self.finish(run, DeployResult::Promoted, detail).await
    }

    /// Wait for a person: `deployer promote` ends the wait (the signal branch in
    /// `drive`), `deployer abort` rolls back, and the continuous gates watch meanwhile as
    /// in a bake. Unanswered by its timeout, the step fails like a gate (roll back) or is
    /// done (continue), as it says.
    async fn await_approval(
        &self,
        approval: &Approval,
        until_ms: u64,
        ctx: &GateContext,
        desired: u32,
    ) -> StepOutcome {
        let timeout = Duration::from_millis(approval.timeout_ms);
        (self.events)(&Event::AwaitingApproval {
            service: self.service,
            until_ms,
            continues: approval.on_timeout == ApprovalTimeout::Continue,
        });
        let left = Duration::from_millis(until_ms.saturating_sub(now_ms()));
        let watched = self.bake(left, ctx, desired).await;
        if watched != StepOutcome::Done {
            return watched;
        }
        match approval.on_timeout {
            ApprovalTimeout::Continue => StepOutcome::Done,
            ApprovalTimeout::RollBack => StepOutcome::Gates(vec![GateResult {
                name: "approval".into(),
                status: GateStatus::Fail,
                detail: format!(
                    "nobody approved within {} (`deployer promote --service {}` continues a \
                     waiting run)",
                    describe::duration(timeout),
                    self.service
                ),
                observed: None,
            }]),
        }
    }

    /// Wait, running the continuous gates every interval; stop early on a failure.
    async fn bake(&self, length: Duration, ctx: &GateContext, desired: u32) -> StepOutcome {
        let end = tokio::time::Instant::now() + length;
        let interval = self.settings.watch_interval.max(MIN_WATCH_INTERVAL);
        let mut short = 0;
        loop {
            let now = tokio::time::Instant::now();
            if now >= end {
                return StepOutcome::Done;
            }
            tokio::time::sleep_until(end.min(now + interval)).await;
            let mut results = self.gates.watch(ctx).await;
            // The sides must keep the units their share of traffic needs while it bakes:
            // a canary whose tasks are gone (scaled away, crashed, its service deleted)
            // must not keep getting traffic until the bake ends. Two short readings in a
            // row fail, so one task being replaced does not.
            match self.capacity_shortfall(ctx.new_percent, desired).await {
                Some(detail) => {
                    short += 1;
                    results.push(GateResult {
                        name: "capacity".into(),
                        status: if short >= 2 {
                            GateStatus::Fail
                        } else {
                            GateStatus::Inconclusive
                        },
                        detail,
                        observed: None,
                    });
                }
                None => short = 0,
            }
            if !results.is_empty() {
                (self.events)(&Event::Watched { results: &results });
            }
            if results.iter().any(|r| r.status == GateStatus::Fail) {
                return StepOutcome::Gates(results);
            }
        }
    }

    /// Which side, if any, has fewer healthy units than `new_percent` of traffic (and the
    /// rest) needs of `desired`, in words. Targets that cannot tell, and reads that fail,
    /// say nothing: the gates and the next step's own checks still run.
    async fn capacity_shortfall(&self, new_percent: u8, desired: u32) -> Option<String> {
        for (side, percent, name) in [
            (Side::New, new_percent, "new"),
            (Side::Stable, 100 - new_percent, "stable"),
        ] {
            if percent == 0 {
                continue;
            }
            let needed = crate::safety::units_needed(desired, percent);
            if let Ok(Some(healthy)) = self.driver.healthy_units(side).await
                && healthy < needed
            {
                return Some(format!(
                    "the {name} side has {healthy} healthy unit(s) and its {percent}% of traffic \
                     needs {needed} of {desired}"
                ));
            }
        }
        None
    }

    /// Retry transient driver failures with exponential backoff.
    async fn retrying<R, F, Fut>(&self, op: F) -> Result<R, DriverError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<R, DriverError>>,
    {
        let mut wait = self.settings.retry_base;
        let mut attempt = 0;
        loop {
            match op().await {
                Err(DriverError::Transient(msg)) if attempt < self.settings.step_retries => {
                    (self.events)(&Event::Retrying {
                        wait,
                        message: &msg,
                    });
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                    attempt += 1;
                }
                other => return other,
            }
        }
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

    /// Put production back on the stable release: stable asked back to full size,
    /// traffic moved back to it as fast as its healthy capacity allows (all of it once it
    /// is full, or once it stops growing short of full), then the new side down and away.
    /// Each action is journaled; transient failures are retried until the rollback
    /// deadline, every attempt bounded by the time left; a permanent failure ends the
    /// rollback at once. Not cancellable.
    async fn roll_back(&self, mut run: Run, reason: String) -> Result<Report, EngineError> {
        (self.events)(&Event::RollingBack { reason: &reason });
        run.lenient = true;
        self.learn_target_groups(&mut run).await;
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
        let deadline = tokio::time::Instant::now() + self.settings.rollback_deadline;
        let mut degraded = None;
        // The share on the new side the load balancer reported at the end, and a note
        // when it could not be read or had to be corrected.
        let mut read_back = None;
        let mut unread: Option<String> = None;
        let outcome = if rolled_in_place {
            self.undo(&mut run, RollbackAction::RollingUndo, deadline)
                .await?
        } else if run.target.native_rolling {
            // Updated in place, and no rolling update began (a pre-deploy gate failed,
            // the run was stopped first): nothing was changed, so there is nothing to
            // undo. The side-by-side undo below would ask an in-place target to scale a
            // "stable side" it does not have, and report a failed rollback.
            Ok(())
        } else {
            let stable = RollbackAction::Scale(ScaleRequest {
                side: Side::Stable,
                count: run.target.desired_count,
            });
            let new_down = RollbackAction::Scale(ScaleRequest {
                side: Side::New,
                count: 0,
            });
            let mut outcome = self.undo(&mut run, stable, deadline).await?;
            if outcome.is_ok() {
                outcome = match self.return_traffic(&mut run, deadline).await? {
                    Ok(note) => {
                        degraded = note;
                        Ok(())
                    }
                    Err(err) => Err(err),
                };
            }
            if outcome.is_ok() {
                outcome = self
                    .confirm_traffic_back(&mut run, deadline, &mut read_back, &mut unread)
                    .await?;
            }
            for action in [new_down, RollbackAction::Discard] {
                if outcome.is_ok() {
                    outcome = self.undo(&mut run, action, deadline).await?;
                }
            }
            outcome
        };
        if let Err(err) = outcome {
            let left = read_back
                .unwrap_or_else(|| SafetyGuard::replay(&run.journal, &run.target).new_percent);
            let detail = if left == 0 {
                format!(
                    "rollback failed after traffic was back on {}: {err}; remove what is left of {} by hand or run `deployer rollback` again",
                    run.ctx
                        .stable_release
                        .as_deref()
                        .map_or("the stable release", short_release),
                    run.ctx.new_release
                )
            } else {
                format!(
                    "rollback failed: {err}; {left}% of traffic may still reach {} — restore it by hand",
                    run.ctx.new_release
                )
            };
            return self.finish(run, DeployResult::RollbackFailed, detail).await;
        }
        run.ctx.new_percent = 0;
        for result in self.gates.run(LifecyclePoint::PostRollback, &run.ctx).await {
            (self.events)(&Event::AfterRollback { result: &result });
        }
        let mut detail = format!(
            "rolled back to {}: {reason}",
            run.ctx
                .stable_release
                .as_deref()
                .map_or("the stable release", short_release)
        );
        if let Some(note) = degraded {
            detail = format!("{detail} ({note})");
        }
        if let Some(note) = unread {
            detail = format!("{detail} ({note})");
        }
        self.finish(run, DeployResult::RolledBack, detail)
            .await
            .map(|report| Report {
                traffic_read_back: read_back,
                ..report
            })
    }

    /// Once the journal shows all traffic back: read the production route itself. A
    /// recovery that found every shift journaled done changed nothing and verified
    /// nothing, and the report must say what is live, not what was recorded; a share
    /// still on the new side (weights changed by hand, a write the journal never saw) is
    /// moved back again, journaled, before the new side is removed. `read_back` gets the
    /// share last read; `note` what the report should add.
    async fn confirm_traffic_back(
        &self,
        run: &mut Run,
        deadline: tokio::time::Instant,
        read_back: &mut Option<u8>,
        note: &mut Option<String>,
    ) -> Result<Result<(), String>, EngineError> {
        self.still_holds()?;
        let left = match self.driver.traffic_share().await {
            Ok(None) => return Ok(Ok(())), // no weights: an in-place target
            Err(err) => {
                *note = Some(format!(
                    "traffic not read back from the load balancer: {err}"
                ));
                return Ok(Ok(()));
            }
            Ok(Some(left)) => left,
        };
        *read_back = Some(left);
        (self.events)(&Event::TrafficReadBack { new_percent: left });
        if left == 0 {
            return Ok(Ok(()));
        }
        let outcome = self
            .carry_out(run, RollbackAction::ShiftTraffic(0), deadline)
            .await?;
        if outcome.is_ok() {
            *read_back = Some(0);
            *note = Some(format!(
                "the load balancer still sent {left}% of traffic to {} although the journal recorded all of it back; it was moved back again",
                short_release(&run.ctx.new_release)
            ));
        }
        Ok(outcome)
    }

    /// Carry out one rollback action, journaled, unless the journal shows it done:
    /// transient failures are retried until `deadline`, each attempt bounded by the time
    /// left; a permanent failure, or the deadline, ends it with the reason.
    async fn undo(
        &self,
        run: &mut Run,
        action: RollbackAction,
        deadline: tokio::time::Instant,
    ) -> Result<Result<(), String>, EngineError> {
        if run.journal.is_done(&Action::Rollback(action.clone())) {
            return Ok(Ok(()));
        }
        self.carry_out(run, action, deadline).await
    }

    /// [`Self::undo`] whatever the journal shows.
    async fn carry_out(
        &self,
        run: &mut Run,
        action: RollbackAction,
        deadline: tokio::time::Instant,
    ) -> Result<Result<(), String>, EngineError> {
        let seq = self.intend(run, Action::Rollback(action.clone())).await?;
        (self.events)(&Event::Undo { action: &action });
        let mut wait = self.settings.retry_base;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.still_holds()?;
            let error = match tokio::time::timeout(left, self.rollback_action(&action, run)).await {
                Ok(Ok(())) => break,
                Ok(Err(DriverError::Failed(message))) => return Ok(Err(message)),
                Ok(Err(transient)) => transient.to_string(),
                Err(_) => {
                    return Ok(Err(format!(
                        "it did not finish within the rollback's deadline ({})",
                        describe::duration(self.settings.rollback_deadline)
                    )));
                }
            };
            if tokio::time::Instant::now() + wait >= deadline {
                return Ok(Err(error));
            }
            (self.events)(&Event::Retrying {
                wait,
                message: &format!("rollback action failed: {error}"),
            });
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        self.done(run, seq, StepOutcome::Done).await?;
        if let RollbackAction::ShiftTraffic(p) = action {
            // `shift_verified` succeeds only when the weights read back as asked.
            (self.events)(&Event::UndoVerified { new_percent: p });
        }
        Ok(Ok(()))
    }

    /// Move production traffic back to the stable side in proportion to its healthy
    /// units as they come up, and all of it once it is full. A stable side that stops
    /// growing short of full size (capacity lost, a smaller real desired count) gets all
    /// of it anyway after `stable_stall`, as long as it has a healthy unit: an under-sized
    /// stable serves better than a release that failed. The note says so when it happened.
    async fn return_traffic(
        &self,
        run: &mut Run,
        deadline: tokio::time::Instant,
    ) -> Result<Result<Option<String>, String>, EngineError> {
        use tokio::time::Instant;
        let desired = run.target.desired_count;
        // What the journal shows done, or more: a shift in flight when a run died may
        // have taken effect without its `done`.
        let in_flight = match run.journal.in_flight() {
            Some((_, Action::Step(Step::ShiftTraffic(p))))
            | Some((_, Action::Rollback(RollbackAction::ShiftTraffic(p)))) => *p,
            _ => 0,
        };
        let mut current = SafetyGuard::replay(&run.journal, &run.target)
            .new_percent
            .max(in_flight);
        let all_back = Action::Rollback(RollbackAction::ShiftTraffic(0));
        let mut best = 0;
        let mut grew_at = Instant::now();
        let mut backoff =
            crate::driver::Backoff::new(self.settings.watch_interval.min(Duration::from_secs(5)));
        let mut note = None;
        // Until the journal shows all traffic back: the last shift to 0% is made even
        // when the journal says nothing moved (a kill may have hidden a shift).
        while !run.journal.is_done(&all_back) {
            let left = deadline.saturating_duration_since(Instant::now());
            let healthy = match tokio::time::timeout(left, self.driver.healthy_units(Side::Stable))
                .await
            {
                Ok(Ok(Some(healthy))) => healthy,
                // The target cannot tell: asking for the units waited for all of them.
                Ok(Ok(None)) => desired,
                Ok(Err(DriverError::Failed(message))) => return Ok(Err(message)),
                Ok(Err(DriverError::Transient(_))) => best,
                Err(_) => return Ok(Err(
                    "reading the stable side's health did not finish by the rollback's deadline"
                        .into(),
                )),
            };
            if healthy > best {
                best = healthy;
                grew_at = Instant::now();
            }
            let stalled = grew_at.elapsed() >= self.settings.stable_stall;
            let target = if healthy >= desired {
                0
            } else if stalled && healthy > 0 {
                note = Some(format!(
                    "the stable side reached only {healthy} of {desired} healthy units; all traffic is on it anyway"
                ));
                0
            } else {
                100 - crate::safety::share_supported(desired, healthy)
            };
            if target < current || target == 0 {
                match self
                    .undo(run, RollbackAction::ShiftTraffic(target), deadline)
                    .await?
                {
                    Ok(()) => {
                        current = target;
                        continue;
                    }
                    Err(err) => return Ok(Err(err)),
                }
            }
            if Instant::now() >= deadline {
                return Ok(Err(format!(
                    "the stable side has {healthy} of {desired} units healthy and {current}% of traffic is still on the new release"
                )));
            }
            backoff.sleep().await;
        }
        Ok(Ok(note))
    }

    async fn rollback_action(&self, action: &RollbackAction, run: &Run) -> Result<(), DriverError> {
        match action {
            // Asked for, not waited for: traffic follows the healthy units.
            RollbackAction::Scale(ScaleRequest { side, count }) => {
                self.driver.request_units(*side, *count).await
            }
            RollbackAction::ShiftTraffic(percent) => self.shift_verified(*percent).await,
            RollbackAction::RollingUndo => {
                let stable = run.ctx.stable_release.clone().ok_or_else(|| {
                    DriverError::Failed("no stable release is recorded to roll back to".into())
                })?;
                let update = RollingUpdate {
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
        let mut detail = detail;
        // Every ending puts the service's own scaling back as it was before the
        // deployment. If that fails the deployment is left unfinished, so the next
        // command on the service (which recovers it) restores it: nothing is left
        // suspended by accident. A run that kept its old side warm restored it then,
        // and since then the old side was scaled down: restoring again would undo that.
        if run.journal.kept_warm().is_none()
            && let Some(saved) = run.journal.scaling().cloned()
        {
            self.still_holds()?;
            if let Err(err) = self.retrying(|| self.driver.restore_scaling(&saved)).await {
                return Err(EngineError::Target(DriverError::Failed(format!(
                    "deployment {}: {detail}; but restoring the service's own scaling failed: {err}. \
                     It stays suspended until the next `deployer run` or `deployer rollback` on this \
                     service, which restores it",
                    run.id
                ))));
            }
        }
        let written = match self
            .flush_pending(&mut run)
            .await
            .and_then(|()| self.still_holds())
        {
            Ok(()) => {
                let record = Record::Finished {
                    result,
                    detail: detail.clone(),
                    at_ms: now_ms(),
                };
                let index = run.journal.records.len();
                let written = self
                    .store
                    .finish(self.service, &run.id, index, &record)
                    .await;
                if written.is_ok() {
                    run.journal.records.push(record);
                }
                written
            }
            Err(err) => Err(err),
        };
        match written {
            Ok(()) => {}
            Err(err) if run.lenient && !err.lost_the_service() => {
                detail = format!(
                    "{detail} (the journal could not be written: {err}; the next run finds this \
                     deployment unfinished and rolls it back again, which changes nothing)"
                );
            }
            Err(err) => return Err(err.into()),
        }
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
            traffic_read_back: None,
        })
    }
}

/// The next step of a run a person promoted to 100% (`deployer promote --full`): the
/// new side to full size, all traffic to it, promotion, completion. The safety rules
/// and the gates the run still owes apply as to any strategy's step.
fn full_promotion(guard: &SafetyGuard) -> Step {
    if guard.new_percent < 100 {
        if guard.new_units < guard.desired {
            Step::Scale(ScaleRequest {
                side: Side::New,
                count: guard.desired,
            })
        } else {
            Step::ShiftTraffic(100)
        }
    } else if !guard.promoted {
        Step::Promote
    } else {
        Step::Complete
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

/// A promoted deployment that kept its old side warm and has not scaled it down.
fn is_warm(journal: &Journal) -> bool {
    journal.warm_side().is_some()
}

/// A deployment id people can read and type: `web-20261201-041230-7kq3`.
fn new_id(service: &str) -> String {
    crate::state::names::deployment_id(service)
}

impl SafetyGuard {
    /// Whether production traffic is entirely on the stable side.
    pub fn traffic_safe(&self) -> bool {
        self.new_percent == 0
    }
}
