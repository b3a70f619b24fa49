//! EC2 Auto Scaling end to end, against a real moto server, real HTTP apps and the real
//! `deployer` binary: for canary, blue-green (two groups, ALB weights) and rolling (one
//! group, instances replaced in batches since moto has no instance refresh), a good
//! template version is promoted, a bad one rolled back automatically, and
//! `deployer rollback` returns to the previous version.

use deployer_tests::support::env::{AsgEnv, group};
use deployer_tests::support::{App, Moto};

/// The canary steps of `web` unless a test says otherwise.
const STEPS: &str = "[{ weight = 25 }, { weight = 50 }]";

/// `deployer.toml` with `web` on two groups and `api` on one, both smoke-tested against
/// `url`.
fn config(env: &AsgEnv, url: &str) {
    env.write(&env.groups(url, STEPS));
}

/// `deployer run rolling` of `release` on `api`, smoke-tested against `app`.
async fn roll_api(env: &AsgEnv, app: &App, release: &str) -> (i32, String, String) {
    config(env, &app.url);
    env.run("rolling", "api", release).await
}

/// Promote 2, roll 3 back on a failing smoke test, then `deployer rollback` to 1, with
/// `strategy` on the two groups behind the ALB.
async fn side_by_side(strategy: &str) {
    let env = AsgEnv::start().await;
    let good = App::start(200, "ok");
    let bad = App::start(500, "boom");

    config(&env, &good.url);
    env.promote_web(strategy, "2", &[25, 50, 100]).await;
    assert_eq!(env.group("web-green").await, group(&[("2", 2)], 2));
    assert_eq!(
        env.group("web-blue").await,
        group(&[], 0),
        "old side drained"
    );
    env.wait_for_targets(&env.world.blue, 0).await;

    config(&env, &bad.url);
    env.fail_web(strategy, "web:3").await;
    assert_eq!(env.group("web-green").await, group(&[("2", 2)], 2));
    assert_eq!(
        env.group("web-blue").await.desired,
        0,
        "bad side scaled away"
    );

    env.rollback_web(strategy, "web:1").await;
    assert_eq!(env.group("web-blue").await, group(&[("1", 2)], 2));
    assert_eq!(env.group("web-green").await, group(&[], 0));
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
    let env = AsgEnv::start().await;
    let good = App::start(200, "ok");
    let bad = App::start(503, "down");

    let (code, out, err) = roll_api(&env, &good, "2").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.group("api").await, group(&[("2", 3)], 3));
    assert_eq!(
        env.targets(&env.world.api).await,
        3,
        "old instances deregistered"
    );

    let (code, out, err) = roll_api(&env, &bad, "3").await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("0/3 requests"), "{out}");
    assert_eq!(
        env.group("api").await,
        group(&[("2", 3)], 3),
        "version 2 rolled back out on every instance"
    );

    config(&env, &good.url);
    let (code, out, err) = env.deployer(&["rollback", "--service", "api"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.group("api").await, group(&[("1", 3)], 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_idle_group_is_never_repurposed() {
    let env = AsgEnv::start().await;
    let good = App::start(200, "ok");
    config(&env, &good.url);
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
    // Refused before anything is journaled: no rollback that could move traffic.
    let (code, out, err) = env.run("blue-green", "web", "2").await;
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(err.contains("web-green should be idle"), "{err}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.group("web-blue").await, group(&[("1", 2)], 2));
    assert_eq!(env.group("web-green").await, group(&[("1", 1)], 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_uses_instance_refresh_where_the_api_has_it() {
    let env = AsgEnv::start_on(Moto::start_with_instance_refresh()).await;
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

    let (code, out, err) = roll_api(&env, &good, "2").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.group("api").await, group(&[("2", 3)], 3));
    assert_eq!(refreshes().await, ["Successful"], "one refresh did it");

    let (code, out, err) = roll_api(&env, &bad, "3").await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(env.group("api").await, group(&[("2", 3)], 3));
    assert_eq!(
        refreshes().await,
        ["Successful", "Successful", "Successful"],
        "3 rolled out and 2 rolled back, each by a refresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_canary_then_rollback_drains_the_new_group() {
    let env = AsgEnv::start().await;
    let good = App::start(200, "ok");
    env.write(&env.groups(&good.url, r#"[{ weight = 25, bake = "1h" }]"#));
    let args = ["run", "canary", "--service", "web", "--release", "2"];
    env.kill_when(&args, "the canary never reached 25%", |(_, green)| {
        green == 25
    })
    .await;
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
    let env = AsgEnv::start().await;
    let good = App::start(200, "ok");
    // Swap the two target groups: web-blue is not behind the second one.
    let (blue, green) = (&env.world.blue, &env.world.green);
    env.write(&env.groups(&good.url, STEPS).service("web", |s| {
        s.traffic(|t| t.strs("target-groups", &[green, blue]))
    }));
    let (code, out, err) = env.run("canary", "web", "2").await;
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
