//! `plan` runs the real WASM strategies under the host's safety rules.

use deployer_contract::{ScaleRequest, Side, Step, TargetInfo, TargetKind};
use deployer_engine::plan::{Ending, PlanError, simulate};
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Limits, PluginSource};
use deployer_tests::host;

fn target(desired: u32, native_rolling: bool) -> TargetInfo {
    TargetInfo {
        kind: TargetKind::Simulated,
        desired_count: desired,
        native_rolling,
        test_traffic: false,
    }
}

async fn plan(
    strategy: &str,
    params: &str,
    target: TargetInfo,
) -> Result<deployer_engine::plan::Plan, PlanError> {
    let (host, _cache) = host();
    let plugin = StrategyPlugin::load(
        &host,
        &PluginSource::Builtin(strategy.into()),
        Limits::strategy(),
    )
    .unwrap();
    simulate(&plugin, params, target).await
}

#[tokio::test]
async fn the_wasm_canary_shifts_through_its_weights_and_completes() {
    let plan = plan(
        "canary",
        r#"{"steps":[{"weight":10,"bake":"1m"},{"weight":50}]}"#,
        target(4, false),
    )
    .await
    .unwrap();
    assert_eq!(plan.ending, Ending::Completed);
    let weights: Vec<u8> = plan
        .steps
        .iter()
        .filter_map(|s| {
            if let Step::ShiftTraffic(w) = s {
                Some(*w)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(weights, [10, 50, 100]);
    assert_eq!(plan.total_bake_ms(), 60_000);
}

#[tokio::test]
async fn batched_rolling_passes_the_safety_rules_at_every_size() {
    for desired in 1..=7 {
        for params in [
            r#"{"batch-size":1}"#,
            r#"{"batch-size":"50%"}"#,
            r#"{"min-healthy-percent":60}"#,
        ] {
            let plan = plan("rolling", params, target(desired, false)).await;
            let plan = plan.unwrap_or_else(|e| panic!("{desired} units, {params}: {e}"));
            assert_eq!(plan.ending, Ending::Completed);
            assert!(plan.steps.contains(&Step::Scale(ScaleRequest {
                side: Side::Stable,
                count: 0
            })));
        }
    }
}

#[tokio::test]
async fn blue_green_and_canary_plan_for_any_size() {
    for desired in [1, 2, 3, 10, 100] {
        plan("blue-green", r#"{"bake":"5m"}"#, target(desired, false))
            .await
            .unwrap();
        plan(
            "canary",
            r#"{"steps":[{"weight":1},{"weight":33},{"weight":99}]}"#,
            target(desired, false),
        )
        .await
        .unwrap();
    }
}
