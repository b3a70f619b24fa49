//! Gates aimed at the sides being deployed, against moto: the built-in ALB gate and an
//! alarm gate whose name uses `{new-target-group-name}`. The ECS world's task sets
//! alternate between the blue and the green target group, so a second deployment swaps
//! which one is new: the gates must follow it.
//!
//! CloudWatch data is put with PutMetricData under the dimensions ALBs publish
//! (`TargetGroup` and `LoadBalancer`); moto keeps it, so a second deployment in the same
//! world sees what the first one did.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StateValue};
use deployer_targets::gates::placeholders::{load_balancer_dimension, target_group_dimension};
use deployer_tests::support::App;
use deployer_tests::support::config::Table;
use deployer_tests::support::env::EcsEnv;

use crate::ecs::STEPS;

/// Put `requests` requests with `errors` 5xx answers on target group `tg` (an ARN),
/// under the dimensions the ALB publishes them with.
async fn put_requests(env: &EcsEnv, tg: &str, requests: f64, errors: f64) {
    put_alb_requests(&env.clients, tg, requests, errors).await;
}

/// [`put_requests`] with any world's clients.
pub(crate) async fn put_alb_requests(
    clients: &deployer_targets::aws::Clients,
    tg: &str,
    requests: f64,
    errors: f64,
) {
    let out = clients
        .elb
        .describe_target_groups()
        .target_group_arns(tg)
        .send()
        .await
        .unwrap();
    let lb = out.target_groups()[0].load_balancer_arns()[0].clone();
    let dimensions = [
        Dimension::builder()
            .name("TargetGroup")
            .value(target_group_dimension(tg).unwrap())
            .build(),
        Dimension::builder()
            .name("LoadBalancer")
            .value(load_balancer_dimension(&lb).unwrap())
            .build(),
    ];
    let datum = |metric: &str, value: f64| {
        MetricDatum::builder()
            .metric_name(metric)
            .set_dimensions(Some(dimensions.to_vec()))
            .value(value)
            .unit(StandardUnit::Count)
            .build()
    };
    clients
        .cloudwatch
        .put_metric_data()
        .namespace("AWS/ApplicationELB")
        .metric_data(datum("RequestCount", requests))
        .metric_data(datum("HTTPCode_Target_5XX_Count", errors))
        .send()
        .await
        .unwrap();
}

/// The ECS world with `web` on task sets, smoke-tested against a good app, and an ALB
/// gate after every shift set up by `alb`.
async fn world(app: &App, alb: impl FnOnce(Table) -> Table) -> EcsEnv {
    let env = EcsEnv::start(&[]).await;
    let config = env
        .task_sets(&app.url, STEPS)
        .service("web", |s| s.gate("alb", &["post-traffic"], alb));
    env.write(&config);
    env
}

/// The text of the newest journal of service `web`.
fn journal(env: &EcsEnv) -> String {
    let dir = env.dir.path().join(".deployer/services/web/deployments");
    let files = deployer_tests::support::journals_oldest_first(&dir);
    std::fs::read_to_string(files.last().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alb_gate_watches_the_new_side_and_follows_it_when_the_sides_swap() {
    let good = App::start(200, "ok");
    let env = world(&good, |g| g.raw("max-5xx-percent", "5.0")).await;
    let (blue, green) = (env.world.blue.clone(), env.world.green.clone());
    // 6% 5xx on blue, the stable side: web:2 goes to green, which is clean.
    put_requests(&env, &blue, 200.0, 12.0).await;
    put_requests(&env, &green, 200.0, 0.0).await;
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(
        code, 0,
        "the stable side's errors are not the new release's: {out}\n{err}"
    );
    assert_eq!(env.weights().await, (0, 100));
    let green_tg = target_group_dimension(&green).unwrap();
    assert!(
        journal(&env).contains(&format!("new ({green_tg}) 0/200 = 0.0% 5xx <= max 5.0%")),
        "{}",
        journal(&env)
    );

    // web:3 goes to blue now, where the errors are: the gate follows the new side.
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:3"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    let blue_tg = target_group_dimension(&blue).unwrap();
    assert!(
        out.contains(&format!("new ({blue_tg}) 12/200 = 6.0% 5xx > max 5.0%")),
        "{out}"
    );
    assert_eq!(env.weights().await, (0, 100), "traffic stays on web:2");
    assert_eq!(env.primary().await.0, "web:2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_named_by_the_new_sides_placeholder_rolls_back_only_its_side() {
    let good = App::start(200, "ok");
    let env = EcsEnv::start(&[]).await;
    let config = env.task_sets(&good.url, STEPS).service("web", |s| {
        s.alarm_gate(&["post-traffic"], &["{new-target-group-name}-5xx"])
    });
    env.write(&config);
    for (side, state) in [
        ("web-blue", StateValue::Alarm),
        ("web-green", StateValue::Ok),
    ] {
        let name = format!("{side}-5xx");
        env.clients
            .cloudwatch
            .put_metric_alarm()
            .alarm_name(&name)
            .namespace("AWS/ApplicationELB")
            .metric_name("HTTPCode_Target_5XX_Count")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(10.0)
            .comparison_operator(
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
            )
            .send()
            .await
            .unwrap();
        env.clients
            .cloudwatch
            .set_alarm_state()
            .alarm_name(&name)
            .state_value(state)
            .state_reason("test")
            .send()
            .await
            .unwrap();
    }
    // Blue (stable) is in ALARM, green (new) is OK: promoted.
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.weights().await, (0, 100));
    assert!(
        journal(&env).contains("web-green-5xx: OK"),
        "{}",
        journal(&env)
    );
    // Blue is the new side of web:3, and its alarm is in ALARM: rolled back.
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:3"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("web-blue-5xx: ALARM"), "{out}");
    assert_eq!(env.weights().await, (0, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_to_stable_compares_the_new_sides_5xx_ratio_with_the_stable_sides() {
    let good = App::start(200, "ok");
    let env = world(&good, |g| g.raw("relative-to-stable", "1.0")).await;
    let (blue, green) = (env.world.blue.clone(), env.world.green.clone());
    // Stable blue 5.0%, new green 5.5%: within a point of stable.
    put_requests(&env, &blue, 200.0, 10.0).await;
    put_requests(&env, &green, 200.0, 11.0).await;
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        journal(&env).contains("new 5.5% 5xx vs stable 10/200 = 5.0% + margin 1.0 = 6.0%: within"),
        "{}",
        journal(&env)
    );
    // Blue, new for web:3, rises to 40/300 = 13.3% while stable green stays at 5.5%.
    put_requests(&env, &blue, 100.0, 30.0).await;
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:3"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("new 13.3% 5xx vs stable 11/200 = 5.5% + margin 1.0 = 6.5%: over"),
        "{out}"
    );
    assert_eq!(env.weights().await, (0, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_min_requests_the_5xx_ratio_is_not_judged_and_no_data_passes() {
    let good = App::start(200, "ok");
    let env = world(&good, |g| {
        g.raw("max-5xx-percent", "5.0").int("min-requests", 50)
    })
    .await;
    // No datapoints at all: the gate passes, saying so.
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        journal(&env).contains("no data: no RequestCount datapoints for the new side"),
        "{}",
        journal(&env)
    );
    // 30% errors, but on 40 requests: too few to judge. web:3 goes to blue.
    put_requests(&env, &env.world.blue.clone(), 40.0, 12.0).await;
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:3"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        journal(&env).contains(
            "new 12/40 requests failed: fewer than min-requests 50, so the 5xx ratio is not judged"
        ),
        "{}",
        journal(&env)
    );
}
