//! The rollout engine against the simulated target: promotion, automatic rollback on
//! every kind of failure, faults, cancellation, locking, and recovery of a run killed
//! at every journaled step.

use std::sync::Mutex;
use std::time::Duration;

use deployer_contract::{GateResult, GateStatus, LifecyclePoint, TargetInfo, TargetKind};
use deployer_engine::driver::DriverError;
use deployer_engine::gates::{GateContext, Gates, NoGates};
use deployer_engine::rollout::{
    DeployRequest, Engine, Parts, Preflight, Report, ResumePolicy, Settings,
};
use deployer_engine::sim::{Fault, SimDriver};
use deployer_engine::state::{DeployResult, LocalStore, Store};
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Limits, PluginHost, PluginSource};
use deployer_tests::{components, host, source};
use tokio_util::sync::CancellationToken;

const CANARY: &str = r#"{"steps":[{"weight":10,"bake":"1s"},{"weight":50}]}"#;

/// Gates that fail the `n`-th run at `point` (counting from 0), pass otherwise.
#[derive(Default)]
struct Scripted {
    fail: Option<(LifecyclePoint, usize)>,
    fail_watch: bool,
    runs: Mutex<Vec<LifecyclePoint>>,
}

impl Gates for Scripted {
    async fn run(&self, point: LifecyclePoint, _: &GateContext) -> Vec<GateResult> {
        let n = {
            let mut runs = self.runs.lock().unwrap();
            runs.push(point);
            runs.iter().filter(|p| **p == point).count() - 1
        };
        let failed = self.fail == Some((point, n));
        vec![GateResult {
            name: "http:/health".into(),
            status: if failed {
                GateStatus::Fail
            } else {
                GateStatus::Pass
            },
            detail: if failed {
                "5/10 requests failed".into()
            } else {
                "10/10 ok".into()
            },
            observed: None,
        }]
    }

    async fn watch(&self, _: &GateContext) -> Vec<GateResult> {
        let status = if self.fail_watch {
            GateStatus::Fail
        } else {
            GateStatus::Pass
        };
        vec![GateResult {
            name: "alarm:api-errors".into(),
            status,
            detail: "alarm state".into(),
            observed: None,
        }]
    }
}

pub(crate) fn settings() -> Settings {
    Settings {
        watch_interval: Duration::from_millis(50),
        rollback_deadline: Duration::from_secs(5),
        retry_base: Duration::from_millis(5),
        // These tests are of the run itself: every step meets the runtime guard.
        preflight: Preflight::Skip,
        ..Settings::default()
    }
}

pub(crate) fn request(strategy: &str, params: &str) -> DeployRequest {
    DeployRequest {
        strategy: strategy.into(),
        new_release: "web:2".into(),
        params: params.into(),
        target: TargetInfo {
            kind: TargetKind::Simulated,
            desired_count: 4,
            native_rolling: false,
            test_traffic: false,
        },
    }
}

pub(crate) fn builtin(host: &PluginHost, name: &str) -> StrategyPlugin {
    StrategyPlugin::load(
        host,
        &PluginSource::Builtin(name.into()),
        Limits::strategy(),
    )
    .unwrap()
}

pub(crate) async fn deploy(
    strategy: &StrategyPlugin,
    driver: &SimDriver,
    gates: &impl Gates,
    store: &LocalStore,
    settings: Settings,
    request: DeployRequest,
) -> Report {
    let log = |_: &deployer_engine::events::Event<'_>| {};
    Engine::new(Parts {
        service: "web",
        strategy,
        target: driver,
        gates,
        store,
        settings,
        cancel: CancellationToken::new(),
        events: &log,
    })
    .deploy(request)
    .await
    .unwrap()
    .into_report()
    .unwrap()
}

pub(crate) fn assert_safe_on_stable(driver: &SimDriver) {
    let state = driver.state();
    assert_eq!(
        state.new_percent, 0,
        "traffic stranded on the new side: {state:?}"
    );
    assert_eq!(state.stable_units, 4, "{state:?}");
    assert_eq!(state.new_units, 0, "{state:?}");
    assert_eq!(state.live_release(), Some("web:1"));
}

#[tokio::test]
async fn a_good_canary_promotes_with_verified_weights_at_each_step() {
    let (host, _cache) = host();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let driver = SimDriver::new("web:1", 4);
    let report = deploy(
        &builtin(&host, "canary"),
        &driver,
        &Scripted::default(),
        &store,
        settings(),
        request("canary", CANARY),
    )
    .await;
    assert_eq!(report.result, DeployResult::Promoted, "{}", report.detail);
    let state = driver.state();
    assert_eq!(state.shifts, [10, 50, 100]);
    assert_eq!(state.live_release(), Some("web:2"));
    assert_eq!(state.stable_units, 4);
    assert!(store.active("web").await.unwrap().is_none());
    assert_eq!(store.history("web").await.unwrap().len(), 1);
}

#[tokio::test]
async fn every_builtin_promotes_and_rolls_back_on_a_failed_gate() {
    let (host, _cache) = host();
    for (strategy, params) in [
        ("canary", CANARY),
        ("blue-green", r#"{"bake":"100ms"}"#),
        ("rolling", r#"{"batch-size":2}"#),
    ] {
        let plugin = builtin(&host, strategy);
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let good = SimDriver::new("web:1", 4);
        let report = deploy(
            &plugin,
            &good,
            &Scripted::default(),
            &store,
            settings(),
            request(strategy, params),
        )
        .await;
        assert_eq!(
            report.result,
            DeployResult::Promoted,
            "{strategy}: {}",
            report.detail
        );
        assert_eq!(good.state().live_release(), Some("web:2"), "{strategy}");

        let bad = SimDriver::new("web:1", 4);
        let gates = Scripted {
            fail: Some((LifecyclePoint::PostTraffic, 0)),
            ..Scripted::default()
        };
        let report = deploy(
            &plugin,
            &bad,
            &gates,
            &store,
            settings(),
            request(strategy, params),
        )
        .await;
        assert_eq!(report.result, DeployResult::RolledBack, "{strategy}");
        assert!(
            report.detail.contains("5/10 requests failed"),
            "{strategy}: {}",
            report.detail
        );
        assert_safe_on_stable(&bad);
    }
}

#[tokio::test]
async fn an_alarm_during_a_bake_rolls_back() {
    let (host, _cache) = host();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let driver = SimDriver::new("web:1", 4);
    let gates = Scripted {
        fail_watch: true,
        ..Scripted::default()
    };
    let report = deploy(
        &builtin(&host, "canary"),
        &driver,
        &gates,
        &store,
        settings(),
        request("canary", CANARY),
    )
    .await;
    assert_eq!(report.result, DeployResult::RolledBack);
    assert!(
        report.detail.contains("alarm:api-errors"),
        "{}",
        report.detail
    );
    assert_eq!(
        driver.state().shifts,
        [10, 0],
        "no further shift after the alarm"
    );
    assert_safe_on_stable(&driver);
}

#[tokio::test]
async fn a_trapping_strategy_rolls_back() {
    let (host, _cache) = host();
    let hostile = StrategyPlugin::load(
        &host,
        &source("hostile", components::HOSTILE_STRATEGY),
        Limits::strategy(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let driver = SimDriver::new("web:1", 4);
    let report = deploy(
        &hostile,
        &driver,
        &NoGates,
        &store,
        settings(),
        request("hostile", r#"{"mode":"trap"}"#),
    )
    .await;
    assert_eq!(report.result, DeployResult::RolledBack);
    assert!(
        report.detail.contains("crashed (trap)"),
        "{}",
        report.detail
    );
    assert_safe_on_stable(&driver);
}

#[tokio::test]
async fn weights_that_read_back_wrong_roll_back() {
    let (host, _cache) = host();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let driver = SimDriver::new("web:1", 4);
    driver.arm("shift_traffic", Fault::MisreportWeight(0));
    let report = deploy(
        &builtin(&host, "canary"),
        &driver,
        &NoGates,
        &store,
        settings(),
        request("canary", CANARY),
    )
    .await;
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
    let (host, _cache) = host();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let driver = SimDriver::new("web:1", 4);
    driver.arm(
        "shift_traffic",
        Fault::Fail {
            skip: 0,
            times: 2,
            error: DriverError::Transient("Throttling".into()),
        },
    );
    driver.arm(
        "scale",
        Fault::Fail {
            skip: 1,
            times: 1,
            error: DriverError::Transient("503".into()),
        },
    );
    let report = deploy(
        &builtin(&host, "canary"),
        &driver,
        &NoGates,
        &store,
        settings(),
        request("canary", CANARY),
    )
    .await;
    assert_eq!(report.result, DeployResult::Promoted, "{}", report.detail);
}

#[tokio::test]
async fn a_rollback_keeps_trying_through_faults() {
    let (host, _cache) = host();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let driver = SimDriver::new("web:1", 4);
    let gates = Scripted {
        fail: Some((LifecyclePoint::PostTraffic, 1)),
        ..Scripted::default()
    };
    // Forward shifts (10, 50) succeed; the rollback's shift back fails five times first.
    driver.arm(
        "shift_traffic",
        Fault::Fail {
            skip: 2,
            times: 5,
            error: DriverError::Transient("Throttling".into()),
        },
    );
    let report = deploy(
        &builtin(&host, "canary"),
        &driver,
        &gates,
        &store,
        settings(),
        request("canary", CANARY),
    )
    .await;
    let shifts = driver
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
    assert_safe_on_stable(&driver);
}

#[tokio::test]
async fn a_rollback_that_cannot_finish_says_so() {
    let (host, _cache) = host();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let driver = SimDriver::new("web:1", 4);
    let gates = Scripted {
        fail: Some((LifecyclePoint::PostTraffic, 0)),
        ..Scripted::default()
    };
    // Let the first shift through, then refuse every later one.
    driver.arm(
        "shift_traffic",
        Fault::Fail {
            skip: 1,
            times: u32::MAX,
            error: DriverError::Transient("ALB unavailable".into()),
        },
    );
    let short = Settings {
        rollback_deadline: Duration::from_millis(100),
        ..settings()
    };
    let report = deploy(
        &builtin(&host, "canary"),
        &driver,
        &gates,
        &store,
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
    let (host, _cache) = host();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let driver = SimDriver::new("web:1", 4);
    let plugin = builtin(&host, "canary");
    let cancel = CancellationToken::new();
    let log = |_: &deployer_engine::events::Event<'_>| {};
    let engine = Engine::new(Parts {
        service: "web",
        strategy: &plugin,
        target: &driver,
        gates: &NoGates,
        store: &store,
        settings: settings(),
        cancel: cancel.clone(),
        events: &log,
    });
    let slow = r#"{"steps":[{"weight":10,"bake":"1h"}]}"#;
    let run = engine.deploy(request("canary", slow));
    tokio::pin!(run);
    let report = loop {
        tokio::select! {
            report = &mut run => break report.unwrap().into_report().unwrap(),
            () = tokio::time::sleep(Duration::from_millis(5)) => {
                if driver.state().shifts == [10] {
                    cancel.cancel();
                }
            }
        }
    };
    assert_eq!(report.result, DeployResult::RolledBack);
    assert!(report.detail.contains("cancelled"), "{}", report.detail);
    assert_safe_on_stable(&driver);
}

#[tokio::test]
async fn a_second_deploy_of_the_service_is_refused_while_one_runs() {
    let (host, _cache) = host();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let driver = SimDriver::new("web:1", 4);
    let plugin = builtin(&host, "canary");
    let log = |_: &deployer_engine::events::Event<'_>| {};
    let engine = Engine::new(Parts {
        service: "web",
        strategy: &plugin,
        target: &driver,
        gates: &NoGates,
        store: &store,
        settings: settings(),
        cancel: CancellationToken::new(),
        events: &log,
    });
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
) -> (Report, SimDriver, Vec<DeployResult>) {
    let (host, _cache) = host();
    let plugin = builtin(&host, strategy);
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let driver = SimDriver::new("web:1", 4);
    driver.hang_at(n);
    let report = {
        let log = |_: &deployer_engine::events::Event<'_>| {};
        let engine = |settings| {
            Engine::new(Parts {
                service: "web",
                strategy: &plugin,
                target: &driver,
                gates: &NoGates,
                store: &store,
                settings,
                cancel: CancellationToken::new(),
                events: &log,
            })
        };
        {
            let run = engine(settings());
            let run = run.deploy(request(strategy, params));
            tokio::pin!(run);
            loop {
                tokio::select! {
                    report = &mut run => panic!("operation {n} was never reached: {report:?}"),
                    () = tokio::time::sleep(Duration::from_millis(1)) => {
                        if driver.state().operations.len() > n {
                            break; // hanging in operation n: drop the run, as SIGKILL would
                        }
                    }
                }
            }
        } // the killed run is gone: its future (and lock) dropped
        driver.disarm();
        engine(Settings {
            on_resume: policy,
            ..settings()
        })
        .deploy(request(strategy, params))
        .await
        .unwrap()
        .into_report()
        .unwrap()
    };
    let history = store
        .history("web")
        .await
        .unwrap()
        .iter()
        .filter_map(|j| j.finished().map(|f| f.0))
        .collect();
    (report, driver, history)
}

#[tokio::test]
async fn a_run_killed_at_any_step_is_recovered_by_the_next_one() {
    for (strategy, params, operations) in [
        ("canary", r#"{"steps":[{"weight":10},{"weight":50}]}"#, 10),
        ("blue-green", "{}", 6),
    ] {
        for n in 0..operations {
            // Roll back (the default), then deploy afresh: the release ends promoted.
            let (report, driver, history) =
                kill_then_recover(n, ResumePolicy::Rollback, strategy, params).await;
            assert!(report.recovered.is_some(), "{strategy} killed at {n}");
            assert_eq!(
                history,
                [DeployResult::RolledBack, DeployResult::Promoted],
                "{strategy} killed at {n}"
            );
            assert_eq!(
                report.result,
                DeployResult::Promoted,
                "{strategy} killed at {n}: {}",
                report.detail
            );
            let state = driver.state();
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
            let (report, driver, history) =
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
                !driver.state().shifts.contains(&0),
                "resuming never shifts traffic back"
            );
            assert_eq!(driver.state().live_release(), Some("web:2"));
        }
    }
}

#[tokio::test]
async fn recovery_alone_leaves_traffic_on_stable() {
    // What `deployer rollback` does with an interrupted run.
    let (host, _cache) = host();
    let plugin = builtin(&host, "canary");
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let driver = SimDriver::new("web:1", 4);
    driver.hang_at(6);
    let log = |_: &deployer_engine::events::Event<'_>| {};
    let engine = Engine::new(Parts {
        service: "web",
        strategy: &plugin,
        target: &driver,
        gates: &NoGates,
        store: &store,
        settings: settings(),
        cancel: CancellationToken::new(),
        events: &log,
    });
    let _ = tokio::time::timeout(
        Duration::from_millis(300),
        engine.deploy(request("canary", CANARY)),
    )
    .await;
    assert!(
        driver.state().new_percent > 0,
        "killed with traffic on the new side"
    );
    driver.disarm();
    let report = engine.recover_active().await.unwrap().unwrap();
    assert_eq!(report.result, DeployResult::RolledBack);
    assert_safe_on_stable(&driver);
    assert!(
        engine.recover_active().await.unwrap().is_none(),
        "nothing left to recover"
    );
}
