//! ECS services as teams run them (issue #16): on the ECS deployment controller, made by
//! Terraform, autoscaled by Application Auto Scaling. Canary and blue-green run on a
//! pair of such services behind the ALB's two target groups, with no desired-count in
//! the config: the new side is sized from the live one, and the services' own scaling
//! is held still for the deployment and put back after it — by the run, by its
//! rollback, and by whichever command recovers a killed run.
//!
//! The world (`support/moto_pair_world.py`): `store-blue` live at 7 tasks (scalable
//! target 2–10, a CPU target-tracking policy), `store-green` idle at 0, the listener
//! 100% on blue's target group.

use deployer_tests::support::App;
use deployer_tests::support::env::{EcsPairEnv, sigkill};

const NO_TRAFFIC: &str = "the canary never got traffic";

/// The issue's user system end to end: CI has pushed an image and runs `deployer run
/// canary --image app=…` with no desired-count in the config. The new side runs a new
/// revision of the live task definition with only that image changed, sized from the
/// live side (7); both services' scaling is suspended during the run and restored after
/// it. Then a second release whose new side's 5xx ratio (CloudWatch, for *that* side's
/// target group, which is blue this time) is over the ALB gate's bound is rolled back,
/// and scaling is restored again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaled_pair_is_canaried_at_its_live_size_with_scaling_held_still_then_restored() {
    let good = App::start(200, "ok");
    let env = EcsPairEnv::start(&[]).await;
    let config = |steps: &str| {
        env.store(&good.url, steps).service("store", |s| {
            s.gate("alb", &["post-traffic", "bake"], |g| {
                g.raw("max-5xx-percent", "5.0").int("min-requests", 50)
            })
        })
    };
    env.write(&config(
        r#"[{ weight = 10, bake = "3s" }, { weight = 50 }]"#,
    ));
    assert_eq!(env.scaling().await, [(2, 10, false), (0, 10, false)]);

    let run = env.spawn_captured(&["run", "canary", "--image", "app=shop/store:sha-4"]);
    env.wait_for_weights(NO_TRAFFIC, |(_, green)| green > 0)
        .await;
    // Mid-canary: both services' scaling is suspended, and the canary side runs the
    // share of 7 (not of a number in the config) that 10% needs.
    let [(_, _, blue_held), (_, _, green_held)] = env.scaling().await;
    assert!(blue_held && green_held, "{:?}", env.scaling().await);
    assert_eq!(env.services().await[0], (7, "store:1".to_string()));
    assert_eq!(env.services().await[1], (1, "store:4".to_string()));

    let out = run.wait_with_output().await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("registered store:4 from store:1"),
        "{stderr}"
    );
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(
        env.services().await,
        [(0, "store:1".to_string()), (7, "store:4".to_string())],
        "the new side runs the 7 tasks the live one ran; the old one is idle"
    );
    // Scaling resumed; the live service's bounds moved to green, and blue may rest at 0.
    assert_eq!(env.scaling().await, [(0, 10, false), (2, 10, false)]);

    // The next release's new side is blue: its 5xx ratio is 30/200 = 15%.
    crate::side_gates::put_alb_requests(&env.clients, &env.world.blue, 200.0, 30.0).await;
    env.write(&config(
        r#"[{ weight = 10, bake = "2s" }, { weight = 50 }]"#,
    ));
    let (code, out, err) = env
        .deployer(&["run", "canary", "--image", "app=shop/store:sha-5"])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("15.0%") && out.contains("store-blue"), "{out}");
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(
        env.services().await,
        [(0, "store:5".to_string()), (7, "store:4".to_string())]
    );
    assert_eq!(env.scaling().await, [(0, 10, false), (2, 10, false)]);
    let (_, history, _) = env.deployer(&["history"]).await;
    assert!(
        history.contains("store:4") && history.contains("store:5"),
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_run_killed_mid_canary_leaves_scaling_suspended_until_rollback_restores_it() {
    let good = App::start(200, "ok");
    let env = EcsPairEnv::start(&[]).await;
    env.write(&env.store(&good.url, r#"[{ weight = 10, bake = "1h" }]"#));
    let run = env.spawn(&["run", "canary", "--release", "store:2"]);
    env.wait_for_weights(NO_TRAFFIC, |(_, green)| green > 0)
        .await;
    sigkill(run).await;
    let [(_, _, blue_held), (_, _, green_held)] = env.scaling().await;
    assert!(
        blue_held && green_held,
        "a killed run cannot restore anything: {:?}",
        env.scaling().await
    );

    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(
        env.services().await,
        [(7, "store:1".to_string()), (0, "store:2".to_string())]
    );
    assert_eq!(
        env.scaling().await,
        [(2, 10, false), (0, 10, false)],
        "the rollback put the services' scaling back as the killed run found it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_a_team_suspended_on_purpose_stays_suspended_after_a_deploy() {
    let good = App::start(200, "ok");
    let env = EcsPairEnv::start(&[]).await;
    env.clients
        .app_autoscaling
        .register_scalable_target()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .scalable_dimension(
            aws_sdk_applicationautoscaling::types::ScalableDimension::EcsServiceDesiredCount,
        )
        .resource_id("service/prod/store-green")
        .suspended_state(
            aws_sdk_applicationautoscaling::types::SuspendedState::builder()
                .dynamic_scaling_in_suspended(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    env.write(&env.store(&good.url, "[{ weight = 50 }]"));
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "store:2"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.scaling().await, [(0, 10, false), (2, 10, true)]);
}

/// `deployer validate --account` reads the account and changes nothing: a sound pair is
/// reported with what is live; services listed in the wrong order for their target
/// groups, and a pair where only one service has a scalable target, are errors at the
/// service's target (exit 3) naming what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_with_the_account_checks_the_pair_behind_its_target_groups_and_its_scaling() {
    let good = App::start(200, "ok");
    let env = EcsPairEnv::start(&[]).await;
    env.write(&env.store(&good.url, "[{ weight = 50 }]"));
    let (code, out, err) = env.deployer(&["validate", "--account"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("service `store`: store:1 is live on 7 unit(s), side by side; held still while it deploys: 2"),
        "{out}"
    );

    env.write(
        &env.store(&good.url, "[{ weight = 50 }]")
            .service("store", |s| {
                s.target(|t| t.strs("services", &["store-green", "store-blue"]))
            }),
    );
    let (code, out, err) = env.deployer(&["validate", "--account"]).await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("services.store.target") && err.contains("is not behind target group"),
        "{err}"
    );

    // An idle side whose autoscaler may start tasks.
    env.clients
        .app_autoscaling
        .register_scalable_target()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .scalable_dimension(
            aws_sdk_applicationautoscaling::types::ScalableDimension::EcsServiceDesiredCount,
        )
        .resource_id("service/prod/store-green")
        .min_capacity(2)
        .send()
        .await
        .unwrap();
    env.write(&env.store(&good.url, "[{ weight = 50 }]"));
    let (code, out, err) = env.deployer(&["validate", "--account"]).await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("store-green is idle but its scalable target's minimum capacity is 2"),
        "{err}"
    );

    env.clients
        .app_autoscaling
        .deregister_scalable_target()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .scalable_dimension(
            aws_sdk_applicationautoscaling::types::ScalableDimension::EcsServiceDesiredCount,
        )
        .resource_id("service/prod/store-green")
        .send()
        .await
        .unwrap();
    env.write(&env.store(&good.url, "[{ weight = 50 }]"));
    let (code, out, err) = env.deployer(&["validate", "--account"]).await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("store-green has none"), "{err}");
    // Nothing was changed by any of it.
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(
        env.services().await,
        [(7, "store:1".to_string()), (0, "store:1".to_string())]
    );
}

/// AWS refuses the restore of the services' scaling when a run ends (access denied on
/// exactly the calls that put the suspended flags back): the run says what is left
/// suspended and does not call the deployment finished. With the permission back, the
/// next `deployer run` of the release finds the deployment unfinished, completes it and
/// restores the scaling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_restore_leaves_the_deployment_unfinished_and_the_next_run_restores_scaling() {
    use deployer_tests::support::fault_proxy::{ALWAYS, Fault, FaultProxy};
    let good = App::start(200, "ok");
    let env = EcsPairEnv::start(&[]).await;
    let proxy = FaultProxy::start(&env.moto.endpoint).await;
    env.write(
        &env.store(&good.url, "[{ weight = 50 }]")
            .aws(&proxy.endpoint),
    );
    proxy.arm_matching(
        "RegisterScalableTarget",
        "\"DynamicScalingInSuspended\":false",
        Fault::AccessDenied,
        0,
        ALWAYS,
    );
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "store:2"])
        .await;
    assert!(code != 0 && code != 1, "{code}: {out}\n{err}");
    assert!(
        err.contains("restoring the service's own scaling failed")
            && err.contains("AccessDenied")
            && err.contains("next `deployer run` or `deployer rollback`"),
        "{err}"
    );
    assert_eq!(
        env.weights().await,
        (0, 100),
        "the release itself was promoted"
    );
    let [(_, _, blue_held), (_, _, green_held)] = env.scaling().await;
    assert!(blue_held && green_held, "{:?}", env.scaling().await);

    proxy.disarm("RegisterScalableTarget");
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "store:2"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.scaling().await, [(0, 10, false), (2, 10, false)]);
    assert_eq!(env.weights().await, (0, 100));
    let (_, history, _) = env.deployer(&["history"]).await;
    assert_eq!(history.matches("promoted").count(), 1, "{history}");
}

/// Set service `name`'s desired count behind deployer's back.
async fn scale(env: &EcsPairEnv, name: &str, count: i32) {
    env.clients
        .ecs
        .update_service()
        .cluster("prod")
        .service(name)
        .desired_count(count)
        .send()
        .await
        .unwrap();
}

/// The new side's service is deleted mid-canary (a person, a Terraform apply): the run
/// cannot scale it up and rolls back, and the rollback still puts all traffic on the live
/// service, which it can read, though it cannot read the deleted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_side_deleted_mid_canary_is_rolled_back_off_with_traffic_on_the_live_side() {
    let good = App::start(200, "ok");
    let env = EcsPairEnv::start(&[]).await;
    env.write(&env.store(
        &good.url,
        r#"[{ weight = 10, bake = "2s" }, { weight = 50 }]"#,
    ));
    let run = env.spawn_captured(&["run", "canary", "--release", "store:2"]);
    env.wait_for_weights(NO_TRAFFIC, |(_, green)| green > 0)
        .await;
    env.clients
        .ecs
        .delete_service()
        .cluster("prod")
        .service("store-green")
        .force(true)
        .send()
        .await
        .unwrap();
    let out = run.wait_with_output().await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(env.weights().await, (100, 0));
    assert_eq!(env.services().await[0], (7, "store:1".to_string()));
    assert_eq!(
        env.scaling().await[0],
        (2, 10, false),
        "the live service's scaling restored"
    );
}

/// A second job (its own state, so no shared lock) finds the idle side in use: another
/// deployment's canary holds 10% there. It refuses before journaling anything, so it
/// neither rolls that canary's traffic back nor touches the services or their scaling.
/// The same for a listener that sends traffic to an idle side with nothing on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_finding_the_idle_side_in_use_changes_nothing_and_says_why() {
    let good = App::start(200, "ok");
    let env = EcsPairEnv::start(&[]).await;
    env.write(&env.store(&good.url, "[{ weight = 50 }]"));
    scale(&env, "store-green", 1).await;
    env.set_weights(90, 10).await;
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "store:2"])
        .await;
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        err.contains("the route sends 10% of traffic to store-green, which is not the live side"),
        "{err}"
    );
    assert_eq!(env.weights().await, (90, 10));
    assert_eq!(
        env.services().await,
        [(7, "store:1".to_string()), (1, "store:1".to_string())]
    );
    assert_eq!(env.scaling().await, [(2, 10, false), (0, 10, false)]);
    let (_, history, _) = env.deployer(&["history"]).await;
    assert!(
        !history.contains("store:2"),
        "nothing was journaled: {history}"
    );

    env.set_weights(100, 0).await;
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "store:2"])
        .await;
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        err.contains("store-green should be idle but has 1 unit(s)"),
        "{err}"
    );
    let (code, out, err) = env.deployer(&["validate", "--account"]).await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("store-green should be idle"), "{err}");
}

/// A run killed mid-canary is resumed (`on-interrupted = "resume"`) after the stable side
/// was scaled down to 1 task meanwhile: before traffic moves on, the stable side is
/// brought back to the 7 its journal says, so 50% never lands on 1 task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_brings_the_stable_side_back_to_its_size_before_moving_traffic() {
    let good = App::start(200, "ok");
    let env = EcsPairEnv::start(&[]).await;
    env.write(
        &env.store(
            &good.url,
            r#"[{ weight = 10, bake = "3s" }, { weight = 50 }]"#,
        )
        .service("store", |s| {
            s.settings(|t| t.str("on-interrupted", "resume"))
        }),
    );
    let run = env.spawn(&["run", "canary", "--release", "store:2"]);
    env.wait_for_weights(NO_TRAFFIC, |(_, green)| green > 0)
        .await;
    sigkill(run).await;
    scale(&env, "store-blue", 1).await;

    let run = env.spawn_captured(&["run", "canary", "--release", "store:2"]);
    let mut blue_at_half = None;
    let started = std::time::Instant::now();
    while blue_at_half.is_none() && started.elapsed() < std::time::Duration::from_secs(60) {
        let (_, green) = env.weights().await;
        let [(blue, _), _] = env.services().await;
        if green >= 50 {
            blue_at_half = Some(blue);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = run.wait_with_output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        blue_at_half,
        Some(7),
        "50% went to a stable side of {blue_at_half:?}"
    );
}

/// The canary's service is scaled to 0 behind deployer's back during a long bake (outside
/// test F3: its 10% used to keep going to no task until the bake ended). The bake watches
/// the sides' healthy units against what their share needs: two short readings in a row
/// fail it, and the run rolls back long before the bake's hour is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_loses_its_tasks_during_a_bake_is_rolled_back() {
    let good = App::start(200, "ok");
    let env = EcsPairEnv::start(&[]).await;
    env.write(&env.store(&good.url, r#"[{ weight = 10, bake = "1h" }]"#));
    let run = env.spawn_captured(&["run", "canary", "--release", "store:2"]);
    env.wait_for_weights(NO_TRAFFIC, |(_, green)| green > 0)
        .await;
    scale(&env, "store-green", 0).await;
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), run.wait_with_output())
        .await
        .expect("the bake went on with no canary tasks")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("gate `capacity` failed: the new side has 0 healthy unit(s) and its 10% of traffic needs 1 of 7"),
        "{stdout}"
    );
    assert_eq!(env.weights().await, (100, 0));
}

/// A run killed mid-canary and resumed (`on-interrupted = "resume"`) resolves the same
/// sides for its gates: the ALB gate of the resumed run watches green, the new side, whose
/// 5xx ratio went bad while nobody ran, and rolls back. (Watching blue, which has no data,
/// it would have promoted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_gates_the_same_new_side() {
    let good = App::start(200, "ok");
    let env = EcsPairEnv::start(&[]).await;
    env.write(
        &env.store(
            &good.url,
            r#"[{ weight = 10, bake = "3s" }, { weight = 50 }]"#,
        )
        .service("store", |s| {
            s.settings(|t| t.str("on-interrupted", "resume")).gate(
                "alb",
                &["post-traffic", "bake"],
                |g| g.raw("max-5xx-percent", "5.0").int("min-requests", 50),
            )
        }),
    );
    let run = env.spawn(&["run", "canary", "--release", "store:2"]);
    env.wait_for_weights(NO_TRAFFIC, |(_, green)| green > 0)
        .await;
    sigkill(run).await;
    crate::side_gates::put_alb_requests(&env.clients, &env.world.green, 200.0, 30.0).await;

    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "store:2"])
        .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("resuming"), "it resumed: {err}");
    assert!(
        out.contains("store-green") && out.contains("15.0%"),
        "{out}"
    );
    assert_eq!(env.weights().await, (100, 0));
}
