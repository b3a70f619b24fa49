//! ECS + ALB end to end, against a real moto server, real HTTP apps and the real
//! `deployer` binary: promotion with verified weights, automatic rollback on a failed
//! smoke test or alarm, manual rollback, a SIGKILL mid-canary, and concurrent runs.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use deployer_tests::support::{App, EcsAgent, Moto, World};

pub(crate) struct Env {
    pub(crate) moto: Moto,
    pub(crate) world: World,
    pub(crate) clients: deployer_targets::aws::Clients,
    pub(crate) dir: tempfile::TempDir,
    _agent: EcsAgent,
}

pub(crate) async fn env(broken: &[&str]) -> Env {
    let moto = Moto::start(broken);
    let world = moto.ecs_world();
    let clients = moto.clients().await;
    let agent = EcsAgent::start(
        clients.clone(),
        broken.iter().map(|s| s.to_string()).collect(),
    );
    Env {
        moto,
        world,
        clients,
        dir: tempfile::tempdir().unwrap(),
        _agent: agent,
    }
}

impl Env {
    /// Write deployer.toml with an HTTP smoke test against `app` and the alarm gate.
    pub(crate) fn config(&self, app: &App, canary_steps: &str) {
        self.config_with_url(&app.url, canary_steps);
    }

    /// The same, with the smoke test against `url`.
    pub(crate) fn config_with_url(&self, url: &str, canary_steps: &str) {
        let text = format!(
            r#"[aws]
region = "us-east-1"
endpoint-url = "{endpoint}"

[services.web]
health-timeout = "5s"
watch-interval = "200ms"

[services.web.target]
kind = "ecs"
cluster = "prod"
service = "web"
desired-count = 4

[services.web.traffic]
listener-arn = "{listener}"
test-listener-arn = "{test_listener}"
target-groups = ["{blue}", "{green}"]

[[services.web.gates]]
kind = "http"
at = ["pre-traffic", "post-traffic"]
url = "{url}"
requests = 5

[[services.web.gates]]
kind = "alarm"
at = ["post-traffic", "bake"]
alarms = ["web-5xx"]

[services.web.strategies.canary]
steps = {canary_steps}

[services.web.strategies.blue-green]
bake = "300ms"
"#,
            endpoint = self.moto.endpoint,
            listener = self.world.listener,
            test_listener = self.world.test_listener,
            blue = self.world.blue,
            green = self.world.green,
        );
        std::fs::write(self.dir.path().join("deployer.toml"), text).unwrap();
    }

    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        command(self.dir.path(), args)
    }

    pub(crate) async fn deployer(&self, args: &[&str]) -> (i32, String, String) {
        deployer(self.dir.path(), args).await
    }

    /// (blue %, green %) as the listener reports them.
    pub(crate) async fn weights(&self) -> (u8, u8) {
        listener_weights(
            &self.clients,
            &self.world.listener,
            &self.world.blue,
            &self.world.green,
        )
        .await
    }

    /// The task definition of the primary task set, and how many task sets exist.
    pub(crate) async fn primary(&self) -> (String, usize) {
        let out = self
            .clients
            .ecs
            .describe_services()
            .cluster("prod")
            .services("web")
            .send()
            .await
            .unwrap();
        let sets = out.services()[0].task_sets();
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

    async fn set_alarm(&self, state: aws_sdk_cloudwatch::types::StateValue) {
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
}

/// The real `deployer` binary run on `dir/deployer.toml` with moto's test credentials.
pub(crate) fn command(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(deployer_bin());
    cmd.args(args)
        .arg("--config")
        .arg(dir.join("deployer.toml"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env(
            "DEPLOYER_CACHE_DIR",
            std::env::temp_dir().join("deployer-e2e-cache"),
        )
        .kill_on_drop(true);
    cmd
}

/// (exit code, stdout, stderr) of `deployer ARGS --config dir/deployer.toml`.
pub(crate) async fn deployer(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command(dir, args).output().await.unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// (blue %, green %) as `listener` reports them.
pub(crate) async fn listener_weights(
    clients: &deployer_targets::aws::Clients,
    listener: &str,
    blue: &str,
    green: &str,
) -> (u8, u8) {
    let router = deployer_targets::aws::alb::AlbRouter {
        elb: clients.elb.clone(),
        production: deployer_targets::aws::alb::Route::Listener(listener.to_string()),
        test_listener: None,
    };
    let weights = router.weights().await.unwrap();
    (
        deployer_targets::aws::alb::share_of(&weights, blue),
        deployer_targets::aws::alb::share_of(&weights, green),
    )
}

pub(crate) fn deployer_bin() -> std::path::PathBuf {
    let mut path = std::env::current_exe().unwrap();
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    path.join("deployer")
}

pub(crate) const STEPS: &str = r#"[{ weight = 10, bake = "300ms" }, { weight = 50 }]"#;

pub(crate) fn journal_shifts(dir: &Path) -> Vec<u8> {
    let mut shifts = Vec::new();
    let deployments = dir.join(".deployer/services/web/deployments");
    let mut files: Vec<_> = std::fs::read_dir(deployments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let text = std::fs::read_to_string(files.last().unwrap()).unwrap();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(p) = record.pointer("/action/step/ShiftTraffic") {
            shifts.push(p.as_u64().unwrap() as u8);
        }
    }
    shifts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_promotes_with_verified_weights() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config(&good, STEPS);
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("promoted"), "{out}");
    assert_eq!(journal_shifts(env.dir.path()), [10, 50, 100]);
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(
        env.primary().await,
        ("web:2".to_string(), 1),
        "old task set removed"
    );

    let (_, history, _) = env.deployer(&["history"]).await;
    assert!(
        history.contains("promoted") && history.contains("web:1") && history.contains("web:2"),
        "{history}"
    );
    let (_, status, _) = env.deployer(&["status"]).await;
    assert!(
        status.contains("state:   idle") && status.contains("live:    web:2"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_smoke_test_rolls_the_canary_back() {
    let env = env(&[]).await;
    let bad = App::start(500, "boom");
    env.config(&bad, STEPS);
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("rolled back"), "{out}");
    assert!(out.contains("0/5 requests"), "{out}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(
        env.primary().await,
        ("web:1".to_string(), 1),
        "new task set removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_rolls_back_blue_green_and_canary() {
    for strategy in ["blue-green", "canary"] {
        let env = env(&[]).await;
        let good = App::start(200, "ok");
        env.config(&good, STEPS);
        env.set_alarm(aws_sdk_cloudwatch::types::StateValue::Alarm)
            .await;
        let (code, out, err) = env.deployer(&["run", strategy, "--release", "web:2"]).await;
        assert_eq!(code, 1, "{strategy}: {out}\n{err}");
        assert!(out.contains("web-5xx: ALARM"), "{strategy}: {out}");
        assert_eq!(env.weights().await, (100, 0), "{strategy}");
        assert_eq!(env.primary().await.0, "web:1", "{strategy}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_promotes_then_manual_rollback_restores_the_previous_release() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config(&good, STEPS);
    let (code, out, err) = env
        .deployer(&["run", "blue-green", "--release", "web:2"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(env.primary().await, ("web:2".to_string(), 1));

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (100, 0), "web:1 is back behind blue");
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
    let (_, history, _) = env.deployer(&["history"]).await;
    assert_eq!(history.matches("promoted").count(), 2, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_never_gets_healthy_rolls_back() {
    let env = env(&["web:3"]).await;
    let good = App::start(200, "ok");
    env.config(&good, STEPS);
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:3"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("became healthy within"), "{out}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
}

/// Wait until the journal shows the first shift done.
async fn wait_for_traffic(env: &Env) {
    let started = std::time::Instant::now();
    loop {
        if env.weights().await.1 > 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the canary never shifted traffic"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_canary_then_rollback_leaves_no_traffic_on_the_new_side() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config(&good, r#"[{ weight = 10, bake = "1h" }]"#);
    let mut child = env
        .command(&["run", "canary", "--release", "web:2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_traffic(&env).await;
    child.start_kill().unwrap(); // SIGKILL: no cleanup code runs
    child.wait().await.unwrap();
    assert_eq!(
        env.weights().await,
        (90, 10),
        "killed with traffic on the canary"
    );
    let (_, status, _) = env.deployer(&["status"]).await;
    assert!(status.contains("deploying web:2 over"), "{status}");

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
    let (_, status, _) = env.deployer(&["status"]).await;
    assert!(status.contains("state:   idle"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_canary_then_a_new_run_recovers_and_deploys() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config(&good, r#"[{ weight = 10, bake = "2s" }]"#);
    let mut child = env
        .command(&["run", "canary", "--release", "web:2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_traffic(&env).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("recovered unfinished deployment") || out.contains("rolled back"),
        "{out}"
    );
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(env.primary().await, ("web:2".to_string(), 1));
    let (_, history, _) = env.deployer(&["history"]).await;
    assert!(
        history.contains("rolled-back") && history.contains("promoted"),
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_runs_one_wins_one_is_refused() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config(&good, r#"[{ weight = 10, bake = "2s" }]"#);
    let first = env
        .command(&["run", "canary", "--release", "web:2"])
        .output();
    let second = async {
        wait_for_traffic(&env).await;
        env.deployer(&["run", "canary", "--release", "web:3"]).await
    };
    let (first, (code, out, err)) = tokio::join!(first, second);
    let first = first.unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        err.contains("already being deployed by deployment"),
        "{err}"
    );
    assert_eq!(env.primary().await.0, "web:2");
}

impl Env {
    /// Write deployer.toml for the in-place service `api` (ECS deployment controller).
    fn config_in_place(&self, app: &App) {
        let text = format!(
            r#"[aws]
region = "us-east-1"
endpoint-url = "{endpoint}"

[services.api]
health-timeout = "5s"

[services.api.target]
kind = "ecs"
cluster = "prod"
service = "api"
desired-count = 2

[[services.api.gates]]
kind = "http"
at = ["post-traffic"]
url = "{url}"
requests = 3

[services.api.strategies.rolling]
min-healthy-percent = 50
"#,
            endpoint = self.moto.endpoint,
            url = app.url,
        );
        std::fs::write(self.dir.path().join("deployer.toml"), text).unwrap();
    }

    /// The `api` service's task definition and its primary deployment's state.
    async fn api(&self) -> (String, String, String) {
        let out = self
            .clients
            .ecs
            .describe_services()
            .cluster("prod")
            .services("api")
            .send()
            .await
            .unwrap();
        let service = &out.services()[0];
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
}

fn settled(release: &str) -> (String, String, String) {
    (
        release.to_string(),
        release.to_string(),
        "COMPLETED".to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_in_place_promotes_a_good_release_and_manual_rollback_undoes_it() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config_in_place(&good);
    let (code, out, err) = env
        .deployer(&["run", "rolling", "--release", "web:2"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.api().await, settled("web:2"));

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.api().await, settled("web:1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_in_place_rolls_back_on_a_failed_smoke_test() {
    let env = env(&[]).await;
    let bad = App::start(503, "down");
    env.config_in_place(&bad);
    let (code, out, err) = env
        .deployer(&["run", "rolling", "--release", "web:2"])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("0/3 requests"), "{out}");
    assert_eq!(
        env.api().await,
        settled("web:1"),
        "the stable release was rolled back out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_in_place_rolls_back_when_the_circuit_breaker_trips() {
    let env = env(&["web:3"]).await;
    let good = App::start(200, "ok");
    env.config_in_place(&good);
    let (code, out, err) = env
        .deployer(&["run", "rolling", "--release", "web:3"])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("circuit breaker"), "{out}");
    assert_eq!(env.api().await, settled("web:1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_by_side_strategy_on_an_in_place_service_is_refused_before_any_change() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config_in_place(&good);
    std::fs::write(
        env.dir.path().join("deployer.toml"),
        std::fs::read_to_string(env.dir.path().join("deployer.toml")).unwrap()
            + "\n[services.api.strategies.canary]\nsteps = [{ weight = 10 }]\n",
    )
    .unwrap();
    let (code, _, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("uses the ECS deployment controller"), "{err}");
    assert_eq!(env.api().await, settled("web:1"));
    assert!(
        !env.dir
            .path()
            .join(".deployer/services/api/deployments")
            .exists(),
        "nothing was journaled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_on_a_listener_rule_leaves_the_default_action_alone() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config(&good, STEPS);
    let path = env.dir.path().join("deployer.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("listener-arn = \"{}\"", env.world.listener),
        &format!("rule-arn = \"{}\"", env.world.rule),
    );
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let router = deployer_targets::aws::alb::AlbRouter {
        elb: env.clients.elb.clone(),
        production: deployer_targets::aws::alb::Route::Rule(env.world.rule.clone()),
        test_listener: None,
    };
    let rule = router.weights().await.unwrap();
    assert_eq!(
        deployer_targets::aws::alb::share_of(&rule, &env.world.green),
        100
    );
    assert_eq!(
        env.weights().await,
        (100, 0),
        "the listener's default action is another service's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_plugins_gate_the_rollout_with_only_their_granted_capabilities() {
    for (url, expected) in [("GOOD", 0), ("http://evil.example.net/steal", 1)] {
        let env = env(&[]).await;
        let good = App::start(200, "ok");
        env.config(&good, STEPS);
        let wasm = env.dir.path().join("probe.wasm");
        std::fs::copy(deployer_tests::components::HOSTILE_HOOK, &wasm).unwrap();
        let digest = deployer_plugin_host::sha256_hex(&std::fs::read(&wasm).unwrap());
        let url = if url == "GOOD" {
            good.url.clone()
        } else {
            url.to_string()
        };
        let path = env.dir.path().join("deployer.toml");
        let text = std::fs::read_to_string(&path).unwrap()
            + &format!(
                r#"
[[services.web.hooks]]
plugin = "probe"
at = ["pre-traffic"]
params = {{ url = "{url}" }}

[plugins.probe]
kind = "hook"
path = "probe.wasm"
sha256 = "{digest}"
kv = true
http-allow = ["127.0.0.1"]
"#
            );
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
        assert_eq!(code, expected, "{url}: {out}\n{err}");
        if expected == 1 {
            assert!(
                out.contains("hook:probe") && out.contains("not on this plugin's http-allow list"),
                "{out}"
            );
            assert_eq!(env.weights().await, (100, 0));
        }
    }
}

impl Env {
    /// Keep journals and locks in S3 + DynamoDB instead of local files.
    fn use_aws_state(&self) {
        let path = self.dir.path().join("deployer.toml");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "[aws]\n",
            "[state]\nbackend = \"aws\"\nbucket = \"deployer-state\"\ntable = \"deployer-locks\"\nprefix = \"shop/\"\n\n[aws]\n",
        );
        std::fs::write(path, text).unwrap();
    }

    async fn s3_keys(&self) -> Vec<String> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_and_dynamodb_backend_journals_locks_and_reports() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config(&good, r#"[{ weight = 10, bake = "2s" }]"#);
    env.use_aws_state();
    let first = env
        .command(&["run", "canary", "--release", "web:2"])
        .output();
    let second = async {
        wait_for_traffic(&env).await;
        env.deployer(&["run", "canary", "--release", "web:3"]).await
    };
    let (first, (code, out, err)) = tokio::join!(first, second);
    let first = first.unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        err.contains("already being deployed by deployment"),
        "{err}"
    );

    let keys = env.s3_keys().await;
    assert!(
        keys.iter()
            .any(|k| k.starts_with("shop/services/web/deployments/")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("shop/services/web/history/")),
        "{keys:?}"
    );
    assert!(
        !env.dir.path().join(".deployer").exists(),
        "nothing was kept locally"
    );
    let (_, history, _) = env.deployer(&["history"]).await;
    assert!(history.contains("promoted"), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_aws_backend_a_killed_runs_lease_is_taken_over_by_rollback() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config(&good, r#"[{ weight = 10, bake = "1h" }]"#);
    env.use_aws_state();
    let mut child = env
        .command(&["run", "canary", "--release", "web:2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_traffic(&env).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_from_ci_rolls_back() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config(&good, r#"[{ weight = 10, bake = "1h" }]"#);
    let child = env
        .command(&["run", "canary", "--release", "web:2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_traffic(&env).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("cancelled"), "{stdout}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudwatch_metric_over_its_bound_rolls_back() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config(&good, STEPS);
    let path = env.dir.path().join("deployer.toml");
    let text = std::fs::read_to_string(&path).unwrap()
        + r#"
[[services.web.gates]]
kind = "metric"
at = ["post-traffic"]
namespace = "Shop"
metric = "CheckoutErrors"
dimensions = { Service = "web" }
statistic = "Sum"
period = "60s"
window = "10m"
max = 5.0
"#;
    std::fs::write(&path, text).unwrap();
    let put = |value: f64| {
        env.clients
            .cloudwatch
            .put_metric_data()
            .namespace("Shop")
            .metric_data(
                aws_sdk_cloudwatch::types::MetricDatum::builder()
                    .metric_name("CheckoutErrors")
                    .dimensions(
                        aws_sdk_cloudwatch::types::Dimension::builder()
                            .name("Service")
                            .value("web")
                            .build(),
                    )
                    .value(value)
                    .build(),
            )
            .send()
    };
    put(42.0).await.unwrap();
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("CheckoutErrors Sum is 42"), "{out}");
    assert_eq!(env.weights().await, (100, 0));
}

/// The plugin guide's commands, from scaffold to a deployment that uses the hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_hook_is_built_tested_and_used_in_a_run() {
    let env = env(&[]).await;
    let good = App::start(200, "ok");
    env.config(&good, STEPS);
    let dir = env.dir.path();
    let plain = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(deployer_bin());
        cmd.args(args).current_dir(dir).env(
            "DEPLOYER_CACHE_DIR",
            std::env::temp_dir().join("deployer-e2e-cache"),
        );
        cmd
    };
    let out = plain(&["plugin", "new", "ready-check", "--kind", "hook"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crate_dir = dir.join("ready-check");

    let unit =
        tokio::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["test", "--quiet"])
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", crate_dir.join("target"))
            .output()
            .await
            .unwrap();
    assert!(
        unit.status.success(),
        "{}",
        String::from_utf8_lossy(&unit.stderr)
    );

    let built = plain(&["plugin", "build", "ready-check"])
        .output()
        .await
        .unwrap();
    let built_out = String::from_utf8_lossy(&built.stdout).into_owned();
    assert!(
        built.status.success(),
        "{built_out}{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = crate_dir.join("target/ready-check.wasm");
    let digest = deployer_plugin_host::sha256_hex(&std::fs::read(&wasm).unwrap());
    assert!(
        built_out.contains(&format!("sha256 = \"{digest}\"")),
        "{built_out}"
    );

    let tested = plain(&[
        "plugin",
        "test",
        "ready-check/target/ready-check.wasm",
        "--scenario",
        "ready-check/scenario.toml",
    ])
    .output()
    .await
    .unwrap();
    let tested_out = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "{tested_out}");
    assert_eq!(
        tested_out.matches("(as expected)").count(),
        2,
        "{tested_out}"
    );

    // Use it: a pre-traffic hook that checks the release's health URL.
    let path = dir.join("deployer.toml");
    let text = std::fs::read_to_string(&path).unwrap()
        + &format!(
            r#"
[[services.web.hooks]]
plugin = "ready-check"
at = ["pre-traffic"]
params = {{ url = "{url}" }}

[plugins.ready-check]
kind = "hook"
path = "ready-check/target/ready-check.wasm"
sha256 = "{digest}"
http-allow = ["127.0.0.1"]
"#,
            url = good.url
        );
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (0, 100));
}
