//! `deployer.toml`: one file per project, parsed strictly and checked up front.
//!
//! Every error names the file, the line and column, the field, and what to do about it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::gates::GatePoint;
use crate::plugin::bindings::types::{TargetInfo, TargetKind};
use crate::plugin::{Grants, Limits, PluginKind, PluginSource, builtin};

/// A parsed and checked `deployer.toml`.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    source: String,
    pub aws: Aws,
    pub state: StateConfig,
    pub services: BTreeMap<String, Spanned<Service>>,
    pub plugins: BTreeMap<String, Spanned<PluginConfig>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    #[serde(default)]
    aws: Aws,
    #[serde(default)]
    state: StateConfig,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Service>")]
    services: BTreeMap<String, Spanned<Service>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, PluginConfig>")]
    plugins: BTreeMap<String, Spanned<PluginConfig>>,
}

/// AWS access. Credentials always come from the standard chain, never from here.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Aws {
    pub region: Option<String>,
    /// Send every AWS call here instead (tests, private endpoints). `AWS_ENDPOINT_URL`
    /// in the environment does the same.
    pub endpoint_url: Option<String>,
}

/// Where journals and locks live: local files (the default), or S3 + DynamoDB so
/// every CI runner and teammate shares one journal and one lock per service.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateConfig {
    #[serde(default)]
    pub backend: StateBackend,
    /// Directory of the local backend, relative to `deployer.toml`.
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
    /// S3 bucket of the `aws` backend's journals.
    pub bucket: Option<String>,
    /// DynamoDB table (partition key `pk`, a string) of the `aws` backend's locks.
    pub table: Option<String>,
    /// Key prefix inside the bucket and table, to share them between projects.
    #[serde(default)]
    pub prefix: String,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackend {
    #[default]
    Local,
    Aws,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::Local,
            dir: default_state_dir(),
            bucket: None,
            table: None,
            prefix: String::new(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(".deployer")
}

/// What to do with a deployment a killed run left unfinished.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnInterrupted {
    /// Roll it back (fail closed).
    #[default]
    Rollback,
    /// Carry on where it stopped, when the same release is deployed again.
    Resume,
}

/// One deployable service.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Service {
    pub target: Target,
    #[serde(default)]
    pub traffic: Option<Traffic>,
    /// Parameters per strategy name (`[services.web.strategies.canary]`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Map<String, serde_json::Value>>")]
    pub strategies: BTreeMap<String, Spanned<toml::Table>>,
    #[serde(default)]
    #[schemars(with = "Vec<HookRef>")]
    pub hooks: Vec<Spanned<HookRef>>,
    #[serde(default)]
    #[schemars(with = "Vec<GateConfig>")]
    pub gates: Vec<Spanned<GateConfig>>,
    /// How long new units may take to become healthy, e.g. "10m".
    #[serde(default)]
    pub health_timeout: Option<String>,
    /// How often `bake` gates are checked during a bake, e.g. "30s".
    #[serde(default)]
    pub watch_interval: Option<String>,
    #[serde(default)]
    pub on_interrupted: OnInterrupted,
}

/// A gate between steps.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum GateConfig {
    /// HTTP smoke test.
    #[serde(rename_all = "kebab-case")]
    Http {
        name: Option<String>,
        at: Vec<GatePoint>,
        url: String,
        expect_status: Option<u16>,
        body_contains: Option<String>,
        max_latency: Option<String>,
        requests: Option<u32>,
        min_success: Option<f64>,
        interval: Option<String>,
        failures: Option<u32>,
    },
    /// CloudWatch alarms that must not be in ALARM.
    #[serde(rename_all = "kebab-case")]
    Alarm {
        name: Option<String>,
        at: Vec<GatePoint>,
        alarms: Vec<String>,
        failures: Option<u32>,
    },
    /// A CloudWatch metric statistic against a bound.
    #[serde(rename_all = "kebab-case")]
    Metric {
        name: Option<String>,
        at: Vec<GatePoint>,
        namespace: String,
        metric: String,
        #[serde(default)]
        dimensions: BTreeMap<String, String>,
        statistic: Option<String>,
        period: Option<String>,
        window: Option<String>,
        max: Option<f64>,
        min: Option<f64>,
        failures: Option<u32>,
    },
}

/// What the service runs on.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Target {
    #[serde(rename_all = "kebab-case")]
    Ecs {
        cluster: String,
        service: String,
        desired_count: u32,
    },
    /// Kubernetes Deployments on EKS (or any cluster a kubeconfig reaches).
    #[serde(rename_all = "kebab-case")]
    Eks {
        namespace: String,
        /// Rolling in place: the Deployment whose rollout deployer drives and watches.
        #[serde(default)]
        deployment: Option<String>,
        /// Blue-green and canary: two Deployments, whose pods sit behind
        /// `traffic.target-groups` in the same order (TargetGroupBinding).
        #[serde(default)]
        deployments: Option<Vec<String>>,
        /// The container whose image is the release (default: the pod's only container).
        #[serde(default)]
        container: Option<String>,
        /// EKS cluster name: access by describe-cluster and a token from AWS credentials.
        #[serde(default)]
        cluster: Option<String>,
        /// Or a kubeconfig file (relative to deployer.toml); with neither, the usual
        /// `KUBECONFIG` / `~/.kube/config` / in-cluster lookup.
        #[serde(default)]
        kubeconfig: Option<PathBuf>,
        /// Context of the kubeconfig to use (default: its current context).
        #[serde(default)]
        context: Option<String>,
        desired_count: u32,
    },
    /// EC2 Auto Scaling groups; a release is a launch template version.
    #[serde(rename_all = "kebab-case")]
    Asg {
        /// Rolling in place: the group whose instances are replaced.
        #[serde(default)]
        group: Option<String>,
        /// Blue-green and canary: two groups, attached to `traffic.target-groups` in the
        /// same order.
        #[serde(default)]
        groups: Option<Vec<String>>,
        desired_count: u32,
    },
}

impl Target {
    pub fn desired_count(&self) -> u32 {
        match self {
            Target::Ecs { desired_count, .. }
            | Target::Eks { desired_count, .. }
            | Target::Asg { desired_count, .. } => *desired_count,
        }
    }
}

/// ALB routing of a service deployed side by side (blue-green, canary).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Traffic {
    /// The production listener (default action) or listener rule carrying the traffic.
    #[serde(default)]
    pub listener_arn: Option<String>,
    #[serde(default)]
    pub rule_arn: Option<String>,
    /// The two target groups the releases alternate between (blue and green).
    pub target_groups: Vec<String>,
    /// A second listener that can send test traffic to the new side only.
    #[serde(default)]
    pub test_listener_arn: Option<String>,
}

/// A hook attached to a service.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HookRef {
    /// Name of a `[plugins.NAME]` with kind = "hook".
    pub plugin: String,
    /// Lifecycle points: pre-deploy, pre-traffic, post-traffic, post-deploy,
    /// post-rollback, or bake (watched during bakes).
    pub at: Vec<GatePoint>,
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub params: toml::Table,
}

/// A plugin component and what it may do.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginConfig {
    pub kind: ConfigPluginKind,
    /// Path of the `.wasm` component, relative to `deployer.toml`.
    pub path: PathBuf,
    /// Required: the component's sha256 (`deployer plugin inspect FILE` prints it).
    pub sha256: String,
    #[serde(default)]
    pub http_allow: Vec<String>,
    #[serde(default)]
    pub kv: bool,
    #[serde(default)]
    pub clock: bool,
    #[serde(default)]
    pub metrics_namespaces: Vec<String>,
    #[serde(default)]
    pub actions: bool,
    /// Time limit of one call, e.g. "30s".
    #[serde(default)]
    pub timeout: Option<String>,
    /// Memory limit in MiB.
    #[serde(default)]
    pub memory_mib: Option<usize>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigPluginKind {
    Strategy,
    Hook,
}

/// The JSON Schema of `deployer.toml` (for editors: taplo, Even Better TOML, IDEs).
pub fn schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RawConfig);
    schema.insert("title".into(), "deployer.toml".into());
    schema.to_value()
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted path of the field, e.g. `services.web.strategies.canary.steps[1].weight`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// All problems found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A segment of a field path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Parse `steps[1].weight` into segments.
pub fn parse_field_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                segments.push(Segment::Key(rest[..open].to_string()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let close = stripped.find(']').unwrap_or(stripped.len());
                if let Ok(index) = stripped[..close].parse() {
                    segments.push(Segment::Index(index));
                }
                rest = stripped.get(close + 1..).unwrap_or("");
            }
        } else {
            segments.push(Segment::Key(rest.to_string()));
        }
    }
    segments
}

/// The dotted path of the key or value at byte `offset` of `source`, when the text is
/// valid TOML (type errors from serde carry only a span).
fn field_at(source: &str, offset: usize) -> Option<String> {
    fn in_table(table: &DeTable<'_>, offset: usize) -> Option<String> {
        for (key, value) in table.iter() {
            let name = key.get_ref().to_string();
            if key.span().contains(&offset) {
                return Some(name);
            }
            if let Some(inner) = in_value(value.get_ref(), offset) {
                return Some(if inner.starts_with('[') {
                    format!("{name}{inner}")
                } else {
                    format!("{name}.{inner}")
                });
            }
            if value.span().contains(&offset) {
                return Some(name);
            }
        }
        None
    }
    fn in_value(value: &DeValue<'_>, offset: usize) -> Option<String> {
        match value {
            // Table spans may cover only their header: search every table.
            DeValue::Table(table) => in_table(table, offset),
            DeValue::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| match in_value(item.get_ref(), offset) {
                    Some(inner) if inner.starts_with('[') => Some(format!("[{i}]{inner}")),
                    Some(inner) => Some(format!("[{i}].{inner}")),
                    None => item.span().contains(&offset).then(|| format!("[{i}]")),
                }),
            _ => None,
        }
    }
    let doc = DeTable::parse(source).ok()?;
    in_table(doc.get_ref(), offset)
}

impl Config {
    /// Read and check `path`.
    ///
    /// # Errors
    /// Every problem found, each with file, position, field and fix.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let source = std::fs::read_to_string(path).map_err(|err| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                position: None,
                field: String::new(),
                message: format!(
                    "cannot read the config: {err}\n  fix: pass --config PATH, or start from one of the files in examples/"
                ),
            }])
        })?;
        Config::parse(path, source)
    }

    /// Check config text as if read from `path`.
    ///
    /// # Errors
    /// Every problem found, each with file, position, field and fix.
    pub fn parse(path: &Path, source: String) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = toml::from_str(&source).map_err(|err| {
            let position = err.span().map(|span| line_col(&source, span.start));
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                position,
                field: err
                    .span()
                    .and_then(|span| field_at(&source, span.start))
                    .unwrap_or_default(),
                message: err.message().trim().to_string(),
            }])
        })?;
        let config = Config {
            path: path.to_path_buf(),
            source,
            aws: raw.aws,
            state: raw.state,
            services: raw.services,
            plugins: raw.plugins,
        };
        let mut errors = config.check();
        // In file order, as an editor lists them.
        errors.sort_by_key(|e| e.position.unwrap_or((usize::MAX, 0)));
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn error_at(
        &self,
        span: Option<std::ops::Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            position: span.map(|s| line_col(&self.source, s.start)),
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error about the field at dotted `path`, positioned at that field when it
    /// exists in the file (else at its closest existing parent).
    pub fn error_at_field(&self, path: &str, message: impl Into<String>) -> ConfigError {
        self.error_at(self.locate(path), path, message)
    }

    /// Byte span of the value at dotted `path` (or its nearest existing ancestor).
    pub fn locate(&self, path: &str) -> Option<std::ops::Range<usize>> {
        let doc = DeTable::parse(&self.source).ok()?;
        let mut span = None;
        let mut current: Option<&DeValue<'_>> = None;
        let root = doc.get_ref();
        for segment in parse_field_path(path) {
            let next = match (segment, current) {
                (Segment::Key(key), None) => root.get(key.as_str()),
                (Segment::Key(key), Some(DeValue::Table(table))) => table.get(key.as_str()),
                (Segment::Index(i), Some(DeValue::Array(array))) => array.get(i),
                _ => None,
            };
            match next {
                Some(value) => {
                    span = Some(value.span());
                    current = Some(value.get_ref());
                }
                None => break,
            }
        }
        span
    }

    fn check(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.state.backend == StateBackend::Aws
            && (self.state.bucket.is_none() || self.state.table.is_none())
        {
            errors.push(self.error_at_field(
                "state",
                "backend = \"aws\" needs bucket (S3, for journals) and table (DynamoDB with partition key `pk`, for locks)",
            ));
        }
        if self.services.is_empty() {
            errors.push(self.error_at(
                None,
                "services",
                "no services are defined\n  fix: add a [services.NAME] table with a target, see examples/",
            ));
        }
        for (name, plugin) in &self.plugins {
            let field = format!("plugins.{name}.sha256");
            let digest = plugin.get_ref().sha256.trim().trim_start_matches("sha256:");
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.push(self.error_at_field(
                    &field,
                    format!(
                        "`{}` is not a sha256 digest (64 hex digits)\n  fix: run `deployer plugin inspect {}` and copy its sha256",
                        plugin.get_ref().sha256,
                        plugin.get_ref().path.display()
                    ),
                ));
            }
            if let Some(timeout) = &plugin.get_ref().timeout
                && let Err(message) = parse_duration(timeout)
            {
                errors.push(self.error_at_field(&format!("plugins.{name}.timeout"), message));
            }
        }
        for (service_name, service) in &self.services {
            let service = service.get_ref();
            for (i, hook) in service.hooks.iter().enumerate() {
                let field = format!("services.{service_name}.hooks[{i}].plugin");
                match self.plugins.get(&hook.get_ref().plugin) {
                    Some(p) if p.get_ref().kind == ConfigPluginKind::Hook => {}
                    Some(_) => errors.push(self.error_at_field(
                        &field,
                        format!("plugin `{}` is a strategy, not a hook", hook.get_ref().plugin),
                    )),
                    None => errors.push(self.error_at_field(
                        &field,
                        format!(
                            "no plugin named `{}`\n  fix: declare it as [plugins.{}] with kind = \"hook\", path and sha256",
                            hook.get_ref().plugin,
                            hook.get_ref().plugin
                        ),
                    )),
                }
            }
            if let Some(traffic) = &service.traffic {
                let field = format!("services.{service_name}.traffic");
                if traffic.target_groups.len() != 2
                    || traffic.target_groups[0] == traffic.target_groups[1]
                {
                    errors.push(self.error_at_field(
                        &format!("{field}.target-groups"),
                        "needs exactly two different target group ARNs (the blue and the green side)",
                    ));
                }
                if traffic.listener_arn.is_some() == traffic.rule_arn.is_some() {
                    errors.push(self.error_at_field(
                        &field,
                        "set exactly one of listener-arn (the listener's default action) or rule-arn (a listener rule)",
                    ));
                }
            }
            for (field, message) in target_problems(service) {
                errors.push(
                    self.error_at_field(&format!("services.{service_name}.target{field}"), message),
                );
            }
            for (field, value) in [
                ("health-timeout", &service.health_timeout),
                ("watch-interval", &service.watch_interval),
            ] {
                if let Some(text) = value
                    && let Err(message) = parse_duration(text)
                {
                    errors.push(
                        self.error_at_field(&format!("services.{service_name}.{field}"), message),
                    );
                }
            }
            for (i, gate) in service.gates.iter().enumerate() {
                let field = format!("services.{service_name}.gates[{i}]");
                for message in gate.get_ref().problems() {
                    errors.push(self.error_at_field(&field, message));
                }
            }
            for strategy in service.strategies.keys() {
                if let Err(message) = self.strategy_source(strategy) {
                    errors.push(self.error_at_field(
                        &format!("services.{service_name}.strategies.{strategy}"),
                        message,
                    ));
                }
            }
        }
        errors
    }

    /// The service named `name`, or the only one when `name` is `None`.
    ///
    /// # Errors
    /// When no such service exists, or a name is needed to choose.
    pub fn service(&self, name: Option<&str>) -> Result<(&str, &Service), ConfigError> {
        let names = || self.services.keys().cloned().collect::<Vec<_>>().join(", ");
        match name {
            Some(name) => self
                .services
                .get_key_value(name)
                .map(|(k, v)| (k.as_str(), v.get_ref()))
                .ok_or_else(|| {
                    self.error_at(
                        None,
                        "services",
                        format!("no service named `{name}`; this file defines: {}", names()),
                    )
                }),
            None if self.services.len() == 1 => {
                let (k, v) = self.services.iter().next().unwrap();
                Ok((k.as_str(), v.get_ref()))
            }
            None => Err(self.error_at(
                None,
                "services",
                format!(
                    "this file defines several services ({}); choose one with --service NAME",
                    names()
                ),
            )),
        }
    }

    /// Where strategy `name` comes from: a `[plugins.NAME]` strategy, else a built-in.
    ///
    /// # Errors
    /// When `name` is neither.
    pub fn strategy_source(&self, name: &str) -> Result<PluginSource, String> {
        if let Some(plugin) = self.plugins.get(name) {
            let plugin = plugin.get_ref();
            if plugin.kind != ConfigPluginKind::Strategy {
                return Err(format!("plugin `{name}` is a hook, not a strategy"));
            }
            return Ok(PluginSource::File {
                name: name.to_string(),
                path: self.resolve(&plugin.path),
                sha256: plugin.sha256.clone(),
            });
        }
        if builtin::get(name).is_some() {
            return Ok(PluginSource::Builtin(name.to_string()));
        }
        Err(format!(
            "unknown strategy `{name}`\n  fix: use a built-in ({}) or declare [plugins.{name}] with kind = \"strategy\", path and sha256",
            builtin::names().collect::<Vec<_>>().join(", ")
        ))
    }

    /// Limits of plugin `name` (hook or custom strategy) from its config.
    pub fn plugin_limits(&self, name: &str, kind: PluginKind) -> Limits {
        let mut limits = match kind {
            PluginKind::Strategy => Limits::strategy(),
            PluginKind::Hook => Limits::hook(),
        };
        if let Some(plugin) = self.plugins.get(name).map(Spanned::get_ref) {
            if let Some(timeout) = plugin
                .timeout
                .as_deref()
                .and_then(|t| parse_duration(t).ok())
            {
                limits.timeout = timeout;
            }
            if let Some(mib) = plugin.memory_mib {
                limits.memory_bytes = mib << 20;
            }
        }
        limits
    }

    /// The capabilities plugin `name` is granted.
    pub fn plugin_grants(&self, name: &str) -> Grants {
        self.plugins
            .get(name)
            .map(|p| {
                let p = p.get_ref();
                Grants {
                    http_allow: p.http_allow.clone(),
                    kv: p.kv,
                    clock: p.clock,
                    metrics_namespaces: p.metrics_namespaces.clone(),
                    actions: p.actions,
                }
            })
            .unwrap_or_default()
    }

    /// Strategy parameters of `service` for `strategy`, as JSON (`{}` when absent).
    pub fn strategy_params(&self, service: &Service, strategy: &str) -> String {
        service
            .strategies
            .get(strategy)
            .map(|t| serde_json::to_string(t.get_ref()).expect("TOML tables serialize to JSON"))
            .unwrap_or_else(|| "{}".to_string())
    }

    /// What a strategy is told about the service's target.
    pub fn target_info(&self, service: &Service) -> TargetInfo {
        let kind = match service.target {
            Target::Ecs { .. } => TargetKind::EcsService,
            Target::Eks { .. } => TargetKind::EksDeployment,
            Target::Asg { .. } => TargetKind::AutoScalingGroup,
        };
        // Two groups or Deployments are deployed side by side, one in place; an ECS
        // service's controller is only known from AWS (`run` asks it).
        let native_rolling = !matches!(
            service.target,
            Target::Asg {
                groups: Some(_),
                ..
            } | Target::Eks {
                deployments: Some(_),
                ..
            }
        );
        TargetInfo {
            kind,
            desired_count: service.target.desired_count(),
            native_rolling,
            test_traffic: service
                .traffic
                .as_ref()
                .is_some_and(|t| t.test_listener_arn.is_some()),
        }
    }

    /// `path` relative to the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(path)
        }
    }
}

/// What is wrong with the shape of `service.target`: (field suffix, message with fix).
fn target_problems(service: &Service) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    // One unit in place, or two side by side behind the traffic table.
    let mut one_or_pair = |one: (&str, &Option<String>), two: (&str, &Option<Vec<String>>)| {
        match (one.1, two.1) {
            (Some(_), Some(_)) | (None, None) => problems.push((
                String::new(),
                format!(
                    "set exactly one of {} (rolling in place) or {} = [blue, green] (blue-green and canary)",
                    one.0, two.0
                ),
            )),
            (None, Some(pair)) => {
                if pair.len() != 2 || pair[0] == pair[1] {
                    problems.push((
                        format!(".{}", two.0),
                        "needs exactly two different names (the blue and the green side)".into(),
                    ));
                }
                if service.traffic.is_none() {
                    problems.push((
                        format!(".{}", two.0),
                        format!(
                            "two sides need a [traffic] table: the listener and the two target groups the {} sit behind, in the same order",
                            two.0
                        ),
                    ));
                }
            }
            (Some(_), None) => {}
        }
    };
    match &service.target {
        Target::Ecs { .. } => {}
        Target::Eks {
            deployment,
            deployments,
            cluster,
            kubeconfig,
            ..
        } => {
            one_or_pair(("deployment", deployment), ("deployments", deployments));
            if cluster.is_some() && kubeconfig.is_some() {
                problems.push((
                    String::new(),
                    "set at most one of cluster (EKS access with AWS credentials) or kubeconfig"
                        .into(),
                ));
            }
        }
        Target::Asg { group, groups, .. } => one_or_pair(("group", group), ("groups", groups)),
    }
    problems
}

/// `"30s"`, `"5m"`, `"1h30m"`, `"250ms"`: the duration syntax shared with plugins.
///
/// # Errors
/// A message saying what a duration looks like.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    deployer_plugin_sdk::Duration::parse(text).map(|d| Duration::from_millis(d.millis))
}

/// 1-based line and column of byte `offset` in `source`.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl GateConfig {
    /// Problems a gate's fields have beyond their types.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut durations = Vec::new();
        let at = match self {
            GateConfig::Http {
                at,
                max_latency,
                interval,
                min_success,
                url,
                ..
            } => {
                durations.extend([max_latency, interval]);
                if min_success.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                    problems.push("min-success is a ratio from 0.0 to 1.0".to_string());
                }
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    problems.push(format!("url `{url}` must start with http:// or https://"));
                }
                at
            }
            GateConfig::Alarm { at, alarms, .. } => {
                if alarms.is_empty() {
                    problems.push("alarms lists no alarm names".to_string());
                }
                at
            }
            GateConfig::Metric {
                at,
                period,
                window,
                max,
                min,
                statistic,
                ..
            } => {
                durations.extend([period, window]);
                if max.is_some() == min.is_some() {
                    problems.push("set exactly one of max or min".to_string());
                }
                if let Some(stat) = statistic
                    && !["Average", "Sum", "Maximum", "Minimum", "SampleCount"]
                        .contains(&stat.as_str())
                {
                    problems.push(format!("statistic `{stat}` is not one of Average, Sum, Maximum, Minimum, SampleCount"));
                }
                at
            }
        };
        if at.is_empty() {
            problems.push("at lists no lifecycle point; e.g. at = [\"post-traffic\"]".to_string());
        }
        for text in durations.into_iter().flatten() {
            if let Err(message) = parse_duration(text) {
                problems.push(message);
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[services.web.target]
kind = "ecs"
cluster = "prod"
service = "web"
desired-count = 4

[services.web.strategies.canary]
steps = [ { weight = 10, bake = "5m" }, { weight = 50 } ]
"#;

    #[test]
    fn field_paths_parse_keys_and_indexes() {
        assert_eq!(
            parse_field_path("steps[1].weight"),
            vec![
                Segment::Key("steps".into()),
                Segment::Index(1),
                Segment::Key("weight".into())
            ]
        );
    }

    #[test]
    fn locates_nested_fields_by_line() {
        let config = Config::parse(Path::new("deployer.toml"), GOOD.into()).unwrap();
        let span = config
            .locate("services.web.strategies.canary.steps[1].weight")
            .unwrap();
        assert_eq!(line_col(GOOD, span.start).0, 9);
        let err = config.error_at_field(
            "services.web.strategies.canary.steps[1].weight",
            "too small",
        );
        assert_eq!(
            err.to_string(),
            "deployer.toml:9:52: services.web.strategies.canary.steps[1].weight: too small"
        );
    }

    #[test]
    fn unknown_fields_are_errors_with_a_position() {
        let bad = GOOD.replace("cluster = ", "clustr = ");
        let errors = Config::parse(Path::new("deployer.toml"), bad).unwrap_err();
        let text = errors.to_string();
        assert!(text.starts_with("deployer.toml:"), "{text}");
        assert!(text.contains("clustr"), "{text}");
    }

    #[test]
    fn unknown_strategies_and_bad_digests_are_reported_together() {
        let bad = format!(
            "{GOOD}\n[services.web.strategies.canery]\n\n[plugins.notify]\nkind = \"hook\"\npath = \"n.wasm\"\nsha256 = \"abc\"\n"
        );
        let errors = Config::parse(Path::new("deployer.toml"), bad)
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.field == "plugins.notify.sha256" && e.position.is_some())
        );
        assert!(
            errors
                .iter()
                .any(|e| e.field == "services.web.strategies.canery"
                    && e.message.contains("unknown strategy"))
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("soon").is_err());
    }
}
