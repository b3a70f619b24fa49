//! Fleet scale: N concurrent canary deployments (N = 1, 10, 100) in one process, each on
//! its own simulated target (every driver call takes 20 ms, like a cloud API) with its
//! own journal and lock. Reports peak RSS, CPU time per deployment, and the CPU used
//! while every deployment is waiting in a bake (it should be about zero: waiting is a
//! timer, not a thread).
//!
//! Each N runs in a fresh child process so that peak RSS is its own. Results: BENCHMARKS.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deployer_contract::{Step, TargetInfo, TargetKind};
use deployer_engine::events::Event;
use deployer_engine::gates::NoGates;
use deployer_engine::rollout::{DeployRequest, Engine, Parts, Settings};
use deployer_engine::sim::SimDriver;
use deployer_engine::state::{DeployResult, LocalStore};
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Limits, PluginHost, PluginSource};
use tokio_util::sync::CancellationToken;

const PARAMS: &str = r#"{"steps":[{"weight":10,"bake":"4s"},{"weight":50,"bake":"1s"}]}"#;

/// (user + system CPU time of this process, peak RSS in KiB).
fn usage() -> (Duration, u64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss as u64)
}

fn current_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn child(n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let host = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    let strategy = Arc::new(
        StrategyPlugin::load(
            &host,
            &PluginSource::Builtin("canary".into()),
            Limits::strategy(),
        )
        .unwrap(),
    );
    let store = Arc::new(LocalStore::new(state.path()));
    let baseline_rss = current_rss_kib();
    let in_bake = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let (cpu_start, _) = usage();

    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..n {
            let strategy = strategy.clone();
            let store = store.clone();
            let in_bake = in_bake.clone();
            tasks.push(tokio::spawn(async move {
                let driver = SimDriver::new("web:1", 4).with_delay(Duration::from_millis(20));
                let service = format!("svc-{i}");
                let first_bake = AtomicUsize::new(0);
                let events = |event: &Event<'_>| {
                    if let Event::Step {
                        step: Step::Bake(_),
                        ..
                    } = event
                        && first_bake.fetch_add(1, Ordering::SeqCst) == 0
                    {
                        in_bake.fetch_add(1, Ordering::SeqCst);
                    }
                };
                let engine = Engine::new(Parts {
                    service: &service,
                    strategy: &*strategy,
                    target: &driver,
                    gates: &NoGates,
                    store: &*store,
                    settings: Settings {
                        watch_interval: Duration::from_secs(30),
                        ..Settings::default()
                    },
                    cancel: CancellationToken::new(),
                    events: &events,
                });
                engine
                    .deploy(DeployRequest {
                        strategy: "canary".into(),
                        new_release: "web:2".into(),
                        params: PARAMS.into(),
                        target: TargetInfo {
                            kind: TargetKind::Simulated,
                            desired_count: 4,
                            native_rolling: false,
                            test_traffic: false,
                        },
                    })
                    .await
                    .ok()
                    .and_then(|deployed| deployed.into_report())
                    .map(|report| report.result)
            }));
        }
        // Once every deployment is in its first (4 s) bake, measure a quiet second.
        let waiting = tokio::spawn({
            let in_bake = in_bake.clone();
            async move {
                while in_bake.load(Ordering::SeqCst) < n {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                let (before, _) = usage();
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (after, _) = usage();
                after - before
            }
        });
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        (results, waiting.await.unwrap())
    });
    let (results, waiting_cpu) = results;
    assert!(results.iter().all(|r| *r == Some(DeployResult::Promoted)));
    let (cpu_end, peak_rss) = usage();
    let cpu = cpu_end - cpu_start;
    println!(
        "{{\"n\":{n},\"wall_ms\":{},\"cpu_ms\":{},\"cpu_per_deployment_ms\":{:.2},\"waiting_cpu_ms_per_s\":{:.2},\"baseline_rss_kib\":{baseline_rss},\"peak_rss_kib\":{peak_rss}}}",
        started.elapsed().as_millis(),
        cpu.as_millis(),
        cpu.as_secs_f64() * 1000.0 / n as f64,
        waiting_cpu.as_secs_f64() * 1000.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--fleet-child") {
        child(args[i + 1].parse().unwrap());
        return;
    }
    println!(
        "fleet: N concurrent canaries (2 shifts, 5 s of bakes, 20 ms per driver call) in one process"
    );
    println!(
        "| N | wall time | CPU per deployment | CPU while all wait (per s) | RSS before | peak RSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for n in [1, 10, 100] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--fleet-child", &n.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        let mib = |k: &str| v[k].as_f64().unwrap() / 1024.0;
        println!(
            "| {n} | {:.1} s | {:.1} ms | {:.1} ms | {:.1} MiB | {:.1} MiB |",
            v["wall_ms"].as_f64().unwrap() / 1000.0,
            v["cpu_per_deployment_ms"].as_f64().unwrap(),
            v["waiting_cpu_ms_per_s"].as_f64().unwrap(),
            mib("baseline_rss_kib"),
            mib("peak_rss_kib"),
        );
    }
}
