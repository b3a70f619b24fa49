use std::path::Path;

use crate::config::{Config, ConfigErrors, ConfigPluginKind};
use crate::exit::Outcome;
use crate::plugin::hook::HookPlugin;
use crate::plugin::strategy::StrategyPlugin;
use crate::plugin::{PluginHost, PluginKind, PluginSource};

/// Load every plugin and ask every strategy to check its parameters. All problems are
/// reported together, each at its line.
pub async fn run(host: &PluginHost, config_path: &Path) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let mut errors = Vec::new();
    for (name, plugin) in &config.plugins {
        let plugin = plugin.get_ref();
        let source = PluginSource::File {
            name: name.clone(),
            path: config.resolve(&plugin.path),
            sha256: plugin.sha256.clone(),
        };
        let loaded = match plugin.kind {
            ConfigPluginKind::Strategy => StrategyPlugin::load(
                host,
                &source,
                config.plugin_limits(name, PluginKind::Strategy),
            )
            .map(drop),
            ConfigPluginKind::Hook => HookPlugin::load(
                host,
                &source,
                config.plugin_limits(name, PluginKind::Hook),
                config.plugin_grants(name),
            )
            .map(drop),
        };
        if let Err(err) = loaded {
            errors.push(config.error_at_field(&format!("plugins.{name}"), err.to_string()));
        }
    }
    for (service_name, service) in &config.services {
        for strategy in service.get_ref().strategies.keys() {
            let Ok(source) = config.strategy_source(strategy) else {
                continue;
            };
            let plugin = match StrategyPlugin::load(
                host,
                &source,
                config.plugin_limits(strategy, PluginKind::Strategy),
            ) {
                Ok(plugin) => plugin,
                Err(_) => continue, // reported with the plugin above
            };
            let prefix = format!("services.{service_name}.strategies.{strategy}");
            match plugin
                .validate(&config.strategy_params(service.get_ref(), strategy))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(problems)) => errors.extend(problems.into_iter().map(|e| {
                    let field = if e.field.is_empty() {
                        prefix.clone()
                    } else {
                        format!("{prefix}.{}", e.field)
                    };
                    config.error_at_field(&field, e.message)
                })),
                Err(err) => errors.push(config.error_at_field(&prefix, err.to_string())),
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors).into());
    }
    println!(
        "{}: ok ({} service(s), {} plugin(s))",
        config.path.display(),
        config.services.len(),
        config.plugins.len()
    );
    Ok(Outcome::Success)
}
