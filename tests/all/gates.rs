//! Gates as configured: HTTP smoke tests against real servers, and how consecutive
//! failures count.

use deployer_contract::{GateStatus, LifecyclePoint};
use deployer_engine::gates::{ConfiguredGates, Gate, GateContext, GatePoint, Gates};
use deployer_targets::gates::{HttpCheck, HttpGate};
use deployer_tests::support::App;

fn http(app: &App, requests: u32, min_success: f64) -> HttpGate {
    HttpGate {
        client: reqwest::Client::new(),
        check: HttpCheck {
            url: app.url.clone(),
            expect_status: 200,
            body_contains: Some("ok".into()),
            max_latency: None,
            requests,
            min_success,
            interval: std::time::Duration::ZERO,
        },
    }
}

fn ctx() -> GateContext {
    GateContext {
        deployment_id: "d".into(),
        service: "web".into(),
        new_release: "web:2".into(),
        stable_release: Some("web:1".into()),
        new_percent: 10,
        target_groups: Ok(None),
    }
}

fn gates(app: &App, failures: u32) -> ConfiguredGates {
    ConfiguredGates::new(vec![Gate {
        name: "smoke".into(),
        at: vec![GatePoint::PostTraffic],
        failures,
        check: Box::new(http(app, 2, 1.0)),
    }])
}

async fn status(gates: &ConfiguredGates) -> GateStatus {
    gates.run(LifecyclePoint::PostTraffic, &ctx()).await[0].status
}

#[tokio::test]
async fn the_success_ratio_decides() {
    let app = App::scripted(vec![200, 500, 200, 200], "ok");
    let result = http(&app, 4, 0.75).run("smoke").await;
    assert_eq!(result.status, GateStatus::Pass, "{}", result.detail);
    assert_eq!(result.observed, Some(0.75));
    let app = App::scripted(vec![200, 500, 500, 200], "ok");
    let result = http(&app, 4, 0.75).run("smoke").await;
    assert_eq!(result.status, GateStatus::Fail);
    assert!(
        result.detail.contains("2/4 requests") && result.detail.contains("status 500"),
        "{}",
        result.detail
    );
}

#[tokio::test]
async fn a_server_that_is_down_fails_the_gate() {
    // Bind a port, then free it: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = App::start(200, "ok");
    let mut dead = http(&app, 1, 1.0);
    dead.check.url = format!("http://127.0.0.1:{port}/health");
    let result = dead.run("smoke").await;
    assert_eq!(result.status, GateStatus::Fail, "{}", result.detail);
}

#[tokio::test]
async fn one_failure_in_a_row_is_inconclusive_when_two_are_allowed() {
    // Each run makes two requests: fail, fail | pass, pass | fail, fail | fail, fail
    let app = App::scripted(vec![500, 500, 200, 200, 500, 500, 500, 500], "ok");
    let gates = gates(&app, 2);
    assert_eq!(status(&gates).await, GateStatus::Inconclusive);
    assert_eq!(
        status(&gates).await,
        GateStatus::Pass,
        "a pass resets the streak"
    );
    assert_eq!(status(&gates).await, GateStatus::Inconclusive);
    assert_eq!(status(&gates).await, GateStatus::Fail);
}

#[tokio::test]
async fn gates_run_only_at_their_points() {
    let app = App::start(200, "ok");
    let gates = gates(&app, 1);
    assert!(
        gates
            .run(LifecyclePoint::PreDeploy, &ctx())
            .await
            .is_empty()
    );
    assert!(gates.watch(&ctx()).await.is_empty());
    assert_eq!(status(&gates).await, GateStatus::Pass);
}
