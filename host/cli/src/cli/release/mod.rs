//! `deployer run release NAME` and `deployer rollback --release NAME`: several services
//! deployed as one release, in waves, rolled back together.
//!
//! - Everything is checked before anything changes: the release's values, every
//!   service's strategy, gates, hooks, target and plan (the engine's preflight).
//! - Then the locks of all the release's services are taken, in name order, and held
//!   until the release ends: two releases sharing services cannot deadlock (each waits
//!   for none: the second is refused at the first lock it cannot take, and gives back
//!   the ones it took), and no single run slips in between two waves.
//! - The release journal ([`journal`]) is written before each wave, after each service
//!   ends and before the release rolls back; each service journals its own deployment
//!   as a single run does.
//! - The services of a wave deploy at once, each with its own engine; the next wave
//!   begins when all of them are promoted (and, with `bake`, when the release's gates
//!   watched the bake between without failing).
//! - One failure takes the whole release back: the wave's other services are cancelled
//!   (each rolls itself back, traffic first), then every service the release changed is
//!   taken back, last wave first, each as `deployer rollback` would (traffic first, onto
//!   a side kept warm without scaling it).
//! - A run killed anywhere leaves the release journal active: the next `deployer run
//!   release NAME` or `deployer rollback --release NAME` takes that run back as a whole
//!   first. What belongs to the run is read from the services' own journals: a service's
//!   deployment begun after the release journal says its wave began is the release's.

pub mod journal;
pub mod wanted;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use deployer_contract::GateStatus;
use deployer_engine::driver::Target as _;
use deployer_engine::events::{Event, short_release};
use deployer_engine::gates::{ConfiguredGates, GateContext, Gates as _};
use deployer_engine::redact::printable;
use deployer_engine::rollout::{DeployRequest, Deployed, Engine, Parts, RolledBack};
use deployer_engine::state::{DeployResult, Fence, Lease, Record, StateError, Store as _};
use deployer_plugin_host::PluginHost;
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_targets::aws::calls::scoped;
use deployer_targets::aws::{CallCounter, Clients};
use deployer_targets::target::ServiceTarget;
use tokio_util::sync::CancellationToken;

use self::journal::{
    Finished, ReleaseJournal, ReleaseResult, ReleaseStore, RollingBack, ServiceEntry,
    ServiceResult, now,
};
use self::wanted::Wanted;
use super::report::{ReleaseServiceSummary, ReleaseSummary, Reporter, Summary, SummaryResult};
use super::run::engine_error;
use super::setup::{self, Store, StoreLock};
use crate::config::{Config, ConfigErrors, ReleaseConfig, ServiceConfig};
use crate::exit::{BadInput, Outcome};

/// What `deployer run release NAME` was given.
pub struct Args<'a> {
    pub name: &'a str,
    pub releases: &'a [String],
    pub images: &'a [String],
    pub manifest: Option<&'a Path>,
}

/// One service of the release, connected.
struct Member<'c> {
    name: &'c str,
    wave: usize,
    service: &'c ServiceConfig,
    target: ServiceTarget,
    clients: Clients,
    reporter: Arc<Reporter>,
}

/// A service the run deploys, with everything its engine needs.
struct Deploying<'m, 'c> {
    member: &'m Member<'c>,
    strategy_name: String,
    strategy: StrategyPlugin,
    gates: ConfiguredGates,
    request: DeployRequest,
}

/// The release's services connected, each through the clients of its region (one set
/// per region, shared: one request budget per account and region, see `Clients::new`).
struct World<'c> {
    name: &'c str,
    release: &'c ReleaseConfig,
    store: Store,
    members: Vec<Member<'c>>,
}

impl World<'_> {
    fn journals(&self) -> ReleaseStore<'_> {
        ReleaseStore {
            store: &self.store,
            release: self.name,
        }
    }

    fn member(&self, name: &str) -> Option<&Member<'_>> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// The release `name` of `config`, or bad input listing the ones there are.
fn release_named<'c>(config: &'c Config, name: &str) -> anyhow::Result<&'c ReleaseConfig> {
    config.releases.get(name).ok_or_else(|| {
        let known: Vec<&str> = config.releases.keys().map(String::as_str).collect();
        BadInput(format!(
            "no release named `{}` in {}{}\n  fix: add a [releases.{}] table with its waves, \
             e.g. waves = [[\"api\"], [\"web\"]]",
            printable(name),
            config.path.display(),
            if known.is_empty() {
                String::new()
            } else {
                format!(" (it defines: {})", known.join(", "))
            },
            printable(name)
        ))
        .into()
    })
}

async fn connect<'c>(
    reporter: &Arc<Reporter>,
    config: &'c Config,
    name: &'c str,
    release: &'c ReleaseConfig,
) -> anyhow::Result<World<'c>> {
    let calls = CallCounter::default();
    reporter.count_calls(calls.clone());
    let main = setup::clients_for(config, &config.aws, calls.clone()).await?;
    let store = setup::store(config, &main, reporter);
    let mut regions: BTreeMap<(Option<String>, Option<String>), Clients> = BTreeMap::new();
    regions.insert(
        (config.aws.region.clone(), config.aws.endpoint_url.clone()),
        main,
    );
    let mut members = Vec::new();
    for (wave, service_name) in release.services() {
        let (service_name, service) = config
            .service(Some(service_name))
            .map_err(|e| ConfigErrors(vec![e]))?;
        let key = (service.aws.region.clone(), service.aws.endpoint_url.clone());
        let clients = match regions.get(&key) {
            Some(clients) => clients.clone(),
            None => {
                let clients = setup::clients_for(config, &service.aws, calls.clone()).await?;
                regions.insert(key, clients.clone());
                clients
            }
        };
        setup::read_state_first(&store, service_name).await?;
        let target = ServiceTarget::connect(&clients, service.spec.clone())
            .await
            .map_err(|err| {
                anyhow::Error::from(err).context(format!("connecting to service `{service_name}`"))
            })?;
        let child = reporter.scoped(service_name);
        child.count_calls(calls.scope(service_name));
        members.push(Member {
            name: service_name,
            wave,
            service,
            target,
            clients,
            reporter: child,
        });
    }
    Ok(World {
        name,
        release,
        store,
        members,
    })
}

/// Take the locks of every service of the release, in name order; on a refusal, give
/// back the ones taken and fail (naming the holder).
async fn lock_all(world: &World<'_>, id: &str) -> Result<BTreeMap<String, StoreLock>, StateError> {
    let mut names: Vec<&str> = world.members.iter().map(|m| m.name).collect();
    names.sort_unstable();
    let mut held = BTreeMap::new();
    for name in names {
        match world.store.lock(name, id).await {
            Ok(lock) => {
                held.insert(name.to_string(), lock);
            }
            Err(err) => {
                release_all(held).await;
                return Err(err);
            }
        }
    }
    Ok(held)
}

async fn release_all(locks: BTreeMap<String, StoreLock>) {
    for (_, lock) in locks {
        lock.release().await;
    }
}

fn fences(locks: &BTreeMap<String, StoreLock>) -> BTreeMap<String, Fence> {
    locks.iter().map(|(n, l)| (n.clone(), l.fence())).collect()
}

/// When a journal's deployment began.
fn started_ms(journal: &deployer_engine::state::Journal) -> u64 {
    match journal.started() {
        Some(Record::Started { at_ms, .. }) => *at_ms,
        _ => 0,
    }
}

/// Whether `entry`'s service still carries what the release did to it: the release's
/// own deployment of it (journaled by id before it began) unfinished, warm, promoted or
/// with a failed rollback, and not taken back since by a rollback that ended promoted.
/// `Err` when another run deployed the service after the release's deployment: that
/// later deployment is not the release's to take back.
async fn changed_by_release(
    store: &Store,
    service: &str,
    entry: &ServiceEntry,
) -> anyhow::Result<Result<bool, String>> {
    let (Some(ours), Some(since)) = (&entry.deployment, entry.started_ms) else {
        return Ok(Ok(false));
    };
    let undoes_ours = |journal: &deployer_engine::state::Journal| matches!(journal.started(), Some(Record::Started { undoes: Some(u), .. }) if u == ours);
    if let Some(active) = store.active(service).await? {
        if active.id() == Some(ours.as_str()) || undoes_ours(&active) {
            return Ok(Ok(true));
        }
        if started_ms(&active) >= since {
            return Ok(Err(format!(
                "deployment {} of another run is under way on it",
                printable(active.id().unwrap_or("?"))
            )));
        }
    }
    let Some(last) = store.latest(service).await?.finished else {
        return Ok(Ok(false));
    };
    if last.id == *ours {
        return Ok(Ok(matches!(
            last.result,
            DeployResult::Promoted | DeployResult::RollbackFailed
        )));
    }
    if last.undoes.as_deref() == Some(ours.as_str()) {
        // A rollback of it since: promoted, it took the release's deployment back;
        // rolled back or failed, the release's deployment is still there.
        return Ok(Ok(last.result != DeployResult::Promoted));
    }
    if last.started_ms >= since {
        return Ok(Err(format!(
            "deployment {} replaced the release's {ours} since; take it back with `deployer \
             rollback --service {service}`",
            printable(&last.id)
        )));
    }
    // The release's deployment never began (the run stopped before it journaled).
    Ok(Ok(false))
}

/// Take every service of `journal` the release changed back, last wave first, each as
/// `deployer rollback` does at once. Records each outcome in the journal (saved after
/// each), and returns the summaries of the rollbacks by service.
async fn take_back(
    host: &PluginHost,
    reporter: &Arc<Reporter>,
    world: &World<'_>,
    fences: &BTreeMap<String, Fence>,
    journal: &mut ReleaseJournal,
) -> anyhow::Result<BTreeMap<String, Summary>> {
    let mut summaries = BTreeMap::new();
    for name in journal.services_backwards() {
        let Some(entry) = journal.services.get(&name).cloned() else {
            continue;
        };
        let Some(member) = world.member(&name) else {
            // The config no longer has it in the release: it cannot be reached from here.
            journal.services.get_mut(&name).expect("listed").undone =
                Some(ServiceResult::RollbackFailed);
            reporter.warn(&format!(
                "service `{name}` of release run {} is no longer in [releases.{}], so it is not \
                 taken back\n  fix: put it back into the release's waves (and its [services.{name}] \
                 table) and run `deployer rollback --release {}` again",
                journal.id, world.name, world.name
            ));
            continue;
        };
        let undone = match changed_by_release(&world.store, &name, &entry).await? {
            Ok(false) => continue,
            Err(why) => {
                reporter.warn(&format!("service `{name}` is not taken back: {why}"));
                ServiceResult::RollbackFailed
            }
            Ok(true) => {
                let child = reporter.scoped(&name);
                child.count_calls(member.clients.calls.scope(&name));
                child.line("taking the service back with the release");
                let events = |event: &Event<'_>| child.event(event);
                let side_by_side = match member.target.inspect().await {
                    Ok(shape) => shape.side_by_side,
                    Err(err) => {
                        child.warn(&format!("cannot read the target: {err}"));
                        journal.services.get_mut(&name).expect("listed").undone =
                            Some(ServiceResult::RollbackFailed);
                        save_while_rolling_back(world, reporter, journal).await;
                        continue;
                    }
                };
                // An unfinished deployment is rolled back first; when that leaves the
                // release's promoted deployment in place (an interrupted rollback of it
                // was itself rolled back), it is undone in a second pass.
                let mut rolled = Ok(RolledBack::AlreadyRolledBack {
                    release: String::new(),
                    deployment: String::new(),
                });
                for _ in 0..3 {
                    rolled = scoped(
                        &name,
                        super::rollback::at_once(
                            host,
                            super::rollback::Undo {
                                name: &name,
                                service: member.service,
                                target: &member.target,
                                store: &world.store,
                                events: &events,
                                side_by_side,
                                held: fences.get(&name).cloned(),
                            },
                        ),
                    )
                    .await;
                    let again = matches!(&rolled, Ok(RolledBack::Recovered(r)) if r.result != DeployResult::RollbackFailed)
                        && changed_by_release(&world.store, &name, &entry).await? == Ok(true);
                    if !again {
                        break;
                    }
                }
                let (undone, error) = match rolled {
                    Ok(RolledBack::Recovered(report) | RolledBack::Redeployed(report)) => {
                        child.line(&format!(
                            "deployment {}: {}",
                            report.id,
                            deployer_engine::events::outcome(report.result, &report.detail)
                        ));
                        match report.result {
                            DeployResult::RollbackFailed => (ServiceResult::RollbackFailed, None),
                            _ => (ServiceResult::RolledBack, None),
                        }
                    }
                    Ok(RolledBack::AlreadyRolledBack { .. }) => (ServiceResult::RolledBack, None),
                    Err((_, err)) => {
                        let text = deployer_engine::describe::error_chain(&err);
                        child.warn(&format!("taking it back failed: {text}"));
                        (ServiceResult::RollbackFailed, Some(text))
                    }
                };
                let outcome = match undone {
                    ServiceResult::RolledBack => Outcome::Success,
                    _ => Outcome::RollbackFailed,
                };
                summaries.insert(
                    name.clone(),
                    child.service_summary(outcome, error.as_deref()),
                );
                undone
            }
        };
        journal.services.get_mut(&name).expect("listed").undone = Some(undone);
        save_while_rolling_back(world, reporter, journal).await;
    }
    Ok(summaries)
}

/// Write the release journal during a rollback: a write that fails does not stop the
/// rollback (production goes back first); it is said, and the journal left active says
/// the run is unfinished, so the next command takes it back again (idempotently).
async fn save_while_rolling_back(world: &World<'_>, reporter: &Reporter, journal: &ReleaseJournal) {
    if let Err(err) = world.journals().save(journal).await {
        reporter.warn(&format!(
            "writing the release journal failed ({err}); the rollback goes on"
        ));
    }
}

/// End `journal` as rolled back (or rollback failed, when a service's rollback did).
fn rolled_back_result(journal: &ReleaseJournal) -> ReleaseResult {
    let failed = journal.services.values().any(|e| {
        e.undone == Some(ServiceResult::RollbackFailed)
            || (e.result == Some(ServiceResult::RollbackFailed)
                && e.undone != Some(ServiceResult::RolledBack))
    });
    if failed {
        ReleaseResult::RollbackFailed
    } else {
        ReleaseResult::RolledBack
    }
}

/// Take an unfinished earlier run of the release back as a whole, and end it.
async fn recover(
    host: &PluginHost,
    reporter: &Arc<Reporter>,
    world: &World<'_>,
    fences: &BTreeMap<String, Fence>,
    mut earlier: ReleaseJournal,
) -> anyhow::Result<ReleaseJournal> {
    reporter.line(&format!(
        "release run {} did not finish: taking it back first",
        earlier.id
    ));
    if earlier.rolling_back.is_none() {
        earlier.rolling_back = Some(RollingBack {
            reason: "its run was interrupted".into(),
            service: None,
            at_ms: now(),
        });
        world.journals().save(&earlier).await?;
    }
    take_back(host, reporter, world, fences, &mut earlier).await?;
    let result = rolled_back_result(&earlier);
    earlier.finished = Some(Finished {
        result,
        detail: format!(
            "interrupted, then taken back{}",
            if result == ReleaseResult::RollbackFailed {
                " (a service's rollback failed)"
            } else {
                ""
            }
        ),
        at_ms: now(),
    });
    world.journals().finish(&earlier).await?;
    reporter.line(&format!(
        "release run {}: {}",
        earlier.id,
        match result {
            ReleaseResult::RollbackFailed =>
                "taking it back failed for a service: a person must look",
            _ => "taken back",
        }
    ));
    Ok(earlier)
}

/// Load, check and prepare what the run deploys, before anything changes.
async fn prepare<'m, 'c>(
    host: &PluginHost,
    config: &Config,
    world: &'m World<'c>,
    wanted: &BTreeMap<String, Wanted>,
) -> anyhow::Result<Vec<Deploying<'m, 'c>>> {
    // Config first (strategies, their parameters, gates and hooks) for every service,
    // then the releases named (read only), and images last: `--image` registers a task
    // definition revision or template version, which only a release that passed every
    // other check may cost.
    let mut checked = Vec::new();
    for member in &world.members {
        let Some(value) = wanted.get(member.name) else {
            member
                .reporter
                .line("not deployed this run: no release given for it");
            continue;
        };
        let strategy_name = world.release.strategies[member.name].clone();
        let (strategy, _, params) =
            setup::strategy(host, config, member.name, member.service, &strategy_name).await?;
        let gates =
            setup::gates(host, config, member.name, member.service, &member.clients).await?;
        checked.push((member, value, strategy_name, strategy, params, gates));
    }
    let mut releases = BTreeMap::new();
    for images_now in [false, true] {
        for (member, value, ..) in &checked {
            let release = match value {
                Wanted::Release(release) if !images_now => {
                    scoped(
                        member.name,
                        super::run::pin(&member.reporter, &member.target, release),
                    )
                    .await
                }
                Wanted::Images(images) if images_now => {
                    scoped(
                        member.name,
                        super::run::release_from_images(&member.reporter, &member.target, images),
                    )
                    .await
                }
                _ => continue,
            }
            .map_err(|err| err.context(format!("service `{}`", member.name)))?;
            releases.insert(member.name, release);
        }
    }
    let mut deploying = Vec::new();
    for (member, _, strategy_name, strategy, params, gates) in checked {
        let request = DeployRequest {
            strategy: strategy_name.clone(),
            new_release: releases.remove(member.name).expect("made above"),
            params,
            target: Config::target_info(member.service),
        };
        deploying.push(Deploying {
            member,
            strategy_name,
            strategy,
            gates,
            request,
        });
    }
    for d in &deploying {
        let events = |event: &Event<'_>| d.member.reporter.event(event);
        let engine = engine(world, d, &events, CancellationToken::new(), None);
        scoped(d.member.name, engine.preflight(&d.request))
            .await
            .map_err(|err| engine_error(config, d.member.name, &d.strategy_name, err))?;
    }
    Ok(deploying)
}

fn engine<'a>(
    world: &'a World<'_>,
    d: &'a Deploying<'_, '_>,
    events: &'a (dyn Fn(&Event<'_>) + Send + Sync),
    cancel: CancellationToken,
    fence: Option<Fence>,
) -> Engine<'a, StrategyPlugin, ServiceTarget, ConfiguredGates, Store> {
    let engine = Engine::new(Parts {
        service: d.member.name,
        strategy: &d.strategy,
        target: &d.member.target,
        gates: &d.gates,
        store: &world.store,
        settings: setup::settings(d.member.service),
        cancel,
        events,
    });
    match fence {
        Some(fence) => engine.holding(fence),
        None => engine,
    }
}

/// How one service's deployment in a wave ended, for the journal.
struct Ended {
    result: ServiceResult,
    deployment: Option<String>,
    detail: String,
    summary: Summary,
}

async fn deploy_one(
    config: &Config,
    world: &World<'_>,
    d: &Deploying<'_, '_>,
    (fence, id): (Fence, String),
    cancel: CancellationToken,
    first_failed: &std::sync::Mutex<Option<String>>,
) -> Ended {
    let events = |event: &Event<'_>| d.member.reporter.event(event);
    let engine = engine(world, d, &events, cancel.clone(), Some(fence)).with_deployment_id(id);
    let deployed = scoped(d.member.name, engine.deploy(d.request.clone())).await;
    let reporter = &d.member.reporter;
    let (result, deployment, detail, error) = match deployed {
        Ok(Deployed::Finished { earlier, report }) => {
            if let Some(earlier) = &earlier {
                reporter.earlier(earlier);
            }
            let result = match report.result {
                DeployResult::Promoted => ServiceResult::Promoted,
                DeployResult::RolledBack => ServiceResult::RolledBack,
                DeployResult::RollbackFailed => ServiceResult::RollbackFailed,
            };
            (result, Some(report.id), report.detail, None)
        }
        Ok(Deployed::RecoveryFailed(report)) => (
            ServiceResult::RollbackFailed,
            Some(report.id),
            format!(
                "rolling back its unfinished deployment failed: {}",
                report.detail
            ),
            None,
        ),
        Ok(Deployed::AlreadyLive { release }) => (
            ServiceResult::Unchanged,
            None,
            format!("{} is live already", short_release(&release)),
            None,
        ),
        Err(err) => {
            let err = engine_error(config, d.member.name, &d.strategy_name, err);
            let text = deployer_engine::describe::error_chain(err.as_ref());
            reporter.warn(&format!("it stopped: {text}"));
            (ServiceResult::Stopped, None, text.clone(), Some(text))
        }
    };
    if !matches!(result, ServiceResult::Promoted | ServiceResult::Unchanged) {
        // The rest of the wave stops and rolls itself back; the release names this
        // service as the cause unless the wave was cancelled before (a signal, or a
        // sibling that failed first).
        if !cancel.is_cancelled() {
            first_failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_or_insert_with(|| d.member.name.to_string());
        }
        cancel.cancel();
    }
    let outcome = match result {
        ServiceResult::Promoted | ServiceResult::Unchanged => Outcome::Success,
        ServiceResult::RolledBack => Outcome::RolledBack,
        _ => Outcome::RollbackFailed,
    };
    Ended {
        result,
        deployment,
        detail: detail.clone(),
        summary: reporter.service_summary(outcome, error.as_deref()),
    }
}

/// The bake between two waves: the release's gates watched every `watch-interval` for
/// `bake`. `Err(reason)` when a gate failed or the run was cancelled.
async fn bake(
    release: &ReleaseConfig,
    gates: &ConfiguredGates,
    ctx: &GateContext,
    reporter: &Reporter,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let until = tokio::time::Instant::now() + release.bake;
    reporter.line(&format!(
        "baking {} before the next wave{}",
        deployer_engine::describe::duration(release.bake),
        if release.gates.is_empty() {
            String::new()
        } else {
            format!(
                ", the release's gates every {}",
                deployer_engine::describe::duration(release.watch_interval)
            )
        }
    ));
    loop {
        if !release.gates.is_empty() {
            for result in gates.watch(ctx).await {
                if result.status == GateStatus::Fail {
                    return Err(format!(
                        "release gate `{}` failed: {}",
                        result.name, result.detail
                    ));
                }
            }
        }
        let now = tokio::time::Instant::now();
        if now >= until {
            return Ok(());
        }
        let next = (now + release.watch_interval).min(until);
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = cancel.cancelled() => return Err("cancelled (SIGINT or SIGTERM)".into()),
        }
    }
}

/// SIGINT or SIGTERM (a CI cancel) cancels the run: the services deploying roll
/// themselves back and the release takes back what it changed. A second signal during
/// that is acknowledged, not obeyed: taking production back must finish.
fn cancel_on_signals(reporter: &Arc<Reporter>) -> CancellationToken {
    let cancel = CancellationToken::new();
    super::rollback::on_signals(reporter, Some(cancel.clone()));
    cancel
}

/// `deployer run release NAME`.
pub async fn run(
    reporter: &Arc<Reporter>,
    host: &PluginHost,
    config_path: &Path,
    args: Args<'_>,
) -> anyhow::Result<Outcome> {
    reporter.begin("run", None);
    let config = Config::load(config_path)?;
    reporter.secrets.add_config(&config);
    let release = release_named(&config, args.name)?;
    let wanted = wanted::parse(
        args.name,
        release,
        args.releases,
        args.images,
        args.manifest,
    )?;
    let world = connect(reporter, &config, args.name, release).await?;
    let deploying = prepare(host, &config, &world, &wanted).await?;
    let release_gates = {
        let main = &world.members[0].clients;
        let prometheus = setup::prometheus(&config, main)?;
        ConfiguredGates::new(
            deployer_targets::gates::build(&release.gates, main, prometheus.as_ref())
                .map_err(anyhow::Error::msg)?,
        )
    };
    let id = deployer_engine::state::names::deployment_id(args.name);
    let locks = lock_all(&world, &id).await?;
    let fences = fences(&locks);
    let cancel = cancel_on_signals(reporter);
    reporter.start_ticker();
    let result = run_locked(
        host,
        reporter,
        &config,
        &world,
        &deploying,
        &release_gates,
        &fences,
        id,
        &cancel,
    )
    .await;
    release_all(locks).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_locked(
    host: &PluginHost,
    reporter: &Arc<Reporter>,
    config: &Config,
    world: &World<'_>,
    deploying: &[Deploying<'_, '_>],
    release_gates: &ConfiguredGates,
    fences: &BTreeMap<String, Fence>,
    id: String,
    cancel: &CancellationToken,
) -> anyhow::Result<Outcome> {
    // A service shared with another release whose run did not finish is that run's to
    // take back first.
    for member in &world.members {
        refuse_if_in_unfinished_release(config, &world.store, member.name, Some(world.name))
            .await?;
    }
    let journals = world.journals();
    let recovered = match journals.active().await? {
        Some(earlier) => {
            let earlier = recover(host, reporter, world, fences, earlier).await?;
            if earlier.finished.as_ref().map(|f| f.result) == Some(ReleaseResult::RollbackFailed) {
                return Ok(finish(
                    reporter,
                    world,
                    &earlier,
                    &BTreeMap::new(),
                    &BTreeMap::new(),
                    Some(earlier.id.clone()),
                ));
            }
            Some(earlier.id)
        }
        None => None,
    };
    let mut journal = ReleaseJournal {
        id: id.clone(),
        release: world.name.to_string(),
        started_ms: now(),
        waves: world.release.waves.clone(),
        services: deploying
            .iter()
            .map(|d| {
                (
                    d.member.name.to_string(),
                    ServiceEntry {
                        wave: d.member.wave,
                        strategy: d.strategy_name.clone(),
                        release: d.request.new_release.clone(),
                        started_ms: None,
                        deployment: None,
                        result: None,
                        detail: String::new(),
                        undone: None,
                    },
                )
            })
            .collect(),
        wave: None,
        rolling_back: None,
        finished: None,
        undone_by: None,
    };
    journals.save(&journal).await?;
    reporter.line(&format!(
        "release {} ({}): {} service(s) in {} wave(s)",
        world.name,
        id,
        deploying.len(),
        world.release.waves.len()
    ));
    let mut runs: BTreeMap<String, Summary> = BTreeMap::new();
    let ctx = GateContext {
        deployment_id: id.clone(),
        service: world.name.to_string(),
        new_release: world.name.to_string(),
        stable_release: None,
        new_percent: 100,
        target_groups: Ok(None),
    };
    let mut failure: Option<RollingBack> = None;
    for (wave, _) in world.release.waves.iter().enumerate() {
        let members: Vec<&Deploying<'_, '_>> =
            deploying.iter().filter(|d| d.member.wave == wave).collect();
        if members.is_empty() {
            continue;
        }
        if journal.wave.is_some()
            && !world.release.bake.is_zero()
            && let Err(reason) = bake(world.release, release_gates, &ctx, reporter, cancel).await
        {
            failure = Some(RollingBack {
                reason,
                service: None,
                at_ms: now(),
            });
            break;
        }
        if cancel.is_cancelled() {
            failure = Some(RollingBack {
                reason: "cancelled (SIGINT or SIGTERM)".into(),
                service: None,
                at_ms: now(),
            });
            break;
        }
        // Journaled before any of the wave's services begins: from here on, a deployment
        // of these services belongs to the release.
        journal.wave = Some(wave);
        let at = now();
        for d in &members {
            let entry = journal.services.get_mut(d.member.name).expect("listed");
            entry.started_ms = Some(at);
            entry.deployment = Some(deployer_engine::state::names::deployment_id(d.member.name));
        }
        journals.save(&journal).await?;
        reporter.line(&format!(
            "wave {} of {}: {}",
            wave + 1,
            world.release.waves.len(),
            members
                .iter()
                .map(|d| d.member.name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let wave_cancel = cancel.child_token();
        let first_failed = std::sync::Mutex::new(None);
        let ended = futures_util::future::join_all(members.iter().map(|d| {
            let id = journal.services[d.member.name]
                .deployment
                .clone()
                .expect("chosen above");
            deploy_one(
                config,
                world,
                d,
                (fences[d.member.name].clone(), id),
                wave_cancel.clone(),
                &first_failed,
            )
        }))
        .await;
        let first_failed = first_failed
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The service that failed first leads; the siblings it cancelled follow.
        let mut ended: Vec<_> = members.iter().zip(ended).collect();
        ended.sort_by_key(|(d, _)| Some(d.member.name) != first_failed.as_deref());
        for (d, ended) in ended {
            let entry = journal.services.get_mut(d.member.name).expect("listed");
            entry.result = Some(ended.result);
            match ended.deployment {
                // The deployment that ran (a resumed earlier one keeps its own id).
                Some(id) => entry.deployment = Some(id),
                // Nothing began: no deployment of the release to take back.
                None if ended.result == ServiceResult::Unchanged => entry.deployment = None,
                // Stopped by an error: the chosen id may have begun; it is looked for.
                None => {}
            }
            entry.detail = ended.detail.clone();
            runs.insert(d.member.name.to_string(), ended.summary);
            if failure.is_none()
                && !matches!(
                    ended.result,
                    ServiceResult::Promoted | ServiceResult::Unchanged
                )
            {
                failure = Some(RollingBack {
                    reason: format!("service `{}`: {}", d.member.name, ended.detail),
                    service: Some(d.member.name.to_string()),
                    at_ms: now(),
                });
            }
        }
        if failure.is_some() {
            save_while_rolling_back(world, reporter, &journal).await;
            break;
        }
        journals.save(&journal).await?;
    }
    let mut rollbacks = BTreeMap::new();
    match failure {
        None => {
            journal.finished = Some(Finished {
                result: ReleaseResult::Promoted,
                detail: format!("{} service(s) promoted", deploying.len()),
                at_ms: now(),
            });
        }
        Some(why) => {
            reporter.line(&format!("rolling the release back: {}", why.reason));
            let reason = why.reason.clone();
            journal.rolling_back = Some(why);
            save_while_rolling_back(world, reporter, &journal).await;
            rollbacks = take_back(host, reporter, world, fences, &mut journal).await?;
            let result = rolled_back_result(&journal);
            journal.finished = Some(Finished {
                result,
                detail: reason,
                at_ms: now(),
            });
        }
    }
    journals.finish(&journal).await?;
    Ok(finish(
        reporter, world, &journal, &runs, &rollbacks, recovered,
    ))
}

/// Report a finished release run (its summary, and its table for people), and the
/// outcome the process exits with.
fn finish(
    reporter: &Reporter,
    world: &World<'_>,
    journal: &ReleaseJournal,
    runs: &BTreeMap<String, Summary>,
    rollbacks: &BTreeMap<String, Summary>,
    recovered: Option<String>,
) -> Outcome {
    let finished = journal.finished.clone().unwrap_or(Finished {
        result: ReleaseResult::RollbackFailed,
        detail: "unfinished".into(),
        at_ms: 0,
    });
    let (outcome, result) = match finished.result {
        ReleaseResult::Promoted => (Outcome::Success, SummaryResult::Promoted),
        ReleaseResult::RolledBack => (Outcome::RolledBack, SummaryResult::RolledBack),
        ReleaseResult::RollbackFailed => (Outcome::RollbackFailed, SummaryResult::RollbackFailed),
    };
    let services: Vec<ReleaseServiceSummary> = journal
        .waves
        .iter()
        .flatten()
        .filter_map(|name| {
            let entry = journal.services.get(name)?;
            Some(ReleaseServiceSummary {
                service: name.clone(),
                wave: entry.wave + 1,
                strategy: entry.strategy.clone(),
                new_release: short_release(&entry.release).to_string(),
                result: entry.result.unwrap_or(ServiceResult::NotStarted),
                detail: entry.detail.clone(),
                undone: entry.undone,
                run: runs.get(name).cloned().map(Box::new),
                rollback: rollbacks.get(name).cloned().map(Box::new),
            })
        })
        .collect();
    let summary = ReleaseSummary {
        name: world.name.to_string(),
        id: journal.id.clone(),
        waves: journal.waves.clone(),
        failed_service: journal
            .rolling_back
            .as_ref()
            .and_then(|r| r.service.clone()),
        rollback_reason: journal.rolling_back.as_ref().map(|r| r.reason.clone()),
        recovered,
        services,
    };
    reporter.release_report(&report_text(&summary, &finished));
    reporter.release(summary, result, finished.detail);
    outcome
}

fn result_words(result: ServiceResult) -> &'static str {
    match result {
        ServiceResult::Promoted => "promoted",
        ServiceResult::RolledBack => "rolled back",
        ServiceResult::RollbackFailed => "ROLLBACK FAILED",
        ServiceResult::Unchanged => "unchanged (live already)",
        ServiceResult::NotStarted => "not started",
        ServiceResult::Stopped => "stopped",
    }
}

/// The release's report for people: the result, then one line per service.
fn report_text(summary: &ReleaseSummary, finished: &Finished) -> String {
    use std::fmt::Write as _;
    let p = |text: &str| printable(text).into_owned();
    let mut out = String::new();
    if let Some(old) = &summary.recovered {
        let _ = writeln!(out, "recovered unfinished release run {}", p(old));
    }
    let _ = writeln!(
        out,
        "release {} ({}): {}",
        p(&summary.name),
        p(&summary.id),
        match finished.result {
            ReleaseResult::Promoted => format!("promoted: {}", p(&finished.detail)),
            ReleaseResult::RolledBack => format!("rolled back: {}", p(&finished.detail)),
            ReleaseResult::RollbackFailed => format!(
                "ROLLBACK FAILED: {}; a person must look",
                p(&finished.detail)
            ),
        }
    );
    let width = summary
        .services
        .iter()
        .map(|s| s.service.len())
        .max()
        .unwrap_or(0);
    for service in &summary.services {
        let undone = match service.undone {
            Some(ServiceResult::RolledBack) => ", then taken back with the release",
            Some(ServiceResult::RollbackFailed) => ", then TAKING IT BACK FAILED",
            _ => "",
        };
        let detail = match service.result {
            ServiceResult::RolledBack | ServiceResult::RollbackFailed | ServiceResult::Stopped
                if !service.detail.is_empty() =>
            {
                format!(": {}", p(&service.detail))
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  wave {}  {:<width$}  {} with {}: {}{undone}{detail}",
            service.wave,
            p(&service.service),
            p(&service.new_release),
            p(&service.strategy),
            result_words(service.result),
        );
    }
    out
}

/// `deployer rollback --release NAME`: an unfinished run of the release is taken back
/// as a whole; else the last promoted run is, service by service, last wave first.
pub async fn rollback(
    reporter: &Arc<Reporter>,
    host: &PluginHost,
    config_path: &Path,
    name: &str,
) -> anyhow::Result<Outcome> {
    reporter.begin("rollback", None);
    let config = Config::load(config_path)?;
    reporter.secrets.add_config(&config);
    let release = release_named(&config, name)?;
    let world = connect(reporter, &config, name, release).await?;
    let id = deployer_engine::state::names::deployment_id(name);
    let locks = lock_all(&world, &id).await?;
    let fences = fences(&locks);
    // Taking production back must finish: signals are acknowledged, not obeyed.
    super::rollback::on_signals(reporter, None);
    reporter.start_ticker();
    let result = rollback_locked(host, reporter, &world, &fences, &id).await;
    release_all(locks).await;
    result
}

async fn rollback_locked(
    host: &PluginHost,
    reporter: &Arc<Reporter>,
    world: &World<'_>,
    fences: &BTreeMap<String, Fence>,
    id: &str,
) -> anyhow::Result<Outcome> {
    let journals = world.journals();
    if let Some(earlier) = journals.active().await? {
        let earlier = recover(host, reporter, world, fences, earlier).await?;
        let recovered = Some(earlier.id.clone());
        let outcome = finish(
            reporter,
            world,
            &earlier,
            &BTreeMap::new(),
            &BTreeMap::new(),
            recovered,
        );
        // Taken back as asked: for `rollback`, that is success.
        return Ok(match outcome {
            Outcome::RolledBack => Outcome::Success,
            other => other,
        });
    }
    // The newest run that changed something: a run that found every service live
    // already (a CI retry) is passed over. Bounded: the last 20 runs.
    let changed = |run: &ReleaseJournal| {
        run.services.values().any(|e| {
            !matches!(
                e.result,
                None | Some(ServiceResult::Unchanged | ServiceResult::NotStarted)
            )
        })
    };
    let Some(mut last) = journals.recent(20).await?.into_iter().find(changed) else {
        return Err(BadInput(format!(
            "release `{}` has no run to roll back\n  fix: deploy it first with `deployer run \
             release {}`",
            world.name, world.name
        ))
        .into());
    };
    // Whatever of it is still in place is taken back: after a clean rollback nothing is,
    // after one that failed (or was stopped), what it left is retried.
    let mut left = false;
    for name in last.services_backwards() {
        if let Some(entry) = last.services.get(&name)
            && changed_by_release(&world.store, &name, entry).await? != Ok(false)
        {
            left = true;
        }
    }
    if !left {
        reporter.say(&format!(
            "release {}: nothing of its last run {} is left to take back ({}); nothing to do",
            world.name,
            last.id,
            match (&last.undone_by, last.finished.as_ref().map(|f| f.result)) {
                (Some(by), _) => format!("it was taken back already, by {by}"),
                (None, Some(ReleaseResult::Promoted)) =>
                    "its services were taken back one by one".to_string(),
                _ => "it was rolled back already".to_string(),
            }
        ));
        return Ok(Outcome::Success);
    }
    reporter.line(&format!(
        "taking release run {} back, last wave first",
        last.id
    ));
    last.rolling_back = Some(RollingBack {
        reason: format!("deployer rollback --release {}", world.name),
        service: None,
        at_ms: now(),
    });
    // Active again while it is taken back: a rollback killed halfway is finished by the
    // next command like any interrupted run.
    journals.save(&last).await?;
    let rollbacks = take_back(host, reporter, world, fences, &mut last).await?;
    let result = rolled_back_result(&last);
    last.undone_by = Some(id.to_string());
    journals.finish(&last).await?;
    let finished = Finished {
        result,
        detail: format!("release run {} taken back", last.id),
        at_ms: now(),
    };
    let mut shown = last.clone();
    shown.finished = Some(finished);
    let outcome = finish(reporter, world, &shown, &BTreeMap::new(), &rollbacks, None);
    // The release is back on what it replaced: for `rollback`, that is success.
    Ok(match outcome {
        Outcome::RolledBack => Outcome::Success,
        other => other,
    })
}

/// What `deployer status --release NAME` shows: the run under way (if any), the last
/// finished one, and each service as `deployer status --service` shows it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
struct ReleaseStatus {
    release: String,
    /// `idle` or `deploying`.
    state: &'static str,
    in_progress: Option<ReleaseJournal>,
    last: Option<ReleaseJournal>,
    services: Vec<super::status::StatusView>,
}

/// `deployer status --release NAME`. Reads the release's active document, one listing of
/// its history and each service's state: a bounded amount whatever the history's length.
pub async fn status(
    reporter: &Arc<Reporter>,
    config_path: &Path,
    name: &str,
) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let release = release_named(&config, name)?;
    let clients = setup::clients(&config).await?;
    let store = setup::store(&config, &clients, reporter);
    let journals = ReleaseStore {
        store: &store,
        release: name,
    };
    let in_progress = journals.active().await?;
    let last = journals.recent(1).await?.into_iter().next();
    let mut services = Vec::new();
    for (_, service_name) in release.services() {
        let (service_name, service) = config
            .service(Some(service_name))
            .map_err(|e| ConfigErrors(vec![e]))?;
        setup::check_state_files(&store, service_name)?;
        services.push(super::status::status_view(&store, service_name, service).await?);
    }
    let view = ReleaseStatus {
        release: name.to_string(),
        state: if in_progress.is_some() {
            "deploying"
        } else {
            "idle"
        },
        in_progress,
        last,
        services,
    };
    if reporter.json() {
        outln!("{}", serde_json::to_string(&view)?);
        return Ok(Outcome::Success);
    }
    let p = |text: &str| printable(text).into_owned();
    let mut out = format!("release: {}\n", p(name));
    match &view.in_progress {
        Some(run) => {
            out += &format!(
                "state:   deploying (run {}, wave {} of {}){}\n",
                p(&run.id),
                run.wave.map_or(0, |w| w + 1),
                run.waves.len(),
                match &run.rolling_back {
                    Some(why) => format!(", rolling back: {}", p(&why.reason)),
                    None => String::new(),
                }
            );
        }
        None => out += "state:   idle\n",
    }
    match &view.last {
        Some(run) => {
            let finished = run.finished.as_ref();
            out += &format!(
                "last:    run {}: {}{}\n",
                p(&run.id),
                match finished.map(|f| f.result) {
                    Some(ReleaseResult::Promoted) => "promoted",
                    Some(ReleaseResult::RolledBack) => "rolled back",
                    _ => "ROLLBACK FAILED",
                },
                match &run.undone_by {
                    Some(by) => format!(", taken back since by {}", p(by)),
                    None => String::new(),
                }
            );
        }
        None => out += "last:    never run\n",
    }
    for (wave, names) in release.waves.iter().enumerate() {
        out += &format!("wave {}:\n", wave + 1);
        for view in view.services.iter().filter(|v| names.contains(&v.service)) {
            for line in super::status::render_status(view).lines() {
                out += &format!("  {line}\n");
            }
        }
    }
    out!("{out}");
    Ok(Outcome::Success)
}

/// `deployer history --release NAME`: the release's runs, newest first (the last
/// `limit`: one listing and `limit` reads).
pub async fn history(
    reporter: &Arc<Reporter>,
    config_path: &Path,
    name: &str,
    limit: usize,
) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    release_named(&config, name)?;
    let clients = setup::clients(&config).await?;
    let store = setup::store(&config, &clients, reporter);
    let journals = ReleaseStore {
        store: &store,
        release: name,
    };
    let mut runs = Vec::new();
    if let Some(active) = journals.active().await? {
        runs.push(active);
    }
    runs.extend(journals.recent(limit).await?);
    if reporter.json() {
        outln!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(Outcome::Success);
    }
    if runs.is_empty() {
        outln!("no runs of release `{}` yet", printable(name));
        return Ok(Outcome::Success);
    }
    let p = |text: &str| printable(text).into_owned();
    for run in &runs {
        let result = match (&run.finished, &run.undone_by) {
            (None, _) => "unfinished".to_string(),
            (Some(f), None) => result_name(f.result).to_string(),
            (Some(f), Some(by)) => format!("{}, taken back by {}", result_name(f.result), p(by)),
        };
        outln!(
            "{}  {}  {}",
            p(&run.id),
            deployer_engine::describe::utc(run.started_ms),
            result
        );
        for name in run.waves.iter().flatten() {
            if let Some(entry) = run.services.get(name) {
                outln!(
                    "    wave {}  {}  {}: {}",
                    entry.wave + 1,
                    p(name),
                    p(short_release(&entry.release)),
                    result_words(entry.result.unwrap_or(ServiceResult::NotStarted))
                );
            }
        }
    }
    Ok(Outcome::Success)
}

fn result_name(result: ReleaseResult) -> &'static str {
    match result {
        ReleaseResult::Promoted => "promoted",
        ReleaseResult::RolledBack => "rolled back",
        ReleaseResult::RollbackFailed => "ROLLBACK FAILED",
    }
}

/// Refuse a change to `service` while a release other than `except` that holds it has an
/// unfinished run (it was killed): changing one of its services on its own would split
/// that release, and leave its rollback unable to take back what it did.
///
/// # Errors
/// The refusal (exit 4), naming the release run and the command that takes it back; or
/// what the store could not read.
pub async fn refuse_if_in_unfinished_release(
    config: &Config,
    store: &Store,
    service: &str,
    except: Option<&str>,
) -> anyhow::Result<()> {
    for (name, release) in &config.releases {
        if Some(name.as_str()) == except || !release.services().any(|(_, s)| s == service) {
            continue;
        }
        let journals = ReleaseStore {
            store,
            release: name,
        };
        if let Some(run) = journals.active().await?
            && run.services.contains_key(service)
        {
            anyhow::bail!(
                "service `{service}` belongs to run {} of release `{name}`, which has not \
                 finished (it is running, or it was interrupted); changing it alone would split \
                 that release\n  fix: wait for it; if it died, `deployer rollback --release \
                 {name}` takes the run back as a whole (or the next `deployer run release \
                 {name}` does, then deploys afresh)",
                printable(&run.id)
            );
        }
    }
    Ok(())
}
