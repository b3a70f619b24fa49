use std::path::Path;

use deployer_engine::plan::{Ending, Plan, PlanError, simulate};
use deployer_plugin_host::hook::HookPlugin;
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{PluginHost, PluginKind};

use crate::config::MAX_PARAM_ERRORS;
use crate::config::{Config, ConfigErrors};
use crate::exit::Outcome;

/// Load every plugin and ask every strategy to check its parameters. All problems are
/// reported together, each at its line.
pub async fn run(host: &PluginHost, config_path: &Path, account: bool) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let mut errors = Vec::new();
    for (name, plugin) in &config.plugins {
        let loaded = match plugin.kind {
            PluginKind::Strategy => {
                StrategyPlugin::load(host, &plugin.source, plugin.limits).map(drop)
            }
            PluginKind::Hook => {
                HookPlugin::load(host, &plugin.source, plugin.limits, plugin.grants.clone())
                    .map(drop)
            }
        };
        if let Err(err) = loaded {
            errors.push(config.error_at_field(&format!("plugins.{name}"), err.to_string()));
        }
    }
    for (service_name, service) in &config.services {
        // Each hook's own check of its parameters (a plugin that cannot load is reported
        // with the plugins above).
        for (index, hook) in service.hooks.iter().enumerate() {
            let Some(plugin) = config.plugins.get(&hook.plugin) else {
                continue;
            };
            if let Ok(loaded) =
                HookPlugin::load(host, &plugin.source, plugin.limits, plugin.grants.clone())
            {
                errors.extend(
                    super::setup::hook_param_errors(&config, service_name, index, hook, &loaded)
                        .await,
                );
            }
        }
        for strategy in service.strategies.keys() {
            let Ok(source) = config.strategy_source(strategy) else {
                continue;
            };
            let plugin = match StrategyPlugin::load(host, &source, config.strategy_limits(strategy))
            {
                Ok(plugin) => plugin,
                Err(_) => continue, // reported with the plugin above
            };
            let prefix = format!("services.{service_name}.strategies.{strategy}");
            let params = Config::strategy_params(service, strategy);
            match plugin.validate(&params).await {
                // Parameters a strategy accepts can still make a plan the host refuses
                // (a bake over 24 hours): `run` would refuse it, so `validate` does.
                Ok(Ok(())) => {
                    let target = Config::planned_target_info(service);
                    match simulate(&plugin, &params, target).await {
                        Err(err @ (PlanError::Unsafe { .. } | PlanError::Endless)) => {
                            errors.push(config.error_at_field(&prefix, err.to_string()));
                        }
                        // A strategy that gives up at once on this target (too many
                        // batches, a test listener it must have) is a config error too:
                        // `plan` says so with exit 3.
                        Ok(Plan {
                            ending: Ending::Aborted(reason),
                            ..
                        }) => {
                            errors.push(config.error_at_field(
                                &prefix,
                                format!(
                                    "with every gate passing, the strategy would abort: {reason}"
                                ),
                            ));
                        }
                        Ok(plan) => {
                            if let Some(problem) = deployer_engine::plan::over_caps(
                                &plan.steps,
                                service.max_steps,
                                service.max_duration,
                            ) {
                                errors.push(config.error_at_field(&prefix, problem));
                            }
                        }
                        _ => {}
                    }
                }
                Ok(Err(problems)) => {
                    errors.extend(problems.into_iter().take(MAX_PARAM_ERRORS).map(|e| {
                        let field = if e.field.is_empty() {
                            prefix.clone()
                        } else {
                            format!("{prefix}.{}", e.field)
                        };
                        config.error_at_field(&field, e.message)
                    }))
                }
                Err(err) => errors.push(config.error_at_field(&prefix, err.to_string())),
            }
        }
    }
    // A release runs each service with the strategy it names: one the service has no
    // parameters for (canary needs its steps) is refused here as `run` would refuse it.
    for (name, release) in &config.releases {
        for (_, service_name) in release.services() {
            let strategy = &release.strategies[service_name];
            let Some(service) = config.services.get(service_name) else {
                continue;
            };
            if service.strategies.contains_key(strategy) {
                continue; // checked with the service above
            }
            if let Err(err) =
                super::setup::strategy(host, &config, service_name, service, strategy).await
            {
                match err.downcast::<ConfigErrors>() {
                    Ok(found) => errors.extend(found.0),
                    Err(other) => errors.push(
                        config.error_at_field(&format!("releases.{name}"), other.to_string()),
                    ),
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors).into());
    }
    if account {
        check_account(&config).await?;
    }
    outln!(
        "{}: ok ({} service(s), {} plugin(s){})",
        config.path.display(),
        config.services.len(),
        config.plugins.len(),
        match config.releases.len() {
            0 => String::new(),
            n => format!(", {n} release(s)"),
        }
    );
    Ok(Outcome::Success)
}

/// Read what each service names in the account, changing nothing; what is missing or
/// set up wrong is an error at the service's `target`, all reported together.
async fn check_account(config: &Config) -> anyhow::Result<()> {
    let clients = super::setup::clients(config).await?;
    let mut errors = Vec::new();
    for (name, service) in &config.services {
        let field = format!("services.{name}.target");
        let access = match deployer_targets::target::connect(&clients, &service.spec.target).await {
            Ok(access) => access,
            Err(err) => {
                errors.push(config.error_at_field(&field, err.to_string()));
                continue;
            }
        };
        match deployer_targets::target::account_check(&access, &service.spec.target).await {
            Ok(Ok(found)) => outln!("service `{name}`: {found}"),
            Ok(Err(problems)) => errors.extend(
                problems
                    .into_iter()
                    .map(|p| config.error_at_field(&field, p)),
            ),
            // Throttling, no network, no credentials: not a problem of the config.
            Err(err) => {
                return Err(anyhow::Error::from(err)
                    .context(format!("reading service `{name}` in the account")));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors).into())
    }
}
