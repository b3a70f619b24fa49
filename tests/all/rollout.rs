//! The rollout engine against the simulated target: promotion, automatic rollback on
//! every kind of failure, faults, cancellation, locking, and recovery of a run killed
//! at every journaled step.

use std::time::Duration;

use deployer_contract::LifecyclePoint;
use deployer_engine::driver::DriverError;
use deployer_engine::gates::{Gates, NoGates};
use deployer_engine::rollout::{Report, ResumePolicy, Settings};
use deployer_engine::sim::Fault;
use deployer_engine::state::{DeployResult, Store};
use deployer_plugin_host::Limits;
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_tests::support::rollout::{Harness, Scripted, request, settings};
use deployer_tests::{components, source};

const CANARY: &str = r#"{"steps":[{"weight":10,"bake":"1s"},{"weight":50}]}"#;

/// The driver operation fails `times` times with a retryable `error`, after `skip`
/// successes.
fn transient(skip: u32, times: u32, error: &str) -> Fault {
    Fault::Fail {
        skip,
        times,
        error: DriverError::Transient(error.into()),
    }
}

/// A deployment of `web:2` by the built-in canary with [`CANARY`] on `h`.
async fn canary(h: &Harness, gates: &impl Gates) -> Report {
    h.deploy(&h.builtin("canary"), gates, request("canary", CANARY))
        .await
}

#[tokio::test]
async fn a_good_canary_promotes_with_verified_weights_at_each_step() {
    let h = Harness::new();
    let report = canary(&h, &Scripted::default()).await;
    assert_eq!(report.result, DeployResult::Promoted, "{}", report.detail);
    let state = h.state();
    assert_eq!(state.shifts, [10, 50, 100]);
    assert_eq!(state.live_release(), Some("web:2"));
    assert_eq!(state.stable_units, 4);
    assert!(h.store.active("web").await.unwrap().is_none());
    assert_eq!(h.store.history("web").await.unwrap().len(), 1);
}

#[tokio::test]
async fn every_builtin_promotes_and_rolls_back_on_a_failed_gate() {
    let base = Harness::new();
    for (strategy, params) in [
        ("canary", CANARY),
        ("blue-green", r#"{"bake":"100ms"}"#),
        ("rolling", r#"{"batch-size":2}"#),
    ] {
        let plugin = base.builtin(strategy);
        let mut h = base.next();
        let report = h
            .deploy(&plugin, &Scripted::default(), request(strategy, params))
            .await;
        assert_eq!(
            report.result,
            DeployResult::Promoted,
            "{strategy}: {}",
            report.detail
        );
        assert_eq!(h.state().live_release(), Some("web:2"), "{strategy}");

        // A bad release on a fresh target, journaled in the same store.
        h.fresh_target();
        let gates = Scripted::failing(LifecyclePoint::PostTraffic, 0);
        let report = h.deploy(&plugin, &gates, request(strategy, params)).await;
        assert_eq!(report.result, DeployResult::RolledBack, "{strategy}");
        assert!(
            report.detail.contains("5/10 requests failed"),
            "{strategy}: {}",
            report.detail
        );
        h.assert_safe_on_stable();
    }
}

#[tokio::test]
async fn an_alarm_during_a_bake_rolls_back() {
    let h = Harness::new();
    let gates = Scripted {
        fail_watch: true,
        ..Scripted::default()
    };
    let report = canary(&h, &gates).await;
    assert_eq!(report.result, DeployResult::RolledBack);
    assert!(
        report.detail.contains("alarm:api-errors"),
        "{}",
        report.detail
    );
    assert_eq!(
        h.state().shifts,
        [10, 0],
        "no further shift after the alarm"
    );
    h.assert_safe_on_stable();
}

#[tokio::test]
async fn a_trapping_strategy_rolls_back() {
    let h = Harness::new();
    let hostile = StrategyPlugin::load(
        &h.host,
        &source("hostile", components::HOSTILE_STRATEGY),
        Limits::strategy(),
    )
    .unwrap();
    let report = h
        .deploy(&hostile, &NoGates, request("hostile", r#"{"mode":"trap"}"#))
        .await;
    assert_eq!(report.result, DeployResult::RolledBack);
    assert!(
        report.detail.contains("crashed (trap)"),
        "{}",
        report.detail
    );
    h.assert_safe_on_stable();
}

#[tokio::test]
async fn weights_that_read_back_wrong_roll_back() {
    let h = Harness::new();
    h.driver.arm("shift_traffic", Fault::MisreportWeight(0));
    let report = canary(&h, &NoGates).await;
    assert_eq!(report.result, DeployResult::RolledBack);
    assert!(
        report
            .detail
            .contains("weights read back as 0% new after setting 10%"),
        "{}",
        report.detail
    );
}

#[tokio::test]
async fn transient_faults_are_retried() {
    let h = Harness::new();
    h.driver.arm("shift_traffic", transient(0, 2, "Throttling"));
    h.driver.arm("scale", transient(1, 1, "503"));
    let report = canary(&h, &NoGates).await;
    assert_eq!(report.result, DeployResult::Promoted, "{}", report.detail);
}

#[tokio::test]
async fn a_rollback_keeps_trying_through_faults() {
    let h = Harness::new();
    let gates = Scripted::failing(LifecyclePoint::PostTraffic, 1);
    // Forward shifts (10, 50) succeed; the rollback's shift back fails five times first.
    h.driver.arm("shift_traffic", transient(2, 5, "Throttling"));
    let report = canary(&h, &gates).await;
    let shifts = h
        .state()
        .operations
        .iter()
        .filter(|op| *op == "shift_traffic")
        .count();
    assert_eq!(
        shifts,
        2 + 6,
        "two forward shifts, then 5 failed tries and a successful one back"
    );
    assert_eq!(report.result, DeployResult::RolledBack, "{}", report.detail);
    h.assert_safe_on_stable();
}

#[tokio::test]
async fn a_rollback_that_cannot_finish_says_so() {
    let h = Harness::new();
    let gates = Scripted::failing(LifecyclePoint::PostTraffic, 0);
    // Let the first shift through, then refuse every later one.
    h.driver
        .arm("shift_traffic", transient(1, u32::MAX, "ALB unavailable"));
    let short = Settings {
        rollback_deadline: Duration::from_millis(100),
        ..settings()
    };
    let report = h
        .deploy_with(
            &h.builtin("canary"),
            &gates,
            short,
            request("canary", CANARY),
        )
        .await;
    assert_eq!(report.result, DeployResult::RollbackFailed);
    assert!(
        report.detail.contains("restore it by hand"),
        "{}",
        report.detail
    );
}

#[tokio::test]
async fn cancel_rolls_back() {
    let h = Harness::new();
    let plugin = h.builtin("canary");
    let engine = h.engine(&plugin, &NoGates, settings());
    let slow = r#"{"steps":[{"weight":10,"bake":"1h"}]}"#;
    let run = engine.deploy(request("canary", slow));
    tokio::pin!(run);
    let report = loop {
        tokio::select! {
            report = &mut run => break report.unwrap().into_report().unwrap(),
            () = tokio::time::sleep(Duration::from_millis(5)) => {
                if h.state().shifts == [10] {
                    h.cancel.cancel();
                }
            }
        }
    };
    assert_eq!(report.result, DeployResult::RolledBack);
    assert!(report.detail.contains("cancelled"), "{}", report.detail);
    h.assert_safe_on_stable();
}

#[tokio::test]
async fn a_second_deploy_of_the_service_is_refused_while_one_runs() {
    let h = Harness::new();
    let plugin = h.builtin("canary");
    let engine = h.engine(&plugin, &NoGates, settings());
    let first = engine.deploy(request(
        "canary",
        r#"{"steps":[{"weight":10,"bake":"300ms"}]}"#,
    ));
    tokio::pin!(first);
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        engine.deploy(request("canary", CANARY)).await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(
        first.unwrap().into_report().unwrap().result,
        DeployResult::Promoted
    );
    let err = second.unwrap_err().to_string();
    assert!(
        err.contains("already being deployed by deployment d"),
        "{err}"
    );
}

/// Kill the run at operation `n` (it hangs there and is dropped, so no rollback code
/// runs), then start a new run as the next CI invocation would.
async fn kill_then_recover(
    n: usize,
    policy: ResumePolicy,
    strategy: &str,
    params: &str,
) -> (Report, Harness, Vec<DeployResult>) {
    let h = Harness::new();
    let plugin = h.builtin(strategy);
    h.driver.hang_at(n);
    {
        let engine = h.engine(&plugin, &NoGates, settings());
        let run = engine.deploy(request(strategy, params));
        tokio::pin!(run);
        loop {
            tokio::select! {
                report = &mut run => panic!("operation {n} was never reached: {report:?}"),
                () = tokio::time::sleep(Duration::from_millis(1)) => {
                    if h.state().operations.len() > n {
                        break; // hanging in operation n: drop the run, as SIGKILL would
                    }
                }
            }
        }
    } // the killed run is gone: its future (and lock) dropped
    h.driver.disarm();
    let resume = Settings {
        on_resume: policy,
        ..settings()
    };
    let report = h
        .deploy_with(&plugin, &NoGates, resume, request(strategy, params))
        .await;
    let history = h
        .store
        .history("web")
        .await
        .unwrap()
        .iter()
        .filter_map(|j| j.finished().map(|f| f.0))
        .collect();
    (report, h, history)
}

#[tokio::test]
async fn a_run_killed_at_any_step_is_recovered_by_the_next_one() {
    for (strategy, params, operations) in [
        ("canary", r#"{"steps":[{"weight":10},{"weight":50}]}"#, 10),
        ("blue-green", "{}", 6),
    ] {
        for n in 0..operations {
            // Roll back (the default), then deploy afresh: the release ends promoted. A
            // run killed after it promoted is finished instead: traffic never moves off
            // a promoted release, whose old side may already be gone.
            let (report, h, history) =
                kill_then_recover(n, ResumePolicy::Rollback, strategy, params).await;
            assert!(report.recovered.is_some(), "{strategy} killed at {n}");
            let promoted_before_kill = h.state().operations[..n].iter().any(|o| o == "promote");
            let expected: &[DeployResult] = if promoted_before_kill {
                &[DeployResult::Promoted]
            } else {
                &[DeployResult::RolledBack, DeployResult::Promoted]
            };
            assert_eq!(history, expected, "{strategy} killed at {n}");
            assert_eq!(
                report.result,
                DeployResult::Promoted,
                "{strategy} killed at {n}: {}",
                report.detail
            );
            let state = h.state();
            assert_eq!(
                state.live_release(),
                Some("web:2"),
                "{strategy} killed at {n}: {state:?}"
            );
            // Any traffic the killed run had moved went back to stable before the new run.
            let killed_shifts = state.shifts.iter().take_while(|p| **p != 0).count();
            if killed_shifts > 0 && killed_shifts < state.shifts.len() {
                assert_eq!(state.shifts[killed_shifts], 0, "{strategy} {n}: {state:?}");
            }

            // Resume: the same run carries on from the step it died in.
            let (report, h, history) =
                kill_then_recover(n, ResumePolicy::Resume, strategy, params).await;
            assert_eq!(
                history,
                [DeployResult::Promoted],
                "{strategy} resumed at {n}"
            );
            assert_eq!(
                report.result,
                DeployResult::Promoted,
                "{strategy} resumed at {n}: {}",
                report.detail
            );
            assert!(
                !h.state().shifts.contains(&0),
                "resuming never shifts traffic back"
            );
            assert_eq!(h.state().live_release(), Some("web:2"));
        }
    }
}

#[tokio::test]
async fn recovery_alone_leaves_traffic_on_stable() {
    // What `deployer rollback` does with an interrupted run.
    let h = Harness::new();
    let plugin = h.builtin("canary");
    h.driver.hang_at(6);
    let engine = h.engine(&plugin, &NoGates, settings());
    let _ = tokio::time::timeout(
        Duration::from_millis(300),
        engine.deploy(request("canary", CANARY)),
    )
    .await;
    assert!(
        h.state().new_percent > 0,
        "killed with traffic on the new side"
    );
    h.driver.disarm();
    let report = engine.recover_active().await.unwrap().unwrap();
    assert_eq!(report.result, DeployResult::RolledBack);
    h.assert_safe_on_stable();
    assert!(
        engine.recover_active().await.unwrap().is_none(),
        "nothing left to recover"
    );
}
