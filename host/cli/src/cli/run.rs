//! `deployer run`: wiring. Config, plugins and clients are set up here; the engine
//! decides everything else (what is live, whether the strategy fits, recovery of a
//! killed run, the deployment itself).

use std::path::Path;
use std::sync::Arc;

use deployer_engine::events::Event;
use deployer_engine::plan::PlanError;
use deployer_engine::redact::printable;
use deployer_engine::rollout::{DeployRequest, Deployed, Engine, EngineError, Parts, Report};
use deployer_engine::state::DeployResult;
use deployer_plugin_host::PluginHost;
use deployer_targets::aws::images::{ImageError, Images, Made};
use deployer_targets::target::ServiceTarget;
use tokio_util::sync::CancellationToken;

use super::report::Reporter;
use super::setup;
use crate::config::{Config, ConfigErrors};
use crate::exit::Outcome;

pub fn outcome(report: &Report) -> Outcome {
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

/// An engine error in the words of the config file where it is one (bad input, exit 3):
/// a strategy that does not fit the target is an error in the service's `target`; a plan
/// the host would refuse, or one that never ends, is one in the strategy's parameters.
pub fn engine_error(
    config: &Config,
    service_name: &str,
    strategy: &str,
    err: EngineError,
) -> anyhow::Error {
    let at =
        |field: String, message: String| ConfigErrors(vec![config.error_at_field(&field, message)]);
    match err {
        EngineError::Unfit(message) => at(format!("services.{service_name}.target"), message).into(),
        EngineError::Plan(plan @ (PlanError::Unsafe { .. } | PlanError::Endless)) => at(
            format!("services.{service_name}.strategies.{strategy}"),
            format!(
                "{plan}\n  fix: change the parameters so that `deployer plan {strategy}` shows a plan the host accepts"
            ),
        )
        .into(),
        other => other.into(),
    }
}

/// What `deployer run` deploys: a release as named, or one made from images.
#[derive(Clone, Debug)]
pub enum Wanted {
    /// `--release`.
    Release(String),
    /// `--image`, each value as given.
    Images(Vec<String>),
    /// `--publish`: a Lambda function's current code, published as a version.
    Publish,
}

pub async fn run(
    reporter: &Arc<Reporter>,
    host: &PluginHost,
    config_path: &Path,
    strategy_name: &str,
    service: Option<&str>,
    wanted: &Wanted,
) -> anyhow::Result<Outcome> {
    // Begun first, so that even bad input gets its summary.
    reporter.begin("run", service);
    // `--image` values are checked before anything is read: they stand on their own.
    let images = match wanted {
        Wanted::Release(_) | Wanted::Publish => None,
        Wanted::Images(values) => Some(Images::parse(values).map_err(crate::exit::BadInput)?),
    };
    let config = Config::load(config_path)?;
    reporter.secrets.add_config(&config);
    let (service_name, service) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    reporter.begin("run", Some(service_name));
    if let Wanted::Release(release) = wanted {
        check_release(release)?;
    }
    let (strategy, _, params) =
        setup::strategy(host, &config, service_name, service, strategy_name).await?;
    let clients = setup::clients(&config).await?;
    reporter.count_calls(clients.calls.clone());
    let gates = setup::gates(host, &config, service_name, service, &clients).await?;
    let store = setup::store(&config, &clients, reporter);
    setup::read_state_first(&store, service_name).await?;
    super::release::refuse_if_in_unfinished_release(&config, &store, service_name, None).await?;
    let target = ServiceTarget::connect(&clients, service.spec.clone()).await?;
    let pinned = match (wanted, &images) {
        (_, Some(images)) => release_from_images(reporter, &target, images).await?,
        (Wanted::Release(release), None) => pin(reporter, &target, release).await?,
        (Wanted::Publish, None) => publish(reporter, &target).await?,
        (Wanted::Images(_), None) => unreachable!("images are parsed above"),
    };
    let release = pinned.as_str();
    let events = |event: &Event<'_>| reporter.event(event);
    let engine = Engine::new(Parts {
        service: service_name,
        strategy: &strategy,
        target: &target,
        gates: &gates,
        store: &store,
        settings: setup::settings(service),
        cancel: cancel_on_signals(reporter),
        events: &events,
    });
    reporter.start_ticker();
    let request = DeployRequest {
        strategy: strategy_name.to_string(),
        new_release: release.to_string(),
        params,
        target: Config::target_info(service),
    };
    let deployed = engine
        .deploy(request)
        .await
        .map_err(|err| engine_error(&config, service_name, strategy_name, err))?;
    match deployed {
        Deployed::Finished { earlier, report } => {
            // The unfinished deployment rolled back first, in one line: the summary
            // below is the new deployment's.
            if let Some(earlier) = &earlier {
                reporter.earlier(earlier);
            }
            reporter.report(&report);
            Ok(outcome(&report))
        }
        Deployed::RecoveryFailed(report) => {
            reporter.report(&report);
            Ok(Outcome::RollbackFailed)
        }
        Deployed::AlreadyLive { release } => {
            reporter.say(&format!(
                "{release} is already live on service `{service_name}`; nothing to do"
            ));
            Ok(Outcome::Success)
        }
    }
}

/// A release names a task definition, an image or a version: one printable line.
pub(crate) fn check_release(release: &str) -> Result<(), crate::exit::BadInput> {
    if release.is_empty()
        || release.len() > 1024
        || release
            .chars()
            .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(crate::exit::BadInput(format!(
            "--release `{}` is not a release: it must be 1 to 1024 characters on one line, \
             e.g. web:42, a task definition ARN or an image reference",
            printable(&release.chars().take(100).collect::<String>())
        )));
    }
    Ok(())
}

/// `--release` as the exact revision it names now (see [`ServiceTarget::pin_release`]).
pub(crate) async fn pin(
    reporter: &Reporter,
    target: &ServiceTarget,
    release: &str,
) -> anyhow::Result<String> {
    let pinned = match target.pin_release(release).await {
        Ok(pinned) => pinned,
        // Lambda has no such version, or it is not one: the argument is wrong.
        Err(deployer_engine::driver::DriverError::Failed(message))
            if target.service.target.is_lambda() =>
        {
            // Each of the target's refusals says its own fix.
            return Err(crate::exit::BadInput(format!(
                "--release `{}`: {message}",
                printable(release)
            ))
            .into());
        }
        // ECS says it has no such task definition: the argument is wrong.
        Err(err) if err.to_string().contains("ClientException") => {
            return Err(crate::exit::BadInput(format!(
                "--release `{}`: {err}\n  fix: name a registered task definition revision, \
                 e.g. web:42 (see `aws ecs list-task-definitions`)",
                printable(release)
            ))
            .into());
        }
        Err(err) => {
            return Err(anyhow::Error::from(err)
                .context(format!("checking release `{}`", printable(release))));
        }
    };
    if pinned != release {
        reporter.line(&format!(
            "release {release} is {pinned} now: deploying {pinned}"
        ));
    }
    Ok(pinned)
}

/// `--publish`: the version Lambda published (or its newest, when nothing changed).
async fn publish(reporter: &Reporter, target: &ServiceTarget) -> anyhow::Result<String> {
    // Publishing is the one change made before the lock and the engine's checks: it is
    // harmless (a version is immutable, and publishing unchanged code gives back the
    // newest), but a version made for a deploy that is refused at once is noise in the
    // function's history. So first what would refuse it: no such function or alias, an
    // alias on $LATEST or split by another tool.
    if target.service.target.is_lambda() {
        let shape = deployer_engine::driver::Target::inspect(target).await?;
        if let Some(blocked) = shape.blocked {
            return Err(anyhow::anyhow!("{blocked}").context("not publishing a version"));
        }
    }
    match target.publish().await {
        Ok(version) => {
            reporter.line(&format!("published: deploying version {version}"));
            Ok(version)
        }
        Err(deployer_engine::driver::DriverError::Failed(message))
            if !target.service.target.is_lambda() =>
        {
            Err(crate::exit::BadInput(message).into())
        }
        Err(err) => Err(anyhow::Error::from(err).context("publishing a version")),
    }
}

/// The release `--image` makes, registered (or reused) before anything is journaled,
/// so the run deploys and journals a pinned release like any `--release`.
pub(crate) async fn release_from_images(
    reporter: &Reporter,
    target: &ServiceTarget,
    images: &Images,
) -> anyhow::Result<String> {
    let made = match target.release_from_images(images).await {
        Ok(made) => made,
        Err(ImageError::Refused(message)) => {
            return Err(crate::exit::BadInput(printable(&message).into_owned()).into());
        }
        Err(ImageError::Driver(err)) => {
            return Err(anyhow::Error::from(err).context(format!(
                "making a release from --image {}",
                printable(&images.describe())
            )));
        }
    };
    let line = match made.made {
        Made::Registered => Some(format!(
            "registered {} from {} with image {}",
            made.release, made.from, made.images
        )),
        Made::Reused => Some(format!(
            "reusing {}: it is {} with image {} already (registered earlier), so nothing is registered",
            made.release, made.from, made.images
        )),
        Made::Live => Some(format!(
            "{} already runs image {}: nothing to register",
            made.release, made.images
        )),
        Made::Image => None,
    };
    if let Some(line) = line {
        reporter.line(&line);
    }
    reporter.image_release(&made);
    Ok(made.release)
}
