//! `deployer:plugin/types@0.3.0` as plain Rust. Names and shapes follow the WIT file one
//! to one (and so the serde form of the types wasmtime generates, which journals store).
//! See `wit/types.wit` for what each item means.

use serde::{Deserialize, Serialize};

/// Outcome of one gate. Four states so a missing signal is never taken for a healthy one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GateStatus {
    Pass,
    Fail,
    Inconclusive,
    NoData,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    pub status: GateStatus,
    pub detail: String,
    pub observed: Option<f64>,
}

/// Which side of a deployment an action refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    Stable,
    New,
}

/// Lifecycle points at which gates and hooks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LifecyclePoint {
    PreDeploy,
    PreTraffic,
    PostTraffic,
    PostDeploy,
    PostRollback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetKind {
    EcsService,
    EksDeployment,
    AutoScalingGroup,
    Simulated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub kind: TargetKind,
    pub desired_count: u32,
    pub native_rolling: bool,
    pub test_traffic: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollingUpdate {
    pub min_healthy_percent: u32,
    pub max_percent: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRequest {
    pub side: Side,
    pub count: u32,
}

/// One action a strategy asks the host to take next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    Scale(ScaleRequest),
    ShiftTraffic(u8),
    RouteTestTraffic,
    RunGates(LifecyclePoint),
    Bake(u64),
    RollingUpdate(RollingUpdate),
    Promote,
    Complete,
    Abort(String),
    /// New in contract 0.3.0; journals written before it never contain it.
    AwaitApproval(Approval),
}

/// A pause until a person approves (`deployer promote`), at most `timeout_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub timeout_ms: u64,
    pub on_timeout: ApprovalTimeout,
}

/// What happens when nobody approved in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalTimeout {
    RollBack,
    Continue,
}

/// What happened when the host carried out a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StepOutcome {
    Done,
    Gates(Vec<GateResult>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    pub outcome: StepOutcome,
}

/// Everything a strategy may base its decision on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub params: String,
    pub target: TargetInfo,
    pub history: Vec<StepRecord>,
}

/// A problem with one parameter, reported by `validate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamError {
    pub field: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
}
