//! A hook that logs "busy", then computes until the granted clock has advanced by its
//! `ms` parameter, then passes: a call that takes a known amount of wall-clock time, for
//! the test that a paused deployer does not count its pause against a time limit.

use deployer_plugin_sdk::bindings::log::Level;
use deployer_plugin_sdk::hook::{HookContext, clock, result};
use deployer_plugin_sdk::{GateResult, GateStatus, Hook, PluginInfo};
use serde::Deserialize;

#[derive(Deserialize)]
struct Params {
    /// Milliseconds to compute for.
    ms: u64,
}

struct Busy;

impl Hook for Busy {
    type Params = Params;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "busy".into(),
            version: "0.1.0".into(),
            description: "computes for a while by the clock".into(),
        }
    }

    fn run(params: &Params, _: &HookContext) -> GateResult {
        deployer_plugin_sdk::log(Level::Info, "busy");
        let until = clock::now_ms().saturating_add(params.ms);
        while clock::now_ms() < until {
            std::hint::black_box(());
        }
        result("busy", GateStatus::Pass, "busy, then done")
    }
}

deployer_plugin_sdk::export_hook!(Busy);
