//! The shape of `deployer.toml` as serde reads it (and as `deployer schema config`
//! publishes it for editors). Values stay as written here; [`super::resolve`] turns
//! them into typed specs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// Where a gate runs: a lifecycle point, or continuously during bakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GatePoint {
    PreDeploy,
    PreTraffic,
    PostTraffic,
    PostDeploy,
    PostRollback,
    Bake,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    #[serde(default)]
    pub aws: Aws,
    #[serde(default)]
    pub state: StateConfig,
    /// The Prometheus server that `kind = "prometheus"` gates and hooks granted
    /// `prometheus-metrics` query.
    #[serde(default)]
    pub prometheus: Option<PrometheusConfig>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Service>")]
    pub services: BTreeMap<String, Spanned<Service>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, PluginConfig>")]
    pub plugins: BTreeMap<String, Spanned<PluginConfig>>,
    /// Several services deployed as one release (`deployer run release NAME`): in
    /// waves, and rolled back together when any of them fails.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Release>")]
    pub releases: BTreeMap<String, Spanned<Release>>,
}

/// A release of several services.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Release {
    /// The services in the order they go out, e.g. `[["api", "worker"], ["web"]]`: the
    /// services of a wave deploy at once, and a wave begins once every service of the
    /// one before is promoted.
    pub waves: Vec<Vec<String>>,
    /// The strategy of every service of the release that `strategies` does not name,
    /// e.g. "canary" (its parameters are the service's own `strategies.canary`).
    #[serde(default)]
    pub strategy: Option<String>,
    /// The strategy of single services, e.g. `{ web = "blue-green" }`.
    #[serde(default)]
    pub strategies: BTreeMap<String, String>,
    /// How long to wait after each wave but the last before the next begins, the
    /// release's gates watching, e.g. "5m" (default "0s").
    #[serde(default)]
    pub bake: Option<String>,
    /// How often the release's gates are checked during a bake, e.g. "30s" (the
    /// default; at least "1s").
    #[serde(default)]
    pub watch_interval: Option<String>,
    /// Gates over the whole release (`at = ["bake"]`), checked during the bakes between
    /// waves: a failure rolls every service of the release back.
    #[serde(default)]
    #[schemars(with = "Vec<GateConfig>")]
    pub gates: Vec<Spanned<GateConfig>>,
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
    /// How long the `aws` backend's lock lives without renewal, e.g. "60s" (the
    /// default): a run that died holding it frees it after at most this long, and a run
    /// that cannot renew it stops before its next change.
    #[serde(default)]
    pub lease: Option<String>,
}

/// A Prometheus server: self-run, or an Amazon Managed Service for Prometheus workspace.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PrometheusConfig {
    /// Its base URL, e.g. "http://prometheus.monitoring:9090", or an AMP workspace
    /// "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-…" (queries go to
    /// URL/api/v1/query and URL/api/v1/query_range).
    pub url: String,
    /// "none", "bearer" (a token from `bearer-token-env`) or "sigv4" (AWS credentials,
    /// for AMP). Default: "sigv4" for an AMP URL, "bearer" when `bearer-token-env` is
    /// set, else "none".
    #[serde(default)]
    pub auth: Option<PrometheusAuthKind>,
    /// The environment variable holding the bearer token (never the token itself).
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// SigV4's region (default: the AMP URL's, else aws.region / AWS_REGION).
    #[serde(default)]
    pub region: Option<String>,
    /// The longest one query may take, e.g. "10s" (the default).
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PrometheusAuthKind {
    None,
    Bearer,
    Sigv4,
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
            lease: None,
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
    /// Where this service lives when it is not where `[aws]` says, e.g.
    /// `{ region = "eu-west-1" }`: a release may span regions.
    #[serde(default)]
    pub aws: Option<Aws>,
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
    /// How long new units may take to become healthy, e.g. "10m" (more than zero).
    #[serde(default)]
    pub health_timeout: Option<String>,
    /// How often `bake` gates are checked during a bake, e.g. "30s" (at least "1s").
    #[serde(default)]
    pub watch_interval: Option<String>,
    #[serde(default)]
    pub on_interrupted: OnInterrupted,
    /// A strategy that asks for more steps than this is rolled back (default 1000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100000))]
    pub max_steps: Option<u32>,
    /// A run that goes on longer than this is rolled back, e.g. "6h" (default "24h").
    #[serde(default)]
    pub max_duration: Option<String>,
    /// After promotion, keep the previous release at full size without traffic this
    /// long, e.g. "30m" (default "0s": scaled down at once), so `deployer rollback`
    /// meanwhile only moves traffic. Then the next deployer command on the service, or
    /// `deployer tidy`, scales it down. Side-by-side targets only (at most "168h").
    #[serde(default)]
    pub scale_down_delay: Option<String>,
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
    /// The new side's target group on its load balancer (CloudWatch AWS/ApplicationELB):
    /// 5xx ratio, response time, healthy hosts. Needs a traffic table.
    #[serde(rename_all = "kebab-case")]
    Alb {
        name: Option<String>,
        at: Vec<GatePoint>,
        /// The new side's 5xx responses may be at most this percent of its requests
        /// (HTTPCode_Target_5XX_Count / RequestCount), 0 to 100.
        max_5xx_percent: Option<f64>,
        /// The new side's 5xx percentage may be at most this many points above the
        /// stable side's (0 to 100).
        relative_to_stable: Option<f64>,
        /// Below this many requests in the window a side's 5xx ratio is not judged
        /// (default 50).
        min_requests: Option<u32>,
        /// The worst period's average TargetResponseTime may be at most this, e.g. "500ms".
        max_response_time: Option<String>,
        /// HealthyHostCount (its minimum in the window) must be at least this.
        min_healthy_hosts: Option<u32>,
        /// Whole minutes, e.g. "60s" (the default): ALBs publish per minute.
        period: Option<String>,
        /// How far back to look, e.g. "5m" (the default).
        window: Option<String>,
        /// What a window without datapoints counts as: "pass" (the default), "no-data"
        /// (the strategy's `gates.no-data` decides) or "fail".
        no_data: Option<AlbNoData>,
        failures: Option<u32>,
    },
    /// A PromQL query against a bound, on the `[prometheus]` server: the worst value of
    /// any series (and, with a window, any point) decides; no series is `no-data`.
    #[serde(rename_all = "kebab-case")]
    Prometheus {
        name: Option<String>,
        at: Vec<GatePoint>,
        /// PromQL; `{new-release}`, `{stable-release}`, `{service}` and the target-group
        /// placeholders are replaced per run (escaped for a PromQL string).
        query: String,
        /// Judge every point of the last `window` (a range query), e.g. "5m"; without
        /// it, the query's value now.
        window: Option<String>,
        /// One point per `step` within the window (default: a thirtieth of it, at least
        /// "1s").
        step: Option<String>,
        max: Option<f64>,
        min: Option<f64>,
        failures: Option<u32>,
    },
}

/// What an ALB gate's window without datapoints counts as.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AlbNoData {
    Pass,
    NoData,
    Fail,
}

/// What the service runs on.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Target {
    #[serde(rename_all = "kebab-case")]
    Ecs {
        cluster: String,
        /// One service: task sets side by side (EXTERNAL controller, with a traffic
        /// table), or updated in place (ECS controller).
        #[serde(default)]
        service: Option<String>,
        /// Blue-green and canary on the ECS deployment controller: two services, behind
        /// `traffic.target-groups` in the same order; the idle one runs 0 tasks.
        #[serde(default)]
        services: Option<Vec<String>>,
        /// Tasks the service runs, at most 5000 (ECS's "Tasks per service" quota).
        /// Without it, the new side is sized from what the live side runs when the
        /// deployment begins (what its autoscaler set).
        #[serde(default)]
        desired_count: Option<u32>,
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
        /// Replicas the Deployment runs, at most 10000. Without it, the live
        /// Deployment's replicas when the deployment begins.
        #[serde(default)]
        desired_count: Option<u32>,
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
        /// Instances the group runs, at most 10000. Without it, the live group's
        /// desired capacity when the deployment begins.
        #[serde(default)]
        desired_count: Option<u32>,
    },
    /// A Lambda function deployed through an alias: a release is a published version,
    /// traffic moves by the alias's weights, and a unit is one provisioned concurrent
    /// execution (sized from the alias's provisioned concurrency when a run begins).
    #[serde(rename_all = "kebab-case")]
    Lambda {
        /// The function's name (or ARN).
        function: String,
        /// The alias production invokes (API Gateway, function URL, event sources),
        /// pointing at a published version.
        alias: String,
    },
}

impl Target {
    /// The number of units the service runs, as written (`None`: follow the live side).
    pub fn desired_count(&self) -> Option<u32> {
        match self {
            Target::Ecs { desired_count, .. }
            | Target::Eks { desired_count, .. }
            | Target::Asg { desired_count, .. } => *desired_count,
            Target::Lambda { .. } => None,
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
    /// Path of the `.wasm` component (or `builtin`): a relative path is from the folder
    /// `deployer.toml` is in, not from the directory deployer runs in.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The component's sha256 (`deployer plugin inspect FILE` prints it); required
    /// with `path`.
    #[serde(default)]
    pub sha256: Option<String>,
    /// A hook shipped inside deployer instead of a file: "judge" (the canary judge,
    /// built from plugins/judge).
    #[serde(default)]
    pub builtin: Option<String>,
    #[serde(default)]
    pub http_allow: Vec<String>,
    #[serde(default)]
    pub kv: bool,
    #[serde(default)]
    pub clock: bool,
    #[serde(default)]
    pub metrics_namespaces: Vec<String>,
    /// Prometheus metric names the hook's PromQL may select, exact or `prefix_*`
    /// (needs a `[prometheus]` server).
    #[serde(default)]
    pub prometheus_metrics: Vec<String>,
    /// Removed in contract 0.2.0: traffic and scale are the strategy's (refused when set,
    /// and left out of the published schema).
    #[serde(default)]
    #[schemars(skip)]
    pub actions: bool,
    /// Time limit of one call, e.g. "30s".
    #[serde(default)]
    pub timeout: Option<String>,
    /// Memory limit in MiB (1 to 4096: a wasm32 plugin addresses at most 4 GiB).
    #[serde(default)]
    #[schemars(range(min = 1, max = 4096))]
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
