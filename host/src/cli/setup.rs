//! Building a deployment from config: everything that can refuse bad input (config,
//! plugin digests and worlds, strategy parameters, the service's shape in AWS) runs
//! here, before anything is changed.

use std::time::Duration;

use anyhow::Context;
use aws_sdk_cloudwatch::types::Statistic;

use crate::aws::Clients;
use crate::config::StateBackend;
use crate::config::{Config, ConfigErrors, GateConfig, OnInterrupted, Service, parse_duration};
use crate::gates::{AlarmGate, Bound, Check, ConfiguredGates, Gate, HttpGate, MetricGate};
use crate::plugin::hook::HookPlugin;
use crate::plugin::strategy::StrategyPlugin;
use crate::plugin::{PluginHost, PluginKind, PluginSource};
use crate::rollout::engine::{ResumePolicy, Settings};
use crate::state::aws::AwsStore;
use crate::state::{LocalStore, Store};

/// Load strategy `name` for `service` and check its parameters; errors point at the
/// offending line of `deployer.toml`.
pub async fn strategy(
    host: &PluginHost,
    config: &Config,
    service_name: &str,
    service: &Service,
    name: &str,
) -> anyhow::Result<(StrategyPlugin, PluginSource, String)> {
    let source = config
        .strategy_source(name)
        .map_err(|msg| ConfigErrors(vec![config.error_at_field("strategy", msg)]))?;
    let plugin = StrategyPlugin::load(
        host,
        &source,
        config.plugin_limits(name, PluginKind::Strategy),
    )
    .map_err(|err| match &source {
        PluginSource::File { name, .. } => ConfigErrors(vec![
            config.error_at_field(&format!("plugins.{name}"), err.to_string()),
        ])
        .into(),
        PluginSource::Builtin(_) => anyhow::Error::from(err),
    })?;
    let params = config.strategy_params(service, name);
    if let Err(errors) = plugin.validate(&params).await? {
        let prefix = format!("services.{service_name}.strategies.{name}");
        let errors = errors
            .into_iter()
            .map(|e| {
                let field = if e.field.is_empty() {
                    prefix.clone()
                } else {
                    format!("{prefix}.{}", e.field)
                };
                config.error_at_field(&field, e.message)
            })
            .collect();
        return Err(ConfigErrors(errors).into());
    }
    Ok((plugin, source, params))
}

pub fn store(config: &Config, clients: &Clients) -> Store {
    match config.state.backend {
        StateBackend::Local => Store::Local(LocalStore::new(config.resolve(&config.state.dir))),
        StateBackend::Aws => Store::Aws(AwsStore {
            s3: clients.s3.clone(),
            dynamodb: clients.dynamodb.clone(),
            bucket: config
                .state
                .bucket
                .clone()
                .expect("checked when the config was loaded"),
            table: config
                .state
                .table
                .clone()
                .expect("checked when the config was loaded"),
            prefix: config.state.prefix.clone(),
            lease: Duration::from_secs(60),
        }),
    }
}

pub fn settings(config: &Config, service: &Service) -> Settings {
    let mut settings = Settings::default();
    if let Some(interval) = service
        .watch_interval
        .as_deref()
        .and_then(|t| parse_duration(t).ok())
    {
        settings.watch_interval = interval;
    }
    settings.on_resume = match service.on_interrupted {
        OnInterrupted::Rollback => ResumePolicy::Rollback,
        OnInterrupted::Resume => ResumePolicy::Resume,
    };
    let _ = config;
    settings
}

pub async fn clients(config: &Config) -> Clients {
    Clients::new(
        config.aws.region.as_deref(),
        config.aws.endpoint_url.as_deref(),
    )
    .await
}

fn duration(text: &Option<String>, default: Duration) -> Duration {
    text.as_deref()
        .and_then(|t| parse_duration(t).ok())
        .unwrap_or(default)
}

/// The service's gates and hooks. Hook plugins are loaded (digest, world, grants)
/// here, so a bad hook refuses the deploy before it starts.
pub fn gates(
    host: &PluginHost,
    config: &Config,
    service: &Service,
    clients: &Clients,
) -> anyhow::Result<ConfiguredGates> {
    let http = reqwest::Client::builder()
        .build()
        .context("creating the HTTP client")?;
    let mut gates = Vec::new();
    for (i, gate) in service.gates.iter().enumerate() {
        gates.push(match gate.get_ref() {
            GateConfig::Http {
                name,
                at,
                url,
                expect_status,
                body_contains,
                max_latency,
                requests,
                min_success,
                interval,
                failures,
            } => Gate {
                name: name
                    .clone()
                    .unwrap_or_else(|| format!("http:{}", crate::redact::url(url))),
                at: at.clone(),
                failures: failures.unwrap_or(1),
                check: Check::Http(HttpGate {
                    client: http.clone(),
                    url: url.clone(),
                    expect_status: expect_status.unwrap_or(200),
                    body_contains: body_contains.clone(),
                    max_latency: max_latency.as_deref().and_then(|t| parse_duration(t).ok()),
                    requests: requests.unwrap_or(10),
                    min_success: min_success.unwrap_or(1.0),
                    interval: duration(interval, Duration::ZERO),
                }),
            },
            GateConfig::Alarm {
                name,
                at,
                alarms,
                failures,
            } => Gate {
                name: name
                    .clone()
                    .unwrap_or_else(|| format!("alarm:{}", alarms.join(","))),
                at: at.clone(),
                failures: failures.unwrap_or(1),
                check: Check::Alarm(AlarmGate {
                    client: clients.cloudwatch.clone(),
                    alarms: alarms.clone(),
                }),
            },
            GateConfig::Metric {
                name,
                at,
                namespace,
                metric,
                dimensions,
                statistic,
                period,
                window,
                max,
                min,
                failures,
            } => Gate {
                name: name
                    .clone()
                    .unwrap_or_else(|| format!("metric:{namespace}/{metric}")),
                at: at.clone(),
                failures: failures.unwrap_or(1),
                check: Check::Metric(MetricGate {
                    client: clients.cloudwatch.clone(),
                    namespace: namespace.clone(),
                    metric: metric.clone(),
                    dimensions: dimensions
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    statistic: Statistic::from(statistic.as_deref().unwrap_or("Average")),
                    period: duration(period, Duration::from_secs(60)),
                    window: duration(window, Duration::from_secs(300)),
                    bound: match (max, min) {
                        (Some(max), _) => Bound::Max(*max),
                        (None, Some(min)) => Bound::Min(*min),
                        (None, None) => {
                            unreachable!("checked when the config was loaded: gate {i}")
                        }
                    },
                }),
            },
        });
    }
    for hook in &service.hooks {
        let hook = hook.get_ref();
        let plugin = config
            .plugins
            .get(&hook.plugin)
            .expect("checked when the config was loaded")
            .get_ref();
        let source = PluginSource::File {
            name: hook.plugin.clone(),
            path: config.resolve(&plugin.path),
            sha256: plugin.sha256.clone(),
        };
        // A plugin that cannot be loaded is an error in its `[plugins.NAME]` table.
        let loaded = HookPlugin::load(
            host,
            &source,
            config.plugin_limits(&hook.plugin, PluginKind::Hook),
            config.plugin_grants(&hook.plugin),
        )
        .map_err(|err| {
            ConfigErrors(vec![config.error_at_field(
                &format!("plugins.{}", hook.plugin),
                err.to_string(),
            )])
        })?;
        gates.push(Gate {
            name: format!("hook:{}", hook.plugin),
            at: hook.at.clone(),
            failures: 1,
            check: Check::Hook {
                plugin: loaded,
                params: serde_json::to_string(&hook.params).expect("TOML tables serialize to JSON"),
            },
        });
    }
    Ok(ConfiguredGates::new(gates))
}
