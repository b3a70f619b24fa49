//! `deployer rollback`: back to the last good release. An interrupted deployment is
//! rolled back; a finished one is undone by moving production back to the release it
//! replaced: at once without gates or bakes, or in steps (`--steps 50,0 --bake 2m`) with
//! the service's gates between them. A side kept warm after the deployment
//! (`scale-down-delay`) takes the traffic back without being scaled. Wiring only: the
//! engine decides.

use std::path::Path;
use std::sync::Arc;

use deployer_engine::driver::Target;
use deployer_engine::events::{Event, short_release};
use deployer_engine::gates::NoGates;
use deployer_engine::rollout::{Engine, Parts, RolledBack};
use deployer_engine::state::DeployResult;
use deployer_engine::walk_back::{WalkBack, WalkBackStrategy};
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Limits, PluginHost, PluginSource};
use deployer_targets::target::ServiceTarget;
use tokio_util::sync::CancellationToken;

use super::report::Reporter;
use super::run::{engine_error, outcome};
use super::setup;
use crate::config::{Config, ConfigErrors};
use crate::exit::{BadInput, Outcome};

/// How `rollback` walks traffic back: `steps` (the share left on the current release
/// after each, falling to 0) with `bake` between them. `None`: all at once, no gates.
pub struct Walk {
    pub steps: Vec<u8>,
    pub bake: std::time::Duration,
}

pub async fn rollback(
    reporter: &Arc<Reporter>,
    host: &PluginHost,
    config_path: &Path,
    service: Option<&str>,
    walk: Option<Walk>,
) -> anyhow::Result<Outcome> {
    reporter.begin("rollback", service);
    let config = Config::load(config_path)?;
    reporter.secrets.add_config(&config);
    let (service_name, service) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    reporter.begin("rollback", Some(service_name));
    if let Some(walk) = &walk
        && let Some(problem) = WalkBack::problem(&walk.steps)
    {
        return Err(BadInput(format!("--steps: {problem}")).into());
    }
    let clients = setup::clients(&config).await?;
    reporter.count_calls(clients.calls.clone());
    let store = setup::store(&config, &clients, reporter);
    setup::read_state_first(&store, service_name).await?;
    super::release::refuse_if_in_unfinished_release(&config, &store, service_name, None).await?;
    let target = ServiceTarget::connect(&clients, service.spec.clone()).await?;
    let shape = target.inspect().await?;
    reporter.start_ticker();
    let events = |event: &Event<'_>| reporter.event(event);
    finish_despite_signals(reporter);
    let rolled = match &walk {
        Some(_) if !shape.side_by_side => {
            // In place there are no weights to walk: the stable release is rolled back out.
            return Err(BadInput(format!(
                "--steps: `{service_name}` is updated in place, so there is no traffic to move \
                 in steps; run `deployer rollback` without --steps (it rolls the previous \
                 release back out), or deploy the service side by side"
            ))
            .into());
        }
        Some(walk) => {
            let bake_ms = u64::try_from(walk.bake.as_millis()).unwrap_or(u64::MAX);
            let params = |warm_units| {
                WalkBack {
                    steps: walk.steps.clone(),
                    bake_ms,
                    warm_units,
                }
                .params()
            };
            // Step by step, the service's gates run between the steps and watch the bakes,
            // as they do for a deployment: a release that fails them is not given more.
            let gates = setup::gates(host, &config, service_name, service, &clients).await?;
            Engine::new(Parts {
                service: service_name,
                strategy: &WalkBackStrategy,
                target: &target,
                gates: &gates,
                store: &store,
                settings: setup::settings(service),
                cancel: CancellationToken::new(),
                events: &events,
            })
            .roll_back("rollback", params)
            .await
            .map_err(|err| engine_error(&config, service_name, "rollback", err))?
        }
        None => at_once(
            host,
            Undo {
                name: service_name,
                service,
                target: &target,
                store: &store,
                events: &events,
                side_by_side: shape.side_by_side,
                held: None,
            },
        )
        .await
        .map_err(|(strategy, err)| engine_error(&config, service_name, strategy, err))?,
    };
    match rolled {
        RolledBack::Recovered(report) => {
            reporter.report(&report);
            Ok(match report.result {
                DeployResult::RollbackFailed => Outcome::RollbackFailed,
                _ => Outcome::Success,
            })
        }
        RolledBack::Redeployed(report) => {
            reporter.report(&report);
            Ok(outcome(&report))
        }
        RolledBack::AlreadyRolledBack {
            release,
            deployment,
        } => {
            reporter.say(&format!(
                "{} is live: the last deployment already rolled deployment {deployment} back; nothing to do",
                short_release(&release)
            ));
            Ok(Outcome::Success)
        }
    }
}

/// A service to take back at once ([`at_once`]).
pub struct Undo<'a> {
    pub name: &'a str,
    pub service: &'a crate::config::ServiceConfig,
    pub target: &'a ServiceTarget,
    pub store: &'a setup::Store,
    pub events: &'a (dyn Fn(&Event<'_>) + Send + Sync),
    /// What the target's shape says.
    pub side_by_side: bool,
    /// The check of a lock the caller holds (a release's); `None`: take the service's own.
    pub held: Option<deployer_engine::state::Fence>,
}

/// Back to the last good release at once, without gates or bakes: production goes back
/// to what worked. In place, the previous release is rolled back out; side by side,
/// traffic moves back (onto a side kept warm without scaling it). Under a lock the
/// caller holds (a release's), else under the service's own.
///
/// # Errors
/// The engine's, with the name of the strategy it ran, for [`engine_error`].
pub async fn at_once(
    host: &PluginHost,
    service: Undo<'_>,
) -> Result<RolledBack, (&'static str, deployer_engine::rollout::EngineError)> {
    let Undo {
        name: service_name,
        service,
        target,
        store,
        events,
        side_by_side,
        held,
    } = service;
    macro_rules! engine {
        ($strategy:expr) => {{
            let engine = Engine::new(Parts {
                service: service_name,
                strategy: $strategy,
                target,
                gates: &NoGates,
                store,
                settings: setup::settings(service),
                cancel: CancellationToken::new(),
                events,
            });
            match held.clone() {
                Some(fence) => engine.holding(fence),
                None => engine,
            }
        }};
    }
    if !side_by_side {
        let rolling = StrategyPlugin::load(
            host,
            &PluginSource::Builtin("rolling".into()),
            Limits::strategy(),
        )
        .map_err(|e| {
            (
                "rolling",
                deployer_engine::rollout::EngineError::CannotRollBack(e.to_string()),
            )
        })?;
        return engine!(&rolling)
            .roll_back("rolling", |_| "{}".to_string())
            .await
            .map_err(|e| ("rolling", e));
    }
    let params = |warm_units| {
        WalkBack {
            steps: vec![0],
            bake_ms: 0,
            warm_units,
        }
        .params()
    };
    engine!(&WalkBackStrategy)
        .roll_back("rollback", params)
        .await
        .map_err(|e| ("rollback", e))
}

/// SIGINT and SIGTERM (a CI cancel, a second Ctrl-C) do not stop a rollback midway: it
/// is putting production back on the release that worked, and stopping it could leave
/// traffic split. Each signal is acknowledged; the rollback finishes, then the process
/// exits with its outcome. (SIGKILL cannot be caught: the next invocation resumes it.)
fn finish_despite_signals(reporter: &Arc<Reporter>) {
    on_signals(reporter, None);
}

/// Watch for SIGINT and SIGTERM: the first cancels `cancel` (a release run, which then
/// rolls back), every other one — or each, without `cancel` — is acknowledged, not
/// obeyed: taking production back must finish.
pub fn on_signals(reporter: &Arc<Reporter>, cancel: Option<CancellationToken>) {
    let reporter = reporter.clone();
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            match &cancel {
                Some(token) if !token.is_cancelled() => {
                    reporter.line("cancel received: rolling back");
                    token.cancel();
                }
                _ => reporter
                    .line("signal received: the rollback finishes first, then deployer exits"),
            }
        }
    });
}
