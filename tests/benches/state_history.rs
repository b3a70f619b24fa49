//! State reads against a long history (issue #19, item 6): `deployer history` (its first
//! page), `status` and `rollback` with 100, 1,000 and 10,000 past deployments of one
//! service in moto's S3 (the S3 + DynamoDB backend), seeded straight into the bucket
//! (`support::history`). The rollback is one that finds the newest deployment already
//! undone: every state read a rollback makes before it changes anything (lock, index,
//! the journal of the deployment to undo, the live release from ECS), and no
//! deployment whose length would hide them.
//!
//! Wall time of the release binary against moto (median of `RUNS`), and the S3 requests
//! each made, counted through the fault proxy. `DEPLOYER_BENCH_BIN` measures another
//! binary; `DEPLOYER_BENCH_OLD_BIN` also measures an older one (before the index: it
//! reads the history markers, which the seeded state has too) up to
//! `DEPLOYER_BENCH_OLD_MAX` deployments (default 1,000: it reads every journal, once).
//! `DEPLOYER_BENCH_SIZES` (e.g. `100,1000`) picks the history lengths. Results:
//! BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use deployer_tests::support::App;
use deployer_tests::support::cli::deployer_bin;
use deployer_tests::support::env::EcsEnv;
use deployer_tests::support::fault_proxy::FaultProxy;
use deployer_tests::support::history::{self, Layout, Newest};

const RUNS: usize = 5;

const COMMANDS: [(&str, &[&str]); 3] = [
    ("history", &["history", "--service", "web"]),
    ("status", &["status", "--service", "web"]),
    ("rollback", &["rollback", "--service", "web"]),
];

fn binary(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).map(PathBuf::from)
}

fn sizes() -> Vec<u64> {
    std::env::var("DEPLOYER_BENCH_SIZES")
        .map(|s| s.split(',').map(|n| n.trim().parse().unwrap()).collect())
        .unwrap_or_else(|_| vec![100, 1_000, 10_000])
}

/// ms `bin ARGS --config CONFIG` took; it must succeed.
async fn timed(bin: &Path, config: &Path, args: &[&str]) -> f64 {
    let started = Instant::now();
    let out = tokio::process::Command::new(bin)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env(
            "DEPLOYER_CACHE_DIR",
            std::env::temp_dir().join("deployer-bench-cache"),
        )
        .output()
        .await
        .unwrap();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ms
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// S3 requests `bin ARGS` made through `proxy` (config `through`).
async fn s3_requests(bin: &Path, through: &Path, proxy: &FaultProxy, args: &[&str]) -> usize {
    let before = proxy.requests().len();
    timed(bin, through, args).await;
    proxy.requests()[before..]
        .iter()
        .filter(|(op, _)| {
            [
                "GetObject",
                "PutObject",
                "ListObjectsV2",
                "DeleteObject",
                "HeadObject",
            ]
            .contains(&op.as_str())
        })
        .count()
}

/// One row per command: (median ms, S3 requests).
async fn measure(
    bin: &Path,
    direct: &Path,
    through: &Path,
    proxy: &FaultProxy,
    runs: usize,
) -> Vec<(f64, usize)> {
    let mut row = Vec::new();
    for (_, args) in COMMANDS {
        timed(bin, direct, args).await; // the first run warms moto and the page cache
        let mut ms = Vec::new();
        for _ in 0..runs {
            ms.push(timed(bin, direct, args).await);
        }
        let requests = s3_requests(bin, through, proxy, args).await;
        row.push((median(ms), requests));
    }
    row
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let bin = binary("DEPLOYER_BENCH_BIN").unwrap_or_else(deployer_bin);
    let old = binary("DEPLOYER_BENCH_OLD_BIN");
    let old_max: u64 = std::env::var("DEPLOYER_BENCH_OLD_MAX")
        .map(|n| n.parse().unwrap())
        .unwrap_or(1_000);
    println!("state_history: {}", bin.display());
    let mut table = Vec::new();
    for count in sizes() {
        let good = App::start(200, "ok");
        let env = EcsEnv::start(&[]).await;
        let config = |endpoint: &str| {
            env.task_sets(&good.url, "[{ weight = 50 }]")
                .aws(endpoint)
                .aws_state("deployer-state", "deployer-locks", "shop/")
                .lease("5s")
        };
        let seeding = Instant::now();
        history::seed(
            &env.clients.s3,
            "deployer-state",
            "shop/",
            count,
            Layout::Indexed,
            Newest::Undo,
        )
        .await;
        eprintln!(
            "state_history: seeded {count} deployments in {:.1}s",
            seeding.elapsed().as_secs_f64()
        );
        let proxy = FaultProxy::start(&env.moto.endpoint).await;
        let direct = config(&env.moto.endpoint).write(env.dir.path());
        let proxied_dir = tempfile::tempdir().unwrap();
        let through = config(&proxy.endpoint).write(proxied_dir.path());
        let new = measure(&bin, &direct, &through, &proxy, RUNS).await;
        let before = match &old {
            Some(old) if count <= old_max => Some(measure(old, &direct, &through, &proxy, 1).await),
            _ => None,
        };
        table.push((count, new, before));
    }
    println!(
        "| past deployments | `history` (first page) | `status` | `rollback` (state reads) | S3 requests: history / status / rollback |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for (count, new, before) in &table {
        let cell = |i: usize| match before {
            Some(b) => format!("{:.0} ms (before: {:.0} ms)", new[i].0, b[i].0),
            None => format!("{:.0} ms", new[i].0),
        };
        let requests = |row: &[(f64, usize)]| {
            row.iter()
                .map(|(_, n)| n.to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!(
            "| {count} | {} | {} | {} | {}{} |",
            cell(0),
            cell(1),
            cell(2),
            requests(new),
            before
                .as_ref()
                .map(|b| format!(" (before: {})", requests(b)))
                .unwrap_or_default()
        );
    }
}
