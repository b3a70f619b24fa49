//! EC2 Auto Scaling end to end, against a real moto server, real HTTP apps and the real
//! `deployer` binary: for canary, blue-green (two groups, ALB weights) and rolling (one
//! group, instances replaced in batches since moto has no instance refresh), a good
//! template version is promoted, a bad one rolled back automatically, and
//! `deployer rollback` returns to the previous version.

use std::collections::BTreeMap;

use deployer_tests::support::{App, AsgWorld, Moto};

use crate::ecs::{deployer, journal_shifts, listener_weights};

struct Env {
    moto: Moto,
    world: AsgWorld,
    clients: deployer_targets::aws::Clients,
    dir: tempfile::TempDir,
}

async fn env() -> Env {
    env_on(Moto::start(&[])).await
}

/// The Auto Scaling world in `moto`.
async fn env_on(moto: Moto) -> Env {
    let world = moto.asg_world();
    let clients = moto.clients().await;
    Env {
        moto,
        world,
        clients,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// One group's state: template version → in-service instances, and desired capacity.
#[derive(Debug, PartialEq)]
struct Group {
    versions: BTreeMap<String, u32>,
    desired: u32,
}

fn group(versions: &[(&str, u32)], desired: u32) -> Group {
    Group {
        versions: versions.iter().map(|(v, n)| (v.to_string(), *n)).collect(),
        desired,
    }
}

impl Env {
    /// `deployer.toml` with `web` on two groups and `api` on one, both smoke-tested
    /// against `url`.
    fn config(&self, url: &str) {
        self.config_steps(url, "[{ weight = 25 }, { weight = 50 }]");
    }

    /// The same with these canary steps.
    fn config_steps(&self, url: &str, steps: &str) {
        let text = format!(
            r#"[aws]
region = "us-east-1"
endpoint-url = "{endpoint}"

[services.web]
health-timeout = "10s"

[services.web.target]
kind = "asg"
groups = ["web-blue", "web-green"]
desired-count = 2

[services.web.traffic]
listener-arn = "{listener}"
target-groups = ["{blue}", "{green}"]

[[services.web.gates]]
kind = "http"
at = ["post-traffic"]
url = "{url}"
requests = 3

[services.web.strategies.canary]
steps = {steps}

[services.web.strategies.blue-green]
test-traffic = false

[services.api]
health-timeout = "20s"

[services.api.target]
kind = "asg"
group = "api"
desired-count = 3

[[services.api.gates]]
kind = "http"
at = ["post-traffic"]
url = "{url}"
requests = 3

[services.api.strategies.rolling]
batch-size = 1
"#,
            endpoint = self.moto.endpoint,
            listener = self.world.listener,
            blue = self.world.blue,
            green = self.world.green,
        );
        std::fs::write(self.dir.path().join("deployer.toml"), text).unwrap();
    }

    async fn deployer(&self, args: &[&str]) -> (i32, String, String) {
        deployer(self.dir.path(), args).await
    }

    async fn group(&self, name: &str) -> Group {
        let out = self
            .clients
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

    /// (blue %, green %) as the listener reports them.
    async fn weights(&self) -> (u8, u8) {
        listener_weights(
            &self.clients,
            &self.world.listener,
            &self.world.blue,
            &self.world.green,
        )
        .await
    }

    /// Healthy targets registered in `tg`.
    async fn targets(&self, tg: &str) -> usize {
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

/// Promote 2, roll 3 back on a failing smoke test, then `deployer rollback` to 1, with
/// `strategy` on the two groups behind the ALB.
async fn side_by_side(strategy: &str) {
    let env = env().await;
    let good = App::start(200, "ok");
    let bad = App::start(500, "boom");

    env.config(&good.url);
    let (code, out, err) = env
        .deployer(&["run", strategy, "--service", "web", "--release", "2"])
        .await;
    assert_eq!(code, 0, "{strategy}: {out}\n{err}");
    assert!(out.contains("promoted"), "{out}");
    assert_eq!(env.weights().await, (0, 100), "{strategy}");
    assert_eq!(env.group("web-green").await, group(&[("2", 2)], 2));
    assert_eq!(
        env.group("web-blue").await,
        group(&[], 0),
        "old side drained"
    );
    assert_eq!(env.targets(&env.world.blue).await, 0);
    if strategy == "canary" {
        assert_eq!(journal_shifts(env.dir.path()), [25, 50, 100]);
    }

    env.config(&bad.url);
    let (code, out, err) = env
        .deployer(&["run", strategy, "--service", "web", "--release", "web:3"])
        .await;
    assert_eq!(code, 1, "{strategy}: {out}\n{err}");
    assert!(
        out.contains("rolled back") && out.contains("0/3 requests"),
        "{out}"
    );
    assert_eq!(
        env.weights().await,
        (0, 100),
        "{strategy}: traffic stays on 2"
    );
    assert_eq!(env.group("web-green").await, group(&[("2", 2)], 2));
    assert_eq!(
        env.group("web-blue").await.desired,
        0,
        "bad side scaled away"
    );

    let (code, out, err) = env.deployer(&["rollback", "--service", "web"]).await;
    assert_eq!(code, 0, "{strategy}: {out}\n{err}");
    assert_eq!(env.weights().await, (100, 0), "{strategy}: back on 1");
    assert_eq!(env.group("web-blue").await, group(&[("1", 2)], 2));
    assert_eq!(env.group("web-green").await, group(&[], 0));
    let (_, status, _) = env.deployer(&["status", "--service", "web"]).await;
    assert!(status.contains("live:    web:1"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_on_two_groups_promotes_rolls_back_and_manual_rollback_returns() {
    side_by_side("canary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_on_two_groups_promotes_rolls_back_and_manual_rollback_returns() {
    side_by_side("blue-green").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_replaces_instances_in_batches_and_rolls_back() {
    let env = env().await;
    let good = App::start(200, "ok");
    let bad = App::start(503, "down");

    env.config(&good.url);
    let (code, out, err) = env
        .deployer(&["run", "rolling", "--service", "api", "--release", "2"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.group("api").await, group(&[("2", 3)], 3));
    assert_eq!(
        env.targets(&env.world.api).await,
        3,
        "old instances deregistered"
    );

    env.config(&bad.url);
    let (code, out, err) = env
        .deployer(&["run", "rolling", "--service", "api", "--release", "3"])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("0/3 requests"), "{out}");
    assert_eq!(
        env.group("api").await,
        group(&[("2", 3)], 3),
        "version 2 rolled back out on every instance"
    );

    env.config(&good.url);
    let (code, out, err) = env.deployer(&["rollback", "--service", "api"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.group("api").await, group(&[("1", 3)], 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_idle_group_is_never_repurposed() {
    let env = env().await;
    let good = App::start(200, "ok");
    env.config(&good.url);
    // Someone left instances on the idle group: deploying over them would be a blind
    // replacement of capacity that may be serving.
    env.clients
        .autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name("web-green")
        .desired_capacity(1)
        .send()
        .await
        .unwrap();
    let (code, out, err) = env
        .deployer(&["run", "blue-green", "--service", "web", "--release", "2"])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("web-green should be idle"), "{out}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.group("web-blue").await, group(&[("1", 2)], 2));
    assert_eq!(env.group("web-green").await, group(&[("1", 1)], 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_uses_instance_refresh_where_the_api_has_it() {
    let env = env_on(Moto::start_with_instance_refresh()).await;
    let good = App::start(200, "ok");
    let bad = App::start(503, "down");
    let refreshes = || async {
        let out = env
            .clients
            .autoscaling
            .describe_instance_refreshes()
            .auto_scaling_group_name("api")
            .send()
            .await
            .unwrap();
        out.instance_refreshes()
            .iter()
            .map(|r| r.status().unwrap().as_str().to_string())
            .collect::<Vec<_>>()
    };

    env.config(&good.url);
    let (code, out, err) = env
        .deployer(&["run", "rolling", "--service", "api", "--release", "2"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.group("api").await, group(&[("2", 3)], 3));
    assert_eq!(refreshes().await, ["Successful"], "one refresh did it");

    env.config(&bad.url);
    let (code, out, err) = env
        .deployer(&["run", "rolling", "--service", "api", "--release", "3"])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(env.group("api").await, group(&[("2", 3)], 3));
    assert_eq!(
        refreshes().await,
        ["Successful", "Successful", "Successful"],
        "3 rolled out and 2 rolled back, each by a refresh"
    );
}

/// Wait until the canary holds `percent` of production traffic.
async fn wait_for_share(env: &Env, percent: u8) {
    let started = std::time::Instant::now();
    while env.weights().await.1 != percent {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the canary never reached {percent}%"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_canary_then_rollback_drains_the_new_group() {
    let env = env().await;
    let good = App::start(200, "ok");
    env.config_steps(&good.url, r#"[{ weight = 25, bake = "1h" }]"#);
    let mut child = crate::ecs::command(
        env.dir.path(),
        &["run", "canary", "--service", "web", "--release", "2"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    wait_for_share(&env, 25).await;
    child.start_kill().unwrap(); // SIGKILL: no cleanup code runs
    child.wait().await.unwrap();
    // 25% of two units: one new instance carries the canary's share.
    assert_eq!(env.group("web-green").await, group(&[("2", 1)], 1));

    let (code, out, err) = env.deployer(&["rollback", "--service", "web"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.group("web-green").await.desired, 0);
    assert_eq!(env.group("web-blue").await, group(&[("1", 2)], 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_paired_with_the_wrong_target_groups_are_refused_before_any_change() {
    let env = env().await;
    let good = App::start(200, "ok");
    env.config(&good.url);
    // Swap the two target groups: web-blue is not behind the second one.
    let path = env.dir.path().join("deployer.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!(r#"["{}", "{}"]"#, env.world.blue, env.world.green),
        &format!(r#"["{}", "{}"]"#, env.world.green, env.world.blue),
    );
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = env
        .deployer(&["run", "canary", "--service", "web", "--release", "2"])
        .await;
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        err.contains("group web-blue is not attached to target group"),
        "{err}"
    );
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(
        env.group("web-green").await,
        group(&[], 0),
        "nothing changed"
    );
}
