//! A strategy that misbehaves on request: `{"mode": "..."}` picks how.
//! `info` always behaves, so tests can check the host still serves the plugin.

use deployer_plugin_sdk::{
    LifecyclePoint, PluginInfo, RollingUpdate, RolloutState, ScaleRequest, Side, Step, Strategy,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Params {
    mode: String,
}

struct Hostile;

impl Strategy for Hostile {
    type Params = Params;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile".into(),
            version: "0.1.0".into(),
            description: "misbehaves on request".into(),
        }
    }

    fn next(params: &Params, state: &RolloutState) -> Result<Step, String> {
        let new = |count| {
            Step::Scale(ScaleRequest {
                side: Side::New,
                count,
            })
        };
        let desired = state.target.desired_count;
        // Scripted modes: the step is the script's entry for the steps taken so far.
        let script: Option<Vec<Step>> = match params.mode.as_str() {
            // Promote, then move traffic back to stable and complete (remove the old side).
            "unpromote" => Some(vec![
                new(desired),
                Step::ShiftTraffic(100),
                Step::Promote,
                Step::ShiftTraffic(0),
                Step::Complete,
            ]),
            // Promote, then complete without moving traffic back: allowed.
            "no-gates" => Some(vec![
                new(desired),
                Step::ShiftTraffic(50),
                Step::ShiftTraffic(100),
                Step::Promote,
                Step::Complete,
            ]),
            // Asks for the gates itself, so the host has nothing to add.
            "with-gates" => Some(vec![
                Step::RunGates(LifecyclePoint::PreDeploy),
                new(desired),
                Step::RunGates(LifecyclePoint::PreTraffic),
                Step::ShiftTraffic(100),
                Step::RunGates(LifecyclePoint::PostTraffic),
                Step::Promote,
                Step::RunGates(LifecyclePoint::PostDeploy),
                Step::Complete,
            ]),
            "rolling-on-pair" => Some(vec![Step::RollingUpdate(RollingUpdate {
                min_healthy_percent: 0,
                max_percent: 100,
            })]),
            // Bakes of a millisecond, forever.
            "many-bakes" => return Ok(Step::Bake(1)),
            // One long bake, within the 24 h a bake may take.
            "long-bake" => Some(vec![new(desired), Step::Bake(3_600_000)]),
            _ => None,
        };
        if let Some(script) = script {
            return Ok(script
                .get(state.history.len())
                .cloned()
                .unwrap_or(Step::Abort("script ended".into())));
        }
        match params.mode.as_str() {
            "loop" => loop {
                std::hint::black_box(());
            },
            "oom" => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![7u8; 1 << 20]));
                }
            }
            "trap" => panic!("deliberate trap"),
            "recurse" => Ok(Step::Bake(recurse(std::hint::black_box(1)))),
            "error" => Err("deliberate error".into()),
            // Floods the host with output: an 8 MiB abort reason.
            "huge" => Ok(Step::Abort("x".repeat(8 << 20))),
            // Asks for what the safety rules forbid.
            "weight" => Ok(Step::ShiftTraffic(250)),
            "drain-stable" => Ok(Step::Scale(ScaleRequest {
                side: Side::Stable,
                count: 0,
            })),
            "shift-first" => Ok(Step::ShiftTraffic(50)),
            "endless-bake" => Ok(Step::Bake(u64::MAX)),
            "promote-early" => Ok(Step::Promote),
            // What a guest sees of its environment: built for wasip2 it gets WASI, but
            // with an empty context.
            "probe" => Ok(Step::Abort(format!(
                "env={} args={} read={} dir={}",
                std::env::vars().count(),
                std::env::args().count(),
                std::fs::read("/etc/passwd").is_ok(),
                std::fs::read_dir(".").is_ok(),
            ))),
            other => Ok(Step::Abort(format!("mode {other}"))),
        }
    }
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    recurse(pad[3] + 1) + pad[7]
}

deployer_plugin_sdk::export_strategy!(Hostile);
