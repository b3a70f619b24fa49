//! `deployer rollback`: back to the last good release, now. An interrupted deployment is
//! rolled back; a finished one is undone by deploying the release it replaced, without
//! gates or bakes. Wiring only: the engine decides.

use std::path::Path;
use std::sync::Arc;

use deployer_engine::driver::Target;
use deployer_engine::events::{Event, short_release};
use deployer_engine::gates::NoGates;
use deployer_engine::rollout::{Engine, Parts, RolledBack};
use deployer_engine::state::DeployResult;
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Limits, PluginHost, PluginSource};
use deployer_targets::target::ServiceTarget;
use tokio_util::sync::CancellationToken;

use super::report::Reporter;
use super::run::{engine_error, outcome};
use super::setup;
use crate::config::{Config, ConfigErrors};
use crate::exit::Outcome;

pub async fn rollback(
    reporter: &Arc<Reporter>,
    host: &PluginHost,
    config_path: &Path,
    service: Option<&str>,
) -> anyhow::Result<Outcome> {
    reporter.begin("rollback", service);
    let config = Config::load(config_path)?;
    reporter.secrets.add_config(&config);
    let (service_name, service) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    reporter.begin("rollback", Some(service_name));
    let clients = setup::clients(&config).await?;
    reporter.count_calls(clients.calls.clone());
    let store = setup::store(&config, &clients, reporter);
    setup::read_state_first(&store, service_name).await?;
    let target = ServiceTarget::connect(&clients, service.spec.clone()).await?;
    let shape = target.inspect().await?;
    reporter.start_ticker();
    // No gates, no bakes: blue-green carries a side-by-side redeploy, rolling an in-place one.
    let (strategy_name, params) = if shape.side_by_side {
        ("blue-green", r#"{"test-traffic":false}"#)
    } else {
        ("rolling", "{}")
    };
    let strategy = StrategyPlugin::load(
        host,
        &PluginSource::Builtin(strategy_name.into()),
        Limits::strategy(),
    )?;
    let events = |event: &Event<'_>| reporter.event(event);
    let engine = Engine::new(Parts {
        service: service_name,
        strategy: &strategy,
        target: &target,
        gates: &NoGates,
        store: &store,
        settings: setup::settings(service),
        cancel: CancellationToken::new(),
        events: &events,
    });
    finish_despite_signals(reporter);
    match engine
        .roll_back(strategy_name, params)
        .await
        .map_err(|err| engine_error(&config, service_name, strategy_name, err))?
    {
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

/// SIGINT and SIGTERM (a CI cancel, a second Ctrl-C) do not stop a rollback midway: it
/// is putting production back on the release that worked, and stopping it could leave
/// traffic split. Each signal is acknowledged; the rollback finishes, then the process
/// exits with its outcome. (SIGKILL cannot be caught: the next invocation resumes it.)
fn finish_despite_signals(reporter: &Arc<Reporter>) {
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
            reporter.line("signal received: the rollback finishes first, then deployer exits");
        }
    });
}
