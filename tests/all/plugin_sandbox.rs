//! A misbehaving plugin is stopped, reported as a typed failure of that call, and the
//! host goes on serving the next call.

use std::time::{Duration, Instant};

use deployer_contract::{RolloutState, Step, TargetInfo, TargetKind};
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Limits, PluginError, PluginHost, PluginSource};
use deployer_tests::{components, host, source};

fn state(mode: &str) -> RolloutState {
    RolloutState {
        params: format!(r#"{{"mode":"{mode}"}}"#),
        target: TargetInfo {
            kind: TargetKind::Simulated,
            desired_count: 2,
            native_rolling: true,
            test_traffic: false,
        },
        history: vec![],
    }
}

fn hostile(host: &PluginHost, limits: Limits) -> StrategyPlugin {
    StrategyPlugin::load(
        host,
        &source("hostile", components::HOSTILE_STRATEGY),
        limits,
    )
    .unwrap()
}

/// The host still works: the same plugin answers `info`, and a built-in strategy runs.
async fn assert_host_still_serves(host: &PluginHost, plugin: &StrategyPlugin) {
    assert_eq!(plugin.info().await.unwrap().name, "hostile");
    let canary = StrategyPlugin::load(
        host,
        &PluginSource::Builtin("canary".into()),
        Limits::strategy(),
    )
    .unwrap();
    let mut st = state("none");
    st.params = r#"{"steps":[{"weight":10}]}"#.into();
    assert!(matches!(canary.next(&st).await.unwrap(), Step::RunGates(_)));
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_within_100ms() {
    let (host, _cache) = host();
    let limits = Limits {
        timeout: Duration::from_millis(20),
        ..Limits::strategy()
    };
    let plugin = hostile(&host, limits);
    let started = Instant::now();
    let err = plugin.next(&state("loop")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            PluginError::Timeout {
                function: "next",
                ..
            }
        ),
        "{err}"
    );
    // The issue's bound; the measured stop latency is in BENCHMARKS.md.
    assert!(
        elapsed < Duration::from_millis(100),
        "stopped after {elapsed:?}"
    );
    assert!(
        err.to_string()
            .contains("ran longer than its 20ms time limit"),
        "{err}"
    );
    assert_host_still_serves(&host, &plugin).await;
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_at_its_cap() {
    let (host, _cache) = host();
    let limits = Limits {
        memory_bytes: 16 << 20,
        ..Limits::strategy()
    };
    let plugin = hostile(&host, limits);
    let err = plugin.next(&state("oom")).await.unwrap_err();
    assert!(
        matches!(err, PluginError::MemoryLimit { limit_mib: 16, .. }),
        "{err}"
    );
    assert_host_still_serves(&host, &plugin).await;
}

#[tokio::test]
async fn a_trap_is_a_clean_error() {
    let (host, _cache) = host();
    let plugin = hostile(&host, Limits::strategy());
    let err = plugin.next(&state("trap")).await.unwrap_err();
    let PluginError::Trap { function, trap, .. } = &err else {
        panic!("expected a trap, got {err}");
    };
    assert_eq!(*function, "next");
    assert!(trap.contains("unreachable"), "{trap}");
    assert_host_still_serves(&host, &plugin).await;
}

#[tokio::test]
async fn deep_recursion_is_a_clean_trap() {
    // Rust guests keep their stack in linear memory, so runaway recursion ends as an
    // out-of-bounds access there (or a wasm stack overflow for other guests).
    let (host, _cache) = host();
    let plugin = hostile(&host, Limits::strategy());
    let err = plugin.next(&state("recurse")).await.unwrap_err();
    assert!(
        matches!(&err, PluginError::Trap { trap, .. } if trap.contains("out of bounds") || trap.contains("stack overflow")),
        "{err}"
    );
    assert_host_still_serves(&host, &plugin).await;
}

#[tokio::test]
async fn a_strategy_error_is_reported_as_the_plugins_failure() {
    let (host, _cache) = host();
    let plugin = hostile(&host, Limits::strategy());
    let err = plugin.next(&state("error")).await.unwrap_err();
    assert!(
        matches!(&err, PluginError::Failed { message, .. } if message == "deliberate error"),
        "{err}"
    );
}

#[tokio::test]
async fn each_call_gets_a_fresh_instance() {
    // After a trap the instance is poisoned; the next call must not inherit it.
    let (host, _cache) = host();
    let plugin = hostile(&host, Limits::strategy());
    for _ in 0..3 {
        assert!(plugin.next(&state("trap")).await.is_err());
        assert_eq!(
            plugin.next(&state("fine")).await.unwrap(),
            Step::Abort("mode fine".into())
        );
    }
}

#[tokio::test]
async fn a_strategy_built_for_wasi_is_refused_its_clocks_and_randomness() {
    // Rust's std for wasm32-wasip2 imports wasi:clocks and wasi:random: a strategy that
    // could read them would not be a function of its state, and resume and `plan` would
    // not be true. It is refused before any guest code runs, with the fix.
    let (host, _cache) = host();
    let err = StrategyPlugin::load(
        &host,
        &source("hostile-wasi", components::HOSTILE_STRATEGY_WASI),
        Limits::strategy(),
    )
    .err()
    .unwrap();
    let PluginError::NotGranted {
        capability, fix, ..
    } = &err
    else {
        panic!("expected NotGranted, got {err}");
    };
    assert!(
        capability.starts_with("wasi:clocks/") || capability.starts_with("wasi:random/"),
        "{capability}"
    );
    assert!(fix.contains("wasm32-unknown-unknown"), "{fix}");
}

#[tokio::test]
async fn many_hostile_calls_at_once_do_not_take_the_host_down() {
    let (host, _cache) = host();
    let limits = Limits {
        timeout: Duration::from_millis(50),
        memory_bytes: 8 << 20,
        ..Limits::strategy()
    };
    let plugin = std::sync::Arc::new(hostile(&host, limits));
    let modes = ["loop", "oom", "trap", "recurse", "fine"];
    let results = futures_join(modes.iter().map(|m| {
        let plugin = plugin.clone();
        async move { plugin.next(&state(m)).await }
    }))
    .await;
    assert!(matches!(results[0], Err(PluginError::Timeout { .. })));
    assert!(matches!(results[1], Err(PluginError::MemoryLimit { .. })));
    assert!(matches!(results[2], Err(PluginError::Trap { .. })));
    assert!(matches!(results[3], Err(PluginError::Trap { .. })));
    assert!(results[4].is_ok());
}

/// Run futures concurrently on the current task.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}
