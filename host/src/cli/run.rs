//! `deployer run`, `rollback`, `status` and `history`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::report::Reporter;
use super::setup;
use crate::config::{Config, ConfigErrors};
use crate::exit::Outcome;
use crate::plugin::Limits;
use crate::plugin::strategy::StrategyPlugin;
use crate::plugin::{PluginHost, PluginSource};
use crate::rollout::describe;
use crate::rollout::engine::{DeployRequest, Engine, Report};
use crate::rollout::events::short_release;
use crate::rollout::gates::NoGates;
use crate::state::{DeployResult, Journal, Record};
use crate::target;

fn outcome(report: &Report) -> Outcome {
    match report.result {
        DeployResult::Promoted => Outcome::Success,
        DeployResult::RolledBack => Outcome::RolledBack,
        DeployResult::RollbackFailed => Outcome::RollbackFailed,
    }
}

/// SIGINT or SIGTERM (a CI cancel) cancels the run, which then rolls back.
fn cancel_on_signals(reporter: &Arc<Reporter>) -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let reporter = reporter.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        reporter.line("cancel received: rolling back");
        token.cancel();
    });
    cancel
}

fn releases(journal: &Journal) -> (String, String) {
    match journal.started() {
        Some(Record::Started {
            new_release,
            stable_release,
            ..
        }) => (
            stable_release.clone().unwrap_or_default(),
            new_release.clone(),
        ),
        _ => (String::new(), String::new()),
    }
}

pub async fn run(
    reporter: &Arc<Reporter>,
    host: &PluginHost,
    config_path: &Path,
    strategy_name: &str,
    service: Option<&str>,
    release: &str,
) -> anyhow::Result<Outcome> {
    // Begun first, so that even bad input gets its summary.
    reporter.begin("run", service);
    let config = Config::load(config_path)?;
    reporter.secrets.add_config(&config);
    let (service_name, service) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    reporter.begin("run", Some(service_name));
    let (strategy, _, params) =
        setup::strategy(host, &config, service_name, service, strategy_name).await?;
    let clients = setup::clients(&config).await;
    reporter.count_calls(clients.calls.clone());
    let gates = setup::gates(host, &config, service, &clients)?;
    let store = setup::store(&config, &clients);
    let settings = setup::settings(&config, service);
    let access = target::connect(&config, &clients, service).await?;
    let shape = target::inspect(&access, service_name, service)
        .await
        .with_context(|| format!("checking service `{service_name}` before deploying"))?;
    let mut target = config.target_info(service);
    target.native_rolling = !shape.side_by_side;
    check_fits(
        &config,
        service_name,
        strategy_name,
        &strategy,
        &params,
        target,
        shape.side_by_side,
    )
    .await?;
    let cancel = cancel_on_signals(reporter);
    reporter.start_ticker();
    let events = |event: &crate::rollout::events::Event<'_>| reporter.event(event);
    let engine = |driver| (driver, settings.clone());

    // A run killed earlier is dealt with first, with a driver for *its* releases.
    if let Some(journal) = store.active(service_name).await? {
        let (stable, new) = releases(&journal);
        let driver = target::driver(
            &access,
            service_name,
            service,
            shape.side_by_side,
            &stable,
            &new,
        )?;
        let (driver, settings) = engine(driver);
        let resume =
            new == release && settings.on_resume == crate::rollout::engine::ResumePolicy::Resume;
        let e = Engine {
            service: service_name,
            strategy: &strategy,
            driver: &driver,
            gates: &gates,
            store: &store,
            settings,
            cancel: cancel.clone(),
            events: &events,
        };
        if resume {
            let report = e
                .deploy(DeployRequest {
                    strategy: strategy_name.to_string(),
                    new_release: new,
                    stable_release: Some(stable),
                    params,
                    target,
                })
                .await?;
            reporter.report(&report);
            return Ok(outcome(&report));
        }
        if let Some(report) = e.recover_active().await? {
            reporter.report(&report);
            if report.result == DeployResult::RollbackFailed {
                return Ok(Outcome::RollbackFailed);
            }
        }
    }

    // Recovery may have changed what is live.
    let shape = target::inspect(&access, service_name, service).await?;
    if target::same_release(&service.target, &shape.primary_release, release) {
        reporter.say(&format!(
            "{release} is already live on service `{service_name}`; nothing to do"
        ));
        return Ok(Outcome::Success);
    }
    let driver = target::driver(
        &access,
        service_name,
        service,
        shape.side_by_side,
        &shape.primary_release,
        release,
    )?;
    let report = Engine {
        service: service_name,
        strategy: &strategy,
        driver: &driver,
        gates: &gates,
        store: &store,
        settings,
        cancel,
        events: &events,
    }
    .deploy(DeployRequest {
        strategy: strategy_name.to_string(),
        new_release: release.to_string(),
        stable_release: Some(shape.primary_release),
        params,
        target,
    })
    .await?;
    reporter.report(&report);
    Ok(outcome(&report))
}

/// Refuse, before changing anything, a strategy whose steps the service cannot take:
/// side-by-side steps on an in-place service, or an in-place update on task sets.
async fn check_fits(
    config: &Config,
    service_name: &str,
    strategy_name: &str,
    strategy: &StrategyPlugin,
    params: &str,
    target: crate::plugin::bindings::types::TargetInfo,
    side_by_side: bool,
) -> anyhow::Result<()> {
    use crate::plugin::bindings::types::{Step, TargetKind};
    let kind = target.kind;
    let plan = crate::plan::simulate(strategy, params, target).await?;
    let in_place = plan
        .steps
        .iter()
        .any(|s| matches!(s, Step::RollingUpdate(_)));
    let two_sides = plan.steps.iter().any(|s| {
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
        _ => (
            "task sets (EXTERNAL controller)",
            "the ECS service, which uses the ECS deployment controller (in place); use `rolling`, or move the service to the EXTERNAL controller with a traffic table",
        ),
    };
    let problem = if side_by_side && in_place {
        Some(format!(
            "`{strategy_name}` asks for an in-place update, but the service deploys side by side with {two}"
        ))
    } else if !side_by_side && two_sides {
        Some(format!(
            "`{strategy_name}` runs two releases side by side, but the target is {one}"
        ))
    } else {
        None
    };
    match problem {
        Some(message) => Err(ConfigErrors(vec![
            config.error_at_field(&format!("services.{service_name}.target"), message),
        ])
        .into()),
        None => Ok(()),
    }
}

/// Back to the last good release, now: an interrupted deployment is rolled back; a
/// finished one is undone by deploying the release it replaced, without gates or bakes.
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
    let clients = setup::clients(&config).await;
    reporter.count_calls(clients.calls.clone());
    let store = setup::store(&config, &clients);
    let settings = setup::settings(&config, service);
    let access = target::connect(&config, &clients, service).await?;
    let shape = target::inspect(&access, service_name, service).await?;
    reporter.start_ticker();
    let events = |event: &crate::rollout::events::Event<'_>| reporter.event(event);
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

    if let Some(journal) = store.active(service_name).await? {
        let (stable, new) = releases(&journal);
        let driver = target::driver(
            &access,
            service_name,
            service,
            shape.side_by_side,
            &stable,
            &new,
        )?;
        let recovered = Engine {
            service: service_name,
            strategy: &strategy,
            driver: &driver,
            gates: &NoGates,
            store: &store,
            settings: settings.clone(),
            cancel: CancellationToken::new(),
            events: &events,
        }
        .recover_active()
        .await?;
        // None or promoted: the run had finished and only its paperwork was left; undo
        // it below like any finished deployment.
        if let Some(report) = recovered.filter(|r| r.result != DeployResult::Promoted) {
            reporter.report(&report);
            return Ok(match report.result {
                DeployResult::RollbackFailed => Outcome::RollbackFailed,
                _ => Outcome::Success,
            });
        }
    }

    let history = store.history(service_name).await?;
    let last = history
        .iter()
        .rev()
        .find(|j| {
            j.finished()
                .is_some_and(|(r, _)| r == DeployResult::Promoted)
        })
        .with_context(|| {
            format!("service `{service_name}` has no promoted deployment to roll back")
        })?;
    let (previous, current) = releases(last);
    anyhow::ensure!(
        !previous.is_empty(),
        "the last deployment recorded no previous release"
    );
    anyhow::ensure!(
        target::same_release(&service.target, &shape.primary_release, &current),
        "the live release is {}, not {current} which deployer last deployed; refusing to guess",
        shape.primary_release
    );
    reporter.line(&format!(
        "rolling {service_name} back from {} to {}",
        short_release(&current),
        short_release(&previous)
    ));
    let driver = target::driver(
        &access,
        service_name,
        service,
        shape.side_by_side,
        &current,
        &previous,
    )?;
    let mut target = config.target_info(service);
    target.native_rolling = !shape.side_by_side;
    let report = Engine {
        service: service_name,
        strategy: &strategy,
        driver: &driver,
        gates: &NoGates,
        store: &store,
        settings,
        cancel: CancellationToken::new(),
        events: &events,
    }
    .deploy(DeployRequest {
        strategy: strategy_name.into(),
        new_release: previous,
        stable_release: Some(current),
        params: params.into(),
        target,
    })
    .await?;
    reporter.report(&report);
    Ok(match report.result {
        DeployResult::Promoted => Outcome::Success,
        DeployResult::RolledBack => Outcome::RolledBack,
        DeployResult::RollbackFailed => Outcome::RollbackFailed,
    })
}

/// What `status` shows.
#[derive(Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
struct StatusView {
    service: String,
    /// `idle` or `deploying`.
    state: &'static str,
    /// The release deployer last promoted.
    live: Option<String>,
    live_deployment: Option<String>,
    in_progress: Option<InProgress>,
}

#[derive(Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
struct InProgress {
    deployment: String,
    new_release: String,
    stable_release: String,
    traffic_new_percent: u8,
    rolling_back: Option<String>,
    last_step: Option<String>,
    /// An action journaled but not recorded done: where a killed run died.
    in_flight: Option<String>,
}

async fn status_view(
    config: &Config,
    store: &crate::state::Store,
    service_name: &str,
    service: &crate::config::Service,
) -> anyhow::Result<StatusView> {
    let in_progress = store.active(service_name).await?.map(|journal| {
        let (stable, new) = releases(&journal);
        let guard = journal.guard(&config.target_info(service));
        InProgress {
            deployment: journal.id().unwrap_or("?").to_string(),
            new_release: short_release(&new).to_string(),
            stable_release: short_release(&stable).to_string(),
            traffic_new_percent: guard.new_percent,
            rolling_back: journal.rollback_reason().map(str::to_string),
            last_step: journal.history().last().map(|r| describe::step(&r.step)),
            in_flight: journal.in_flight().map(|(_, action)| format!("{action:?}")),
        }
    });
    let history = store.history(service_name).await?;
    let live = history.iter().rev().find(|j| {
        j.finished()
            .is_some_and(|(r, _)| r == DeployResult::Promoted)
    });
    Ok(StatusView {
        service: service_name.to_string(),
        state: if in_progress.is_some() {
            "deploying"
        } else {
            "idle"
        },
        live: live.map(|j| short_release(&releases(j).1).to_string()),
        live_deployment: live.and_then(|j| j.id().map(str::to_string)),
        in_progress,
    })
}

fn render_status(view: &StatusView) -> String {
    let mut out = format!("service: {}\n", view.service);
    match &view.in_progress {
        Some(p) => {
            out += &format!(
                "state:   deploying {} over {} (deployment {})\n",
                p.new_release, p.stable_release, p.deployment
            );
            out += &format!(
                "traffic: {}% new / {}% stable\n",
                p.traffic_new_percent,
                100 - p.traffic_new_percent
            );
            if let Some(reason) = &p.rolling_back {
                out += &format!("rolling back: {reason}\n");
            }
            out += &format!(
                "last step: {}\n",
                p.last_step.as_deref().unwrap_or("none yet")
            );
            if let Some(action) = &p.in_flight {
                out += &format!(
                    "in flight: {action} (a run that died here is recovered by the next run or rollback)\n"
                );
            }
        }
        None => out += "state:   idle\n",
    }
    match (&view.live, &view.live_deployment) {
        (Some(release), Some(id)) => out += &format!("live:    {release} (deployment {id})\n"),
        _ => out += "live:    not deployed by deployer yet\n",
    }
    out
}

/// What is live and what is in progress, from the journal; with `watch`, refreshed
/// every `interval` until interrupted (on a terminal the screen is redrawn; otherwise a
/// new block is printed only when something changed).
pub async fn status(
    reporter: &Reporter,
    config_path: &Path,
    service: Option<&str>,
    watch: Option<std::time::Duration>,
) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let (service_name, service) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    let clients = setup::clients(&config).await;
    let store = setup::store(&config, &clients);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last = None;
    loop {
        let view = status_view(&config, &store, service_name, service).await?;
        if last.as_ref() != Some(&view) {
            if reporter.json() {
                println!("{}", serde_json::to_string(&view)?);
            } else {
                if watch.is_some() && terminal {
                    print!("\x1b[H\x1b[2J");
                } else if last.is_some() {
                    println!();
                }
                print!("{}", render_status(&view));
            }
            last = Some(view);
        }
        let Some(interval) = watch else {
            return Ok(Outcome::Success);
        };
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Outcome::Success),
        }
    }
}

/// Past deployments, newest first.
pub async fn history(
    reporter: &Reporter,
    config_path: &Path,
    service: Option<&str>,
) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let (service_name, _) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    let clients = setup::clients(&config).await;
    let store = setup::store(&config, &clients);
    let history = store.history(service_name).await?;
    let mut rows = Vec::new();
    for journal in history.iter().rev() {
        let Some(Record::Started {
            id,
            strategy,
            new_release,
            stable_release,
            at_ms,
            ..
        }) = journal.started()
        else {
            continue;
        };
        let (result, detail) = journal
            .finished()
            .unwrap_or((DeployResult::RollbackFailed, "unfinished"));
        rows.push(serde_json::json!({
            "deployment": id,
            "result": result,
            "strategy": strategy,
            "stable-release": stable_release.as_deref().map(short_release),
            "new-release": short_release(new_release),
            "started-ms": at_ms,
            "detail": reporter.secrets.scrub(detail),
        }));
    }
    if reporter.json() {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Outcome::Success);
    }
    if rows.is_empty() {
        println!("no deployments of `{service_name}` yet");
    }
    for row in rows {
        let text = |k: &str| row[k].as_str().unwrap_or("-").to_string();
        println!(
            "{}  {:<15} {:<10} {} -> {}  {}",
            text("deployment"),
            text("result"),
            text("strategy"),
            text("stable-release"),
            text("new-release"),
            text("detail")
        );
    }
    Ok(Outcome::Success)
}
