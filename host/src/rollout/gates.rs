//! The gates the engine runs between steps. The configured implementation (HTTP
//! smoke tests, CloudWatch alarms and metrics, hook plugins) lives in `crate::gates`;
//! tests script their own.

use std::future::Future;

use crate::plugin::bindings::types::{GateResult, LifecyclePoint};

/// What gates know about the moment they run at.
#[derive(Clone, Debug)]
pub struct GateContext {
    pub deployment_id: String,
    pub service: String,
    pub new_release: String,
    pub stable_release: Option<String>,
    pub new_percent: u8,
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
}
