//! Gates between steps: the interface the engine runs ([`Gates`]), and the configured
//! list of one service ([`ConfiguredGates`]): where each gate runs, and how repeated
//! failures count. The checks themselves (HTTP smoke tests, CloudWatch alarms and
//! metrics in `deployer-targets`, hook plugins in `deployer-plugin-host`) implement
//! [`Check`]; tests script their own.
//!
//! A gate whose `failures` threshold is above one reports `inconclusive` until it has
//! failed that many times in a row (a single bad datapoint does not roll back).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use deployer_contract::{GateResult, GateStatus, LifecyclePoint};

pub use crate::driver::TargetGroups;

/// What gates know about the moment they run at.
#[derive(Clone, Debug)]
pub struct GateContext {
    pub deployment_id: String,
    pub service: String,
    pub new_release: String,
    pub stable_release: Option<String>,
    pub new_percent: u8,
    /// The sides' target groups, as the driver named them once for this run; `Ok(None)`
    /// when the target has none (in place) or no gate asked for them; `Err` when they
    /// could not be read (gates that need them fail, saying why).
    pub target_groups: Result<Option<TargetGroups>, String>,
}

pub trait Gates: Send + Sync {
    /// Run the gates configured for `point`.
    fn run(
        &self,
        point: LifecyclePoint,
        ctx: &GateContext,
    ) -> impl Future<Output = Vec<GateResult>> + Send;

    /// Run the gates that watch continuously (during bakes).
    fn watch(&self, ctx: &GateContext) -> impl Future<Output = Vec<GateResult>> + Send;

    /// Whether any gate is configured for `point`. The host runs the gates a strategy
    /// owes only where there are some; when unsure, say yes.
    fn configured(&self, point: LifecyclePoint) -> bool {
        let _ = point;
        true
    }

    /// Whether a gate needs the sides' target groups ([`GateContext::target_groups`]):
    /// only then does the engine ask the driver for them (one call per run).
    fn need_target_groups(&self) -> bool {
        false
    }

    /// What the gates keep between runs within one deployment (a hook's key/value
    /// store), by gate name. The engine journals it whenever it changes, so a resumed
    /// run sees what the killed one left.
    fn states(&self) -> Vec<(String, serde_json::Value)> {
        Vec::new()
    }

    /// Give gate `name` back the state a killed run journaled for it.
    fn restore(&self, name: &str, state: &serde_json::Value) {
        let _ = (name, state);
    }
}

/// No gates at all.
pub struct NoGates;

impl Gates for NoGates {
    async fn run(&self, _: LifecyclePoint, _: &GateContext) -> Vec<GateResult> {
        Vec::new()
    }

    async fn watch(&self, _: &GateContext) -> Vec<GateResult> {
        Vec::new()
    }

    fn configured(&self, _: LifecyclePoint) -> bool {
        false
    }
}

/// Where a gate runs: a lifecycle point, or continuously during bakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatePoint {
    PreDeploy,
    PreTraffic,
    PostTraffic,
    PostDeploy,
    PostRollback,
    Bake,
}

impl GatePoint {
    fn matches(self, point: LifecyclePoint) -> bool {
        matches!(
            (self, point),
            (GatePoint::PreDeploy, LifecyclePoint::PreDeploy)
                | (GatePoint::PreTraffic, LifecyclePoint::PreTraffic)
                | (GatePoint::PostTraffic, LifecyclePoint::PostTraffic)
                | (GatePoint::PostDeploy, LifecyclePoint::PostDeploy)
                | (GatePoint::PostRollback, LifecyclePoint::PostRollback)
        )
    }
}

/// A boxed future, so checks of different kinds sit in one list.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = GateResult> + Send + 'a>>;

/// One kind of check. It never errors: a check that cannot run reports `fail` (or
/// `no-data` when there was nothing to look at), with the reason in its detail.
pub trait Check: Send + Sync {
    /// Run the check as gate `name` at `point`.
    fn check<'a>(
        &'a self,
        name: &'a str,
        point: LifecyclePoint,
        ctx: &'a GateContext,
    ) -> CheckFuture<'a>;

    /// Whether the check resolves side placeholders (`{new-target-group}`) or otherwise
    /// looks at the sides' target groups.
    fn need_target_groups(&self) -> bool {
        false
    }

    /// What this check keeps between its runs in one deployment, as JSON; `None` for
    /// checks that keep nothing.
    fn state(&self) -> Option<serde_json::Value> {
        None
    }

    /// Take back a state [`Check::state`] returned (from the journal, on resume).
    fn restore(&self, state: &serde_json::Value) {
        let _ = state;
    }
}

/// A check with where it runs and how failures count.
pub struct Gate {
    pub name: String,
    pub at: Vec<GatePoint>,
    /// Consecutive failures before the gate reports `fail`.
    pub failures: u32,
    pub check: Box<dyn Check>,
}

/// The configured gates of one service.
pub struct ConfiguredGates {
    gates: Vec<Gate>,
    streaks: Mutex<HashMap<String, u32>>,
}

impl ConfiguredGates {
    pub fn new(gates: Vec<Gate>) -> Self {
        ConfiguredGates {
            gates,
            streaks: Mutex::new(HashMap::new()),
        }
    }

    async fn evaluate(&self, gate: &Gate, point: LifecyclePoint, ctx: &GateContext) -> GateResult {
        let mut result = gate.check.check(&gate.name, point, ctx).await;
        let mut streaks = self
            .streaks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let streak = streaks.entry(gate.name.clone()).or_insert(0);
        if result.status == GateStatus::Fail {
            *streak += 1;
            if *streak < gate.failures {
                result.status = GateStatus::Inconclusive;
                result.detail = format!(
                    "{} (failure {} of {} allowed in a row)",
                    result.detail, streak, gate.failures
                );
            }
        } else {
            *streak = 0;
        }
        result
    }

    async fn run_where(
        &self,
        wanted: impl Fn(&Gate) -> bool,
        point: LifecyclePoint,
        ctx: &GateContext,
    ) -> Vec<GateResult> {
        let mut results = Vec::new();
        for gate in self.gates.iter().filter(|g| wanted(g)) {
            results.push(self.evaluate(gate, point, ctx).await);
        }
        results
    }
}

impl Gates for ConfiguredGates {
    async fn run(&self, point: LifecyclePoint, ctx: &GateContext) -> Vec<GateResult> {
        self.run_where(|g| g.at.iter().any(|at| at.matches(point)), point, ctx)
            .await
    }

    async fn watch(&self, ctx: &GateContext) -> Vec<GateResult> {
        self.run_where(
            |g| g.at.contains(&GatePoint::Bake),
            LifecyclePoint::PostTraffic,
            ctx,
        )
        .await
    }

    fn configured(&self, point: LifecyclePoint) -> bool {
        self.gates
            .iter()
            .any(|g| g.at.iter().any(|at| at.matches(point)))
    }

    fn need_target_groups(&self) -> bool {
        self.gates.iter().any(|g| g.check.need_target_groups())
    }

    fn states(&self) -> Vec<(String, serde_json::Value)> {
        let mut states: Vec<(String, serde_json::Value)> = Vec::new();
        for gate in &self.gates {
            // Gates of one name share their state (one hook plugin at several points).
            if states.iter().any(|(name, _)| *name == gate.name) {
                continue;
            }
            if let Some(state) = gate.check.state() {
                states.push((gate.name.clone(), state));
            }
        }
        states
    }

    fn restore(&self, name: &str, state: &serde_json::Value) {
        for gate in self.gates.iter().filter(|g| g.name == name) {
            gate.check.restore(state);
        }
    }
}
