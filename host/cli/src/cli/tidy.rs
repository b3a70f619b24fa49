//! `deployer tidy`: scale down the previous release a deployment kept warm once its
//! `scale-down-delay` has passed, and roll back any unfinished deployment no run is
//! carrying on — for a scheduled job, so nothing is left running by accident when no
//! other deployer command comes along. Wiring only: the engine decides.

use std::path::Path;
use std::sync::Arc;

use deployer_engine::describe;
use deployer_engine::events::{Event, short_release};
use deployer_engine::gates::NoGates;
use deployer_engine::rollout::{Engine, Parts, Tidied};
use deployer_engine::walk_back::WalkBackStrategy;
use deployer_targets::target::ServiceTarget;
use tokio_util::sync::CancellationToken;

use super::report::Reporter;
use super::run::engine_error;
use super::setup;
use crate::config::{Config, ConfigErrors};
use crate::exit::Outcome;

/// Tidy `service`, or every service of the config. With `wait`, a side not yet due is
/// waited for and then scaled down.
pub async fn tidy(
    reporter: &Arc<Reporter>,
    config_path: &Path,
    service: Option<&str>,
    now: bool,
    wait: bool,
) -> anyhow::Result<Outcome> {
    reporter.begin("tidy", service);
    let config = Config::load(config_path)?;
    let names: Vec<String> = match service {
        Some(name) => {
            config
                .service(Some(name))
                .map_err(|e| ConfigErrors(vec![e]))?;
            vec![name.to_string()]
        }
        None => config.services.keys().cloned().collect(),
    };
    let clients = setup::clients(&config).await?;
    reporter.count_calls(clients.calls.clone());
    let store = setup::store(&config, &clients, reporter);
    let mut outcome = Outcome::Success;
    for name in &names {
        let (service_name, service) = config
            .service(Some(name))
            .map_err(|e| ConfigErrors(vec![e]))?;
        setup::read_state_first(&store, service_name).await?;
        let target = ServiceTarget::connect(&clients, service.spec.clone()).await?;
        let events = |event: &Event<'_>| reporter.event(event);
        let engine = Engine::new(Parts {
            service: service_name,
            // Tidying never asks a strategy: it scales down or rolls back.
            strategy: &WalkBackStrategy,
            target: &target,
            gates: &NoGates,
            store: &store,
            settings: setup::settings(service),
            cancel: CancellationToken::new(),
            events: &events,
        });
        loop {
            let tidied = engine
                .tidy(now)
                .await
                .map_err(|err| engine_error(&config, service_name, "tidy", err))?;
            match tidied {
                Tidied::Nothing => {
                    reporter.say(&format!("{service_name}: nothing to tidy"));
                }
                Tidied::NotDue { release, until_ms } if wait => {
                    reporter.say(&format!(
                        "{service_name}: {} stays warm until {}; waiting",
                        short_release(&release),
                        describe::utc(until_ms)
                    ));
                    let left = until_ms.saturating_sub(deployer_engine::state::local::now_ms());
                    tokio::time::sleep(std::time::Duration::from_millis(left)).await;
                    continue;
                }
                Tidied::NotDue { release, until_ms } => {
                    reporter.say(&format!(
                        "{service_name}: {} stays warm until {} (scale-down-delay); nothing to do yet",
                        short_release(&release),
                        describe::utc(until_ms)
                    ));
                }
                Tidied::Done(report) => {
                    reporter.report(&report);
                    // Rolling back a deployment whose run died is tidying too; only a
                    // rollback that failed needs a person.
                    if report.result == deployer_engine::state::DeployResult::RollbackFailed {
                        outcome = Outcome::RollbackFailed;
                    }
                }
            }
            break;
        }
    }
    Ok(outcome)
}
