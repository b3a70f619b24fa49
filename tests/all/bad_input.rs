//! Bad input: a corpus of malformed and adversarial configs and plugin files
//! (`tests/corpus/config/`, each naming the error text it expects on its first line).
//! Every case is refused with exit code 3 and a clear error naming the file, without a
//! single connection to the cloud endpoint. Plus a bounded, seeded mutation run over the
//! corpus (the stable companion of the cargo-fuzz target in `fuzz/`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deployer_tests::support::cli::{plain, repo};

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("tests/corpus/config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus is missing");
    files
}

/// Plugin files the corpus refers to, written into `dir/plugins`.
fn plugin_files(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let hook = std::fs::read(deployer_tests::components::HOSTILE_HOOK).unwrap();
    let mut random = Vec::with_capacity(4096);
    let mut x: u32 = 0x2545_f491;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        random.push(x as u8);
    }
    let files = vec![
        ("core-module.wasm", b"\0asm\x01\0\0\0".to_vec()),
        ("truncated.wasm", hook[..hook.len() / 2].to_vec()),
        ("random.wasm", random),
        ("empty.wasm", Vec::new()),
        (
            "future.wasm",
            std::fs::read(deployer_tests::components::FUTURE_STRATEGY).unwrap(),
        ),
        (
            "canary-as-hook.wasm",
            deployer_plugin_host::builtin::get("canary")
                .unwrap()
                .to_vec(),
        ),
    ];
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    for (name, bytes) in &files {
        std::fs::write(dir.join("plugins").join(name), bytes).unwrap();
    }
    files
}

/// A TCP endpoint that only counts the connections it gets.
fn counting_endpoint() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (url, count)
}

#[test]
fn every_bad_input_is_refused_with_a_clear_error_and_no_cloud_call() {
    let (endpoint, connections) = counting_endpoint();
    let mut problems = Vec::new();
    for case in corpus() {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&case).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: first line must be `# expect: TEXT`"))
            .to_string();
        let dir = tempfile::tempdir().unwrap();
        let mut text = text.replace(
            "region = \"us-east-1\"",
            &format!("region = \"us-east-1\"\nendpoint-url = \"{endpoint}\""),
        );
        for (file, bytes) in plugin_files(dir.path()) {
            text = text.replace(
                &format!("{{sha256:{file}}}"),
                &deployer_plugin_host::sha256_hex(&bytes),
            );
        }
        let config = dir.path().join("deployer.toml");
        std::fs::write(&config, &text).unwrap();
        let strategy = if name == "wrong-wit-version" {
            "future"
        } else if text.contains("strategies.canary") {
            "canary"
        } else if text.contains("strategies.rolling") {
            "rolling"
        } else {
            "blue-green"
        };
        for args in [
            vec!["validate"],
            vec!["run", strategy, "--release", "web:2", "--output", "json"],
        ] {
            let out = plain()
                .args(&args)
                .arg("--config")
                .arg(&config)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!("{name} ({}): {stderr}", args[0]);
            if out.status.code() != Some(3) {
                problems.push(format!("exit {:?}, not 3: {what}", out.status.code()));
            }
            if !stderr.contains(&expect) {
                problems.push(format!("expected `{expect}` in {what}"));
            }
            if !stderr.contains("deployer.toml") {
                problems.push(format!("the error does not name deployer.toml: {what}"));
            }
            if stderr.contains("panicked") {
                problems.push(what.clone());
            }
            if args[0] == "run" {
                let summary: Result<serde_json::Value, _> = serde_json::from_slice(&out.stdout);
                if !summary.is_ok_and(|s| s["result"] == "bad-input") {
                    problems.push(format!("no bad-input JSON summary: {what}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "bad input must not reach the cloud"
    );
}

/// Values that read as their types but make no sense (a zero interval, more units than
/// the target takes) are refused by `validate` together, each naming its field.
#[test]
fn zero_durations_and_out_of_range_counts_are_refused_naming_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deployer.toml");
    std::fs::write(
        &config,
        r#"
[services.web]
watch-interval = "0s"
health-timeout = "0s"

[services.web.target]
kind = "asg"
group = "web"
desired-count = 4294967295

[[services.web.gates]]
kind = "metric"
at = ["bake"]
namespace = "AWS/EC2"
metric = "CPUUtilization"
max = 90.0
period = "0s"
"#,
    )
    .unwrap();
    let out = plain()
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    for expected in [
        "deployer.toml:3:18: services.web.watch-interval: `0s` is zero",
        "fix: use at least \"1s\"",
        "deployer.toml:4:18: services.web.health-timeout: `0s` is zero",
        "deployer.toml:9:17: services.web.target.desired-count: 4294967295 is more than 10000",
        "services.web.gates[0]: period: `0s` is zero",
    ] {
        assert!(stderr.contains(expected), "`{expected}` in {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Command-line values that would spin or overflow are refused like bad config.
#[test]
fn a_zero_status_interval_and_a_huge_plan_size_are_refused() {
    for (args, expected) in [
        (
            vec!["status", "--watch", "--interval", "0s"],
            "is zero, which would reread the state without a pause",
        ),
        (
            vec!["plan", "canary", "--desired", "4294967295"],
            "4294967295 is not in 1..=10000",
        ),
    ] {
        let out = plain().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Seeded mutations of the corpus (byte flips, cuts, splices, duplicated lines) through
/// the config parser: every outcome is a config or errors naming the file, never a panic.
#[test]
fn mutated_configs_never_panic_the_parser() {
    let seeds: Vec<String> = corpus()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .chain([std::fs::read_to_string(repo("examples/ecs-canary/deployer.toml")).unwrap()])
        .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        x ^= x << 7;
        x ^= x >> 9;
        (x % n.max(1) as u64) as usize
    };
    let path = Path::new("mutated/deployer.toml");
    for _ in 0..3000 {
        let mut bytes = seeds[next(seeds.len())].clone().into_bytes();
        for _ in 0..1 + next(4) {
            match next(4) {
                0 if !bytes.is_empty() => {
                    let i = next(bytes.len());
                    bytes[i] = b"\"[]{}=,.\n#0a- \\"[next(15)];
                }
                1 => bytes.truncate(next(bytes.len() + 1)),
                2 => {
                    let other = seeds[next(seeds.len())].as_bytes();
                    let at = next(bytes.len() + 1);
                    let from = next(other.len());
                    bytes.splice(at..at, other[from..].iter().take(200).copied());
                }
                _ => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    let lines: Vec<&str> = text.lines().collect();
                    if !lines.is_empty() {
                        let line = lines[next(lines.len())];
                        bytes.extend_from_slice(format!("\n{line}\n").as_bytes());
                    }
                }
            }
        }
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        if let Err(errors) = deployer::config::Config::parse(path, text.clone()) {
            assert!(!errors.0.is_empty());
            for error in &errors.0 {
                assert!(
                    error.to_string().starts_with("mutated/deployer.toml"),
                    "{error}\n--- input ---\n{text}"
                );
            }
        }
    }
}
