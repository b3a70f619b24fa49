//! Plugin host costs: loading a built-in strategy from the on-disk compile cache,
//! instantiating it, and one `next` call (fresh store + instance + call), plus how fast
//! an infinite loop is stopped. Results and how to reproduce them: BENCHMARKS.md.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use deployer::plugin::bindings::types::{
    RolloutState, ScaleRequest, Side, Step, StepOutcome, StepRecord, TargetInfo, TargetKind,
};
use deployer::plugin::strategy::StrategyPlugin;
use deployer::plugin::{Limits, PluginHost, PluginSource, builtin};

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
            step: Step::RunGates(deployer::plugin::bindings::types::LifecyclePoint::PreDeploy),
            outcome: StepOutcome::Gates(vec![]),
        }],
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
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = plugin_host
}
criterion_main!(benches);
