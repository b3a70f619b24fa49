//! `deployer.toml`: one file per project, read strictly, checked and resolved once into
//! typed values.
//!
//! - [`schema`]: the file's shape, as serde reads it and `deployer schema config`
//!   publishes it.
//! - [`source`]: positions; every error names the file, line and column, the field, and
//!   what to do about it.
//! - [`check`]: checks of single values.
//! - [`resolve`]: from the file's values to typed specs (durations as durations, one
//!   target variant per shape, gates as typed checks), collecting every problem.
//!
//! Nothing outside this module reads a config value as text again.

pub mod check;
pub mod release;
pub mod resolve;
pub mod schema;
pub mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deployer_contract::{TargetInfo, TargetKind};
use deployer_engine::files::{self, Kind};
use deployer_engine::gates::GatePoint;
use deployer_engine::rollout::ResumePolicy;
use deployer_plugin_host::{Grants, Limits, PluginKind, PluginSource};
use deployer_targets::gates::GateSpec;
use deployer_targets::spec::{ServiceSpec, TargetSpec};

pub use check::parse_duration;
pub use schema::schema;
pub use source::{ConfigError, ConfigErrors};

use source::Source;

/// Units `plan` and `validate` simulate a service at when its config has no
/// desired-count (a run sizes it from the live side).
pub const PLAN_UNITS: u32 = 10;

/// A read, checked and resolved `deployer.toml`.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    source: Source,
    pub aws: AwsSettings,
    pub state: StateSpec,
    /// The `[prometheus]` server, when there is one.
    pub prometheus: Option<deployer_targets::prometheus::PrometheusSpec>,
    pub services: BTreeMap<String, ServiceConfig>,
    pub plugins: BTreeMap<String, PluginSpec>,
    pub releases: BTreeMap<String, ReleaseConfig>,
}

/// A release of several services (`[releases.NAME]`), resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseConfig {
    /// Service names, wave by wave; each service once.
    pub waves: Vec<Vec<String>>,
    /// The strategy of each service of the release.
    pub strategies: BTreeMap<String, String>,
    /// The wait between two waves, the release's gates watching.
    pub bake: Duration,
    pub watch_interval: Duration,
    pub gates: Vec<GateSpec>,
}

impl ReleaseConfig {
    /// The release's services, wave by wave.
    pub fn services(&self) -> impl Iterator<Item = (usize, &str)> {
        self.waves
            .iter()
            .enumerate()
            .flat_map(|(wave, names)| names.iter().map(move |name| (wave, name.as_str())))
    }
}

/// AWS access. Credentials always come from the standard chain, never from config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Where journals and locks live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateSpec {
    /// Local files in `dir` (relative to the working directory).
    Local { dir: PathBuf },
    /// Journals in an S3 bucket, locks as DynamoDB leases, under `prefix`.
    Aws {
        bucket: String,
        table: String,
        prefix: String,
        /// The lock's time to live without renewal.
        lease: std::time::Duration,
    },
}

/// One deployable service, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceConfig {
    /// The target and how long its units may take.
    pub spec: ServiceSpec,
    /// AWS access for this service: its own `aws` table over `[aws]`.
    pub aws: AwsSettings,
    pub gates: Vec<GateSpec>,
    pub hooks: Vec<HookSpec>,
    /// Parameters per strategy name, as the JSON object strategies receive.
    pub strategies: BTreeMap<String, String>,
    /// How often `bake` gates are checked during a bake.
    pub watch_interval: Duration,
    pub on_interrupted: ResumePolicy,
    /// The run's caps: steps asked of the strategy, and time.
    pub max_steps: u32,
    pub max_duration: Duration,
    /// How long the previous release stays warm after promotion (zero: not at all).
    pub scale_down_delay: Duration,
}

/// A hook attached to a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookSpec {
    /// Name of its `[plugins.NAME]`.
    pub plugin: String,
    pub at: Vec<GatePoint>,
    /// Parameters, as the JSON object the hook receives.
    pub params: String,
}

/// A `[plugins.NAME]` component and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginSpec {
    pub kind: PluginKind,
    /// A file (with its required sha256), or a built-in hook.
    pub source: PluginSource,
    pub limits: Limits,
    pub grants: Grants,
}

/// The most parameter problems reported from one strategy: each is located in the
/// file, and a plugin (or a config of 100,000 bad steps) may return any number.
pub const MAX_PARAM_ERRORS: usize = 50;

impl Config {
    /// Read, check and resolve `path`.
    ///
    /// # Errors
    /// Every problem found, each with file, position, field and fix.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let source = files::read_text(path, Kind::Config).map_err(|err| {
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

    /// Check and resolve config text as if read from `path`.
    ///
    /// # Errors
    /// Every problem found, each with file, position, field and fix.
    pub fn parse(path: &Path, text: String) -> Result<Config, ConfigErrors> {
        let source = Source::new(path, text);
        let raw: schema::RawConfig = toml::from_str(&source.text)
            .map_err(|err| ConfigErrors(vec![source.parse_error(&err)]))?;
        let resolved = resolve::resolve(raw, &source).map_err(ConfigErrors)?;
        Ok(Config {
            path: path.to_path_buf(),
            source,
            aws: resolved.aws,
            state: resolved.state,
            prometheus: resolved.prometheus,
            services: resolved.services,
            plugins: resolved.plugins,
            releases: resolved.releases,
        })
    }

    /// An error about the field at dotted `path`, positioned at that field when it
    /// exists in the file (else at its closest existing parent).
    pub fn error_at_field(&self, path: &str, message: impl Into<String>) -> ConfigError {
        self.source.error_at_field(path, message)
    }

    /// The service named `name`, or the only one when `name` is `None`.
    ///
    /// # Errors
    /// When no such service exists, or a name is needed to choose.
    pub fn service(&self, name: Option<&str>) -> Result<(&str, &ServiceConfig), ConfigError> {
        let names = || self.services.keys().cloned().collect::<Vec<_>>().join(", ");
        let found = match name {
            Some(name) => self.services.get_key_value(name),
            None if self.services.len() == 1 => self.services.iter().next(),
            None => {
                return Err(self.source.error_at(
                    None,
                    "services",
                    format!(
                        "this file defines several services ({}); choose one with --service NAME",
                        names()
                    ),
                ));
            }
        };
        found.map(|(k, v)| (k.as_str(), v)).ok_or_else(|| {
            self.source.error_at(
                None,
                "services",
                format!(
                    "no service named `{}`; this file defines: {}",
                    name.unwrap_or_default(),
                    names()
                ),
            )
        })
    }

    /// Where strategy `name` comes from: a `[plugins.NAME]` strategy, else a built-in.
    ///
    /// # Errors
    /// When `name` is neither.
    pub fn strategy_source(&self, name: &str) -> Result<PluginSource, String> {
        match self.plugins.get(name) {
            Some(plugin) if plugin.kind == PluginKind::Strategy => Ok(plugin.source.clone()),
            // A hook's name never hides a built-in strategy.
            Some(_) => resolve::builtin_strategy(name)
                .map_err(|_| format!("plugin `{name}` is a hook, not a strategy")),
            None => resolve::builtin_strategy(name),
        }
    }

    /// Limits of strategy `name`: its `[plugins.NAME]` settings, or the defaults.
    pub fn strategy_limits(&self, name: &str) -> Limits {
        self.plugins
            .get(name)
            .map_or_else(Limits::strategy, |p| p.limits)
    }

    /// Strategy parameters of `service` for `strategy`, as JSON (`{}` when absent).
    pub fn strategy_params(service: &ServiceConfig, strategy: &str) -> String {
        service
            .strategies
            .get(strategy)
            .cloned()
            .unwrap_or_else(|| "{}".to_string())
    }

    /// What a strategy is told about the service's target. Whether an ECS service rolls
    /// in place is only known for sure from AWS (its deployment controller); with a
    /// traffic table it runs task sets side by side, without one it rolls in place
    /// (`run` checks against what AWS says before anything changes).
    /// [`Config::target_info`] for simulating a plan: a service sized from the live side
    /// at run time is shown at [`PLAN_UNITS`].
    pub fn planned_target_info(service: &ServiceConfig) -> TargetInfo {
        let mut target = Self::target_info(service);
        if target.desired_count == 0 {
            target.desired_count = PLAN_UNITS;
        }
        target
    }

    pub fn target_info(service: &ServiceConfig) -> TargetInfo {
        let target = &service.spec.target;
        let (kind, native_rolling) = match target {
            TargetSpec::Ecs { traffic, .. } => (TargetKind::EcsService, traffic.is_none()),
            TargetSpec::EcsPair { .. } => (TargetKind::EcsService, false),
            TargetSpec::AsgOne { .. } => (TargetKind::AutoScalingGroup, true),
            TargetSpec::AsgPair { .. } => (TargetKind::AutoScalingGroup, false),
            TargetSpec::EksOne { .. } => (TargetKind::EksDeployment, true),
            TargetSpec::EksPair { .. } => (TargetKind::EksDeployment, false),
            // The contract (0.3) has no kind for a Lambda function; a strategy sees it
            // as what it drives the same way: two sides, traffic by weights, units to
            // scale (docs/targets.md, "Lambda functions").
            TargetSpec::Lambda { .. } => (TargetKind::EcsService, false),
        };
        TargetInfo {
            kind,
            // 0: not configured; `run` sizes the deployment from the live side.
            desired_count: target.desired().unwrap_or(0),
            native_rolling,
            test_traffic: target.traffic().is_some_and(|t| t.test_listener.is_some()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::source::{Segment, line_col, parse_field_path};
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
            .source
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
