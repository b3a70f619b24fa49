//! A strategy that misbehaves on request: `{"mode": "..."}` picks how.
//! `info` always behaves, so tests can check the host still serves the plugin.

use deployer_plugin_sdk::{PluginInfo, RolloutState, ScaleRequest, Side, Step, Strategy};
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

    fn next(params: &Params, _state: &RolloutState) -> Result<Step, String> {
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
