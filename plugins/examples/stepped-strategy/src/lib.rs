//! A custom stepped strategy: traffic doubles at every step (1%, 2%, 4%, ... then 100%),
//! so a bad release touches as few users as possible early on while a good one reaches
//! everyone in a handful of steps. The new side is brought up at full size first.
//!
//! ```toml
//! [plugins.doubling]
//! kind = "strategy"
//! path = "plugins/stepped-strategy.wasm"
//! sha256 = "..."
//!
//! [services.web.strategies.doubling]
//! start = 1          # first share, in percent
//! bake = "2m"        # after every step
//! ```

use deployer_plugin_sdk::script::{self, GatePolicy};
use deployer_plugin_sdk::{
    Duration, LifecyclePoint, ParamError, PluginInfo, RolloutState, ScaleRequest, Side, Step,
    Strategy, TargetInfo, param_error,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Params {
    #[serde(default = "one")]
    pub start: u32,
    #[serde(default)]
    pub bake: Duration,
    #[serde(default)]
    pub gates: GatePolicy,
}

fn one() -> u32 {
    1
}

pub struct Doubling;

/// The shares of each step: start, doubled until it would pass 50, then 100.
pub fn shares(start: u32) -> Vec<u8> {
    let mut shares = Vec::new();
    let mut share = start;
    while share < 100 {
        shares.push(share as u8);
        share *= 2;
        if share > 50 {
            break;
        }
    }
    shares.push(100);
    shares
}

pub fn plan(params: &Params, target: &TargetInfo) -> Vec<Step> {
    let scale = |side, count| Step::Scale(ScaleRequest { side, count });
    let mut steps = vec![
        Step::RunGates(LifecyclePoint::PreDeploy),
        scale(Side::New, target.desired_count),
        Step::RunGates(LifecyclePoint::PreTraffic),
    ];
    for share in shares(params.start) {
        steps.push(Step::ShiftTraffic(share));
        steps.push(Step::RunGates(LifecyclePoint::PostTraffic));
        if !params.bake.is_zero() {
            steps.push(Step::Bake(params.bake.millis));
        }
    }
    steps.extend([
        Step::Promote,
        scale(Side::Stable, 0),
        Step::RunGates(LifecyclePoint::PostDeploy),
        Step::Complete,
    ]);
    steps
}

impl Strategy for Doubling {
    type Params = Params;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "doubling".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Traffic doubles at each step".into(),
        }
    }

    fn check(params: &Params) -> Vec<ParamError> {
        if (1..=50).contains(&params.start) {
            Vec::new()
        } else {
            vec![param_error(
                "start",
                format!("is {}; start between 1 and 50 percent", params.start),
            )]
        }
    }

    fn next(params: &Params, state: &RolloutState) -> Result<Step, String> {
        script::next_step(&plan(params, &state.target), &state.history, &params.gates)
    }
}

deployer_plugin_sdk::export_strategy!(Doubling);

#[cfg(test)]
mod tests {
    use super::*;
    use deployer_plugin_sdk::testing::{simulate, target};

    #[test]
    fn traffic_doubles_then_goes_all_in() {
        assert_eq!(shares(1), [1, 2, 4, 8, 16, 32, 100]);
        assert_eq!(shares(10), [10, 20, 40, 100]);
        assert_eq!(shares(50), [50, 100]);
    }

    #[test]
    fn a_rollout_completes() {
        let steps =
            simulate::<Doubling>(r#"{"start":10,"bake":"1m"}"#, target(4, true, false)).unwrap();
        assert_eq!(steps.last(), Some(&Step::Complete));
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, Step::Bake(60_000)))
                .count(),
            4
        );
    }
}
