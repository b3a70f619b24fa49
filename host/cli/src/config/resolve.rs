//! From what the file says ([`RawConfig`]) to what deployer runs on ([`Resolved`]): each
//! value is checked where it is turned into its type, every problem is collected with
//! its position, and nothing downstream parses or checks a config value again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deployer_engine::gates::GatePoint as EngineGatePoint;
use deployer_engine::redact::printable;
use deployer_engine::rollout::{
    DEFAULT_MAX_DURATION, DEFAULT_MAX_STEPS, MIN_WATCH_INTERVAL, ResumePolicy,
};
use deployer_engine::state::names;
use deployer_plugin_host::{Grants, Limits, PluginKind, PluginSource, builtin};
use deployer_targets::gates::{
    AlarmCheck, AlbCheck, Bound, CheckSpec, GateSpec, HttpCheck, MetricCheck, MetricStatistic,
    NoData, PrometheusCheck,
};
use deployer_targets::prometheus::{self, PrometheusAuth, PrometheusSpec, Range};
use deployer_targets::spec::{KubeAccess, Route, ServiceSpec, TargetSpec, TrafficSpec};

use super::check::{self, Floor, parse_duration};
use super::schema::{
    AlbNoData, ConfigPluginKind, GateConfig, GatePoint, HookRef, OnInterrupted, PluginConfig,
    PrometheusAuthKind, PrometheusConfig, RawConfig, Service, StateBackend, Target, Traffic,
};
use super::source::{ConfigError, Source};
use super::{AwsSettings, HookSpec, PluginSpec, ServiceConfig, StateSpec};

/// How long new units may take to become healthy, unless `health-timeout` says.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the `aws` backend's lock lives without renewal, unless `state.lease` says.
const LEASE: Duration = Duration::from_secs(60);
/// How often `bake` gates run during a bake, unless `watch-interval` says.
const WATCH_INTERVAL: Duration = Duration::from_secs(30);
/// Requests in an ALB gate's window below which a 5xx ratio is not judged, unless
/// `min-requests` says: two errors in ten requests say little about a release.
const ALB_MIN_REQUESTS: u32 = 50;

/// How long one Prometheus query may take, unless `prometheus.timeout` says.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(10);

/// A whole config, typed.
pub struct Resolved {
    pub aws: AwsSettings,
    pub state: StateSpec,
    pub prometheus: Option<PrometheusSpec>,
    pub services: BTreeMap<String, ServiceConfig>,
    pub plugins: BTreeMap<String, PluginSpec>,
    pub releases: BTreeMap<String, super::ReleaseConfig>,
}

/// Problems found so far, positioned in the file.
pub(super) struct Problems<'a> {
    pub(super) source: &'a Source,
    pub(super) found: Vec<ConfigError>,
}

impl Problems<'_> {
    pub(super) fn at(&mut self, field: &str, message: impl Into<String>) {
        self.found.push(self.source.error_at_field(field, message));
    }

    /// Plugin parameters as the JSON object the plugin receives; a problem at `field`
    /// when they cannot be passed on.
    fn params(&mut self, field: &str, params: &toml::Table) -> Option<String> {
        serde_json::to_string(params)
            .map_err(|err| self.at(field, format!("cannot pass these parameters on: {err}")))
            .ok()
    }

    /// `text` as a duration, `default` when absent; a problem at `field` when it is not one.
    pub(super) fn duration(
        &mut self,
        field: &str,
        text: Option<&str>,
        default: Duration,
    ) -> Duration {
        match text.map(parse_duration) {
            None => default,
            Some(Ok(duration)) => duration,
            Some(Err(message)) => {
                self.at(field, message);
                default
            }
        }
    }

    /// [`Problems::duration`] of a setting that must be at least `floor`; a problem at
    /// `field` when it is shorter.
    pub(super) fn duration_from(
        &mut self,
        field: &str,
        text: Option<&str>,
        default: Duration,
        floor: Floor,
    ) -> Duration {
        let duration = self.duration(field, text, default);
        if let Some(text) = text
            && let Ok(written) = parse_duration(text)
            && let Some(message) = floor.problem(text, written)
        {
            self.at(field, message);
        }
        duration
    }
}

/// `path` relative to the directory of the config file at `config`.
pub fn relative_to(config: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        config.parent().unwrap_or(Path::new(".")).join(path)
    }
}

/// Resolve `raw`, read from `source`.
///
/// # Errors
/// Every problem found, in file order.
pub fn resolve(raw: RawConfig, source: &Source) -> Result<Resolved, Vec<ConfigError>> {
    let mut problems = Problems {
        source,
        found: Vec::new(),
    };
    let state = state(&raw, &mut problems);
    let prometheus = raw
        .prometheus
        .as_ref()
        .and_then(|p| prometheus_spec(p, &mut problems));
    if raw.services.is_empty() {
        problems.found.push(source.error_at(
            None,
            "services",
            "no services are defined\n  fix: add a [services.NAME] table with a target, see examples/",
        ));
    }
    let plugins: BTreeMap<String, PluginSpec> = raw
        .plugins
        .iter()
        .map(|(name, plugin)| {
            (
                name.clone(),
                plugin_spec(name, plugin.get_ref(), &raw, &mut problems),
            )
        })
        .collect();
    let mut services = BTreeMap::new();
    for (name, service) in &raw.services {
        if !names::valid_service(name) {
            // Located by the table's span: the name itself cannot be looked up as a path.
            problems.found.push(problems.source.error_at(
                Some(service.span()),
                format!("services.{}", printable(&truncate(name, 80))),
                format!(
                    "is not a valid service name: {}; it names the service's state \
                     directory and appears in logs\n  fix: rename the table, e.g. \
                     [services.web]",
                    names::NAME_RULE
                ),
            ));
            continue;
        }
        if let Some(service) = service_config(name, service.get_ref(), &raw, &mut problems) {
            services.insert(name.to_string(), service);
        }
    }
    one_service_per_alias(&services, &mut problems);
    aws_settings("aws", &raw.aws, &mut problems);
    let mut releases = BTreeMap::new();
    for (name, release) in &raw.releases {
        if let Some(release) =
            super::release::release_config(name, release, &raw, &services, &mut problems)
        {
            releases.insert(name.clone(), release);
        }
    }
    let mut found = problems.found;
    if !found.is_empty() {
        // In file order, as an editor lists them.
        found.sort_by_key(|e| e.position.unwrap_or((usize::MAX, 0)));
        return Err(found);
    }
    Ok(Resolved {
        aws: AwsSettings {
            region: raw.aws.region,
            endpoint_url: raw.aws.endpoint_url,
        },
        state,
        prometheus,
        services,
        plugins,
        releases,
    })
}

/// `[prometheus]`: a URL deployer can query, and how requests are authorised.
fn prometheus_spec(raw: &PrometheusConfig, problems: &mut Problems<'_>) -> Option<PrometheusSpec> {
    let url = match url::Url::parse(&raw.url) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            problems.at(
                "prometheus.url",
                format!(
                    "`{}` is not an http:// or https:// URL",
                    printable(&raw.url)
                ),
            );
            None
        }
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            problems.at(
                "prometheus.url",
                "holds credentials: a URL ends up in logs\n  fix: remove them and set \
                 bearer-token-env to the name of a variable holding the token",
            );
            None
        }
        Ok(url) if url.query().is_some() || url.fragment().is_some() => {
            problems.at(
                "prometheus.url",
                "is the server's base URL, without ?query or #fragment (deployer adds \
                 /api/v1/query to it)",
            );
            None
        }
        Ok(url) => Some(url),
        Err(err) => {
            problems.at(
                "prometheus.url",
                format!(
                    "`{}` is not a URL ({err}); e.g. url = \"http://prometheus.monitoring:9090\"",
                    printable(&raw.url)
                ),
            );
            None
        }
    };
    let amp_region = url.as_ref().and_then(prometheus::amp_region);
    let kind = raw.auth.unwrap_or(if amp_region.is_some() {
        PrometheusAuthKind::Sigv4
    } else if raw.bearer_token_env.is_some() {
        PrometheusAuthKind::Bearer
    } else {
        PrometheusAuthKind::None
    });
    if raw.bearer_token_env.is_some() && kind != PrometheusAuthKind::Bearer {
        problems.at(
            "prometheus.bearer-token-env",
            "is only used with auth = \"bearer\": remove it, or set auth = \"bearer\"",
        );
    }
    if raw.region.is_some() && kind != PrometheusAuthKind::Sigv4 {
        problems.at(
            "prometheus.region",
            "is SigV4's region, only used with auth = \"sigv4\"",
        );
    }
    if raw
        .region
        .as_deref()
        .is_some_and(|r| !check::valid_region(r))
    {
        problems.at(
            "prometheus.region",
            "is not an AWS region name, e.g. \"eu-west-1\"",
        );
    }
    let auth = match kind {
        PrometheusAuthKind::None => PrometheusAuth::None,
        PrometheusAuthKind::Sigv4 => PrometheusAuth::SigV4 {
            region: raw.region.clone().or(amp_region),
        },
        PrometheusAuthKind::Bearer => match &raw.bearer_token_env {
            Some(env)
                if !env.is_empty()
                    && env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !env.starts_with(|c: char| c.is_ascii_digit()) =>
            {
                PrometheusAuth::Bearer { env: env.clone() }
            }
            Some(env) => {
                problems.at(
                    "prometheus.bearer-token-env",
                    format!(
                        "`{}` is not an environment variable name: it names the variable \
                         holding the token, never the token itself; e.g. \"PROMETHEUS_TOKEN\"",
                        printable(&truncate(env, 40))
                    ),
                );
                PrometheusAuth::None
            }
            None => {
                problems.at(
                    "prometheus.auth",
                    "auth = \"bearer\" needs bearer-token-env, the name of the environment \
                     variable holding the token; e.g. bearer-token-env = \"PROMETHEUS_TOKEN\"",
                );
                PrometheusAuth::None
            }
        },
    };
    let timeout = problems.duration_from(
        "prometheus.timeout",
        raw.timeout.as_deref(),
        PROMETHEUS_TIMEOUT,
        Floor {
            min: Duration::from_secs(1),
            why: "a query needs time to reach the server and come back",
            default: Some(PROMETHEUS_TIMEOUT),
        },
    );
    if timeout > Duration::from_secs(300) {
        problems.at("prometheus.timeout", "at most 5m: a gate waits for it");
    }
    Some(PrometheusSpec {
        url: url?,
        auth,
        timeout,
    })
}

/// `text` cut to at most `max` characters, marked when cut: a name in an error message
/// must not be the megabyte someone put in the config.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// `[aws]`: an endpoint the SDK can use (it panics on an empty one), and a region that
/// is not empty. Both may also come from the environment (`AWS_ENDPOINT_URL`,
/// `AWS_REGION`), which `run` checks the same way before building a client.
fn aws_settings(field: &str, aws: &super::schema::Aws, problems: &mut Problems<'_>) {
    if let Some(endpoint) = &aws.endpoint_url
        && let Some(why) = check::endpoint_problem(endpoint)
    {
        problems.at(&format!("{field}.endpoint-url"), why);
    }
    if aws
        .region
        .as_deref()
        .is_some_and(|r| !check::valid_region(r))
    {
        problems.at(
            &format!("{field}.region"),
            "is not an AWS region name\n  fix: use a region such as \"eu-west-1\", or leave it \
             out to use AWS_REGION or the AWS config",
        );
    }
}

fn state(raw: &RawConfig, problems: &mut Problems<'_>) -> StateSpec {
    let state = &raw.state;
    match (state.backend, &state.bucket, &state.table) {
        (StateBackend::Local, _, _) => StateSpec::Local {
            dir: relative_to(&problems.source.path, &state.dir),
        },
        (StateBackend::Aws, Some(bucket), Some(table)) => {
            // S3's naming rules (general purpose buckets): what else could never exist.
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                })
                && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
                && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
            if !valid_bucket {
                problems.at(
                    "state.bucket",
                    format!(
                        "`{}` is not an S3 bucket name: 3 to 63 lowercase letters, digits, `.` \
                         and `-`, starting and ending with a letter or digit",
                        printable(bucket)
                    ),
                );
            }
            let lease = problems.duration("state.lease", state.lease.as_deref(), LEASE);
            // Renewed every quarter of it, a lease under 5s leaves no room for a slow
            // DynamoDB call; over 15 minutes a dead run blocks the service that long.
            if !(Duration::from_secs(5)..=Duration::from_secs(900)).contains(&lease) {
                problems.at(
                    "state.lease",
                    "the lock's lease must be from 5s to 15m (e.g. \"60s\")",
                );
            }
            StateSpec::Aws {
                bucket: bucket.clone(),
                table: table.clone(),
                prefix: state.prefix.clone(),
                lease,
            }
        }
        (StateBackend::Aws, _, _) => {
            problems.at(
                "state",
                "backend = \"aws\" needs bucket (S3, for journals) and table (DynamoDB with partition key `pk`, for locks)",
            );
            StateSpec::Local {
                dir: PathBuf::new(),
            }
        }
    }
}

fn plugin_spec(
    name: &str,
    plugin: &PluginConfig,
    raw: &RawConfig,
    problems: &mut Problems<'_>,
) -> PluginSpec {
    let source = match plugin_source(name, plugin, &problems.source.path) {
        Ok(source) => source,
        Err((field, message)) => {
            problems.at(&field, message);
            PluginSource::Builtin(String::new())
        }
    };
    for (i, metric) in plugin.prometheus_metrics.iter().enumerate() {
        if let Some(why) = check::prometheus_grant_problem(metric) {
            problems.at(&format!("plugins.{name}.prometheus-metrics[{i}]"), why);
        }
    }
    if !plugin.prometheus_metrics.is_empty() && raw.prometheus.is_none() {
        problems.at(
            &format!("plugins.{name}.prometheus-metrics"),
            "grants Prometheus queries, but no server is configured\n  fix: add a [prometheus] \
             table with its url",
        );
    }
    if plugin.actions {
        problems.at(
            &format!("plugins.{name}.actions"),
            "the `actions` capability was removed in plugin contract 0.2.0 (no deployer ever \
             provided it): remove the line; traffic and scale changes belong to the strategy, \
             whose every step deployer checks against its safety rules",
        );
    }
    let kind = match plugin.kind {
        ConfigPluginKind::Strategy => PluginKind::Strategy,
        ConfigPluginKind::Hook => PluginKind::Hook,
    };
    let mut limits = match kind {
        PluginKind::Strategy => Limits::strategy(),
        PluginKind::Hook => Limits::hook(),
    };
    let field = format!("plugins.{name}.timeout");
    limits.timeout = problems.duration_from(
        &field,
        plugin.timeout.as_deref(),
        limits.timeout,
        Floor::nonzero(
            "every call of the plugin would time out",
            Some(limits.timeout),
        ),
    );
    // Past an hour a hung plugin holds the deploy's lock.
    if limits.timeout > std::time::Duration::from_secs(3600) {
        problems.at(
            &field,
            "a plugin's time limit must be at most 1h (e.g. \"30s\")",
        );
    }
    if let Some(mib) = plugin.memory_mib {
        // A wasm32 plugin cannot address more than 4 GiB; 0 could not even instantiate.
        if !(1..=4096).contains(&mib) {
            problems.at(
                &format!("plugins.{name}.memory-mib"),
                format!("{mib} MiB is not a usable memory limit: give 1 to 4096 (a wasm32 plugin addresses at most 4 GiB)"),
            );
        }
        limits.memory_bytes = mib.saturating_mul(1 << 20);
    }
    PluginSpec {
        kind,
        source,
        limits,
        grants: Grants {
            http_allow: plugin.http_allow.clone(),
            kv: plugin.kv,
            clock: plugin.clock,
            metrics_namespaces: plugin.metrics_namespaces.clone(),
            prometheus_metrics: plugin.prometheus_metrics.clone(),
        },
    }
}

/// `[a-z0-9][a-z0-9_-]*`, at most 64 characters (`deployer plugin new` also refuses `_`).
pub fn is_plugin_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
}

/// Where `[plugins.NAME]` comes from: a component file with its digest, or a built-in.
///
/// # Errors
/// (field, message) of the first problem.
fn plugin_source(
    name: &str,
    plugin: &PluginConfig,
    config: &Path,
) -> Result<PluginSource, (String, String)> {
    let field = |key: &str| format!("plugins.{name}.{key}");
    // A name is what `deployer run NAME`, the plan and the reports show: one that could
    // pass for another (`builtin:canary`, a Cyrillic `а`, a trailing space) is refused.
    if !is_plugin_name(name) {
        return Err((
            format!("plugins.{}", printable(&truncate(name, 40))),
            format!(
                "`{}` is not a plugin name: use lower-case ASCII letters, digits, `-` and `_`, \
                 starting with a letter or digit (at most 64)\n  fix: rename it, e.g. \
                 [plugins.notify-slack]",
                printable(&truncate(name, 40))
            ),
        ));
    }
    // A strategy plugin named like a built-in would replace it without a word wherever
    // that name is used (`deployer run canary`).
    if plugin.kind == ConfigPluginKind::Strategy && builtin::get(name).is_some() {
        return Err((
            format!("plugins.{name}"),
            format!(
                "`{name}` is the name of a built-in strategy, so this plugin would silently \
                 replace it\n  fix: give your strategy another name, e.g. \
                 [plugins.{name}-custom], and use that name in `deployer run`"
            ),
        ));
    }
    // `deployer run release NAME` deploys a `[releases.NAME]`: a strategy of that name
    // could never be run.
    if plugin.kind == ConfigPluginKind::Strategy && name == "release" {
        return Err((
            format!("plugins.{name}"),
            "`release` is the word `deployer run release NAME` uses for a release of several \
             services, so this strategy could never be run\n  fix: give your strategy another \
             name, e.g. [plugins.release-train]"
                .to_string(),
        ));
    }
    if let Some(path) = &plugin.path
        && path.to_string_lossy().starts_with("builtin:")
    {
        let shown = printable(&truncate(&path.to_string_lossy(), 60)).to_string();
        return Err((
            field("path"),
            format!(
                "`{shown}` reads as a built-in, not a file\n  fix: for a built-in write \
                 builtin = \"NAME\" (no path, no sha256); for a file of that name write \
                 \"./{shown}\""
            ),
        ));
    }
    match (&plugin.builtin, &plugin.path, &plugin.sha256) {
        (Some(builtin), None, None) => {
            let kind = match plugin.kind {
                ConfigPluginKind::Strategy => PluginKind::Strategy,
                ConfigPluginKind::Hook => PluginKind::Hook,
            };
            if builtin::get_kind(builtin, kind).is_none() {
                let noun = kind.as_str();
                let names: Vec<&str> = builtin::names_of(kind).collect();
                return Err((
                    field("builtin"),
                    format!(
                        "there is no built-in {noun} `{}`; the built-in {}: {}",
                        printable(&truncate(builtin, 40)),
                        match kind {
                            PluginKind::Strategy => "strategies",
                            PluginKind::Hook => "hooks",
                        },
                        names.join(", ")
                    ),
                ));
            }
            Ok(PluginSource::Builtin(builtin.clone()))
        }
        (Some(_), _, _) => Err((
            field("builtin"),
            "a built-in plugin ships inside deployer: remove path and sha256, or remove builtin"
                .into(),
        )),
        (None, Some(path), Some(sha256)) => {
            if let Some(message) = check::digest_problem(sha256, path) {
                return Err((field("sha256"), message));
            }
            Ok(PluginSource::File {
                name: name.to_string(),
                path: relative_to(config, path),
                sha256: sha256.clone(),
            })
        }
        (None, Some(path), None) => Err((
            format!("plugins.{name}"),
            format!(
                "sha256 is required with path: deployer runs only the component you checked\n  \
                 fix: run `deployer plugin inspect {}` and copy its sha256",
                path.display()
            ),
        )),
        (None, None, _) => Err((
            format!("plugins.{name}"),
            "says neither where the component is nor which built-in it is\n  fix: set path (a \
             .wasm component) and sha256, or builtin = \"judge\""
                .into(),
        )),
    }
}

fn service_config(
    name: &str,
    service: &Service,
    raw: &RawConfig,
    problems: &mut Problems<'_>,
) -> Option<ServiceConfig> {
    let prefix = format!("services.{name}");
    let hooks: Vec<HookSpec> = service
        .hooks
        .iter()
        .enumerate()
        .filter_map(|(i, hook)| {
            hook_spec(
                &format!("{prefix}.hooks[{i}]"),
                hook.get_ref(),
                raw,
                problems,
            )
        })
        .collect();
    let traffic = service
        .traffic
        .as_ref()
        .and_then(|t| traffic(&format!("{prefix}.traffic"), t, problems));
    let target = target(&format!("{prefix}.target"), service, traffic, problems);
    let health_timeout = problems.duration_from(
        &format!("{prefix}.health-timeout"),
        service.health_timeout.as_deref(),
        HEALTH_TIMEOUT,
        Floor::nonzero(
            "no new unit could ever become healthy in time, so every deployment would roll back",
            Some(HEALTH_TIMEOUT),
        ),
    );
    let watch_interval = problems.duration_from(
        &format!("{prefix}.watch-interval"),
        service.watch_interval.as_deref(),
        WATCH_INTERVAL,
        Floor {
            min: MIN_WATCH_INTERVAL,
            why: "bake gates are checked at most once a second (each check calls CloudWatch and the gates' endpoints; zero would call them in a busy loop)",
            default: Some(WATCH_INTERVAL),
        },
    );
    let max_steps = service.max_steps.unwrap_or(DEFAULT_MAX_STEPS);
    if !(1..=100_000).contains(&max_steps) {
        problems.at(
            &format!("{prefix}.max-steps"),
            "give 1 to 100000 (the default, 1000, is far above what the built-in strategies take)",
        );
    }
    let max_duration = problems.duration_from(
        &format!("{prefix}.max-duration"),
        service.max_duration.as_deref(),
        DEFAULT_MAX_DURATION,
        Floor {
            min: Duration::from_secs(60),
            why: "a run needs time to deploy, check and roll back",
            default: Some(DEFAULT_MAX_DURATION),
        },
    );
    if max_duration > Duration::from_secs(7 * 24 * 3600) {
        problems.at(
            &format!("{prefix}.max-duration"),
            "at most 7 days (\"168h\"): the run holds the service's lock all that time",
        );
    }
    let scale_down_delay = problems.duration(
        &format!("{prefix}.scale-down-delay"),
        service.scale_down_delay.as_deref(),
        Duration::ZERO,
    );
    if scale_down_delay > Duration::from_secs(7 * 24 * 3600) {
        problems.at(
            &format!("{prefix}.scale-down-delay"),
            "at most 7 days (\"168h\"): the old release runs at full size all that time",
        );
    }
    if !scale_down_delay.is_zero() && matches!(service.target, Target::Lambda { .. }) {
        // The previous version stays a version; what kept it warm, the alias's
        // provisioned concurrency, follows the alias to the new one.
        problems.at(
            &format!("{prefix}.scale-down-delay"),
            "a Lambda function has nothing to keep warm: the previous version stays published \
             and `deployer rollback` points the alias back at it at once\n  fix: remove \
             scale-down-delay from this service",
        );
    }
    let gates: Vec<GateSpec> = service
        .gates
        .iter()
        .enumerate()
        .filter_map(|(i, gate)| {
            gate_spec(
                &format!("{prefix}.gates[{i}]"),
                gate.get_ref(),
                (name, service.traffic.is_some(), raw.prometheus.is_some()),
                problems,
            )
        })
        .collect();
    let mut strategies = BTreeMap::new();
    for (strategy, params) in &service.strategies {
        let field = format!("{prefix}.strategies.{strategy}");
        if let Err(message) = strategy_source(strategy, raw, &problems.source.path) {
            problems.at(&field, message);
        }
        if let Some(json) = problems.params(&field, params.get_ref()) {
            strategies.insert(strategy.to_string(), json);
        }
    }
    if let Some(aws) = &service.aws {
        aws_settings(&format!("{prefix}.aws"), aws, problems);
    }
    let own = service.aws.as_ref();
    if let Target::Lambda { function, .. } = &service.target {
        let region = own
            .and_then(|a| a.region.as_deref())
            .or(raw.aws.region.as_deref());
        lambda_fits(&prefix, function, region, service, problems);
    }
    Some(ServiceConfig {
        spec: ServiceSpec {
            target: target?,
            health_timeout,
        },
        aws: AwsSettings {
            region: own
                .and_then(|a| a.region.clone())
                .or_else(|| raw.aws.region.clone()),
            endpoint_url: own
                .and_then(|a| a.endpoint_url.clone())
                .or_else(|| raw.aws.endpoint_url.clone()),
        },
        gates,
        hooks,
        strategies,
        watch_interval,
        max_steps,
        max_duration,
        scale_down_delay,
        on_interrupted: match service.on_interrupted {
            OnInterrupted::Rollback => ResumePolicy::Rollback,
            OnInterrupted::Resume => ResumePolicy::Resume,
        },
    })
}

fn hook_spec(
    field: &str,
    hook: &HookRef,
    raw: &RawConfig,
    problems: &mut Problems<'_>,
) -> Option<HookSpec> {
    let plugin = &hook.plugin;
    match raw.plugins.get(plugin).map(|p| p.get_ref().kind) {
        Some(ConfigPluginKind::Hook) => {}
        Some(ConfigPluginKind::Strategy) => {
            problems.at(
                &format!("{field}.plugin"),
                format!("plugin `{plugin}` is a strategy, not a hook"),
            );
            return None;
        }
        None => {
            problems.at(
                &format!("{field}.plugin"),
                format!(
                    "no plugin named `{plugin}`\n  fix: declare it as [plugins.{plugin}] with kind = \"hook\", path and sha256"
                ),
            );
            return None;
        }
    }
    let params = problems.params(&format!("{field}.params"), &hook.params)?;
    Some(HookSpec {
        plugin: plugin.clone(),
        at: hook.at.iter().copied().map(gate_point).collect(),
        params,
    })
}

fn traffic(field: &str, traffic: &Traffic, problems: &mut Problems<'_>) -> Option<TrafficSpec> {
    let groups = match traffic.target_groups.as_slice() {
        [blue, green] if blue != green => Some([blue.clone(), green.clone()]),
        _ => {
            problems.at(&format!("{field}.target-groups"), check::TARGET_GROUPS);
            None
        }
    };
    let production = match (&traffic.listener_arn, &traffic.rule_arn) {
        (Some(listener), None) => Some(Route::Listener(listener.clone())),
        (None, Some(rule)) => Some(Route::Rule(rule.clone())),
        _ => {
            problems.at(field, check::LISTENER_OR_RULE);
            None
        }
    };
    Some(TrafficSpec {
        production: production?,
        target_groups: groups?,
        test_listener: traffic.test_listener_arn.clone(),
    })
}

/// What a target runs on: one unit in place, or two side by side behind the traffic table.
enum Units {
    One(String),
    Pair([String; 2], TrafficSpec),
}

/// The units `one` or `two` name (the two fields' names and values, e.g. `group` /
/// `groups`); a problem for anything but exactly one of them, well formed.
fn units(
    field: &str,
    (one, one_value): (&str, &Option<String>),
    (two, two_value): (&str, &Option<Vec<String>>),
    service: &Service,
    traffic: Option<TrafficSpec>,
    problems: &mut Problems<'_>,
) -> Option<Units> {
    match (one_value, two_value) {
        (Some(name), None) => Some(Units::One(name.clone())),
        (None, Some(pair)) => {
            let names = match check::pair_problem(pair) {
                None => Some([pair[0].clone(), pair[1].clone()]),
                Some(message) => {
                    problems.at(&format!("{field}.{two}"), message);
                    None
                }
            };
            if service.traffic.is_none() {
                problems.at(&format!("{field}.{two}"), check::pair_needs_traffic(two));
            }
            Some(Units::Pair(names?, traffic?))
        }
        _ => {
            problems.at(field, check::one_or_pair_problem(one, two));
            None
        }
    }
}

fn target(
    field: &str,
    service: &Service,
    traffic: Option<TrafficSpec>,
    problems: &mut Problems<'_>,
) -> Option<TargetSpec> {
    let (max, most) = match &service.target {
        Target::Ecs { .. } => (
            check::MAX_ECS_DESIRED,
            "an ECS service can run (its \"Tasks per service\" quota)",
        ),
        Target::Asg { .. } => (
            check::MAX_DESIRED,
            "deployer rolls out in one Auto Scaling group",
        ),
        Target::Eks { .. } => (
            check::MAX_DESIRED,
            "deployer rolls out in one Kubernetes Deployment",
        ),
        Target::Lambda { .. } => (0, "a Lambda function has"),
    };
    if let Some(count) = service.target.desired_count()
        && let Some(message) = check::desired_count_problem(count, max, most)
    {
        problems.at(&format!("{field}.desired-count"), message);
    }
    match &service.target {
        Target::Ecs {
            cluster,
            service: ecs_service,
            services,
            desired_count,
        } => Some(
            match units(
                field,
                ("service", ecs_service),
                ("services", services),
                service,
                traffic.clone(),
                problems,
            )? {
                Units::One(name) => TargetSpec::Ecs {
                    cluster: cluster.clone(),
                    service: name,
                    desired: *desired_count,
                    traffic,
                },
                Units::Pair(services, traffic) => TargetSpec::EcsPair {
                    cluster: cluster.clone(),
                    services,
                    desired: *desired_count,
                    traffic,
                },
            },
        ),
        Target::Asg {
            group,
            groups,
            desired_count,
        } => {
            let units = units(
                field,
                ("group", group),
                ("groups", groups),
                service,
                traffic,
                problems,
            )?;
            Some(match units {
                Units::One(group) => TargetSpec::AsgOne {
                    group,
                    desired: *desired_count,
                },
                Units::Pair(groups, traffic) => TargetSpec::AsgPair {
                    groups,
                    desired: *desired_count,
                    traffic,
                },
            })
        }
        Target::Lambda { function, alias } => {
            lambda_target(field, function, alias, service, problems)
        }
        Target::Eks {
            namespace,
            deployment,
            deployments,
            container,
            cluster,
            kubeconfig,
            context,
            desired_count,
        } => {
            let units = units(
                field,
                ("deployment", deployment),
                ("deployments", deployments),
                service,
                traffic,
                problems,
            );
            let access = match (cluster, kubeconfig) {
                (Some(name), None) => Some(KubeAccess::Eks(name.clone())),
                (None, Some(path)) => {
                    let path = relative_to(&problems.source.path, path);
                    // Read now, as `run` would, so `validate` refuses a kubeconfig that is
                    // missing, not a file, or too large, at its field.
                    if let Err(err) = deployer_engine::files::read(
                        &path,
                        deployer_engine::files::Kind::Kubeconfig,
                    ) {
                        problems.at(
                            &format!("{field}.kubeconfig"),
                            format!(
                                "cannot read {}: {err}\n  fix: point it at your kubeconfig \
                                 file (relative paths are from the config's directory), or \
                                 use `cluster` for EKS",
                                path.display()
                            ),
                        );
                    }
                    Some(KubeAccess::Kubeconfig {
                        path,
                        context: context.clone(),
                    })
                }
                (None, None) => Some(KubeAccess::Infer {
                    context: context.clone(),
                }),
                (Some(_), Some(_)) => {
                    problems.at(field, check::CLUSTER_AND_KUBECONFIG);
                    None
                }
            };
            let (namespace, container, desired) =
                (namespace.clone(), container.clone(), *desired_count);
            Some(match (units?, access?) {
                (Units::One(deployment), access) => TargetSpec::EksOne {
                    access,
                    namespace,
                    deployment,
                    container,
                    desired,
                },
                (Units::Pair(deployments, traffic), access) => TargetSpec::EksPair {
                    access,
                    namespace,
                    deployments,
                    container,
                    desired,
                    traffic,
                },
            })
        }
    }
}

/// What a Lambda service's other settings must agree with: `rolling` is refused (a
/// function has versions, not units to replace in batches), and a function ARN names
/// its region, which must be the service's (Lambda's API answers for its own region).
fn lambda_fits(
    prefix: &str,
    function: &str,
    region: Option<&str>,
    service: &Service,
    problems: &mut Problems<'_>,
) {
    if service.strategies.contains_key("rolling") {
        problems.at(
            &format!("{prefix}.strategies.rolling"),
            format!(
                "{}\n  fix: remove this table; deploy the function with {}",
                check::LAMBDA_NOT_ROLLING,
                check::LAMBDA_STRATEGIES
            ),
        );
    }
    let arn_region = function
        .strip_prefix("arn:")
        .and_then(|rest| rest.split(':').nth(2));
    if let (Some(arn_region), Some(region)) = (arn_region, region)
        && arn_region != region
    {
        problems.at(
            &format!("{prefix}.target.function"),
            format!(
                "the function's ARN is in {arn_region}, but the service's region is {region}\n  \
                 fix: set [services.NAME] aws = {{ region = \"{arn_region}\" }}, or name the \
                 function in {region}"
            ),
        );
    }
}

/// Two services deploying one Lambda alias would each move its weights over the
/// other's, each under its own lock: refused at the second service's target.
fn one_service_per_alias(services: &BTreeMap<String, ServiceConfig>, problems: &mut Problems<'_>) {
    let mut seen: BTreeMap<(&str, &str, &str), &str> = BTreeMap::new();
    for (name, service) in services {
        let TargetSpec::Lambda { function, alias } = &service.spec.target else {
            continue;
        };
        // The function as named, or the last part of its ARN; a function of the same
        // name in another region is another function.
        let function = function.rsplit(':').next().unwrap_or(function);
        let region = service.aws.region.as_deref().unwrap_or("");
        match seen.get(&(region, function, alias.as_str())) {
            Some(first) => problems.at(
                &format!("services.{name}.target"),
                format!(
                    "Lambda function {function} alias {alias} is service `{first}`'s too: two \
                     services deploying one alias would move its weights over each other's\n  \
                     fix: deploy it as one service (or give each its own alias)"
                ),
            ),
            None => {
                seen.insert((region, function, alias.as_str()), name.as_str());
            }
        }
    }
}

/// A Lambda function and alias, each a name Lambda accepts; no traffic table (the
/// alias's weights are the traffic).
fn lambda_target(
    field: &str,
    function: &str,
    alias: &str,
    service: &Service,
    problems: &mut Problems<'_>,
) -> Option<TargetSpec> {
    let mut ok = true;
    if let Some(message) = check::lambda_function_problem(function) {
        problems.at(&format!("{field}.function"), message);
        ok = false;
    }
    if let Some(message) = check::lambda_alias_problem(alias) {
        problems.at(&format!("{field}.alias"), message);
        ok = false;
    }
    if service.traffic.is_some() {
        let traffic = field.rsplit_once('.').map_or(field, |(service, _)| service);
        problems.at(
            &format!("{traffic}.traffic"),
            "a Lambda function's traffic is its alias's weights, not a load balancer's\n  \
             fix: remove the traffic table; API Gateway (or whatever invokes the function) \
             calls the alias"
                .to_string(),
        );
        ok = false;
    }
    ok.then(|| TargetSpec::Lambda {
        function: function.to_string(),
        alias: alias.to_string(),
    })
}

fn gate_point(point: GatePoint) -> EngineGatePoint {
    match point {
        GatePoint::PreDeploy => EngineGatePoint::PreDeploy,
        GatePoint::PreTraffic => EngineGatePoint::PreTraffic,
        GatePoint::PostTraffic => EngineGatePoint::PostTraffic,
        GatePoint::PostDeploy => EngineGatePoint::PostDeploy,
        GatePoint::PostRollback => EngineGatePoint::PostRollback,
        GatePoint::Bake => EngineGatePoint::Bake,
    }
}

/// The gate at `field` of service `service.0`, which has a traffic table (two sides)
/// when `service.1`, in a config with a `[prometheus]` server when `service.2`.
pub(super) fn gate_spec(
    field: &str,
    gate: &GateConfig,
    service: (&str, bool, bool),
    problems: &mut Problems<'_>,
) -> Option<GateSpec> {
    let mut found = check::gate_problems(gate);
    if matches!(gate, GateConfig::Prometheus { .. }) && !service.2 {
        found.push(
            "queries Prometheus, but no server is configured\n  fix: add a [prometheus] table \
             with its url"
                .to_string(),
        );
    }
    let templates = check::placeholder_problems(gate, service.0, service.1);
    if !found.is_empty() || !templates.is_empty() {
        for message in found {
            problems.at(field, message);
        }
        for (key, message) in templates {
            problems.at(&format!("{field}.{key}"), message);
        }
        return None;
    }
    // Every value below passed `gate_problems`; a value that still does not convert is
    // reported rather than assumed.
    let mut duration =
        |text: &Option<String>, default| problems.duration(field, text.as_deref(), default);
    let (name, at, failures, check) = match gate {
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
        } => (
            name.clone()
                .unwrap_or_else(|| format!("http:{}", deployer_engine::redact::url(url))),
            at,
            failures,
            CheckSpec::Http(HttpCheck {
                url: url.clone(),
                expect_status: expect_status.unwrap_or(200),
                body_contains: body_contains.clone(),
                max_latency: max_latency
                    .as_ref()
                    .map(|_| duration(max_latency, Duration::ZERO)),
                requests: requests.unwrap_or(10),
                min_success: min_success.unwrap_or(1.0),
                interval: duration(interval, Duration::ZERO),
            }),
        ),
        GateConfig::Alarm {
            name,
            at,
            alarms,
            failures,
        } => (
            name.clone()
                .unwrap_or_else(|| format!("alarm:{}", alarms.join(","))),
            at,
            failures,
            CheckSpec::Alarm(AlarmCheck {
                alarms: alarms.clone(),
            }),
        ),
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
        } => {
            let statistic = statistic.as_deref().unwrap_or("Average");
            let statistic = MetricStatistic::ALL
                .iter()
                .find(|(_, name)| *name == statistic)
                .map(|(s, _)| *s);
            let bound = match (max, min) {
                (Some(max), None) => Some(Bound::Max(*max)),
                (None, Some(min)) => Some(Bound::Min(*min)),
                _ => None,
            };
            let check = MetricCheck {
                namespace: namespace.clone(),
                metric: metric.clone(),
                dimensions: dimensions
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                statistic: statistic?,
                period: duration(period, Duration::from_secs(60)),
                window: duration(window, Duration::from_secs(300)),
                bound: bound?,
            };
            (
                name.clone()
                    .unwrap_or_else(|| format!("metric:{namespace}/{metric}")),
                at,
                failures,
                CheckSpec::Metric(check),
            )
        }
        GateConfig::Alb {
            name,
            at,
            max_5xx_percent,
            relative_to_stable,
            min_requests,
            max_response_time,
            min_healthy_hosts,
            period,
            window,
            no_data,
            failures,
        } => (
            name.clone()
                .unwrap_or_else(|| "alb:new-target-group".to_string()),
            at,
            failures,
            CheckSpec::Alb(AlbCheck {
                max_5xx_percent: *max_5xx_percent,
                relative_to_stable: *relative_to_stable,
                min_requests: min_requests.unwrap_or(ALB_MIN_REQUESTS),
                max_response_time: max_response_time
                    .as_ref()
                    .map(|_| duration(max_response_time, Duration::ZERO)),
                min_healthy_hosts: *min_healthy_hosts,
                period: duration(period, Duration::from_secs(60)),
                window: duration(window, Duration::from_secs(300)),
                no_data: match no_data.unwrap_or(AlbNoData::Pass) {
                    AlbNoData::Pass => NoData::Pass,
                    AlbNoData::NoData => NoData::NoData,
                    AlbNoData::Fail => NoData::Fail,
                },
            }),
        ),
        GateConfig::Prometheus {
            name,
            at,
            query,
            window,
            step,
            max,
            min,
            failures,
        } => {
            let range = window.as_ref().map(|_| {
                let window = duration(window, Duration::ZERO);
                let step = match step {
                    Some(_) => duration(step, Duration::ZERO),
                    None => default_step(window),
                };
                Range { window, step }
            });
            let bound = match (max, min) {
                (Some(max), None) => Bound::Max(*max),
                (None, Some(min)) => Bound::Min(*min),
                _ => return None,
            };
            (
                name.clone()
                    .unwrap_or_else(|| format!("prometheus:{}", truncate(query.trim(), 60))),
                at,
                failures,
                CheckSpec::Prometheus(PrometheusCheck {
                    query: query.clone(),
                    range,
                    bound,
                }),
            )
        }
    };
    Some(GateSpec {
        name,
        at: at.iter().copied().map(gate_point).collect(),
        failures: failures.unwrap_or(1),
        check,
    })
}

/// A range query's step when the config gives none: thirty points in the window, at
/// least one second apart.
pub fn default_step(window: Duration) -> Duration {
    (window / 30).max(Duration::from_secs(1))
}

/// Where strategy `name` comes from: a `[plugins.NAME]` strategy, else a built-in.
///
/// # Errors
/// When `name` is neither.
pub fn strategy_source(name: &str, raw: &RawConfig, config: &Path) -> Result<PluginSource, String> {
    if let Some(plugin) = raw.plugins.get(name) {
        let plugin = plugin.get_ref();
        if plugin.kind != ConfigPluginKind::Strategy {
            // A hook's name never hides a built-in strategy: hooks are only looked up
            // by the services that list them.
            return builtin_strategy(name)
                .map_err(|_| format!("plugin `{name}` is a hook, not a strategy"));
        }
        // Its own problems are reported at [plugins.NAME].
        return plugin_source(name, plugin, config).map_err(|(_, message)| message);
    }
    builtin_strategy(name)
}

/// Built-in strategy `name`.
///
/// # Errors
/// When there is none of that name, listing the built-ins and how to declare a plugin.
pub fn builtin_strategy(name: &str) -> Result<PluginSource, String> {
    if builtin::get(name).is_some() {
        return Ok(PluginSource::Builtin(name.to_string()));
    }
    Err(format!(
        "unknown strategy `{name}`\n  fix: use a built-in ({}) or declare [plugins.{name}] with kind = \"strategy\", path and sha256",
        builtin::names().collect::<Vec<_>>().join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    const SERVICE: &str = r#"
[services.web.target]
kind = "ecs"
cluster = "prod"
service = "web"
desired-count = 4
"#;

    /// The problems of `SERVICE` with `edit` applied, as (field, message).
    fn problems(edit: impl FnOnce(String) -> String) -> Vec<(String, String)> {
        match Config::parse(Path::new("deployer.toml"), edit(SERVICE.to_string())) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .0
                .into_iter()
                .map(|ConfigError { field, message, .. }| (field, message))
                .collect(),
        }
    }

    /// `SERVICE` with `line` added to `[services.web]`.
    fn with_setting(line: &str) -> Vec<(String, String)> {
        problems(|text| format!("[services.web]\n{line}\n{text}"))
    }

    fn only(found: &[(String, String)], field: &str, says: &[&str]) {
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, field, "{found:?}");
        for text in says {
            assert!(found[0].1.contains(text), "{text:?} in {found:?}");
        }
    }

    const PROMETHEUS: &str = "[prometheus]\nurl = \"http://prometheus:9090\"\n";

    /// `SERVICE` with a Prometheus gate of `lines`, and `[prometheus]` when `server`.
    fn prometheus_gate(server: bool, lines: &str) -> Vec<(String, String)> {
        let top = if server { PROMETHEUS } else { "" };
        problems(|text| {
            format!(
                "{top}{text}\n[[services.web.gates]]\nkind = \"prometheus\"\nat = [\"bake\"]\n{lines}\n"
            )
        })
    }

    #[test]
    fn prometheus_gates_are_checked_before_anything_runs() {
        let good = "query = 'sum(rate(http_requests_total{code=~\"5..\",release=\"{new-release}\"}[1m]))'\nmax = 0.05\nwindow = \"5m\"";
        assert!(
            prometheus_gate(true, good).is_empty(),
            "{:?}",
            prometheus_gate(true, good)
        );
        only(
            &prometheus_gate(false, good),
            "services.web.gates[0]",
            &["no server is configured", "fix: add a [prometheus] table"],
        );
        only(
            &prometheus_gate(true, "query = 'sum(rate(x[1m])'\nmax = 1.0"),
            "services.web.gates[0]",
            &["query is not PromQL"],
        );
        only(
            &prometheus_gate(true, "query = 'up'\nmax = 1.0\nmin = 0.0"),
            "services.web.gates[0]",
            &["exactly one of max or min"],
        );
        only(
            &prometheus_gate(true, "query = 'up'\nmax = 1.0\nstep = \"10s\""),
            "services.web.gates[0]",
            &["step without window"],
        );
        only(
            &prometheus_gate(
                true,
                "query = 'up'\nmax = 1.0\nwindow = \"24h\"\nstep = \"1s\"",
            ),
            "services.web.gates[0]",
            &["86400 points", "at most 11000"],
        );
        // An unknown placeholder is PromQL's to judge: `{newrelease}` is a bad matcher.
        only(
            &prometheus_gate(true, "query = 'x{newrelease}'\nmax = 1.0"),
            "services.web.gates[0]",
            &["query is not PromQL"],
        );
        only(
            &prometheus_gate(true, "query = 'x{a=`{new-release}`}'\nmax = 1.0"),
            "services.web.gates[0]",
            &["inside a backtick string"],
        );
        only(
            &prometheus_gate(
                true,
                "query = 'up'\nmax = 1.0\nwindow = \"10s\"\nstep = \"1m\"",
            ),
            "services.web.gates[0]",
            &["step is longer than window"],
        );
        only(
            &prometheus_gate(
                true,
                "query = 'x{a=\"{new-target-group-name}\"}'\nmax = 1.0",
            ),
            "services.web.gates[0].query",
            &["no [services.web.traffic] table"],
        );
    }

    #[test]
    fn the_prometheus_server_is_checked_and_never_holds_a_secret() {
        let with = |table: &str| problems(|text| format!("[prometheus]\n{table}\n{text}"));
        only(
            &with("url = \"http://admin:hunter2@prometheus:9090\""),
            "prometheus.url",
            &["holds credentials", "bearer-token-env"],
        );
        only(
            &with("url = \"prometheus:9090\""),
            "prometheus.url",
            &["http://"],
        );
        only(
            &with("url = \"http://p:9090/?x=1\""),
            "prometheus.url",
            &["without ?query"],
        );
        only(
            &with("url = \"http://p:9090\"\nbearer-token-env = \"eyJhbGciOi.J9\""),
            "prometheus.bearer-token-env",
            &["never the token itself"],
        );
        only(
            &with("url = \"http://p:9090\"\nauth = \"bearer\""),
            "prometheus.auth",
            &["needs bearer-token-env"],
        );
        only(
            &with("url = \"http://p:9090\"\nregion = \"eu-west-1\""),
            "prometheus.region",
            &["only used with auth = \"sigv4\""],
        );
        assert!(with("url = \"http://p:9090\"\nbearer-token-env = \"PROM_TOKEN\"").is_empty());
        assert!(
            with("url = \"https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1\"")
                .is_empty()
        );
    }

    #[test]
    fn plugins_say_where_they_come_from_and_what_metrics_they_read() {
        let plugin = |table: &str| {
            problems(|text| format!("{PROMETHEUS}{text}\n[plugins.j]\nkind = \"hook\"\n{table}\n"))
        };
        only(
            &plugin(""),
            "plugins.j",
            &["neither where the component is", "builtin"],
        );
        only(
            &plugin("path = \"j.wasm\""),
            "plugins.j",
            &["sha256 is required"],
        );
        only(
            &plugin("builtin = \"canary\""),
            "plugins.j.builtin",
            &["no built-in hook `canary`"],
        );
        only(
            &plugin(&format!(
                "path = \"builtin:judge\"\nsha256 = \"{}\"",
                "a".repeat(64)
            )),
            "plugins.j.path",
            &["reads as a built-in", "./builtin:judge"],
        );
        // A strategy may not take a built-in strategy's name; a hook may (hooks are only
        // ever looked up in [plugins]).
        let named = |name: &str, kind: &str| {
            problems(|text| {
                format!(
                    "{text}\n[plugins.{name}]\nkind = \"{kind}\"\npath = \"x.wasm\"\nsha256 = \"{}\"\n",
                    "a".repeat(64)
                )
            })
        };
        only(
            &named("canary", "strategy"),
            "plugins.canary",
            &["built-in strategy", "[plugins.canary-custom]"],
        );
        assert!(named("canary-custom", "strategy").is_empty());
        only(
            &named("release", "strategy"),
            "plugins.release",
            &["deployer run release NAME", "[plugins.release-train]"],
        );
        assert!(named("rolling", "hook").is_empty());
        // Names that could pass for another: a colon, a Cyrillic letter, a space, capitals.
        for name in [
            "\"builtin:canary\"",
            "\"c\u{430}nary\"",
            "\"canary \"",
            "Canary",
        ] {
            let found = named(name, "strategy");
            assert_eq!(found.len(), 1, "{name}: {found:?}");
            assert!(
                found[0].1.contains("is not a plugin name"),
                "{name}: {found:?}"
            );
        }
        only(
            &plugin(&format!(
                "builtin = \"judge\"\npath = \"j.wasm\"\nsha256 = \"{}\"",
                "a".repeat(64)
            )),
            "plugins.j.builtin",
            &["remove path and sha256"],
        );
        only(
            &plugin(&format!(
                "path = \"j.wasm\"\nsha256 = \"{}\"\nprometheus-metrics = [\"ok_total\", \"{{job=\\\"x\\\"}}\"]",
                "a".repeat(64)
            )),
            "plugins.j.prometheus-metrics[1]",
            &["not a metric name"],
        );
        let without_server = problems(|text| {
            format!(
                "{text}\n[plugins.j]\nkind = \"hook\"\npath = \"j.wasm\"\nsha256 = \"{}\"\nprometheus-metrics = [\"x\"]\n",
                "a".repeat(64)
            )
        });
        only(
            &without_server,
            "plugins.j.prometheus-metrics",
            &["no server is configured"],
        );
    }

    #[test]
    fn a_watch_interval_under_a_second_is_refused() {
        for (text, what) in [("0s", "is zero"), ("500ms", "is too short")] {
            only(
                &with_setting(&format!("watch-interval = \"{text}\"")),
                "services.web.watch-interval",
                &[what, "at most once a second", "fix: use at least \"1s\""],
            );
        }
        assert!(with_setting("watch-interval = \"1s\"").is_empty());
    }

    #[test]
    fn a_zero_health_timeout_is_refused() {
        only(
            &with_setting("health-timeout = \"0s\""),
            "services.web.health-timeout",
            &[
                "is zero",
                "every deployment would roll back",
                "default \"10m\"",
            ],
        );
        assert!(with_setting("health-timeout = \"1s\"").is_empty());
    }

    #[test]
    fn a_zero_plugin_timeout_is_refused() {
        let plugin = format!(
            "[plugins.notify]\nkind = \"hook\"\npath = \"n.wasm\"\nsha256 = \"{}\"\ntimeout = \"0ms\"\n",
            "a".repeat(64)
        );
        only(
            &problems(|text| format!("{text}\n{plugin}")),
            "plugins.notify.timeout",
            &["is zero", "every call of the plugin would time out"],
        );
    }

    #[test]
    fn zero_gate_durations_are_refused_naming_the_key() {
        let gate = "[[services.web.gates]]\nkind = \"metric\"\nat = [\"bake\"]\nnamespace = \"AWS/ECS\"\nmetric = \"CPUUtilization\"\nmax = 90.0\nperiod = \"0s\"\n";
        only(
            &problems(|text| format!("{text}\n{gate}")),
            "services.web.gates[0]",
            &["period: `0s` is zero", "fix: use at least \"1s\""],
        );
    }

    #[test]
    fn desired_counts_beyond_what_the_target_takes_are_refused() {
        let count = |kind: &str, n: u64| {
            problems(|text| {
                let text = text.replace("desired-count = 4", &format!("desired-count = {n}"));
                match kind {
                    "asg" => text.replace(
                        "kind = \"ecs\"\ncluster = \"prod\"\nservice = \"web\"",
                        "kind = \"asg\"\ngroup = \"web\"",
                    ),
                    "eks" => text.replace(
                        "kind = \"ecs\"\ncluster = \"prod\"\nservice = \"web\"",
                        "kind = \"eks\"\nnamespace = \"prod\"\ndeployment = \"web\"",
                    ),
                    _ => text,
                }
            })
        };
        for (kind, max) in [("ecs", 5_000), ("asg", 10_000), ("eks", 10_000)] {
            assert!(count(kind, max).is_empty(), "{kind}: {max}");
            assert!(count(kind, 1).is_empty(), "{kind}: 1");
            only(
                &count(kind, 0),
                "services.web.target.desired-count",
                &["0 units cannot run a release or carry traffic", "from 1 to"],
            );
            for n in [max + 1, u64::from(u32::MAX)] {
                only(
                    &count(kind, n),
                    "services.web.target.desired-count",
                    &[&format!("{n} is more than {max}, the most"), "fix: "],
                );
            }
        }
        // Past u32 the file does not even read as a count.
        let found = count("ecs", 1 << 32);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].0.starts_with("services.web.target"), "{found:?}");
    }
}
