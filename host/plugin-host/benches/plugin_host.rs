//! Plugin host costs of each built-in strategy: loading it from the on-disk compile
//! cache, instantiating it, one `next` call as the host makes it (a fresh store and
//! instance, then the call), the call alone on a live instance, and the same logic compiled natively (the
//! baseline of the wasm/native ratio). Results and how to reproduce them: BENCHMARKS.md.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use deployer_contract::{
    RolloutState, ScaleRequest, Side, Step, StepOutcome, StepRecord, TargetInfo, TargetKind,
};
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Limits, PluginHost, PluginSource, builtin};

const PARAMS: [(&str, &str); 3] = [
    (
        "canary",
        r#"{"steps":[{"weight":10,"bake":"5m"},{"weight":50,"bake":"10m"}]}"#,
    ),
    ("blue-green", r#"{"bake":"10m"}"#),
    ("rolling", r#"{"batch-size":"25%"}"#),
];

/// A state part-way through a rollout, so `next` walks a real history.
fn mid_rollout(params: &str) -> RolloutState {
    RolloutState {
        params: params.to_string(),
        target: TargetInfo {
            kind: TargetKind::Simulated,
            desired_count: 4,
            native_rolling: true,
            test_traffic: false,
        },
        history: vec![StepRecord {
            step: Step::RunGates(deployer_contract::LifecyclePoint::PreDeploy),
            outcome: StepOutcome::Gates(vec![]),
        }],
    }
}

/// The built-in strategies' own Rust, called through the SDK as the guest export does
/// (JSON parameters parsed, then `next`), but compiled for the host.
mod native {
    use deployer_plugin_sdk::strategy::next as sdk_next;
    use deployer_plugin_sdk::{
        LifecyclePoint, RolloutState, Step, StepOutcome, StepRecord, TargetInfo, TargetKind,
    };

    pub fn state(params: &str) -> RolloutState {
        RolloutState {
            params: params.to_string(),
            target: TargetInfo {
                kind: TargetKind::Simulated,
                desired_count: 4,
                native_rolling: true,
                test_traffic: false,
            },
            history: vec![StepRecord {
                step: Step::RunGates(LifecyclePoint::PreDeploy),
                outcome: StepOutcome::Gates(vec![]),
            }],
        }
    }

    pub fn next(name: &str, state: &RolloutState) -> Step {
        match name {
            "canary" => sdk_next::<deployer_strategy_canary::Canary>(state),
            "blue-green" => sdk_next::<deployer_strategy_blue_green::BlueGreen>(state),
            _ => sdk_next::<deployer_strategy_rolling::Rolling>(state),
        }
        .unwrap()
    }
}

fn plugin_host(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let host = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    let mut group = c.benchmark_group("plugin_host");
    for (name, params) in PARAMS {
        assert!(builtin::get(name).is_some());
        let source = PluginSource::Builtin(name.to_string());
        // Warm the disk cache once; each iteration then loads from disk.
        let plugin = StrategyPlugin::load(&host, &source, Limits::strategy()).unwrap();
        group.bench_function(format!("cached_load/{name}"), |b| {
            b.iter(|| {
                host.forget_compiled();
                StrategyPlugin::load(&host, &source, Limits::strategy()).unwrap()
            })
        });
        group.bench_function(format!("instantiate/{name}"), |b| {
            b.iter(|| rt.block_on(plugin.instantiate()).unwrap())
        });
        let state = mid_rollout(params);
        let first = rt.block_on(plugin.next(&state)).unwrap();
        assert!(matches!(
            first,
            Step::Scale(ScaleRequest {
                side: Side::New,
                ..
            }) | Step::RollingUpdate(_)
        ));
        group.bench_function(format!("call_next/{name}"), |b| {
            b.iter(|| rt.block_on(plugin.next(&state)).unwrap())
        });
        // The call alone, on a live instance (batches stay well inside the call deadline).
        group.bench_function(format!("call_only/{name}"), |b| {
            b.iter_custom(|iters| {
                let started = std::time::Instant::now();
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(10_000);
                    rt.block_on(plugin.next_repeated(&state, batch)).unwrap();
                    left -= batch;
                }
                started.elapsed()
            })
        });
        // The same strategy logic compiled natively: the baseline of the wasm/native ratio.
        let native_state = native::state(params);
        group.bench_function(format!("native_next/{name}"), |b| {
            b.iter(|| native::next(name, &native_state))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = plugin_host
}
criterion_main!(benches);
