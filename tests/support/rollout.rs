//! The rollout engine against the simulated target, as the rollout and hostile-plugin
//! suites set it up: [`Harness`] is a plugin host, a journal in a temporary directory
//! and a [`SimDriver`] with `web:1` live on 4 units, and makes engines over them;
//! [`settings`], [`request`] and [`builtin`] are what those runs are given; [`Scripted`]
//! gates record where they ran and fail where a test says.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deployer_contract::{GateResult, GateStatus, LifecyclePoint, TargetInfo, TargetKind};
use deployer_engine::events::Event;
use deployer_engine::gates::{GateContext, Gates};
use deployer_engine::rollout::{
    DeployRequest, Engine, MIN_WATCH_INTERVAL, Parts, Preflight, Report, Settings,
};
use deployer_engine::sim::{SimDriver, SimState};
use deployer_engine::state::LocalStore;
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Limits, PluginHost, PluginSource};
use tokio_util::sync::CancellationToken;

/// Quick timings for runs against the simulated target.
pub fn settings() -> Settings {
    Settings {
        watch_interval: MIN_WATCH_INTERVAL,
        rollback_deadline: Duration::from_secs(5),
        retry_base: Duration::from_millis(5),
        stable_stall: Duration::from_millis(300),
        // These tests are of the run itself: every step meets the runtime guard.
        preflight: Preflight::Skip,
        ..Settings::default()
    }
}

/// Deploy `web:2` with `strategy` and its `params` (JSON) to the simulated 4 units.
pub fn request(strategy: &str, params: &str) -> DeployRequest {
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

/// The built-in strategy `name`, loaded by `host`.
pub fn builtin(host: &PluginHost, name: &str) -> StrategyPlugin {
    StrategyPlugin::load(
        host,
        &PluginSource::Builtin(name.into()),
        Limits::strategy(),
    )
    .unwrap()
}

/// Progress events go nowhere: the tests read the report, the driver and the journal.
fn quiet(_: &Event<'_>) {}

/// An engine over a [`Harness`]'s target and journal.
pub type SimEngine<'a, G> = Engine<'a, StrategyPlugin, SimDriver, G, LocalStore>;

/// A plugin host, and one service `web` on a simulated target with its journal.
pub struct Harness {
    pub host: PluginHost,
    /// The host's compile cache, shared with the harnesses made by [`Harness::next`].
    cache: Arc<tempfile::TempDir>,
    pub dir: tempfile::TempDir,
    pub store: LocalStore,
    pub driver: SimDriver,
    /// Given to every engine: cancelling it cancels their runs.
    pub cancel: CancellationToken,
}

impl Harness {
    /// A fresh host with an empty cache, and a fresh target and journal.
    pub fn new() -> Harness {
        let (host, cache) = crate::host();
        Self::on(host, Arc::new(cache))
    }

    fn on(host: PluginHost, cache: Arc<tempfile::TempDir>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness {
            host,
            cache,
            store: LocalStore::new(dir.path()),
            dir,
            driver: SimDriver::new("web:1", 4),
            cancel: CancellationToken::new(),
        }
    }

    /// A fresh target and journal on the same host (its loaded plugins stay usable).
    pub fn next(&self) -> Harness {
        Self::on(self.host.clone(), self.cache.clone())
    }

    /// A fresh target (`web:1` on 4 units) in place of this one; the journal stays.
    pub fn fresh_target(&mut self) {
        self.driver = SimDriver::new("web:1", 4);
    }

    /// The built-in strategy `name`, loaded by this harness's host.
    pub fn builtin(&self, name: &str) -> StrategyPlugin {
        builtin(&self.host, name)
    }

    /// An engine for service `web` over this target and journal.
    pub fn engine<'a, G: Gates>(
        &'a self,
        strategy: &'a StrategyPlugin,
        gates: &'a G,
        settings: Settings,
    ) -> SimEngine<'a, G> {
        Engine::new(Parts {
            service: "web",
            strategy,
            target: &self.driver,
            gates,
            store: &self.store,
            settings,
            cancel: self.cancel.clone(),
            events: &quiet,
        })
    }

    /// A whole deployment with [`settings`]; it must finish with a report.
    pub async fn deploy(
        &self,
        strategy: &StrategyPlugin,
        gates: &impl Gates,
        request: DeployRequest,
    ) -> Report {
        self.deploy_with(strategy, gates, settings(), request).await
    }

    /// The same with these settings.
    pub async fn deploy_with(
        &self,
        strategy: &StrategyPlugin,
        gates: &impl Gates,
        settings: Settings,
        request: DeployRequest,
    ) -> Report {
        self.engine(strategy, gates, settings)
            .deploy(request)
            .await
            .unwrap()
            .into_report()
            .unwrap()
    }

    pub fn state(&self) -> SimState {
        self.driver.state()
    }

    /// The text of the newest journal of `web`.
    pub fn journal(&self) -> String {
        let files = super::journals_oldest_first(&self.dir.path().join("services/web/deployments"));
        std::fs::read_to_string(files.last().unwrap()).unwrap()
    }

    /// No traffic stranded on the new side: `web:1` serves everything on all 4 units.
    pub fn assert_safe_on_stable(&self) {
        let state = self.state();
        assert_eq!(
            state.new_percent, 0,
            "traffic stranded on the new side: {state:?}"
        );
        assert_eq!(state.stable_units, 4, "{state:?}");
        assert_eq!(state.new_units, 0, "{state:?}");
        assert_eq!(state.live_release(), Some("web:1"));
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Gates that fail the `n`-th run at `point` (counting from 0), pass otherwise.
#[derive(Default)]
pub struct Scripted {
    pub fail: Option<(LifecyclePoint, usize)>,
    pub fail_watch: bool,
    /// The points gates ran at, in order.
    pub runs: Mutex<Vec<LifecyclePoint>>,
}

impl Scripted {
    pub fn failing(point: LifecyclePoint, n: usize) -> Scripted {
        Scripted {
            fail: Some((point, n)),
            ..Scripted::default()
        }
    }
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
