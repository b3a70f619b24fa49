//! The engine's one path, driven by the built-in strategies compiled natively (no
//! WebAssembly) on the simulated target: preflight, the resume decision, recovery,
//! rollback of a finished deployment.

use std::marker::PhantomData;
use std::time::Duration;

use deployer_contract::{
    GateResult, LifecyclePoint, RolloutState, ScaleRequest, Side, Step, TargetInfo, TargetKind,
};
use deployer_engine::events::Event;
use deployer_engine::gates::{GateContext, Gates, NoGates};
use deployer_engine::rollout::{
    DeployRequest, Deployed, Engine, EngineError, MIN_WATCH_INTERVAL, Parts, RolledBack, Settings,
};
use deployer_engine::sim::SimDriver;
use deployer_engine::state::{DeployResult, LocalStore, Store};
use deployer_engine::strategy::{Strategy, StrategyError};
use deployer_plugin_sdk as sdk;
use tokio_util::sync::CancellationToken;

/// A strategy crate's own Rust behind the engine's trait. The SDK's types and the
/// contract's serialize alike, so the state and the step cross as JSON.
struct Native<S>(&'static str, PhantomData<S>);

fn convert<T: serde::Serialize, U: serde::de::DeserializeOwned>(value: &T) -> U {
    serde_json::from_value(serde_json::to_value(value).unwrap()).unwrap()
}

impl<S: sdk::Strategy + Send + Sync> Strategy for Native<S> {
    fn name(&self) -> &str {
        self.0
    }

    fn digest(&self) -> &str {
        "native"
    }

    async fn next(&self, state: &RolloutState) -> Result<Step, StrategyError> {
        let state: sdk::RolloutState = convert(state);
        let step = sdk::strategy::next::<S>(&state).map_err(StrategyError)?;
        Ok(convert(&step))
    }
}

const CANARY: Native<deployer_strategy_canary::Canary> = Native("canary", PhantomData);
const ROLLING: Native<deployer_strategy_rolling::Rolling> = Native("rolling", PhantomData);
const STEPS: &str = r#"{"steps":[{"weight":25},{"weight":50}]}"#;

fn request(strategy: &str, release: &str, params: &str) -> DeployRequest {
    DeployRequest {
        strategy: strategy.into(),
        new_release: release.into(),
        params: params.into(),
        target: TargetInfo {
            kind: TargetKind::Simulated,
            desired_count: 4,
            native_rolling: false,
            test_traffic: false,
        },
    }
}

fn settings() -> Settings {
    Settings {
        watch_interval: MIN_WATCH_INTERVAL,
        retry_base: Duration::from_millis(1),
        ..Settings::default()
    }
}

fn engine<'a, S: Strategy>(
    strategy: &'a S,
    target: &'a SimDriver,
    store: &'a LocalStore,
) -> Engine<'a, S, SimDriver, NoGates, LocalStore> {
    static QUIET: fn(&Event<'_>) = |_| {};
    Engine::new(Parts {
        service: "web",
        strategy,
        target,
        gates: &NoGates,
        store,
        settings: settings(),
        cancel: CancellationToken::new(),
        events: &QUIET,
    })
}

#[tokio::test]
async fn a_native_canary_promotes_and_the_same_release_is_then_already_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let target = SimDriver::new("web:1", 4);
    let engine = engine(&CANARY, &target, &store);
    let Deployed::Finished { report, .. } = engine
        .deploy(request("canary", "web:2", STEPS))
        .await
        .unwrap()
    else {
        panic!("expected a deployment");
    };
    assert_eq!(report.result, DeployResult::Promoted, "{report:?}");
    assert_eq!(target.state().shifts, [25, 50, 100]);
    assert_eq!(target.state().live_release(), Some("web:2"));

    let operations = target.state().operations.len();
    let again = engine
        .deploy(request("canary", "web:2", STEPS))
        .await
        .unwrap();
    assert_eq!(
        again,
        Deployed::AlreadyLive {
            release: "web:2".into()
        }
    );
    assert_eq!(
        target.state().operations.len(),
        operations,
        "nothing was done"
    );
    assert_eq!(
        store.recent("web", 100, None).await.unwrap().entries.len(),
        1
    );
}

#[tokio::test]
async fn a_strategy_that_does_not_fit_the_target_is_refused_before_any_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    // The canary runs two sides; this target only rolls in place.
    let target = SimDriver::new("web:1", 4).in_place();
    let err = engine(&CANARY, &target, &store)
        .deploy(request("canary", "web:2", STEPS))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Unfit(m) if m.contains("runs two releases side by side")),
        "{err}"
    );
    assert!(target.state().operations.is_empty(), "{:?}", target.state());
    assert!(store.active("web").await.unwrap().is_none());
    assert!(
        store
            .recent("web", 100, None)
            .await
            .unwrap()
            .entries
            .is_empty()
    );

    // Rolling fits it, in place.
    let deployed = engine(&ROLLING, &target, &store)
        .deploy(request("rolling", "web:2", "{}"))
        .await
        .unwrap();
    assert_eq!(
        deployed.into_report().map(|r| r.result),
        Some(DeployResult::Promoted)
    );
    let operations = target.state().operations;
    assert!(
        operations.contains(&"rolling_update".to_string()),
        "{operations:?}"
    );
    assert!(
        !operations
            .iter()
            .any(|o| o == "scale" || o == "shift_traffic"),
        "{operations:?}"
    );
}

/// Promotes before any traffic moved: refused by the safety rules.
struct PromotesEarly;

impl Strategy for PromotesEarly {
    fn name(&self) -> &str {
        "promotes-early"
    }

    fn digest(&self) -> &str {
        "test"
    }

    async fn next(&self, state: &RolloutState) -> Result<Step, StrategyError> {
        Ok(match state.history.len() {
            0 => Step::Scale(ScaleRequest {
                side: Side::New,
                count: 4,
            }),
            1 => Step::Promote,
            _ => Step::Complete,
        })
    }
}

#[tokio::test]
async fn a_plan_the_host_would_refuse_is_refused_before_any_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let target = SimDriver::new("web:1", 4);
    let err = engine(&PromotesEarly, &target, &store)
        .deploy(request("promotes-early", "web:2", "{}"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("step 2 would be refused by the host")
            && err.to_string().contains("promote after shifting 100%"),
        "{err}"
    );
    assert!(target.state().operations.is_empty());
    assert!(store.active("web").await.unwrap().is_none());
}

#[tokio::test]
async fn rollback_redeploys_the_release_a_promoted_deployment_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let target = SimDriver::new("web:1", 4);
    let report = engine(&CANARY, &target, &store)
        .deploy(request("canary", "web:2", STEPS))
        .await
        .unwrap()
        .into_report()
        .unwrap();
    assert_eq!(report.result, DeployResult::Promoted);

    const BLUE_GREEN: Native<deployer_strategy_blue_green::BlueGreen> =
        Native("blue-green", PhantomData);
    let rolled = engine(&BLUE_GREEN, &target, &store)
        .roll_back("blue-green", |_| r#"{"test-traffic":false}"#.to_string())
        .await
        .unwrap();
    let RolledBack::Redeployed(report) = rolled else {
        panic!("expected a redeploy: {rolled:?}");
    };
    assert_eq!(report.result, DeployResult::Promoted, "{report:?}");
    assert_eq!(target.state().live_release(), Some("web:1"));

    let history = store.recent("web", 100, None).await.unwrap().entries;
    assert_eq!(history.len(), 2);

    // A second rollback (a double click, a retried CI job) must not put web:2 back.
    let again = engine(&BLUE_GREEN, &target, &store)
        .roll_back("blue-green", |_| r#"{"test-traffic":false}"#.to_string())
        .await
        .unwrap();
    assert!(
        matches!(&again, RolledBack::AlreadyRolledBack { release, .. } if release == "web:1"),
        "{again:?}"
    );
    assert_eq!(target.state().live_release(), Some("web:1"));
    assert_eq!(
        store.recent("web", 100, None).await.unwrap().entries.len(),
        2,
        "nothing was run"
    );
}

#[tokio::test]
async fn a_run_killed_while_removing_the_old_side_is_finished_not_rolled_back() {
    // Where the old side's removal falls in a canary's operations.
    let scratch = SimDriver::new("web:1", 4);
    let dir = tempfile::tempdir().unwrap();
    let scratch_store = LocalStore::new(dir.path());
    engine(&CANARY, &scratch, &scratch_store)
        .deploy(request("canary", "web:2", STEPS))
        .await
        .unwrap();
    let finalize = scratch
        .state()
        .operations
        .iter()
        .position(|o| o == "finalize")
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let target = SimDriver::new("web:1", 4);
    target.hang_at(finalize);
    let killed = tokio::time::timeout(
        Duration::from_millis(500),
        engine(&CANARY, &target, &store).deploy(request("canary", "web:2", STEPS)),
    )
    .await;
    assert!(
        killed.is_err(),
        "the run hangs in finalize, and is dropped as SIGKILL would"
    );
    target.disarm();
    let shifts_when_killed = target.state().shifts;
    assert_eq!(shifts_when_killed.last(), Some(&100));

    // The next run, with the default policy (roll back what a killed run left), finishes
    // the promoted one instead, then deploys its own release over it.
    let deployed = engine(&CANARY, &target, &store)
        .deploy(request("canary", "web:3", STEPS))
        .await
        .unwrap();
    let Deployed::Finished {
        earlier: Some(earlier),
        report,
    } = deployed
    else {
        panic!("expected the killed run to be finished first: {deployed:?}");
    };
    assert_eq!(earlier.result, DeployResult::Promoted, "{earlier:?}");
    assert_eq!(report.result, DeployResult::Promoted, "{report:?}");
    let state = target.state();
    assert_eq!(
        state.shifts[shifts_when_killed.len()..].first(),
        Some(&25),
        "web:2 kept all traffic until web:3's canary began: {state:?}"
    );
    assert_eq!(state.live_release(), Some("web:3"));
}

#[tokio::test]
async fn rollback_refuses_to_guess_when_the_live_release_is_not_deployers() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let target = SimDriver::new("web:1", 4);
    engine(&CANARY, &target, &store)
        .deploy(request("canary", "web:2", STEPS))
        .await
        .unwrap();
    // Someone deployed web:7 by hand since.
    let elsewhere = SimDriver::new("web:7", 4);
    let err = engine(&CANARY, &elsewhere, &store)
        .roll_back("blue-green", |_| "{}".to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::CannotRollBack(m) if m.contains("refusing to guess")),
        "{err}"
    );
    assert!(elsewhere.state().operations.is_empty());
}

/// Gates that pass and count how often the continuous ones were checked.
#[derive(Default)]
struct CountedWatches(std::sync::atomic::AtomicUsize);

impl Gates for CountedWatches {
    async fn run(&self, _: LifecyclePoint, _: &GateContext) -> Vec<GateResult> {
        Vec::new()
    }

    async fn watch(&self, _: &GateContext) -> Vec<GateResult> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Vec::new()
    }
}

#[tokio::test]
async fn a_zero_watch_interval_does_not_spin_the_bake() {
    static QUIET: fn(&Event<'_>) = |_| {};
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let target = SimDriver::new("web:1", 4);
    let gates = CountedWatches::default();
    let engine = Engine::new(Parts {
        service: "web",
        strategy: &CANARY,
        target: &target,
        gates: &gates,
        store: &store,
        settings: Settings {
            watch_interval: Duration::ZERO,
            ..settings()
        },
        cancel: CancellationToken::new(),
        events: &QUIET,
    });
    let params = r#"{"steps":[{"weight":25,"bake":"1500ms"}]}"#;
    let Deployed::Finished { report, .. } = engine
        .deploy(request("canary", "web:2", params))
        .await
        .unwrap()
    else {
        panic!("expected a deployment");
    };
    assert_eq!(report.result, DeployResult::Promoted, "{report:?}");
    // Once a second (the floor) and at the end of the bake.
    let watches = gates.0.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=2).contains(&watches),
        "{watches} checks in a 1.5 s bake"
    );
}
