//! Building a deployment from resolved config: everything that can refuse bad input
//! (plugin digests and worlds, strategy parameters) runs here, before anything is
//! changed; the engine then checks the target and the plan.

use std::sync::Arc;

use anyhow::Context;
use deployer_engine::gates::{ConfiguredGates, Gate};
use deployer_engine::rollout::Settings;
use deployer_engine::state::{
    Fence, Journal, Latest, Lease, LocalStore, LockGuard, Page, Record, Signal, StateError,
    Store as StoreBackend,
};
use deployer_plugin_host::HostServices;
use deployer_plugin_host::capabilities::KvStore;
use deployer_plugin_host::hook::{HookGate, HookPlugin};
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{PluginHost, PluginSource};
use deployer_targets::aws::Clients;
use deployer_targets::prometheus::{Prometheus, PrometheusAuth};
use deployer_targets::state::aws::{AwsLock, AwsStore};

use super::metrics::RunMetrics;
use super::report::Reporter;
use crate::config::{Config, ConfigErrors, ServiceConfig, StateSpec};
use crate::exit::BadInput;

/// Load strategy `name` for `service` and check its parameters; errors point at the
/// offending line of `deployer.toml`.
pub async fn strategy(
    host: &PluginHost,
    config: &Config,
    service_name: &str,
    service: &ServiceConfig,
    name: &str,
) -> anyhow::Result<(StrategyPlugin, PluginSource, String)> {
    let source = config
        .strategy_source(name)
        .map_err(|msg| ConfigErrors(vec![config.error_at_field("strategy", msg)]))?;
    if matches!(source, PluginSource::Builtin(_))
        && name == "rolling"
        && service.spec.target.is_lambda()
    {
        // Rolling replaces units in batches; a Lambda function has versions, and with no
        // provisioned concurrency 0 units, so its batches would be one jump to 100%.
        return Err(ConfigErrors(vec![config.error_at_field(
            &format!("services.{service_name}.target"),
            format!(
                "{}\n  fix: deploy it with {}",
                crate::config::check::LAMBDA_NOT_ROLLING,
                crate::config::check::LAMBDA_STRATEGIES
            ),
        )])
        .into());
    }
    let plugin =
        StrategyPlugin::load(host, &source, config.strategy_limits(name)).map_err(|err| {
            match &source {
                PluginSource::File { name, .. } => ConfigErrors(vec![
                    config.error_at_field(&format!("plugins.{name}"), err.to_string()),
                ])
                .into(),
                PluginSource::Builtin(_) => anyhow::Error::from(err),
            }
        })?;
    let params = Config::strategy_params(service, name);
    if let Err(errors) = plugin.validate(&params).await? {
        let prefix = format!("services.{service_name}.strategies.{name}");
        if !service.strategies.contains_key(name) {
            // No table to point into: say what is missing, at the service.
            let needs = errors
                .iter()
                .map(|e| match e.field.as_str() {
                    "" => e.message.clone(),
                    field => format!("{field}: {}", e.message),
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ConfigErrors(vec![config.error_at_field(
                &format!("services.{service_name}"),
                format!(
                    "strategy `{name}` needs parameters ({needs}), and the service has no \
                     [{prefix}] table\n  fix: add [{prefix}] with its parameters (the \
                     files in examples/ show them), or run a strategy the service configures"
                ),
            )])
            .into());
        }
        let errors = errors
            .into_iter()
            .take(crate::config::MAX_PARAM_ERRORS)
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

/// The state backend config names.
pub enum Store {
    Local(LocalStore),
    Aws(AwsStore),
}

/// The lock of either backend.
pub enum StoreLock {
    Local(LockGuard),
    Aws(AwsLock),
}

impl Lease for StoreLock {
    async fn release(self) {
        match self {
            StoreLock::Local(guard) => guard.release().await,
            StoreLock::Aws(lock) => Lease::release(lock).await,
        }
    }

    /// The backend's own fence: a lease that lapsed or was taken over stops the run.
    fn fence(&self) -> Fence {
        match self {
            StoreLock::Local(guard) => guard.fence(),
            StoreLock::Aws(lock) => lock.fence(),
        }
    }
}

impl StoreBackend for Store {
    type Lock = StoreLock;

    async fn lock(&self, service: &str, deployment: &str) -> Result<StoreLock, StateError> {
        match self {
            Store::Local(s) => StoreBackend::lock(s, service, deployment)
                .await
                .map(StoreLock::Local),
            Store::Aws(s) => StoreBackend::lock(s, service, deployment)
                .await
                .map(StoreLock::Aws),
        }
    }

    async fn begin(&self, service: &str, id: &str, started: &Record) -> Result<(), StateError> {
        match self {
            Store::Local(s) => StoreBackend::begin(s, service, id, started).await,
            Store::Aws(s) => StoreBackend::begin(s, service, id, started).await,
        }
    }

    async fn append(
        &self,
        service: &str,
        id: &str,
        index: usize,
        record: &Record,
    ) -> Result<(), StateError> {
        match self {
            Store::Local(s) => StoreBackend::append(s, service, id, index, record).await,
            Store::Aws(s) => StoreBackend::append(s, service, id, index, record).await,
        }
    }

    async fn finish(
        &self,
        service: &str,
        id: &str,
        index: usize,
        finished: &Record,
    ) -> Result<(), StateError> {
        match self {
            Store::Local(s) => StoreBackend::finish(s, service, id, index, finished).await,
            Store::Aws(s) => StoreBackend::finish(s, service, id, index, finished).await,
        }
    }

    async fn active(&self, service: &str) -> Result<Option<Journal>, StateError> {
        match self {
            Store::Local(s) => StoreBackend::active(s, service).await,
            Store::Aws(s) => StoreBackend::active(s, service).await,
        }
    }

    async fn read(&self, service: &str, id: &str) -> Result<Journal, StateError> {
        match self {
            Store::Local(s) => StoreBackend::read(s, service, id).await,
            Store::Aws(s) => StoreBackend::read(s, service, id).await,
        }
    }

    async fn prepare(&self, service: &str) -> Result<(), StateError> {
        match self {
            Store::Local(s) => StoreBackend::prepare(s, service).await,
            Store::Aws(s) => StoreBackend::prepare(s, service).await,
        }
    }

    async fn recent(
        &self,
        service: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page, StateError> {
        match self {
            Store::Local(s) => StoreBackend::recent(s, service, limit, before).await,
            Store::Aws(s) => StoreBackend::recent(s, service, limit, before).await,
        }
    }

    async fn latest(&self, service: &str) -> Result<Latest, StateError> {
        match self {
            Store::Local(s) => StoreBackend::latest(s, service).await,
            Store::Aws(s) => StoreBackend::latest(s, service).await,
        }
    }

    async fn send(&self, service: &str, signal: &Signal) -> Result<(), StateError> {
        match self {
            Store::Local(s) => StoreBackend::send(s, service, signal).await,
            Store::Aws(s) => StoreBackend::send(s, service, signal).await,
        }
    }

    async fn signals(&self, service: &str) -> Result<Vec<Signal>, StateError> {
        match self {
            Store::Local(s) => StoreBackend::signals(s, service).await,
            Store::Aws(s) => StoreBackend::signals(s, service).await,
        }
    }
}

/// The state backend; its warnings (a torn journal line cut off) go to `reporter`.
pub fn store(config: &Config, clients: &Clients, reporter: &Arc<Reporter>) -> Store {
    match &config.state {
        StateSpec::Local { dir } => {
            let reporter = reporter.clone();
            Store::Local(
                LocalStore::new(dir.clone())
                    .with_warnings(Arc::new(move |message: &str| reporter.warn(message))),
            )
        }
        StateSpec::Aws {
            bucket,
            table,
            prefix,
            lease,
        } => {
            let reporter = reporter.clone();
            Store::Aws(
                AwsStore::new(
                    clients.s3.clone(),
                    clients.dynamodb.clone(),
                    bucket,
                    table,
                    prefix,
                    *lease,
                )
                .with_warnings(Arc::new(move |message: &str| reporter.warn(message))),
            )
        }
    }
}

/// Check that `service`'s state files are what they claim to be (never a link, a FIFO,
/// a directory): for commands that then read the state themselves.
///
/// # Errors
/// The file found, as bad input.
pub fn check_state_files(store: &Store, service: &str) -> anyhow::Result<()> {
    if let Store::Local(local) = store {
        local.check_files(service)?;
    }
    Ok(())
}

/// Read `service`'s state before anything touches its target: a damaged journal or
/// history index is reported (exit 3, with its file or key and line) with nothing
/// changed and no cloud call made, instead of surfacing halfway through a command.
/// What a command goes on from is read: the unfinished deployment, and the newest
/// finished and promoted ones with their journals (a rollback's starting points) — a
/// bounded amount, however long the history.
///
/// # Errors
/// What the store found wrong, or could not read.
pub async fn read_state_first(store: &Store, service: &str) -> anyhow::Result<()> {
    use deployer_engine::state::Store as _;
    check_state_files(store, service)?;
    store.active(service).await?;
    let latest = store.latest(service).await?;
    let promoted = latest
        .promoted
        .as_ref()
        .filter(|p| latest.finished.as_ref().is_none_or(|f| f.id != p.id));
    for summary in [latest.finished.as_ref(), promoted].into_iter().flatten() {
        deployer_engine::state::journal_of(store, service, summary).await?;
    }
    Ok(())
}

pub fn settings(service: &ServiceConfig) -> Settings {
    Settings {
        watch_interval: service.watch_interval,
        on_resume: service.on_interrupted,
        max_steps: service.max_steps,
        max_duration: service.max_duration,
        scale_down_delay: service.scale_down_delay,
        ..Settings::default()
    }
}

/// AWS clients for the config's `[aws]`, once the endpoint settings the SDK will read
/// from the environment are known to be usable (it panics on an empty one).
///
/// # Errors
/// [`BadInput`] naming the variable and the fix.
pub async fn clients(config: &Config) -> anyhow::Result<Clients> {
    check_aws_environment(config)?;
    Ok(Clients::new(
        config.aws.region.as_deref(),
        config.aws.endpoint_url.as_deref(),
    )
    .await)
}

/// Clients for `aws` (a service's own settings), counting calls in `calls`, once the
/// environment is known usable (see [`clients`]).
///
/// # Errors
/// [`BadInput`] naming the variable and the fix.
pub async fn clients_for(
    config: &Config,
    aws: &crate::config::AwsSettings,
    calls: deployer_targets::aws::CallCounter,
) -> anyhow::Result<Clients> {
    check_aws_environment(config)?;
    Ok(Clients::counted(aws.region.as_deref(), aws.endpoint_url.as_deref(), calls).await)
}

/// The AWS settings the SDK reads from the environment and shared files, checked as
/// what they claim to be before a client is built.
///
/// # Errors
/// [`BadInput`] naming the variable and the fix.
fn check_aws_environment(config: &Config) -> anyhow::Result<()> {
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name == "AWS_ENDPOINT_URL" || name.starts_with("AWS_ENDPOINT_URL_") {
            let value = value.to_string_lossy();
            if let Some(why) = crate::config::check::endpoint_problem(&value) {
                return Err(BadInput(format!("environment variable {name}: {why}")).into());
            }
        }
    }
    // The SDK reads its shared config and credentials files whole and blocking: one
    // that is a FIFO hangs every command, /dev/zero eats all memory. They are read
    // here first as what they claim to be.
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    for (variable, default) in [
        ("AWS_CONFIG_FILE", ".aws/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
    ] {
        let path = match std::env::var_os(variable) {
            Some(path) => std::path::PathBuf::from(path),
            None => match &home {
                Some(home) => home.join(default),
                None => continue,
            },
        };
        match deployer_engine::files::read(&path, deployer_engine::files::Kind::Config) {
            Err(err) if !err.not_found() => {
                return Err(BadInput(format!(
                    "the AWS shared file {} ({variable}) cannot be read: {err}\n  fix: point \
                     {variable} at your AWS config file, or unset it",
                    deployer_engine::redact::printable(&path.display().to_string())
                ))
                .into());
            }
            _ => {}
        }
    }
    if let Some(region) =
        std::env::var_os("AWS_REGION").or_else(|| std::env::var_os("AWS_DEFAULT_REGION"))
        && config.aws.region.is_none()
        && !crate::config::check::valid_region(&region.to_string_lossy())
    {
        return Err(BadInput(format!(
            "environment variable AWS_REGION (or AWS_DEFAULT_REGION) `{}` is not an AWS \
             region name\n  fix: set it to a region such as \"eu-west-1\", or set `region` \
             in [aws]",
            deployer_engine::redact::printable(&region.to_string_lossy())
        ))
        .into());
    }
    Ok(())
}

/// The configured Prometheus server's client, one for the run's gates and hooks; SigV4
/// signs with the run's credentials.
///
/// # Errors
/// A bearer token that cannot be used (a setting to fix before any change, not a gate to
/// retry once traffic moved), or a client that cannot be built.
pub fn prometheus(
    config: &Config,
    clients: &Clients,
) -> anyhow::Result<Option<Arc<deployer_targets::prometheus::Prometheus>>> {
    // One client for the run's gates and hooks; SigV4 signs with the run's credentials.
    Ok(match &config.prometheus {
        Some(spec) => Some(Arc::new({
            // A missing or unusable token is a setting to fix before any change, not a
            // gate to retry once traffic moved.
            if let PrometheusAuth::Bearer { env } = &spec.auth
                && let Err(why) = deployer_targets::prometheus::bearer_token(env)
            {
                return Err(ConfigErrors(vec![
                    config.error_at_field("prometheus.bearer-token-env", why),
                ])
                .into());
            }
            Prometheus::new(spec.clone(), Some(clients.config.clone()))
                .context("creating the Prometheus client")?
        })),
        None => None,
    })
}

/// The service's gates and hooks. Hook plugins are loaded (digest, world, grants)
/// here, so a bad hook refuses the deploy before it starts.
/// What the hook at `services.SERVICE.hooks[index]` says of its parameters (its own
/// `validate`, under its time limit), as errors at their fields: bad hook parameters are
/// bad input, found before anything changes, not a gate that fails once traffic moved.
pub async fn hook_param_errors(
    config: &Config,
    service_name: &str,
    index: usize,
    hook: &crate::config::HookSpec,
    plugin: &HookPlugin,
) -> Vec<crate::config::ConfigError> {
    let at = format!("services.{service_name}.hooks[{index}]");
    let mut errors: Vec<crate::config::ConfigError> = judge_query_errors(config, hook)
        .into_iter()
        .map(|(field, message)| config.error_at_field(&format!("{at}.params.{field}"), message))
        .collect();
    errors.extend(match plugin.validate(&hook.params).await {
        Ok(Ok(())) => Vec::new(),
        Ok(Err(problems)) => problems
            .into_iter()
            .take(crate::config::MAX_PARAM_ERRORS)
            .map(|e| {
                let field = if e.field.is_empty() {
                    format!("{at}.params")
                } else {
                    format!("{at}.params.{}", e.field)
                };
                config.error_at_field(&field, e.message)
            })
            .collect(),
        Err(err) => vec![config.error_at_field(&at, err.to_string())],
    });
    errors
}

/// The built-in judge's PromQL held, before anything runs, to the check its
/// `query-prometheus` calls will meet (a guest has no PromQL parser, so its own
/// `validate` cannot): a query that does not parse, or reads a metric outside the
/// plugin's `prometheus-metrics`, is refused at its field instead of failing the gate
/// once traffic moved. As (field under `params`, message).
fn judge_query_errors(config: &Config, hook: &crate::config::HookSpec) -> Vec<(String, String)> {
    use deployer_plugin_host::bindings::metrics::PromqlQuery;
    use deployer_plugin_host::bindings::types::CapabilityError;
    let Some(plugin) = config.plugins.get(&hook.plugin) else {
        return Vec::new();
    };
    if !matches!(&plugin.source, PluginSource::Builtin(name) if name == "judge") {
        return Vec::new();
    }
    let Ok(params) = serde_json::from_str::<serde_json::Value>(&hook.params) else {
        return Vec::new();
    };
    let metrics = params.get("metrics").and_then(|m| m.as_array());
    let mut errors = Vec::new();
    for (i, metric) in metrics.into_iter().flatten().enumerate() {
        let Some(query) = metric.get("prometheus").and_then(|q| q.as_str()) else {
            continue;
        };
        // Each side's query is this one with a release put in.
        let query = PromqlQuery {
            query: query
                .replace("{release}", "web:2")
                .replace("{service}", "web"),
            window_seconds: 0,
            step_seconds: 0,
        };
        if let Err(
            CapabilityError::Denied(why)
            | CapabilityError::Invalid(why)
            | CapabilityError::Limit(why)
            | CapabilityError::Unavailable(why),
        ) = deployer_plugin_host::promql::check(&plugin.grants.prometheus_metrics, &query)
        {
            errors.push((format!("metrics[{i}].prometheus"), why));
        }
    }
    errors
}

pub async fn gates(
    host: &PluginHost,
    config: &Config,
    service_name: &str,
    service: &ServiceConfig,
    clients: &Clients,
) -> anyhow::Result<ConfiguredGates> {
    let prometheus = prometheus(config, clients)?;
    let mut gates = deployer_targets::gates::build(&service.gates, clients, prometheus.as_ref())
        .map_err(anyhow::Error::msg)?;
    // One key/value store per plugin in this deployment, shared by its hooks at every
    // point (the gates share the name `hook:PLUGIN`, under which the journal keeps it).
    let mut stores: std::collections::HashMap<&str, KvStore> = std::collections::HashMap::new();
    let mut param_errors = Vec::new();
    for (index, hook) in service.hooks.iter().enumerate() {
        let plugin = config.plugins.get(&hook.plugin).ok_or_else(|| {
            ConfigErrors(vec![config.error_at_field(
                &format!("plugins.{}", hook.plugin),
                format!("no plugin named `{}`", hook.plugin),
            )])
        })?;
        // A plugin that cannot be loaded is an error in its `[plugins.NAME]` table.
        let loaded = HookPlugin::load(host, &plugin.source, plugin.limits, plugin.grants.clone())
            .map_err(|err| {
            ConfigErrors(vec![config.error_at_field(
                &format!("plugins.{}", hook.plugin),
                err.to_string(),
            )])
        })?;
        param_errors.extend(hook_param_errors(config, service_name, index, hook, &loaded).await);
        // Each plugin gets its own key/value store, and metric queries answered by
        // CloudWatch with this run's clients and by the configured Prometheus.
        let services = HostServices {
            kv: stores.entry(&hook.plugin).or_default().clone(),
            metrics: Some(Arc::new(RunMetrics::new(
                clients.clone(),
                prometheus.clone(),
            ))),
            ..loaded.services()
        };
        gates.push(Gate {
            name: format!("hook:{}", hook.plugin),
            at: hook.at.clone(),
            failures: 1,
            check: Box::new(HookGate {
                plugin: loaded,
                params: hook.params.clone(),
                services: Some(services),
            }),
        });
    }
    if !param_errors.is_empty() {
        return Err(ConfigErrors(param_errors).into());
    }
    Ok(ConfiguredGates::new(gates))
}
