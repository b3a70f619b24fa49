//! EKS end to end, against a real kube-apiserver and controller-manager (the Deployment
//! and ReplicaSet controllers do the rolling), moto for the ALB, real HTTP apps and the
//! real `deployer` binary: for canary, blue-green (two Deployments behind two target
//! groups, ALB weights) and rolling (the Deployment's own rollout), a good image is
//! promoted, a bad one rolled back automatically, and `deployer rollback` returns to the
//! previous image.

use deployer_tests::support::env::EksEnv;
use deployer_tests::support::{App, Moto};

/// An image whose pods never become Ready (a crash-looping release).
const BROKEN: &str = "shop/web:3";

/// The canary steps of `web` unless a test says otherwise.
const STEPS: &str = "[{ weight = 25 }, { weight = 50 }]";

/// `web-blue` (shop/web:1 ×2, live), `web-green` (×0) and `api` (shop/web:1 ×3) in
/// `namespace`, all Ready, the ALB sending everything to blue; [`BROKEN`] never gets
/// Ready.
async fn env(namespace: &str) -> EksEnv {
    EksEnv::start(namespace, &[BROKEN]).await
}

/// `deployer.toml` with `web` on the two Deployments and `api` on one, both
/// smoke-tested against `url`.
fn config(env: &EksEnv, url: &str) {
    env.write(&env.deployments(url, STEPS));
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

    config(&env, &good.url);
    env.promote_web(strategy, "shop/web:2", &[25, 50, 100])
        .await;
    assert_eq!(env.state("web-green").await, (image(2), 2, 2));
    assert_eq!(env.state("web-blue").await.1, 0, "old side scaled to zero");

    config(&env, &bad.url);
    env.fail_web(strategy, "shop/web:4").await;
    assert_eq!(env.state("web-green").await, (image(2), 2, 2));
    assert_eq!(env.state("web-blue").await.1, 0, "bad side scaled away");

    env.rollback_web(strategy, "shop/web:1").await;
    assert_eq!(env.state("web-blue").await, (image(1), 2, 2));
    assert_eq!(env.state("web-green").await.1, 0);
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
    config(&env, &good.url);

    let (code, out, err) = env.run("rolling", "api", "shop/web:2").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.state("api").await, (image(2), 3, 3));

    // Pods of 3 never become Ready: the rollout stalls past its progress deadline.
    let (code, out, err) = env.run("rolling", "api", BROKEN).await;
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
    config(&env, &bad.url);
    let (code, out, err) = env.run("rolling", "api", "shop/web:2").await;
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
    env.write(&env.deployments(&good.url, r#"[{ weight = 25, bake = "1h" }]"#));
    let args = [
        "run",
        "canary",
        "--service",
        "web",
        "--release",
        "shop/web:2",
    ];
    env.kill_when(&args, "the canary never reached 25%", |w| w == (75, 25))
        .await;

    // The next run rolls the killed one back first, then deploys (no bake this time).
    config(&env, &good.url);
    let (code, out, err) = env.run("canary", "web", "shop/web:2").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("rolled back"),
        "the killed run was rolled back: {out}"
    );
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(env.state("web-green").await, (image(2), 2, 2));
    assert_eq!(env.state("web-blue").await.1, 0);
}

/// A HorizontalPodAutoscaler (autoscaling/v1) named `name` scaling Deployment `target`.
async fn hpa(env: &EksEnv, name: &str, target: &str) {
    use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": target },
            "minReplicas": 2, "maxReplicas": 10, "targetCPUUtilizationPercentage": 70
        }
    }))
    .unwrap();
    kube::Api::<HorizontalPodAutoscaler>::namespaced(env.extra.client.clone(), &env.extra.name)
        .create(&Default::default(), &hpa)
        .await
        .unwrap();
}

/// Which Deployment HPA `name` scales.
async fn hpa_target(env: &EksEnv, name: &str) -> String {
    use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
    kube::Api::<HorizontalPodAutoscaler>::namespaced(env.extra.client.clone(), &env.extra.name)
        .get(name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .scale_target_ref
        .name
}

/// With an HPA on the live Deployment and no desired-count in the config, the new
/// Deployment gets the replicas the HPA had set (3, not a number from the config), and
/// at promotion the HPA is pointed at it, so the old one rests at 0 instead of being
/// scaled back to the HPA's minimum. A second HPA on the idle Deployment is refused
/// before anything changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_on_the_live_deployment_sizes_the_new_one_and_follows_it_at_promotion() {
    let env = env("hpa").await;
    let good = App::start(200, "ok");
    hpa(&env, "web", "web-blue").await;
    // What the HPA did under load: the live side runs 3.
    let (code, out, err) = {
        let api = kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
            env.extra.client.clone(),
            &env.extra.name,
        );
        api.patch(
            "web-blue",
            &Default::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
        env.wait_ready("web-blue", 3).await;
        env.write(
            &env.deployments(&good.url, STEPS)
                .service("web", |s| s.target(|t| t.remove("desired-count"))),
        );
        env.run("canary", "web", "shop/web:2").await
    };
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.state("web-green").await, (image(2), 3, 3));
    assert_eq!(env.state("web-blue").await.1, 0);
    assert_eq!(hpa_target(&env, "web").await, "web-green");

    hpa(&env, "web-idle", "web-blue").await;
    let (code, out, err) = env.run("canary", "web", "shop/web:4").await;
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("both Deployments") && err.contains("HorizontalPodAutoscaler"),
        "{out}\n{err}"
    );
    assert_eq!(env.state("web-green").await, (image(2), 3, 3));
    assert_eq!(env.weights().await, (0, 100));
}

/// On EKS a release is an image already: `--image` deploys it as `--release` would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_deployed_to_the_idle_deployment() {
    let env = env("image").await;
    let good = App::start(200, "ok");
    config(&env, &good.url);
    let (code, out, err) = env
        .deployer(&["run", "canary", "--service", "web", "--image", "shop/web:2"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.state("web-green").await, (image(2), 2, 2));
    assert_eq!(env.weights().await, (0, 100));
}
