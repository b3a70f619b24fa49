//! Deployment overhead against moto: the wall time and AWS API calls of full canary,
//! blue-green and rolling runs with zero bake times (so nearly all time is deployer's
//! own, plus moto's answers and the stand-in agent's 50 ms reconcile loop), the calls per
//! traffic step, and how soon after a failing observation the rollback starts.
//!
//! Runs the release `deployer` binary as CI would (`scripts/bench.sh` builds it first)
//! and reads its `--output json` summaries. Results: BENCHMARKS.md.

use std::time::Instant;

use deployer_tests::support::App;
use deployer_tests::support::config::ConfigBuilder;
use deployer_tests::support::env::EcsEnv;

const RUNS: usize = 5;

struct Sample {
    wall_ms: f64,
    in_process_ms: u64,
    calls: u64,
    shift_calls: Vec<u64>,
    rollback_latency_ms: Option<u64>,
}

/// `web` on the ECS world's task sets, one smoke-test request to `url` before and after
/// each shift, and no bake anywhere.
fn config(env: &EcsEnv, url: &str) -> ConfigBuilder {
    env.config().service("web", |s| {
        env.task_set_web(s.health_timeout("10s"))
            .gate("http", &["pre-traffic", "post-traffic"], |g| {
                g.str("name", "smoke").str("url", url).int("requests", 1)
            })
            .canary_steps("[{ weight = 10 }, { weight = 25 }, { weight = 50 }]")
            .strategy("blue-green", |p| p.str("bake", "0s"))
            .strategy("rolling", |p| p.str("batch-size", "25%"))
    })
}

async fn deploy(env: &EcsEnv, strategy: &str, release: &str) -> (i32, Sample) {
    let started = Instant::now();
    let out = env
        .command(&["run", strategy, "--release", release, "--output", "json"])
        // A fresh cache of its own: what the suites left in theirs must not change the timings.
        .env("DEPLOYER_CACHE_DIR", env.dir.path().join("cache"))
        .output()
        .await
        .unwrap();
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let shift_calls = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"].as_str().unwrap().starts_with("shift traffic"))
        .map(|s| s["aws-api-calls"].as_u64().unwrap())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        Sample {
            wall_ms,
            in_process_ms: summary["duration-ms"].as_u64().unwrap(),
            calls: summary["aws-api-calls"]["total"].as_u64().unwrap(),
            shift_calls,
            rollback_latency_ms: summary["rollback-latency-ms"].as_u64(),
        },
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let env = EcsEnv::start(&[]).await;
        let good = App::start(200, "ok");
        let bad = App::start(500, "boom");
        env.write(&config(&env, &good.url));

        println!("deploy_overhead: {RUNS} runs per strategy against moto, zero bake times");
        println!("| run | wall time (median) | in-process (median) | API calls / run | API calls per traffic step (max) |");
        println!("| --- | --- | --- | --- | --- |");
        let mut release = 2;
        for strategy in ["canary", "blue-green", "rolling"] {
            let mut samples = Vec::new();
            for _ in 0..RUNS {
                release = if release == 2 { 3 } else { 2 };
                let (code, sample) = deploy(&env, strategy, &format!("web:{release}")).await;
                assert_eq!(code, 0, "{strategy} must promote");
                samples.push(sample);
            }
            print_row(strategy, &samples);
        }

        // A failing smoke test: time from the failing result to the first rollback action.
        env.write(&config(&env, &bad.url));
        let mut samples = Vec::new();
        for _ in 0..RUNS {
            let next = if release == 2 { 3 } else { 2 };
            let (code, sample) = deploy(&env, "canary", &format!("web:{next}")).await;
            assert_eq!(code, 1, "a failing canary must roll back");
            samples.push(sample);
        }
        print_row("canary, rolled back", &samples);
        let latencies: Vec<f64> = samples
            .iter()
            .map(|s| s.rollback_latency_ms.expect("latency reported") as f64)
            .collect();
        println!(
            "rollback issued {:.0} ms (median), {:.0} ms (max) after the failing observation",
            median(latencies.clone()),
            latencies.iter().cloned().fold(0.0, f64::max)
        );

        // `deployer rollback` after a promotion: cold (the previous release was scaled
        // down as the deployment completed) and warm (kept by `scale-down-delay`).
        println!("| manual rollback | to traffic back (median) | whole process (median) | API calls / run | scaling calls |");
        println!("| --- | --- | --- | --- | --- |");
        for (name, delay) in [("cold", "0s"), ("warm (scale-down-delay)", "1h")] {
            env.write(&config(&env, &good.url).service("web", |s| {
                s.settings(|t| t.str("scale-down-delay", delay))
            }));
            let mut samples = Vec::new();
            for _ in 0..RUNS {
                release = if release == 2 { 3 } else { 2 };
                let (code, _) = deploy(&env, "blue-green", &format!("web:{release}")).await;
                assert_eq!(code, 0, "blue-green must promote");
                samples.push(roll_back(&env).await);
            }
            let back = median(samples.iter().map(|s| s.0).collect());
            let whole = median(samples.iter().map(|s| s.1).collect());
            let calls = median(samples.iter().map(|s| s.2 as f64).collect());
            let scaling = samples.iter().map(|s| s.3).max().unwrap_or(0);
            println!("| {name} | {back:.0} ms | {whole:.0} ms | {calls:.0} | {scaling} |");
        }
    });
}

/// One `deployer rollback`: ms from process start until the load balancer's weights read
/// back as all on the other side (polled every 10 ms), ms until the process exits, its
/// API calls, and how many of them scaled something.
async fn roll_back(env: &EcsEnv) -> (f64, f64, u64, u64) {
    let before = env.weights().await;
    let started = Instant::now();
    let child = env
        .command(&["rollback", "--output", "json"])
        .env("DEPLOYER_CACHE_DIR", env.dir.path().join("cache"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut back_ms = None;
    while back_ms.is_none() {
        let now = env.weights().await;
        if now != before && (now.0 == 100 || now.1 == 100) {
            back_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    let out = child.wait_with_output().await.unwrap();
    let whole_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(out.status.code(), Some(0), "the rollback must succeed");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let calls = &summary["aws-api-calls"];
    let scaling = calls["by-operation"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(op, _)| {
            [
                "UpdateTaskSet",
                "CreateTaskSet",
                "DeleteTaskSet",
                "UpdateService",
            ]
            .iter()
            .any(|scale| op.ends_with(&format!(".{scale}")))
        })
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    (
        back_ms.unwrap_or(whole_ms),
        whole_ms,
        calls["total"].as_u64().unwrap(),
        scaling,
    )
}

fn print_row(name: &str, samples: &[Sample]) {
    let wall = median(samples.iter().map(|s| s.wall_ms).collect());
    let inside = median(samples.iter().map(|s| s.in_process_ms as f64).collect());
    let calls = median(samples.iter().map(|s| s.calls as f64).collect());
    let per_shift = samples
        .iter()
        .flat_map(|s| s.shift_calls.iter().copied())
        .max()
        .map_or("-".to_string(), |m| m.to_string());
    println!("| {name} | {wall:.0} ms | {inside:.0} ms | {calls:.0} | {per_shift} |");
}
