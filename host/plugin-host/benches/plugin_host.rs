//! Plugin host costs of each built-in strategy: loading it from the on-disk compile
//! cache, instantiating it, one `next` call as the host makes it (a fresh store and
//! instance, then the call), the call alone on a live instance, and the same logic compiled natively (the
//! baseline of the wasm/native ratio). Results and how to reproduce them: BENCHMARKS.md.
//!
//! And the built-in canary judge: one evaluation as a bake gate makes it (fresh store and
//! instance, two `query-prometheus` calls checked by the host and answered in-process by
//! a synthetic source, the samples handed to the guest, the Mann–Whitney test there), at
//! 1k and 100k samples a side.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use deployer_contract::{
    RolloutState, ScaleRequest, Side, Step, StepOutcome, StepRecord, TargetInfo, TargetKind,
};
use deployer_plugin_host::bindings::metrics::{Datapoint, MetricQuery, PromqlQuery, Series};
use deployer_plugin_host::bindings::types::CapabilityError;
use deployer_plugin_host::capabilities::{BoxFuture, MetricsSource};
use deployer_plugin_host::hook::{HookContext, HookPlugin};
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Grants, HostServices, Limits, PluginHost, PluginSource, builtin};

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

/// Prometheus answering the judge from memory: the canary's series for a query naming
/// the canary's release, else the baseline's.
struct Synthetic {
    canary: Vec<Series>,
    baseline: Vec<Series>,
}

impl Synthetic {
    /// `samples` a side, in series of at most 10,000 points (Prometheus answers at most
    /// 11,000 per series), values spread like a latency in milliseconds.
    fn new(samples: usize) -> Self {
        let side = |seed: u64| {
            let mut state = seed;
            let values: Vec<f64> = (0..samples)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    50.0 + (state >> 33) as f64 / (1u64 << 31) as f64 * 20.0
                })
                .collect();
            values
                .chunks(10_000)
                .enumerate()
                .map(|(i, chunk)| Series {
                    labels: vec![("pod".into(), format!("web-{i}"))],
                    points: chunk
                        .iter()
                        .enumerate()
                        .map(|(t, &value)| Datapoint {
                            timestamp_ms: t as u64 * 1000,
                            value,
                        })
                        .collect(),
                })
                .collect()
        };
        Synthetic {
            canary: side(1),
            baseline: side(2),
        }
    }
}

impl MetricsSource for Synthetic {
    fn query(&self, _: MetricQuery) -> BoxFuture<'_, Result<Vec<Datapoint>, CapabilityError>> {
        Box::pin(async { Err(CapabilityError::Unavailable("no CloudWatch here".into())) })
    }

    fn prometheus(
        &self,
        query: PromqlQuery,
    ) -> BoxFuture<'_, Result<Vec<Series>, CapabilityError>> {
        Box::pin(async move {
            Ok(if query.query.contains("web:3") {
                self.canary.clone()
            } else {
                self.baseline.clone()
            })
        })
    }
}

fn judge(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let host = PluginHost::new(None).unwrap();
    let grants = Grants {
        prometheus_metrics: vec!["http_request_duration_seconds".into()],
        ..Grants::default()
    };
    let plugin = HookPlugin::load(
        &host,
        &PluginSource::Builtin("judge".into()),
        Limits::hook(),
        grants,
    )
    .unwrap();
    let ctx = HookContext {
        point: deployer_contract::LifecyclePoint::PostTraffic,
        deployment_id: "web-20261201-041230-7kq3".into(),
        service: "web".into(),
        new_release: "web:3".into(),
        stable_release: Some("web:2".into()),
        new_traffic_percent: 10,
        params: r#"{"metrics":[{"name":"latency","prometheus":"http_request_duration_seconds{release=\"{release}\"}"}]}"#.into(),
    };
    let mut group = c.benchmark_group("judge");
    group.sample_size(10);
    for (label, samples) in [("1k", 1_000), ("100k", 100_000)] {
        let services = HostServices {
            metrics: Some(Arc::new(Synthetic::new(samples))),
            ..HostServices::default()
        };
        // The whole judgement runs: both sides counted and compared, not a short cut.
        let result = rt
            .block_on(plugin.run_with(&ctx, services.clone()))
            .unwrap();
        assert_eq!(
            result.status,
            deployer_contract::GateStatus::Pass,
            "{result:?}"
        );
        assert!(
            result
                .detail
                .contains(&format!("{samples}/{samples} samples")),
            "{}",
            result.detail
        );
        group.bench_function(format!("run/{label}"), |b| {
            b.iter(|| {
                rt.block_on(plugin.run_with(&ctx, services.clone()))
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = plugin_host, judge
}
criterion_main!(benches);
