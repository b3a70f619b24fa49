//! Built-in blue-green strategy: bring the new (green) side up at full size, test it
//! with test traffic, switch all production traffic at once, bake, then retire blue.
//!
//! Parameters (`[services.NAME.strategies.blue-green]`):
//! - `test-traffic`: `"auto"` (default: use the test listener when the target has one),
//!   `true` (require it) or `false`.
//! - `bake` (default `"0s"`): how long to watch after the switch before retiring blue.
//! - `gates`: how inconclusive / no-data gate results are handled.

use deployer_plugin_sdk::params::check_bake;
use deployer_plugin_sdk::script::{self, GatePolicy};
use deployer_plugin_sdk::{
    Duration, LifecyclePoint, ParamError, PluginInfo, RolloutState, ScaleRequest, Side, Step,
    Strategy, TargetInfo,
};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Params {
    #[serde(default)]
    pub test_traffic: TestTraffic,
    #[serde(default)]
    pub bake: Duration,
    #[serde(default)]
    pub gates: GatePolicy,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum TestTraffic {
    #[default]
    #[serde(deserialize_with = "auto")]
    Auto,
    Required(bool),
}

fn auto<'de, D: serde::Deserializer<'de>>(de: D) -> Result<(), D::Error> {
    let text = String::deserialize(de)?;
    if text == "auto" {
        Ok(())
    } else {
        Err(serde::de::Error::custom("expected \"auto\", true or false"))
    }
}

pub struct BlueGreen;

impl Strategy for BlueGreen {
    type Params = Params;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "blue-green".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Full-size green, test traffic, one switch, bake, retire blue".into(),
        }
    }

    fn check(params: &Params) -> Vec<ParamError> {
        let mut errors: Vec<ParamError> = check_bake("bake", params.bake).into_iter().collect();
        errors.extend(params.gates.check("gates"));
        errors
    }

    fn next(params: &Params, state: &RolloutState) -> Result<Step, String> {
        if params.test_traffic == TestTraffic::Required(true) && !state.target.test_traffic {
            if state.history.is_empty() {
                return Ok(Step::Abort(
                    "test-traffic = true but the target has no test listener: configure \
                     `test-listener` for the service or set test-traffic = \"auto\""
                        .into(),
                ));
            }
            return Err("test traffic required but unavailable".into());
        }
        script::next_step(&plan(params, &state.target), &state.history, &params.gates)
    }
}

/// The full script of a blue-green rollout for `target`.
pub fn plan(params: &Params, target: &TargetInfo) -> Vec<Step> {
    let use_test_traffic = match params.test_traffic {
        TestTraffic::Auto => target.test_traffic,
        TestTraffic::Required(on) => on,
    };
    let mut steps = vec![
        Step::RunGates(LifecyclePoint::PreDeploy),
        Step::Scale(ScaleRequest {
            side: Side::New,
            count: target.desired_count,
        }),
    ];
    // A service sized to zero units has no new unit to send test traffic to (the host
    // refuses to route it to none), and nothing to test.
    if use_test_traffic && target.desired_count > 0 {
        steps.push(Step::RouteTestTraffic);
    }
    steps.extend([
        Step::RunGates(LifecyclePoint::PreTraffic),
        Step::ShiftTraffic(100),
        Step::RunGates(LifecyclePoint::PostTraffic),
    ]);
    if !params.bake.is_zero() {
        steps.push(Step::Bake(params.bake.millis));
    }
    steps.extend([
        Step::Promote,
        Step::Scale(ScaleRequest {
            side: Side::Stable,
            count: 0,
        }),
        Step::RunGates(LifecyclePoint::PostDeploy),
        Step::Complete,
    ]);
    steps
}

deployer_plugin_sdk::export_strategy!(BlueGreen);

#[cfg(test)]
mod tests {
    use super::*;
    use deployer_plugin_sdk::testing::{simulate, target};

    #[test]
    fn switches_all_traffic_at_once_after_test_traffic() {
        let steps = simulate::<BlueGreen>(r#"{"bake":"10m"}"#, target(3, true, true)).unwrap();
        let shifts: Vec<&Step> = steps
            .iter()
            .filter(|s| matches!(s, Step::ShiftTraffic(_)))
            .collect();
        assert_eq!(shifts, [&Step::ShiftTraffic(100)]);
        let pos = |want: &Step| steps.iter().position(|s| s == want).unwrap();
        assert!(pos(&Step::RouteTestTraffic) < pos(&Step::ShiftTraffic(100)));
        assert!(pos(&Step::ShiftTraffic(100)) < pos(&Step::Bake(600_000)));
        assert!(pos(&Step::Bake(600_000)) < pos(&Step::Promote));
        assert_eq!(steps.last(), Some(&Step::Complete));
    }

    #[test]
    fn auto_skips_test_traffic_without_a_test_listener() {
        let steps = simulate::<BlueGreen>("{}", target(3, true, false)).unwrap();
        assert!(!steps.contains(&Step::RouteTestTraffic));
        assert_eq!(steps.last(), Some(&Step::Complete));
    }

    #[test]
    fn required_test_traffic_without_a_listener_aborts_before_any_change() {
        let steps =
            simulate::<BlueGreen>(r#"{"test-traffic":true}"#, target(3, true, false)).unwrap();
        assert_eq!(steps.len(), 1);
        assert!(matches!(&steps[0], Step::Abort(why) if why.contains("test-listener")));
    }

    #[test]
    fn rejects_a_bad_test_traffic_value() {
        let errors =
            deployer_plugin_sdk::strategy::validate::<BlueGreen>(r#"{"test-traffic":"sometimes"}"#)
                .unwrap_err();
        assert_eq!(errors[0].field, "test-traffic");
    }
}
