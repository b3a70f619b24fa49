//! EKS end to end, against a real kube-apiserver and controller-manager (the Deployment
//! and ReplicaSet controllers do the rolling), moto for the ALB, real HTTP apps and the
//! real `deployer` binary: for canary, blue-green (two Deployments behind two target
//! groups, ALB weights) and rolling (the Deployment's own rollout), a good image is
//! promoted, a bad one rolled back automatically, and `deployer rollback` returns to the
//! previous image.

use deployer_tests::support::kube::{Kubelet, cluster, deployment, state};
use deployer_tests::support::{App, Moto, World};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};

use crate::ecs::{deployer, journal_shifts, listener_weights};

/// An image whose pods never become Ready (a crash-looping release).
const BROKEN: &str = "shop/web:3";

struct Env {
    moto: Moto,
    world: World,
    clients: deployer_targets::aws::Clients,
    kube: kube::Client,
    namespace: String,
    dir: tempfile::TempDir,
    _kubelet: Kubelet,
}

/// A namespace with `web-blue` (shop/web:1 ×2, live), `web-green` (×0) and `api`
/// (shop/web:1 ×3), all Ready, and the ALB sending everything to blue.
async fn env(namespace: &str) -> Env {
    let moto = Moto::start(&[]);
    let world = moto.ecs_world();
    let clients = moto.clients().await;
    let kube = cluster().namespace(namespace).await;
    let kubelet = Kubelet::start(kube.clone(), namespace, &[BROKEN]);
    let api: Api<Deployment> = Api::namespaced(kube.clone(), namespace);
    for (name, replicas) in [("web-blue", 2), ("web-green", 0), ("api", 3)] {
        api.create(
            &PostParams::default(),
            &deployment(name, "shop/web:1", replicas),
        )
        .await
        .unwrap();
    }
    let env = Env {
        moto,
        world,
        clients,
        kube,
        namespace: namespace.to_string(),
        dir: tempfile::tempdir().unwrap(),
        _kubelet: kubelet,
    };
    for (name, replicas) in [("web-blue", 2), ("api", 3)] {
        env.wait_ready(name, replicas).await;
    }
    env
}

impl Env {
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
health-timeout = "20s"

[services.web.target]
kind = "eks"
namespace = "{ns}"
deployments = ["web-blue", "web-green"]
kubeconfig = "{kubeconfig}"
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
health-timeout = "5s"

[services.api.target]
kind = "eks"
namespace = "{ns}"
deployment = "api"
container = "web"
kubeconfig = "{kubeconfig}"
desired-count = 3

[[services.api.gates]]
kind = "http"
at = ["post-traffic"]
url = "{url}"
requests = 3
"#,
            endpoint = self.moto.endpoint,
            ns = self.namespace,
            kubeconfig = cluster().kubeconfig.display(),
            listener = self.world.listener,
            blue = self.world.blue,
            green = self.world.green,
        );
        std::fs::write(self.dir.path().join("deployer.toml"), text).unwrap();
    }

    async fn deployer(&self, args: &[&str]) -> (i32, String, String) {
        deployer(self.dir.path(), args).await
    }

    /// (image, replicas, ready) of Deployment `name`.
    async fn state(&self, name: &str) -> (String, i32, i32) {
        state(&self.kube, &self.namespace, name).await
    }

    async fn wait_ready(&self, name: &str, replicas: i32) {
        let started = std::time::Instant::now();
        while self.state(name).await.2 < replicas {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "{name} never became ready: {:?}",
                self.state(name).await
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn weights(&self) -> (u8, u8) {
        listener_weights(
            &self.clients,
            &self.world.listener,
            &self.world.blue,
            &self.world.green,
        )
        .await
    }
}

fn image(tag: u32) -> String {
    format!("shop/web:{tag}")
}

/// Promote 2, roll 4 back on a failing smoke test, then `deployer rollback` to 1, with
/// `strategy` on the two Deployments.
async fn side_by_side(strategy: &str) {
    let env = env(&format!("pair-{strategy}")).await;
    let good = App::start(200, "ok");
    let bad = App::start(500, "boom");

    env.config(&good.url);
    let (code, out, err) = env
        .deployer(&[
            "run",
            strategy,
            "--service",
            "web",
            "--release",
            "shop/web:2",
        ])
        .await;
    assert_eq!(code, 0, "{strategy}: {out}\n{err}");
    assert!(out.contains("promoted"), "{out}");
    assert_eq!(env.weights().await, (0, 100), "{strategy}");
    assert_eq!(env.state("web-green").await, (image(2), 2, 2));
    assert_eq!(env.state("web-blue").await.1, 0, "old side scaled to zero");
    if strategy == "canary" {
        assert_eq!(journal_shifts(env.dir.path()), [25, 50, 100]);
    }

    env.config(&bad.url);
    let (code, out, err) = env
        .deployer(&[
            "run",
            strategy,
            "--service",
            "web",
            "--release",
            "shop/web:4",
        ])
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
    assert_eq!(env.state("web-green").await, (image(2), 2, 2));
    assert_eq!(env.state("web-blue").await.1, 0, "bad side scaled away");

    let (code, out, err) = env.deployer(&["rollback", "--service", "web"]).await;
    assert_eq!(code, 0, "{strategy}: {out}\n{err}");
    assert_eq!(env.weights().await, (100, 0), "{strategy}: back on 1");
    assert_eq!(env.state("web-blue").await, (image(1), 2, 2));
    assert_eq!(env.state("web-green").await.1, 0);
    let (_, status, _) = env.deployer(&["status", "--service", "web"]).await;
    assert!(status.contains("live:    shop/web:1"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_on_two_deployments_promotes_rolls_back_and_manual_rollback_returns() {
    side_by_side("canary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_on_two_deployments_promotes_rolls_back_and_manual_rollback_returns() {
    side_by_side("blue-green").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_watches_the_deployment_and_undoes_a_stuck_rollout() {
    let env = env("rolling").await;
    let good = App::start(200, "ok");
    env.config(&good.url);

    let (code, out, err) = env
        .deployer(&[
            "run",
            "rolling",
            "--service",
            "api",
            "--release",
            "shop/web:2",
        ])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.state("api").await, (image(2), 3, 3));

    // Pods of 3 never become Ready: the rollout stalls past its progress deadline.
    let (code, out, err) = env
        .deployer(&["run", "rolling", "--service", "api", "--release", BROKEN])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(
        env.state("api").await,
        (image(2), 3, 3),
        "2 rolled back out"
    );

    let (code, out, err) = env.deployer(&["rollback", "--service", "api"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.state("api").await, (image(1), 3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_smoke_test_rolls_the_deployment_back() {
    let env = env("rolling-gate").await;
    let bad = App::start(503, "down");
    env.config(&bad.url);
    let (code, out, err) = env
        .deployer(&[
            "run",
            "rolling",
            "--service",
            "api",
            "--release",
            "shop/web:2",
        ])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("0/3 requests"), "{out}");
    assert_eq!(env.state("api").await, (image(1), 3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_access_comes_from_describe_cluster_and_a_signed_token() {
    let moto = Moto::start(&[]);
    let clients = moto.clients().await;
    clients
        .eks
        .create_cluster()
        .name("analytics")
        .role_arn("arn:aws:iam::123456789012:role/eks")
        .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().build())
        .send()
        .await
        .unwrap();
    let (endpoint, ca, token) =
        deployer_targets::aws::eks_token::cluster_access(&clients, "analytics")
            .await
            .unwrap();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    assert!(ca.is_some_and(|ca| !ca.is_empty()));
    let url = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        token.strip_prefix("k8s-aws-v1.").unwrap(),
    )
    .unwrap();
    let url = String::from_utf8(url).unwrap();
    assert!(
        url.starts_with("https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity")
            && url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id")
            && url.contains("X-Amz-Signature="),
        "{url}"
    );

    let missing = deployer_targets::aws::eks_token::cluster_access(&clients, "nope")
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("ResourceNotFound"),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_canary_then_a_new_run_recovers_and_deploys() {
    let env = env("killed").await;
    let good = App::start(200, "ok");
    env.config_steps(&good.url, r#"[{ weight = 25, bake = "1h" }]"#);
    let mut child = crate::ecs::command(
        env.dir.path(),
        &[
            "run",
            "canary",
            "--service",
            "web",
            "--release",
            "shop/web:2",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let started = std::time::Instant::now();
    while env.weights().await != (75, 25) {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap(); // SIGKILL: no cleanup code runs
    child.wait().await.unwrap();

    // The next run rolls the killed one back first, then deploys (no bake this time).
    env.config(&good.url);
    let (code, out, err) = env
        .deployer(&[
            "run",
            "canary",
            "--service",
            "web",
            "--release",
            "shop/web:2",
        ])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("rolled back"),
        "the killed run was rolled back: {out}"
    );
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(env.state("web-green").await, (image(2), 2, 2));
    assert_eq!(env.state("web-blue").await.1, 0);
}
