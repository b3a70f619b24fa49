//! Start-up: what a CI job pays before `deployer` does anything. The binary's size (what
//! a runner downloads or pulls), and the time from starting `deployer run canary` to its
//! first AWS request — config read, the canary strategy loaded, clients built — on a
//! fresh runner (an empty compile cache, as on every hosted runner) and on a reused one.
//!
//! The "AWS endpoint" is a socket of this bench: the first connection marks the time,
//! and the process is stopped there. `DEPLOYER_BENCH_BIN` measures another binary (an
//! older build, for the before/after in BENCHMARKS.md); default: the release build.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use deployer_tests::support::cli::deployer_bin;
use deployer_tests::support::config::ConfigBuilder;

const RUNS: usize = 20;

fn binary() -> PathBuf {
    std::env::var_os("DEPLOYER_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(deployer_bin)
}

/// ms from spawning `deployer run canary` until it connects to the AWS endpoint.
fn to_first_call(bin: &PathBuf, config: &std::path::Path, cache: &std::path::Path) -> f64 {
    let endpoint = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = endpoint.local_addr().unwrap().port();
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text.replace("{PORT}", &port.to_string())).unwrap();
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args([
            "run",
            "canary",
            "--service",
            "web",
            "--release",
            "web:2",
            "--config",
        ])
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("DEPLOYER_CACHE_DIR", cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (_connection, _) = endpoint.accept().unwrap();
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::write(config, text).unwrap();
    elapsed
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let bin = binary();
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new()
        .aws("http://127.0.0.1:{PORT}")
        .service("web", |s| {
            s.ecs("prod", "web", 4)
                .unreachable_listener()
                .canary_steps("[{ weight = 10 }]")
        });
    let path = config.write(dir.path());

    let size = std::fs::metadata(&bin).unwrap().len();
    println!("startup: {} ({:.1} MB)", bin.display(), size as f64 / 1e6);
    let version_ms: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let out = Command::new(&bin).arg("--version").output().unwrap();
            assert!(out.status.success());
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    // Cold: an empty compile cache each run. Warm: one cache, filled by a first run.
    let cold: Vec<f64> = (0..RUNS)
        .map(|run| {
            let cache = dir.path().join(format!("cold-{run}"));
            to_first_call(&bin, &path, &cache)
        })
        .collect();
    let warm_cache = dir.path().join("warm");
    to_first_call(&bin, &path, &warm_cache);
    let warm: Vec<f64> = (0..RUNS)
        .map(|_| to_first_call(&bin, &path, &warm_cache))
        .collect();
    println!(
        "| binary size | `--version` (median) | to first AWS call, empty cache (median / p90) | to first AWS call, warm cache (median / p90) |"
    );
    println!("| --- | --- | --- | --- |");
    println!(
        "| {:.1} MB | {:.1} ms | {:.1} ms / {:.1} ms | {:.1} ms / {:.1} ms |",
        size as f64 / 1e6,
        percentile(version_ms, 0.5),
        percentile(cold.clone(), 0.5),
        percentile(cold, 0.9),
        percentile(warm.clone(), 0.5),
        percentile(warm, 0.9),
    );
}
