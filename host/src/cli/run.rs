//! `deployer run`, `rollback`, `status` and `history`.

use std::path::Path;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::setup;
use crate::config::{Config, ConfigErrors};
use crate::exit::Outcome;
use crate::plugin::Limits;
use crate::plugin::strategy::StrategyPlugin;
use crate::plugin::{PluginHost, PluginSource};
use crate::rollout::describe;
use crate::rollout::engine::{DeployRequest, Engine, Report};
use crate::rollout::gates::NoGates;
use crate::state::{DeployResult, Journal, Record};

fn log(line: &str) {
    eprintln!("deployer: {line}");
}

fn outcome(report: &Report) -> Outcome {
    match report.result {
        DeployResult::Promoted => Outcome::Success,
        DeployResult::RolledBack => Outcome::RolledBack,
        DeployResult::RollbackFailed => Outcome::RollbackFailed,
    }
}

/// SIGINT or SIGTERM (a CI cancel) cancels the run, which then rolls back.
fn cancel_on_signals() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
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
        log("cancel received: rolling back");
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

fn print_report(report: &Report) {
    if let Some(old) = &report.recovered {
        println!("recovered unfinished deployment {old}");
    }
    let word = match report.result {
        DeployResult::Promoted => "promoted",
        DeployResult::RolledBack => "rolled back",
        DeployResult::RollbackFailed => "ROLLBACK FAILED",
    };
    println!("deployment {}: {word}: {}", report.id, report.detail);
}

pub async fn run(
    host: &PluginHost,
    config_path: &Path,
    strategy_name: &str,
    service: Option<&str>,
    release: &str,
) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let (service_name, service) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    let (strategy, _, params) =
        setup::strategy(host, &config, service_name, service, strategy_name).await?;
    let clients = setup::clients(&config).await;
    let gates = setup::gates(host, &config, service, &clients)?;
    let store = setup::store(&config, &clients);
    let settings = setup::settings(&config, service);
    let shape = shape(&clients, service)
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
    let cancel = cancel_on_signals();
    let engine = |driver| (driver, settings.clone());

    // A run killed earlier is dealt with first, with a driver for *its* releases.
    if let Some(journal) = store.active(service_name).await? {
        let (stable, new) = releases(&journal);
        let driver = setup::driver(
            &clients,
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
            log: &log,
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
            print_report(&report);
            return Ok(outcome(&report));
        }
        if let Some(report) = e.recover_active().await? {
            print_report(&report);
            if report.result == DeployResult::RollbackFailed {
                return Ok(Outcome::RollbackFailed);
            }
        }
    }

    // Recovery may have changed what is live.
    let shape = self::shape(&clients, service).await?;
    if crate::aws::ecs::same_task_definition(&shape.primary_release, release) {
        println!("{release} is already live on service `{service_name}`; nothing to do");
        return Ok(Outcome::Success);
    }
    let driver = setup::driver(
        &clients,
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
        log: &log,
    }
    .deploy(DeployRequest {
        strategy: strategy_name.to_string(),
        new_release: release.to_string(),
        stable_release: Some(shape.primary_release),
        params,
        target,
    })
    .await?;
    print_report(&report);
    Ok(outcome(&report))
}

async fn shape(
    clients: &crate::aws::Clients,
    service: &crate::config::Service,
) -> anyhow::Result<crate::aws::ecs::EcsService> {
    let crate::config::Target::Ecs {
        cluster,
        service: ecs_service,
        ..
    } = &service.target
    else {
        anyhow::bail!("EKS and Auto Scaling targets are not in this build yet; ECS services are")
    };
    let groups = service
        .traffic
        .as_ref()
        .map(|t| [t.target_groups[0].clone(), t.target_groups[1].clone()]);
    Ok(crate::aws::ecs::inspect(clients, cluster, ecs_service, groups.as_ref()).await?)
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
    use crate::plugin::bindings::types::Step;
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
    let problem = if side_by_side && in_place {
        Some(format!(
            "`{strategy_name}` asks for an in-place update, but the service deploys with task sets (EXTERNAL controller)"
        ))
    } else if !side_by_side && two_sides {
        Some(format!(
            "`{strategy_name}` runs two releases side by side, but the ECS service uses the ECS deployment controller \
             (in place); use `rolling`, or move the service to the EXTERNAL controller with a traffic table"
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
    host: &PluginHost,
    config_path: &Path,
    service: Option<&str>,
) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let (service_name, service) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    let clients = setup::clients(&config).await;
    let store = setup::store(&config, &clients);
    let settings = setup::settings(&config, service);
    let shape = self::shape(&clients, service).await?;
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
        let driver = setup::driver(
            &clients,
            service_name,
            service,
            shape.side_by_side,
            &stable,
            &new,
        )?;
        let report = Engine {
            service: service_name,
            strategy: &strategy,
            driver: &driver,
            gates: &NoGates,
            store: &store,
            settings,
            cancel: CancellationToken::new(),
            log: &log,
        }
        .recover_active()
        .await?
        .context("the interrupted deployment finished in the meantime")?;
        print_report(&report);
        return Ok(match report.result {
            DeployResult::RollbackFailed => Outcome::RollbackFailed,
            _ => Outcome::Success,
        });
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
        crate::aws::ecs::same_task_definition(&shape.primary_release, &current),
        "the live release is {}, not {current} which deployer last deployed; refusing to guess",
        shape.primary_release
    );
    log(&format!(
        "rolling {service_name} back from {current} to {previous}"
    ));
    let driver = setup::driver(
        &clients,
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
        log: &log,
    }
    .deploy(DeployRequest {
        strategy: strategy_name.into(),
        new_release: previous,
        stable_release: Some(current),
        params: params.into(),
        target,
    })
    .await?;
    print_report(&report);
    Ok(match report.result {
        DeployResult::Promoted => Outcome::Success,
        DeployResult::RolledBack => Outcome::RolledBack,
        DeployResult::RollbackFailed => Outcome::RollbackFailed,
    })
}

/// What is live and what is in progress, from the journal.
pub async fn status(config_path: &Path, service: Option<&str>) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let (service_name, service) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    let clients = setup::clients(&config).await;
    let store = setup::store(&config, &clients);
    println!("service: {service_name}");
    match store.active(service_name).await? {
        Some(journal) => {
            let (stable, new) = releases(&journal);
            let guard = journal.guard(&config.target_info(service));
            println!(
                "state:   deploying {new} over {stable} (deployment {})",
                journal.id().unwrap_or("?")
            );
            println!(
                "traffic: {}% new / {}% stable",
                guard.new_percent,
                100 - guard.new_percent
            );
            if let Some(reason) = journal.rollback_reason() {
                println!("rolling back: {reason}");
            }
            let last = journal.history().last().map(|r| describe::step(&r.step));
            println!("last step: {}", last.unwrap_or_else(|| "none yet".into()));
            if let Some((_, action)) = journal.in_flight() {
                println!(
                    "in flight: {action:?} (a run that died here is recovered by the next run or rollback)"
                );
            }
        }
        None => println!("state:   idle"),
    }
    let history = store.history(service_name).await?;
    match history.iter().rev().find(|j| {
        j.finished()
            .is_some_and(|(r, _)| r == DeployResult::Promoted)
    }) {
        Some(journal) => println!(
            "live:    {} (deployment {})",
            releases(journal).1,
            journal.id().unwrap_or("?")
        ),
        None => println!("live:    not deployed by deployer yet"),
    }
    Ok(Outcome::Success)
}

/// Past deployments, newest first.
pub async fn history(config_path: &Path, service: Option<&str>) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let (service_name, _) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    let clients = setup::clients(&config).await;
    let store = setup::store(&config, &clients);
    let history = store.history(service_name).await?;
    if history.is_empty() {
        println!("no deployments of `{service_name}` yet");
    }
    for journal in history.iter().rev() {
        let Some(Record::Started {
            id,
            strategy,
            new_release,
            stable_release,
            ..
        }) = journal.started()
        else {
            continue;
        };
        let (result, detail) = journal
            .finished()
            .unwrap_or((DeployResult::RollbackFailed, "unfinished"));
        let result = match result {
            DeployResult::Promoted => "promoted",
            DeployResult::RolledBack => "rolled-back",
            DeployResult::RollbackFailed => "rollback-failed",
        };
        println!(
            "{id}  {result:<15} {strategy:<10} {} -> {new_release}  {detail}",
            stable_release.as_deref().unwrap_or("-")
        );
    }
    Ok(Outcome::Success)
}
