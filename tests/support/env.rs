//! The end-to-end environment: moto with a world in it, clients for it, and a working
//! directory for `deployer.toml` and the binary's local journal ([`Env`]), with what the
//! world needs while it runs: the stand-in ECS agent ([`EcsEnv`]), nothing for Auto
//! Scaling ([`AsgEnv`]), a Kubernetes namespace and its kubelet ([`EksEnv`]).
//!
//! Each kind writes its usual `deployer.toml` with [`ConfigBuilder`], which tests
//! change before [`Env::write`], and answers what the suites ask of the cloud after a
//! run: listener weights, task sets, groups, Deployments.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use deployer_targets::aws::Clients;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};

use super::config::{ConfigBuilder, Service};
use super::kube::{Kubelet, cluster, deployment};
use super::{AsgWorld, EcsAgent, LambdaWorld, Moto, PairWorld, World, cli, ecs_service};

/// Moto, the world created in it, clients for it and a working directory; `extra` is
/// what else the world needs kept alive (or knows) while the test runs.
pub struct Env<W, X = ()> {
    pub moto: Moto,
    pub world: W,
    pub clients: Clients,
    pub dir: tempfile::TempDir,
    pub extra: X,
}

/// The ECS world (`support/moto_world.py`), its agent playing the tasks.
pub type EcsEnv = Env<World, EcsAgent>;
/// The Auto Scaling world (`support/moto_asg_world.py`).
pub type AsgEnv = Env<AsgWorld>;
/// The ECS world's load balancer in front of Deployments in a Kubernetes namespace.
pub type EksEnv = Env<World, Namespace>;

/// A team's autoscaled ECS service pair (`support/moto_pair_world.py`), its agent playing
/// the tasks.
pub type EcsPairEnv = Env<PairWorld, EcsAgent>;

/// The Lambda world (`support/moto_lambda_world.py`): function `api` behind alias `live`.
pub type LambdaEnv = Env<LambdaWorld>;

impl LambdaEnv {
    /// The world with `provisioned` concurrency on the alias (0: none), in `moto`.
    pub async fn start_on(moto: Moto, provisioned: u32) -> LambdaEnv {
        Env::new(moto, |m| m.lambda_world(provisioned)).await
    }

    /// A `deployer.toml` with service `api` on function `api` alias `live`.
    pub fn function(&self) -> ConfigBuilder {
        self.config().service("api", |s| {
            s.health_timeout("10s").target(|t| {
                t.str("kind", "lambda")
                    .str("function", "api")
                    .str("alias", "live")
            })
        })
    }

    /// The alias as Lambda reports it: its version and its weights, sorted.
    pub async fn alias(&self) -> (String, Vec<(String, f64)>) {
        let out = self
            .clients
            .lambda
            .get_alias()
            .function_name("api")
            .name("live")
            .send()
            .await
            .unwrap();
        let mut weights: Vec<(String, f64)> = out
            .routing_config()
            .and_then(|r| r.additional_version_weights())
            .map(|w| w.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        (out.function_version().unwrap().to_string(), weights)
    }

    /// Provisioned concurrency asked for version or alias `qualifier`, if any.
    pub async fn provisioned(&self, qualifier: &str) -> Option<i32> {
        self.clients
            .lambda
            .get_provisioned_concurrency_config()
            .function_name("api")
            .qualifier(qualifier)
            .send()
            .await
            .ok()
            .and_then(|c| c.requested_provisioned_concurrent_executions())
    }
}

/// An ALB listener whose default action splits traffic between two target groups.
pub trait Alb {
    /// The listener, then the blue and the green target group.
    fn alb(&self) -> [&str; 3];
}

impl Alb for World {
    fn alb(&self) -> [&str; 3] {
        [&self.listener, &self.blue, &self.green]
    }
}

impl Alb for PairWorld {
    fn alb(&self) -> [&str; 3] {
        [&self.listener, &self.blue, &self.green]
    }
}

impl Alb for AsgWorld {
    fn alb(&self) -> [&str; 3] {
        [&self.listener, &self.blue, &self.green]
    }
}

impl<W> Env<W> {
    async fn new(moto: Moto, world: impl FnOnce(&Moto) -> W) -> Self {
        let world = world(&moto);
        let clients = moto.clients().await;
        Env {
            moto,
            world,
            clients,
            dir: tempfile::tempdir().unwrap(),
            extra: (),
        }
    }

    fn with<X>(self, extra: X) -> Env<W, X> {
        Env {
            moto: self.moto,
            world: self.world,
            clients: self.clients,
            dir: self.dir,
            extra,
        }
    }
}

impl<W, X> Env<W, X> {
    /// Auto Scaling group `name` as it is now.
    pub async fn group(&self, name: &str) -> Group {
        group_of(&self.clients, name).await
    }

    /// A `deployer.toml` with only the `[aws]` header, pointing at moto.
    pub fn config(&self) -> ConfigBuilder {
        ConfigBuilder::new().aws(&self.moto.endpoint)
    }

    /// Write `config` as the working directory's `deployer.toml`.
    pub fn write(&self, config: &ConfigBuilder) {
        config.write(self.dir.path());
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        cli::command(self.dir.path(), args)
    }

    pub async fn deployer(&self, args: &[&str]) -> (i32, String, String) {
        cli::deployer(self.dir.path(), args).await
    }

    /// `deployer run STRATEGY --service SERVICE --release RELEASE` (for worlds of more
    /// than one service).
    pub async fn run(&self, strategy: &str, service: &str, release: &str) -> (i32, String, String) {
        self.deployer(&["run", strategy, "--service", service, "--release", release])
            .await
    }

    /// Start `deployer ARGS` with its output captured: a run the test will signal and
    /// then read (`wait_with_output`).
    pub fn spawn_captured(&self, args: &[&str]) -> tokio::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Start `deployer ARGS` with its output discarded: a run the test will kill.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// The traffic shares of the newest journal of service `web`, in order.
    pub fn journal_shifts(&self) -> Vec<u8> {
        let deployments = self.dir.path().join(".deployer/services/web/deployments");
        let files = super::journals_oldest_first(&deployments);
        let text = std::fs::read_to_string(files.last().unwrap()).unwrap();
        text.lines()
            .filter_map(|line| {
                let record: serde_json::Value = serde_json::from_str(line).unwrap();
                record
                    .pointer("/action/step/ShiftTraffic")
                    .map(|p| p.as_u64().unwrap() as u8)
            })
            .collect()
    }
}

/// SIGKILL `child` and reap it: none of its cleanup code runs.
pub async fn sigkill(mut child: tokio::process::Child) {
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

impl<W: Alb, X> Env<W, X> {
    /// (blue %, green %) as the listener reports them.
    pub async fn weights(&self) -> (u8, u8) {
        let [listener, blue, green] = self.world.alb();
        let router = deployer_targets::aws::alb::AlbRouter {
            elb: self.clients.elb.clone(),
            production: deployer_targets::aws::alb::Route::Listener(listener.to_string()),
            test_listener: None,
        };
        let weights = router.weights().await.unwrap();
        (
            deployer_targets::aws::alb::share_of(&weights, blue),
            deployer_targets::aws::alb::share_of(&weights, green),
        )
    }

    /// Set the listener's weights to (blue %, green %) behind deployer's back.
    pub async fn set_weights(&self, blue: i32, green: i32) {
        use aws_sdk_elasticloadbalancingv2::types::{
            Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
        };
        let [listener, blue_tg, green_tg] = self.world.alb();
        let group = |arn: &str, weight| {
            TargetGroupTuple::builder()
                .target_group_arn(arn)
                .weight(weight)
                .build()
        };
        self.clients
            .elb
            .modify_listener()
            .listener_arn(listener)
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .forward_config(
                        ForwardActionConfig::builder()
                            .target_groups(group(blue_tg, blue))
                            .target_groups(group(green_tg, green))
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// Wait (a minute at most, else fail with `what`) until the weights are `done`.
    pub async fn wait_for_weights(&self, what: &str, done: impl Fn((u8, u8)) -> bool) {
        let started = Instant::now();
        while !done(self.weights().await) {
            assert!(started.elapsed() < Duration::from_secs(60), "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `deployer run STRATEGY --service web --release RELEASE` promotes the release: all
    /// traffic on green, and a canary's journal shows it shifted through
    /// `canary_shifts`.
    pub async fn promote_web(&self, strategy: &str, release: &str, canary_shifts: &[u8]) {
        let (code, out, err) = self.run(strategy, "web", release).await;
        assert_eq!(code, 0, "{strategy}: {out}\n{err}");
        assert!(out.contains("promoted"), "{out}");
        assert_eq!(self.weights().await, (0, 100), "{strategy}");
        if strategy == "canary" {
            assert_eq!(self.journal_shifts(), canary_shifts);
        }
    }

    /// The same run with a failing smoke test of 3 requests (green is live): it rolls
    /// back and all traffic stays on green.
    pub async fn fail_web(&self, strategy: &str, release: &str) {
        let (code, out, err) = self.run(strategy, "web", release).await;
        assert_eq!(code, 1, "{strategy}: {out}\n{err}");
        assert!(
            out.contains("rolled back") && out.contains("0/3 requests"),
            "{out}"
        );
        assert_eq!(
            self.weights().await,
            (0, 100),
            "{strategy}: traffic stays on 2"
        );
    }

    /// `deployer rollback --service web` after `strategy` promoted green: all traffic
    /// back on blue, and `live` is the live release again.
    pub async fn rollback_web(&self, strategy: &str, live: &str) {
        let (code, out, err) = self.deployer(&["rollback", "--service", "web"]).await;
        assert_eq!(code, 0, "{strategy}: {out}\n{err}");
        assert_eq!(self.weights().await, (100, 0), "{strategy}: back on 1");
        let (_, status, _) = self.deployer(&["status", "--service", "web"]).await;
        assert!(status.contains(&format!("live:    {live}")), "{status}");
    }

    /// Start `deployer ARGS` and SIGKILL it once the weights are `done` (waiting as
    /// [`Env::wait_for_weights`] does): a run killed mid-rollout, no cleanup code run.
    pub async fn kill_when(&self, args: &[&str], what: &str, done: impl Fn((u8, u8)) -> bool) {
        let child = self.spawn(args);
        self.wait_for_weights(what, done).await;
        sigkill(child).await;
    }

    /// `service` on two sides behind the listener (no test listener), smoke-tested by 3
    /// requests to `url` after each shift, with these canary steps and blue-green
    /// without test traffic.
    fn pair_behind_listener(&self, service: Service, url: &str, steps: &str) -> Service {
        let [listener, blue, green] = self.world.alb();
        service
            .listener(listener, None, [blue, green])
            .http_gate(&["post-traffic"], url, 3)
            .canary_steps(steps)
            .strategy("blue-green", |p| p.bool("test-traffic", false))
    }
}

impl EcsPairEnv {
    /// The pair with its agent; deployments of the task definitions in `broken` fail.
    pub async fn start(broken: &[&str]) -> EcsPairEnv {
        let env = Env::new(Moto::start(broken), Moto::pair_world).await;
        let agent = EcsAgent::start(
            env.clients.clone(),
            broken.iter().map(|s| s.to_string()).collect(),
        );
        env.with(agent)
    }

    /// Service `store`: the pair behind the listener, no desired-count (sized from the
    /// live side), canary `steps`, a smoke test against `url` after each shift.
    pub fn store(&self, url: &str, steps: &str) -> ConfigBuilder {
        let world = &self.world;
        self.config().service("store", |s| {
            s.health_timeout("10s")
                .watch_interval("1s")
                .target(|t| {
                    t.str("kind", "ecs")
                        .str("cluster", "prod")
                        .strs("services", &["store-blue", "store-green"])
                })
                .listener(&world.listener, None, [&world.blue, &world.green])
                .http_gate(&["post-traffic"], url, 3)
                .canary_steps(steps)
        })
    }

    /// (desired count, task definition) of each service of the pair, blue first.
    pub async fn services(&self) -> [(i32, String); 2] {
        let out = self
            .clients
            .ecs
            .describe_services()
            .cluster("prod")
            .services("store-blue")
            .services("store-green")
            .send()
            .await
            .unwrap();
        let of = |name: &str| {
            let s = out
                .services()
                .iter()
                .find(|s| s.service_name() == Some(name))
                .unwrap();
            let td = s.task_definition().unwrap_or_default();
            (
                s.desired_count(),
                td.rsplit('/').next().unwrap_or(td).to_string(),
            )
        };
        [of("store-blue"), of("store-green")]
    }

    /// Each service's scalable target: (min, max, any scaling suspended), blue first.
    pub async fn scaling(&self) -> [(i32, i32, bool); 2] {
        let out = self
            .clients
            .app_autoscaling
            .describe_scalable_targets()
            .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
            .send()
            .await
            .unwrap();
        let of = |name: &str| {
            let t = out
                .scalable_targets()
                .iter()
                .find(|t| t.resource_id() == format!("service/prod/{name}"))
                .unwrap();
            let s = t.suspended_state();
            let suspended = s.is_some_and(|s| {
                s.dynamic_scaling_in_suspended() == Some(true)
                    || s.dynamic_scaling_out_suspended() == Some(true)
                    || s.scheduled_scaling_suspended() == Some(true)
            });
            (t.min_capacity(), t.max_capacity(), suspended)
        };
        [of("store-blue"), of("store-green")]
    }
}

impl EcsEnv {
    /// The ECS world with its agent; deployments of the task definitions in `broken`
    /// fail and their tasks never get healthy.
    pub async fn start(broken: &[&str]) -> EcsEnv {
        let env = Env::new(Moto::start(broken), Moto::ecs_world).await;
        let agent = EcsAgent::start(
            env.clients.clone(),
            broken.iter().map(|s| s.to_string()).collect(),
        );
        env.with(agent)
    }

    /// The world with [`EcsEnv::task_sets`] written: `web` smoke-tested against `url`.
    pub async fn with_task_sets(url: &str, canary_steps: &str) -> EcsEnv {
        let env = EcsEnv::start(&[]).await;
        env.write(&env.task_sets(url, canary_steps));
        env
    }

    /// Service `web` as the world has it: task sets of prod/web (4 tasks) behind the
    /// listener's blue and green target groups, test traffic on the test listener.
    pub fn task_set_web(&self, service: Service) -> Service {
        let world = &self.world;
        service.ecs("prod", "web", 4).listener(
            &world.listener,
            Some(&world.test_listener),
            [&world.blue, &world.green],
        )
    }

    /// `web` on task sets with an HTTP smoke test against `url` before and after each
    /// shift and the `web-5xx` alarm gate; these canary steps, a short blue-green bake.
    pub fn task_sets(&self, url: &str, canary_steps: &str) -> ConfigBuilder {
        self.config().service("web", |s| {
            self.task_set_web(s.health_timeout("5s").watch_interval("1s"))
                .http_gate(&["pre-traffic", "post-traffic"], url, 5)
                .alarm_gate(&["post-traffic", "bake"], &["web-5xx"])
                .canary_steps(canary_steps)
                .strategy("blue-green", |p| p.str("bake", "300ms"))
        })
    }

    /// The in-place service `api` (ECS deployment controller, 2 tasks), smoke-tested
    /// against `url` after the rollout.
    pub fn in_place(&self, url: &str) -> ConfigBuilder {
        self.config().service("api", |s| {
            s.health_timeout("5s")
                .ecs("prod", "api", 2)
                .http_gate(&["post-traffic"], url, 3)
                .strategy("rolling", |p| p.int("min-healthy-percent", 50))
        })
    }

    /// The task definition of `web`'s primary task set, and how many task sets exist.
    pub async fn primary(&self) -> (String, usize) {
        let service = ecs_service(&self.clients, "web").await.unwrap().unwrap();
        let sets = service.task_sets();
        let primary = sets.iter().find(|t| t.status() == Some("PRIMARY")).unwrap();
        let def = primary
            .task_definition()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        (def, sets.len())
    }

    /// The `api` service's task definition, and its primary deployment's task definition
    /// and rollout state.
    pub async fn api(&self) -> (String, String, String) {
        let service = ecs_service(&self.clients, "api").await.unwrap().unwrap();
        let short = |s: &str| s.rsplit('/').next().unwrap().to_string();
        let primary = service
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"))
            .unwrap();
        (
            short(service.task_definition().unwrap()),
            short(primary.task_definition().unwrap()),
            primary
                .rollout_state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        )
    }

    /// Put the `web-5xx` alarm in `state`.
    pub async fn set_alarm(&self, state: aws_sdk_cloudwatch::types::StateValue) {
        self.clients
            .cloudwatch
            .set_alarm_state()
            .alarm_name("web-5xx")
            .state_value(state)
            .state_reason("test")
            .send()
            .await
            .unwrap();
    }

    /// Keys in the `deployer-state` bucket.
    pub async fn s3_keys(&self) -> Vec<String> {
        let out = self
            .clients
            .s3
            .list_objects_v2()
            .bucket("deployer-state")
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }
}

/// One group's state: template version → in-service instances, and desired capacity.
#[derive(Debug, PartialEq)]
pub struct Group {
    pub versions: BTreeMap<String, u32>,
    pub desired: u32,
}

/// Auto Scaling group `name` as `clients` (of its region) see it now.
pub async fn group_of(clients: &Clients, name: &str) -> Group {
    let out = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    let g = &out.auto_scaling_groups()[0];
    let mut versions = BTreeMap::new();
    for i in g.instances() {
        let v = i.launch_template().and_then(|t| t.version()).unwrap();
        *versions.entry(v.to_string()).or_insert(0) += 1;
    }
    Group {
        versions,
        desired: g.desired_capacity().unwrap() as u32,
    }
}

/// A [`Group`] with these (version, instances) and desired capacity.
pub fn group(versions: &[(&str, u32)], desired: u32) -> Group {
    Group {
        versions: versions.iter().map(|(v, n)| (v.to_string(), *n)).collect(),
        desired,
    }
}

impl AsgEnv {
    pub async fn start() -> AsgEnv {
        Self::start_on(Moto::start(&[])).await
    }

    /// The Auto Scaling world in `moto`.
    pub async fn start_on(moto: Moto) -> AsgEnv {
        Env::new(moto, Moto::asg_world).await
    }

    /// `web` on two groups (`web-blue`, `web-green`, 2 instances) and `api` on one (3
    /// instances, rolled one at a time), both smoke-tested against `url`; these canary
    /// steps for `web`.
    pub fn groups(&self, url: &str, canary_steps: &str) -> ConfigBuilder {
        self.config()
            .service("web", |s| {
                let s = s
                    .health_timeout("10s")
                    .asg_pair(["web-blue", "web-green"], 2);
                self.pair_behind_listener(s, url, canary_steps)
            })
            .service("api", |s| {
                s.health_timeout("20s")
                    .asg("api", 3)
                    .http_gate(&["post-traffic"], url, 3)
                    .strategy("rolling", |p| p.int("batch-size", 1))
            })
    }

    /// Targets registered in `tg`.
    /// Wait until `tg` holds `count` targets: instances of a group scaled down leave
    /// their target groups as the test ground's lifecycle stand-in gets to them (as
    /// AWS's own deregistration does, after the run has set the group's size). Fails
    /// after 20 s with the count it saw.
    pub async fn wait_for_targets(&self, tg: &str, count: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let now = self.targets(tg).await;
            if now == count {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{tg} still holds {now} targets, not {count}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn targets(&self, tg: &str) -> usize {
        self.clients
            .elb
            .describe_target_health()
            .target_group_arn(tg)
            .send()
            .await
            .unwrap()
            .target_health_descriptions()
            .len()
    }
}

/// The Kubernetes namespace of an [`EksEnv`], with its kubelet playing the node.
pub struct Namespace {
    pub client: kube::Client,
    pub name: String,
    _kubelet: Kubelet,
}

impl EksEnv {
    /// A namespace with `web-blue` (shop/web:1 ×2, live), `web-green` (×0) and `api`
    /// (shop/web:1 ×3), all Ready, and the ALB sending everything to blue; pods of the
    /// images in `broken` never get Ready.
    pub async fn start(namespace: &str, broken: &[&str]) -> EksEnv {
        let env = Env::new(Moto::start(&[]), Moto::ecs_world).await;
        let client = cluster().namespace(namespace).await;
        let kubelet = Kubelet::start(client.clone(), namespace, broken);
        let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        for (name, replicas) in [("web-blue", 2), ("web-green", 0), ("api", 3)] {
            api.create(
                &PostParams::default(),
                &deployment(name, "shop/web:1", replicas),
            )
            .await
            .unwrap();
        }
        let namespace = Namespace {
            client,
            name: namespace.to_string(),
            _kubelet: kubelet,
        };
        let env = env.with(namespace);
        for (name, replicas) in [("web-blue", 2), ("api", 3)] {
            env.wait_ready(name, replicas).await;
        }
        env
    }

    /// `web` on the two Deployments `web-blue` and `web-green` (2 replicas) and `api`
    /// on one (3 replicas, container `web`), both smoke-tested against `url`; these
    /// canary steps for `web`.
    pub fn deployments(&self, url: &str, canary_steps: &str) -> ConfigBuilder {
        let ns = &self.extra.name;
        let kubeconfig = cluster().kubeconfig.display().to_string();
        self.config()
            .service("web", |s| {
                let s =
                    s.health_timeout("20s")
                        .eks_pair(ns, ["web-blue", "web-green"], &kubeconfig, 2);
                self.pair_behind_listener(s, url, canary_steps)
            })
            .service("api", |s| {
                s.health_timeout("5s")
                    .eks(ns, "api", "web", &kubeconfig, 3)
                    .http_gate(&["post-traffic"], url, 3)
            })
    }

    /// (image, replicas, ready) of Deployment `name`.
    pub async fn state(&self, name: &str) -> (String, i32, i32) {
        super::kube::state(&self.extra.client, &self.extra.name, name).await
    }

    pub async fn wait_ready(&self, name: &str, replicas: i32) {
        let started = Instant::now();
        while self.state(name).await.2 < replicas {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{name} never became ready: {:?}",
                self.state(name).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
