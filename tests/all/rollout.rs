//! The rollout engine against the simulated target: promotion, automatic rollback on
//! every kind of failure, faults, cancellation, locking, and recovery of a run killed
//! at every journaled step.

use std::time::Duration;

use deployer_contract::{GateResult, LifecyclePoint};
use deployer_engine::driver::DriverError;
use deployer_engine::gates::{GateContext, Gates, NoGates};
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
    assert_eq!(
        h.store
            .recent("web", 100, None)
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
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
    // Named by the running deployment's id, which says the service and when it began.
    assert!(
        err.contains("already being deployed by deployment web-20"),
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
        .recent("web", 100, None)
        .await
        .unwrap()
        .entries
        .iter()
        .rev()
        .map(|s| s.result)
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

#[tokio::test]
async fn a_shift_carried_out_but_never_journaled_done_is_rolled_back_too() {
    // Killed after the load balancer took the new weights, before the run journaled that
    // it had: the journal's last verified share is 0%, the listener's 100% (blue-green)
    // or 10% (canary). The rollback must move that traffic back before it removes the
    // new side. Found by `chaos`.
    for (strategy, params) in [("blue-green", "{}"), ("canary", CANARY)] {
        let h = Harness::new();
        let plugin = h.builtin(strategy);
        h.driver.arm("shift_traffic", Fault::HangAfter);
        let engine = h.engine(&plugin, &NoGates, settings());
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            engine.deploy(request(strategy, params)),
        )
        .await;
        assert!(
            h.state().new_percent > 0,
            "{strategy}: killed with the shift carried out"
        );
        h.driver.disarm();
        let report = engine.recover_active().await.unwrap().unwrap();
        assert_eq!(
            report.result,
            DeployResult::RolledBack,
            "{strategy}: {}",
            report.detail
        );
        h.assert_safe_on_stable();
    }
}

/// A run that finished promoted but died before its history entry was written (the
/// journal ends `finished`, the service still marks it active): with `on-interrupted =
/// "resume"` the next run of the same release finds it live and changes nothing; the
/// next release deploys from it as the stable one.
#[tokio::test]
async fn a_promoted_run_whose_history_write_was_lost_is_never_deployed_over() {
    use deployer_engine::rollout::Deployed;
    let h = Harness::new();
    let plugin = h.builtin("canary");
    let report = h.deploy(&plugin, &NoGates, request("canary", CANARY)).await;
    assert_eq!(report.result, DeployResult::Promoted);
    // Undo the paperwork `finish` does after the `finished` record: the history line and
    // the cleared active mark.
    let service = h.dir.path().join("services/web");
    std::fs::write(service.join("active"), &report.id).unwrap();
    std::fs::write(service.join("history.jsonl"), "").unwrap();
    let before = h.state();
    let resume = Settings {
        on_resume: ResumePolicy::Resume,
        ..settings()
    };
    let engine = h.engine(&plugin, &NoGates, resume.clone());
    let again = engine.deploy(request("canary", CANARY)).await.unwrap();
    assert!(
        matches!(&again, Deployed::AlreadyLive { release } if release == "web:2"),
        "{again:?}"
    );
    assert_eq!(
        h.state().operations,
        before.operations,
        "nothing was changed"
    );
    assert_eq!(h.state().live_release(), Some("web:2"));
    // The paperwork was finished: the deployment is in the history, nothing is active.
    assert_eq!(
        h.store
            .recent("web", 100, None)
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
    assert!(h.store.active("web").await.unwrap().is_none());
    // The next release starts from what is live.
    let mut next = request("canary", CANARY);
    next.new_release = "web:3".into();
    let report = h.deploy_with(&plugin, &NoGates, resume, next).await;
    assert_eq!(report.result, DeployResult::Promoted, "{report:?}");
    assert_eq!(h.state().live_release(), Some("web:3"));
    let journal = h.journal();
    assert!(journal.contains(r#""stable_release":"web:2""#), "{journal}");
}

/// A canary promoted (stable scaled to nothing) whose post-deploy gate then fails: the
/// rollback asks for stable at full size and moves traffic back as its units become
/// healthy, in proportion, never more than they can carry.
#[tokio::test]
async fn rollback_moves_traffic_back_as_fast_as_stable_comes_up() {
    let h = Harness::new();
    h.driver.slow_stable();
    let plugin = h.builtin("canary");
    let gates = Scripted::failing(LifecyclePoint::PostDeploy, 0);
    let report = h.deploy(&plugin, &gates, request("canary", CANARY)).await;
    assert_eq!(report.result, DeployResult::RolledBack, "{report:?}");
    h.assert_safe_on_stable();
    let shifts = h.state().shifts;
    let back: Vec<u8> = shifts.iter().skip_while(|p| **p != 100).copied().collect();
    // One healthy unit of 4 carries 26%, two 51%, three 76%: the new side keeps the rest.
    assert_eq!(back, [100, 74, 49, 24, 0], "{shifts:?}");
}

/// Stable cannot get back to full size (capacity lost): traffic goes back as far as its
/// healthy units carry, then all of it once stable stops growing — never left on the
/// failed release for the rollback's whole deadline. The report says stable is short.
#[tokio::test]
async fn rollback_puts_everything_on_a_stable_side_that_cannot_reach_full_size() {
    let h = Harness::new();
    let plugin = h.builtin("canary");
    let gates = Scripted::failing(LifecyclePoint::PostDeploy, 0);
    h.driver.limit_stable(3);
    let report = h.deploy(&plugin, &gates, request("canary", CANARY)).await;
    assert_eq!(report.result, DeployResult::RolledBack, "{report:?}");
    assert!(
        report.detail.contains("reached only 3 of 4 healthy units"),
        "{}",
        report.detail
    );
    let state = h.state();
    assert_eq!(state.new_percent, 0, "{state:?}");
    assert_eq!(state.live_release(), Some("web:1"));
    let back: Vec<u8> = state
        .shifts
        .iter()
        .skip_while(|p| **p != 100)
        .copied()
        .collect();
    assert_eq!(back, [100, 74, 49, 24, 0], "{state:?}");

    // With no healthy stable unit at all there is nowhere to send traffic: the rollback
    // fails (exit 2) at its deadline, saying how much is still on the new release.
    let h = Harness::new();
    h.driver.limit_stable(0);
    let report = h
        .deploy(
            &plugin,
            &Scripted::failing(LifecyclePoint::PostDeploy, 0),
            request("canary", CANARY),
        )
        .await;
    assert_eq!(report.result, DeployResult::RollbackFailed, "{report:?}");
    assert!(
        report
            .detail
            .contains("100% of traffic may still reach web:2"),
        "{}",
        report.detail
    );
}

/// Promoted and past its post-deploy gates, a run whose clean-up of the old side fails
/// (an AWS outage at the last step) stays promoted, saying what is left: rolling back
/// over a clean-up would undo a release every gate passed.
#[tokio::test]
async fn a_failed_clean_up_after_promotion_leaves_the_release_promoted() {
    let h = Harness::new();
    h.driver.arm(
        "finalize",
        Fault::Fail {
            skip: 0,
            times: u32::MAX,
            error: DriverError::Failed(
                "ServiceException: the old side could not be removed".into(),
            ),
        },
    );
    let report = canary(&h, &Scripted::default()).await;
    assert_eq!(report.result, DeployResult::Promoted, "{}", report.detail);
    assert!(
        report.detail.contains("cleaning up after it failed")
            && report.detail.contains("ServiceException"),
        "{}",
        report.detail
    );
    let state = h.state();
    assert_eq!(
        state.live_release(),
        Some("web:2"),
        "traffic stayed on the new release"
    );
    assert_eq!(state.shifts, [10, 50, 100], "no shift back");
    assert!(
        h.store.active("web").await.unwrap().is_none(),
        "the run is finished"
    );
}

/// The forward shift goes through; every shift after it (the rollback's) is refused
/// with a permanent error, as an IAM policy without `ModifyListener` would.
fn refuse_shifts_after_the_first(h: &Harness) {
    h.driver.arm(
        "shift_traffic",
        Fault::Fail {
            skip: 1,
            times: u32::MAX,
            error: DriverError::Failed("AccessDenied: not allowed to modify the listener".into()),
        },
    );
}

/// A permanent error in a rollback action ends the rollback at once with the reason
/// (exit 2): it is not retried until the deadline.
#[tokio::test]
async fn a_permanent_rollback_error_ends_the_rollback_at_once() {
    let h = Harness::new();
    let plugin = h.builtin("canary");
    let gates = Scripted::failing(LifecyclePoint::PostTraffic, 0);
    refuse_shifts_after_the_first(&h);
    let report = h.deploy(&plugin, &gates, request("canary", CANARY)).await;
    assert_eq!(report.result, DeployResult::RollbackFailed, "{report:?}");
    assert!(report.detail.contains("AccessDenied"), "{}", report.detail);
    let attempts = h
        .state()
        .operations
        .iter()
        .filter(|o| *o == "shift_traffic")
        .count();
    assert_eq!(attempts, 2, "one forward shift, one rollback attempt");
}

/// The journal's store, able to go down: every write fails while it is.
struct FlakyStore {
    inner: deployer_engine::state::LocalStore,
    down: std::sync::atomic::AtomicBool,
    /// Writes refused while down.
    refused: std::sync::atomic::AtomicUsize,
}

impl FlakyStore {
    fn check(&self) -> Result<(), deployer_engine::state::StateError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(deployer_engine::state::StateError::Remote {
                what: "s3://state".into(),
                message: "ExpiredToken: the security token included in the request is expired"
                    .into(),
            })
        } else {
            Ok(())
        }
    }
}

impl Store for FlakyStore {
    type Lock = deployer_engine::state::LockGuard;
    async fn lock(
        &self,
        service: &str,
        deployment: &str,
    ) -> Result<Self::Lock, deployer_engine::state::StateError> {
        self.inner.lock(service, deployment).await
    }
    async fn begin(
        &self,
        service: &str,
        id: &str,
        started: &deployer_engine::state::Record,
    ) -> Result<(), deployer_engine::state::StateError> {
        self.check()?;
        self.inner.begin(service, id, started).await
    }
    async fn append(
        &self,
        service: &str,
        id: &str,
        index: usize,
        record: &deployer_engine::state::Record,
    ) -> Result<(), deployer_engine::state::StateError> {
        self.check()?;
        self.inner.append(service, id, index, record).await
    }
    async fn finish(
        &self,
        service: &str,
        id: &str,
        index: usize,
        finished: &deployer_engine::state::Record,
    ) -> Result<(), deployer_engine::state::StateError> {
        self.check()?;
        self.inner.finish(service, id, index, finished).await
    }
    async fn active(
        &self,
        service: &str,
    ) -> Result<Option<deployer_engine::state::Journal>, deployer_engine::state::StateError> {
        self.inner.active(service).await
    }
    async fn read(
        &self,
        service: &str,
        id: &str,
    ) -> Result<deployer_engine::state::Journal, deployer_engine::state::StateError> {
        self.inner.read(service, id).await
    }
    async fn prepare(&self, service: &str) -> Result<(), deployer_engine::state::StateError> {
        self.inner.prepare(service).await
    }
    async fn recent(
        &self,
        service: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<deployer_engine::state::Page, deployer_engine::state::StateError> {
        self.inner.recent(service, limit, before).await
    }
    async fn latest(
        &self,
        service: &str,
    ) -> Result<deployer_engine::state::Latest, deployer_engine::state::StateError> {
        self.inner.latest(service).await
    }
    async fn send(
        &self,
        service: &str,
        signal: &deployer_engine::state::Signal,
    ) -> Result<(), deployer_engine::state::StateError> {
        self.inner.send(service, signal).await
    }
    async fn signals(
        &self,
        service: &str,
    ) -> Result<Vec<deployer_engine::state::Signal>, deployer_engine::state::StateError> {
        self.check()?;
        self.inner.signals(service).await
    }
}

/// Gates that take the store down when they run after traffic moved, and pass.
struct StoreGoesDown<'a>(&'a FlakyStore);

impl Gates for StoreGoesDown<'_> {
    async fn run(&self, point: LifecyclePoint, _: &GateContext) -> Vec<GateResult> {
        if point == LifecyclePoint::PostTraffic {
            self.0.down.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Vec::new()
    }
    async fn watch(&self, _: &GateContext) -> Vec<GateResult> {
        Vec::new()
    }
}

/// The journal's store goes down (expired credentials, an S3 outage) with traffic on the
/// new side: the run cannot journal its next step, so it rolls back — and the rollback
/// completes without its journal, traffic on stable, saying what it could not write. It
/// tries the store again only when it ends, not before each action.
/// With the store back, the next run finds the deployment unfinished, rolls it back
/// again (nothing left to change) and deploys.
#[tokio::test]
async fn a_store_that_goes_down_mid_run_does_not_stop_the_rollback() {
    use deployer_engine::rollout::{Engine, Parts};
    let h = Harness::new();
    let plugin = h.builtin("canary");
    let store = FlakyStore {
        inner: deployer_engine::state::LocalStore::new(h.dir.path()),
        down: false.into(),
        refused: 0.into(),
    };
    let quiet = |_: &deployer_engine::events::Event<'_>| {};
    let gates = StoreGoesDown(&store);
    let engine = Engine::new(Parts {
        service: "web",
        strategy: &plugin,
        target: &h.driver,
        gates: &gates,
        store: &store,
        settings: settings(),
        cancel: h.cancel.clone(),
        events: &quiet,
    });
    let report = engine
        .deploy(request("canary", CANARY))
        .await
        .unwrap()
        .into_report()
        .unwrap();
    assert_eq!(report.result, DeployResult::RolledBack, "{report:?}");
    assert!(
        report.detail.contains("writing the journal failed"),
        "{}",
        report.detail
    );
    assert!(
        report.detail.contains("the journal could not be written"),
        "{}",
        report.detail
    );
    assert!(
        h.state().shifts.contains(&10),
        "traffic had moved: {:?}",
        h.state()
    );
    h.assert_safe_on_stable();
    // The forward run's write (1 + 3 retries), then none until the rollback ends (1 + 1
    // retry): no rollback action waited on a store known to be down.
    assert_eq!(
        store.refused.load(std::sync::atomic::Ordering::SeqCst),
        4 + 2
    );

    store.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let next = h.deploy(&plugin, &NoGates, request("canary", CANARY)).await;
    assert_eq!(next.result, DeployResult::Promoted, "{next:?}");
    assert_eq!(
        next.recovered.as_deref(),
        Some(report.id.as_str()),
        "{next:?}"
    );
    assert_eq!(h.state().live_release(), Some("web:2"));
}

/// A rollback that failed (a permanent error while traffic was split) is finished by the
/// next `deployer rollback`: traffic back on the failed deployment's stable release and
/// its new side removed — not an older release redeployed beside what it left.
#[tokio::test]
async fn rollback_after_a_failed_rollback_finishes_that_one() {
    use deployer_engine::rollout::RolledBack;
    let h = Harness::new();
    let plugin = h.builtin("canary");
    let gates = Scripted::failing(LifecyclePoint::PostTraffic, 0);
    refuse_shifts_after_the_first(&h);
    let report = h.deploy(&plugin, &gates, request("canary", CANARY)).await;
    assert_eq!(report.result, DeployResult::RollbackFailed, "{report:?}");
    assert!(h.state().new_percent > 0, "{:?}", h.state());

    h.driver.disarm();
    let blue_green = h.builtin("blue-green");
    let engine = h.engine(&blue_green, &NoGates, settings());
    let again = engine
        .roll_back("blue-green", |_| r#"{"test-traffic":false}"#.to_string())
        .await
        .unwrap();
    let RolledBack::Recovered(retry) = again else {
        panic!("expected the failed rollback to be finished: {again:?}");
    };
    assert_eq!(retry.result, DeployResult::RolledBack, "{retry:?}");
    assert!(
        retry.detail.contains("retrying the failed rollback"),
        "{}",
        retry.detail
    );
    h.assert_safe_on_stable();
    let history: Vec<DeployResult> = h
        .store
        .recent("web", 100, None)
        .await
        .unwrap()
        .entries
        .iter()
        .rev()
        .map(|s| s.result)
        .collect();
    assert_eq!(
        history,
        [DeployResult::RollbackFailed, DeployResult::RolledBack]
    );
}
