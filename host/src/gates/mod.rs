//! The gates configured for a service: HTTP smoke tests, CloudWatch alarms and metric
//! thresholds, and hook plugins, each at the lifecycle points config names, plus
//! `bake` for the ones watched continuously during bakes.
//!
//! A gate whose `failures` threshold is above one reports `inconclusive` until it has
//! failed that many times in a row (a single bad datapoint does not roll back).

mod cloudwatch;
mod http;

use std::collections::HashMap;
use std::sync::Mutex;

pub use cloudwatch::{AlarmGate, Bound, MetricGate};
pub use http::HttpGate;

use crate::plugin::bindings::HookContext;
use crate::plugin::bindings::types::{GateResult, GateStatus, LifecyclePoint};
use crate::plugin::hook::HookPlugin;
use crate::rollout::gates::{GateContext, Gates};

/// Where a gate runs: a lifecycle point, or continuously during bakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
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

/// One kind of check.
pub enum Check {
    Http(HttpGate),
    Alarm(AlarmGate),
    Metric(MetricGate),
    Hook { plugin: HookPlugin, params: String },
}

/// A check with where it runs and how failures count.
pub struct Gate {
    pub name: String,
    pub at: Vec<GatePoint>,
    /// Consecutive failures before the gate reports `fail`.
    pub failures: u32,
    pub check: Check,
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
        let mut result = match &gate.check {
            Check::Http(http) => http.run(&gate.name).await,
            Check::Alarm(alarm) => alarm.run(&gate.name).await,
            Check::Metric(metric) => metric.run(&gate.name).await,
            Check::Hook { plugin, params } => {
                let hook_ctx = HookContext {
                    point,
                    deployment_id: ctx.deployment_id.clone(),
                    service: ctx.service.clone(),
                    new_release: ctx.new_release.clone(),
                    stable_release: ctx.stable_release.clone(),
                    new_traffic_percent: ctx.new_percent,
                    params: params.clone(),
                };
                match plugin.run(&hook_ctx).await {
                    Ok(mut result) => {
                        result.name = gate.name.clone();
                        result
                    }
                    // A hook that crashes or times out fails its gate: fail closed.
                    Err(err) => GateResult {
                        name: gate.name.clone(),
                        status: GateStatus::Fail,
                        detail: err.to_string(),
                        observed: None,
                    },
                }
            }
        };
        let mut streaks = self.streaks.lock().unwrap();
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
}
