//! Bad input: a corpus of malformed and adversarial configs and plugin files
//! (`tests/corpus/config/`, each naming the error text it expects on its first line).
//! Every case is refused with exit code 3 and a clear error naming the file, without a
//! single connection to the cloud endpoint. Plus a bounded, seeded mutation run over the
//! corpus (the stable companion of the cargo-fuzz target in `fuzz/`).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use deployer_tests::support::cli::{bounded, mkfifo, plain, repo};
use deployer_tests::support::config::quote;
use deployer_tests::support::listener::counting_endpoint;

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

/// An ECS service `[services.NAME]` (NAME as written: quoted or bare), with `extra`
/// lines in its table and `gate` lines in one HTTP gate.
fn ecs_config(endpoint: &str, name: &str, desired: &str, gate: &str) -> String {
    format!(
        r#"[aws]
region = "us-east-1"
endpoint-url = "{endpoint}"

[services.{name}.target]
kind = "ecs"
cluster = "c"
service = "web"
desired-count = {desired}

[services.{name}.traffic]
listener-arn = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a/1/1"
target-groups = [
    "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/blue/1",
    "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/green/2",
]

[[services.{name}.gates]]
kind = "http"
at = ["post-traffic"]
url = "http://127.0.0.1:9/health"
{gate}

[services.{name}.strategies.canary]
steps = [ {{ weight = 50 }} ]
"#
    )
}

/// Service names that would walk out of the state directory, hide, or break a line:
/// refused by `validate` and `run` with the rule, before a state directory is made or
/// the cloud is called. Generated: each hostile piece alone and inside a name.
#[test]
fn service_names_that_are_not_identifiers_are_refused_before_they_become_paths() {
    let (endpoint, connections) = counting_endpoint();
    let pieces = [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "/etc/passwd",
        "a\0b",
        "a\nb",
        "a\r\n::error::x",
        "\u{1b}[2J",
        "-x",
        ".hidden",
        "a b",
        "a\\b",
        "é",
        "\u{2028}",
        "~",
        "$HOME",
        "*",
        "a:b",
    ];
    let long = "a".repeat(1 << 19);
    let mut names: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
    names.extend(
        pieces
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| format!("web{p}x")),
    );
    names.push(long);
    names.push("a".repeat(65));
    // The documented rule: 1 to 64 of ASCII letters, digits, `-`, `_`, `.`, starting
    // with a letter or digit. Names inside it (`web.x`, `web..x`) are valid path
    // components and are left to the control below.
    let valid = |name: &str| {
        name.len() <= 64
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let (good, names): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| valid(n));
    assert!(names.len() > 30, "{}", names.len());
    let mut problems = Vec::new();
    for name in &names {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("deployer.toml");
        std::fs::write(&config, ecs_config(&endpoint, &quote(name), "2", "")).unwrap();
        let mut run = vec!["run", "canary", "--release", "web:2"];
        // An argument cannot hold NUL: the config's only service is the default.
        if !name.contains('\0') && name.len() < 4096 {
            run.extend(["--service", name.as_str()]);
        }
        for args in [vec!["validate"], run] {
            let out = plain()
                .args(&args)
                .arg("--config")
                .arg(&config)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let shown: String = name.chars().take(20).collect();
            let what = format!("{shown:?} ({})", args[0]);
            if out.status.code() != Some(3) {
                problems.push(format!("{what}: exit {:?}: {stderr}", out.status.code()));
            } else if args[0] == "validate" && !stderr.contains("is not a valid service name") {
                problems.push(format!("{what}: {stderr}"));
            }
            if stderr.contains("panicked") || stderr.len() > 4096 {
                problems.push(format!("{what}: {} bytes of stderr", stderr.len()));
            }
            if stderr
                .lines()
                .any(|l| l.trim_start().starts_with("::error::x"))
                || stderr.contains('\u{1b}')
            {
                problems.push(format!("{what}: the name printed raw: {stderr}"));
            }
        }
        if dir.path().join(".deployer").exists() {
            problems.push(format!(
                "{:?}: a state directory was made",
                name.chars().take(20).collect::<String>()
            ));
        }
    }
    // Control: the rule's own examples, and the generated names inside it, pass.
    let examples = ["web", "api-v2", "Web_1.blue", &"a".repeat(64)];
    for name in examples.iter().map(|n| n.to_string()).chain(good) {
        let name = name.as_str();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("deployer.toml");
        std::fs::write(&config, ecs_config(&endpoint, &quote(name), "2", "")).unwrap();
        let out = plain()
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        problems.is_empty(),
        "{} names:\n{}",
        names.len(),
        problems.join("\n")
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

/// Numbers at and around every edge, for every count and ratio a config holds:
/// in range passes `validate`, out of range is refused naming the field, and nothing
/// panics or wraps. Generated: each field × each value.
#[test]
fn numbers_at_and_past_their_edges_are_checked_at_their_fields() {
    let (endpoint, _) = counting_endpoint();
    let ints: [i64; 12] = [i64::MIN, -1, 0, 1, 2, 99, 100, 101, 599, 600, 5_000, 5_001];
    let big: [i64; 6] = [
        10_000,
        10_001,
        4_294_967_295,
        4_294_967_296,
        i64::MAX,
        1_000,
    ];
    let floats = [
        "nan",
        "inf",
        "-inf",
        "0.0",
        "-0.0",
        "1e-9",
        "0.5",
        "1.0",
        "1.0000001",
        "-1.0",
    ];
    // (field, value text, accepted?)
    let mut cases: Vec<(&str, String, bool)> = Vec::new();
    for v in ints.iter().chain(&big) {
        cases.push(("desired-count", v.to_string(), (1..=5_000).contains(v)));
        cases.push(("requests", v.to_string(), (1..=10_000).contains(v)));
        cases.push(("failures", v.to_string(), (1..=1_000).contains(v)));
        cases.push(("expect-status", v.to_string(), (100..=599).contains(v)));
    }
    for f in floats {
        let value: f64 = f.parse().unwrap();
        cases.push(("min-success", f.to_string(), value > 0.0 && value <= 1.0));
    }
    for text in ["1.5", "\"4\"", "true"] {
        cases.push(("desired-count", text.to_string(), false));
        cases.push(("requests", text.to_string(), false));
    }
    // (A gate also holds an array, `at`, so an array for `requests` is named by its
    // gate only; the target holds none.)
    cases.push(("desired-count", "[]".to_string(), false));
    let mut problems = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deployer.toml");
    for (field, value, accepted) in &cases {
        let (desired, gate) = if *field == "desired-count" {
            (value.clone(), String::new())
        } else {
            ("2".to_string(), format!("{field} = {value}"))
        };
        std::fs::write(&config, ecs_config(&endpoint, "web", &desired, &gate)).unwrap();
        let out = plain()
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let what = format!("{field} = {value}");
        match (accepted, out.status.code()) {
            (true, Some(0)) => {}
            (false, Some(3)) if stderr.contains(field) && stderr.contains("deployer.toml:") => {}
            (_, code) => problems.push(format!("{what}: exit {code:?}: {stderr}")),
        }
        if stderr.contains("panicked") {
            problems.push(format!("{what}: panicked"));
        }
    }
    // Metric bounds: NaN and infinities compare with nothing.
    for bound in ["max", "min"] {
        for f in floats {
            let value: f64 = f.parse().unwrap();
            let text = ecs_config(&endpoint, "web", "2", "").replace(
                "[services.web.strategies.canary]",
                &format!(
                    "[[services.web.gates]]\nkind = \"metric\"\nat = [\"bake\"]\nnamespace = \"AWS/ECS\"\nmetric = \"CPUUtilization\"\n{bound} = {f}\n\n[services.web.strategies.canary]"
                ),
            );
            std::fs::write(&config, text).unwrap();
            let out = plain()
                .args(["validate", "--config"])
                .arg(&config)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let want = if value.is_finite() { 0 } else { 3 };
            if out.status.code() != Some(want)
                || (want == 3 && !stderr.contains("not a finite number"))
            {
                problems.push(format!(
                    "{bound} = {f}: exit {:?}: {stderr}",
                    out.status.code()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} cases:\n{}",
        cases.len(),
        problems.join("\n")
    );
}

/// The environment and `[aws]` settings the SDK would choke on: an empty or hostless
/// endpoint (the SDK panics on an empty one), credentials in it, a region that is not
/// one; a kubeconfig that is missing or not a file. Refused with the variable or field
/// named, exit 3, before any cloud call.
#[test]
fn endpoints_regions_and_kubeconfigs_are_checked_before_any_call() {
    let (endpoint, connections) = counting_endpoint();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deployer.toml");
    std::fs::write(&config, ecs_config(&endpoint, "web", "2", "")).unwrap();
    let mut problems = Vec::new();
    for (variable, value) in [
        ("AWS_ENDPOINT_URL", ""),
        ("AWS_ENDPOINT_URL", "http://"),
        ("AWS_ENDPOINT_URL", "ftp://example.com"),
        ("AWS_ENDPOINT_URL", "not a url"),
        ("AWS_ENDPOINT_URL", "http://user:secret@127.0.0.1:9"),
        ("AWS_ENDPOINT_URL_ECS", ""),
        ("AWS_ENDPOINT_URL_S3", "://"),
    ] {
        for args in [
            vec!["status", "--service", "web"],
            vec!["history", "--service", "web"],
            vec!["rollback", "--service", "web"],
            vec!["run", "canary", "--release", "web:2"],
        ] {
            let out = plain()
                .args(&args)
                .arg("--config")
                .arg(&config)
                .env(variable, value)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!("{variable}={value:?} {}", args[0]);
            if out.status.code() != Some(3)
                || !stderr.contains(variable)
                || stderr.contains("panicked")
            {
                problems.push(format!("{what}: exit {:?}: {stderr}", out.status.code()));
            }
            if stderr.contains("secret") {
                problems.push(format!("{what}: printed the credentials: {stderr}"));
            }
        }
    }
    let base = ecs_config(&endpoint, "web", "2", "");
    for (what, text, field) in [
        (
            "empty endpoint",
            base.replace(
                &format!("endpoint-url = \"{endpoint}\""),
                "endpoint-url = \"\"",
            ),
            "aws.endpoint-url",
        ),
        (
            "hostless endpoint",
            base.replace(
                &format!("endpoint-url = \"{endpoint}\""),
                "endpoint-url = \"https://\"",
            ),
            "aws.endpoint-url",
        ),
        (
            "empty region",
            base.replace("region = \"us-east-1\"", "region = \"\""),
            "aws.region",
        ),
        (
            "a region of words",
            base.replace("region = \"us-east-1\"", "region = \"the moon\""),
            "aws.region",
        ),
        (
            "a missing kubeconfig",
            "[services.api.target]\nkind = \"eks\"\nnamespace = \"n\"\ndeployment = \"api\"\nkubeconfig = \"nowhere/kubeconfig\"\ndesired-count = 2\n\n[services.api.strategies.rolling]\n".to_string(),
            "services.api.target.kubeconfig",
        ),
        (
            "a kubeconfig that is /dev/zero",
            "[services.api.target]\nkind = \"eks\"\nnamespace = \"n\"\ndeployment = \"api\"\nkubeconfig = \"/dev/zero\"\ndesired-count = 2\n".to_string(),
            "services.api.target.kubeconfig",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = plain()
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(3) || !stderr.contains(field) || stderr.contains("panicked") {
            problems.push(format!("{what}: exit {:?}: {stderr}", out.status.code()));
        }
    }
    // The SDK's shared files, and a release that is not one line.
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    std::fs::write(&config, &base).unwrap();
    for (variable, value) in [
        ("AWS_CONFIG_FILE", "/dev/zero"),
        ("AWS_CONFIG_FILE", fifo.to_str().unwrap()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/zero"),
        ("AWS_SHARED_CREDENTIALS_FILE", fifo.to_str().unwrap()),
    ] {
        for args in [
            vec!["status", "--service", "web"],
            vec!["run", "canary", "--release", "web:2"],
        ] {
            let run = bounded(
                plain()
                    .args(&args)
                    .arg("--config")
                    .arg(&config)
                    .env(variable, value),
            );
            let (status, stderr) = (run.code, run.stderr);
            if status != Some(3) || !stderr.contains(variable) {
                problems.push(format!(
                    "{variable}={value} {}: {status:?}: {stderr}",
                    args[0]
                ));
            }
        }
    }
    for release in [
        "web:2\n::error::forged",
        "web:2\r",
        "\u{1b}[2Jweb:2",
        "web\u{2028}",
        "",
    ] {
        let out = plain()
            .args(["run", "canary", "--release", release, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(3) || !stderr.contains("is not a release") {
            problems.push(format!(
                "--release {release:?}: {:?}: {stderr}",
                out.status.code()
            ));
        }
    }
    for (what, text, field) in [
        (
            "an endpoint with a newline",
            base.replace(
                &format!("endpoint-url = \"{endpoint}\""),
                &format!("endpoint-url = \"{endpoint}\\n\""),
            ),
            "aws.endpoint-url",
        ),
        (
            "a bucket with a newline",
            format!("[state]\nbackend = \"aws\"\nbucket = \"b\\nx\"\ntable = \"t\"\n\n{base}"),
            "state.bucket",
        ),
        (
            "a bucket in capitals",
            format!("[state]\nbackend = \"aws\"\nbucket = \"MyBucket\"\ntable = \"t\"\n\n{base}"),
            "state.bucket",
        ),
        (
            "a canary of 5,000 steps",
            base.replace(
                "steps = [ { weight = 50 } ]",
                &format!("steps = [{}]", vec!["{ weight = 50 }"; 5_000].join(", ")),
            ),
            "a canary has at most 100",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = plain()
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(3) || !stderr.contains(field) || stderr.lines().count() > 10 {
            problems.push(format!(
                "{what}: exit {:?}: {}",
                out.status.code(),
                stderr.chars().take(500).collect::<String>()
            ));
        }
    }
    // An empty AWS_REGION, with no region in the config.
    std::fs::write(&config, base.replace("region = \"us-east-1\"\n", "")).unwrap();
    let out = plain()
        .args(["status", "--service", "web", "--config"])
        .arg(&config)
        .env("AWS_REGION", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(3) || !stderr.contains("AWS_REGION") {
        problems.push(format!(
            "AWS_REGION=\"\": exit {:?}: {stderr}",
            out.status.code()
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "bad input must not reach the cloud"
    );
}

/// Files that are not files where deployer reads one: the config and a plugin as
/// /dev/zero (directly and through a link), a FIFO, a directory; each refused at once
/// (the FIFO would block a plain read forever) with exit 3 and the path named.
#[test]
fn configs_and_plugins_that_are_not_regular_files_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let link = dir.path().join("zero");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let subdir = dir.path().join("sub");
    std::fs::create_dir(&subdir).unwrap();
    let mut problems = Vec::new();
    for (path, what) in [
        (Path::new("/dev/zero"), "a device"),
        (link.as_path(), "a device"),
        (fifo.as_path(), "a FIFO"),
        (subdir.as_path(), "a directory"),
    ] {
        // As the config.
        let run = bounded(plain().args(["validate", "--config"]).arg(path));
        let (status, stderr) = (run.code, run.stderr);
        if status != Some(3) || !stderr.contains(&format!("it is {what}, not a regular file")) {
            problems.push(format!("config {}: {status:?}: {stderr}", path.display()));
        }
        // As a hook plugin's file.
        let config = dir.path().join("deployer.toml");
        std::fs::write(
            &config,
            format!(
                "{}\n[plugins.probe]\nkind = \"hook\"\npath = {}\nsha256 = \"{}\"\n",
                ecs_config("http://127.0.0.1:9", "web", "2", "")
                    .replace("[services.web.strategies.canary]", "[[services.web.hooks]]\nplugin = \"probe\"\nat = [\"pre-traffic\"]\n\n[services.web.strategies.canary]"),
                quote(path.to_str().unwrap()),
                "0".repeat(64)
            ),
        )
        .unwrap();
        let out = plain()
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(3)
            || !stderr.contains(&format!("it is {what}, not a regular file"))
        {
            problems.push(format!(
                "plugin {}: {:?}: {stderr}",
                path.display(),
                out.status.code()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A strategy the service has no table for (the shipped EKS example configures only
/// rolling): `plan` and `run` say which table is missing and where, not "missing field
/// `steps`" at an unrelated line.
#[test]
fn a_strategy_without_its_table_is_named_at_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deployer.toml");
    let text = ecs_config("http://127.0.0.1:9", "web", "2", "");
    let text = text
        .split("[services.web.strategies.canary]")
        .next()
        .unwrap();
    std::fs::write(&config, text).unwrap();
    for args in [
        vec!["plan", "canary"],
        vec!["run", "canary", "--release", "web:2"],
    ] {
        let out = plain()
            .args(&args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(
            stderr.contains("deployer.toml:5:11: services.web: strategy `canary` needs parameters (steps: needs at least one step")
                && stderr.contains("the service has no [services.web.strategies.canary] table")
                && stderr.contains("fix: add [services.web.strategies.canary]"),
            "{args:?}: {stderr}"
        );
    }
}

/// Gate placeholders are checked with the config: an unknown one, and a side's target
/// group (or an ALB gate) on a service with no traffic table, are refused by `validate`
/// at their fields with the list of placeholders, before any call.
#[test]
fn unknown_placeholders_and_side_placeholders_without_traffic_are_refused_at_their_fields() {
    let (endpoint, connections) = counting_endpoint();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deployer.toml");
    std::fs::write(
        &config,
        format!(
            r#"[aws]
region = "us-east-1"
endpoint-url = "{endpoint}"

[services.web.target]
kind = "ecs"
cluster = "c"
service = "web"
desired-count = 4

[services.web.traffic]
listener-arn = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a/1/1"
target-groups = [
    "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/blue/1",
    "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/green/2",
]

[[services.web.gates]]
kind = "alarm"
at = ["post-traffic"]
alarms = ["web-5xx", "{{new-tg}}-5xx"]

[services.api.target]
kind = "ecs"
cluster = "c"
service = "api"
desired-count = 2

[[services.api.gates]]
kind = "metric"
at = ["bake"]
namespace = "AWS/ApplicationELB"
metric = "HTTPCode_Target_5XX_Count"
dimensions = {{ TargetGroup = "{{new-target-group}}", Service = "{{service}}" }}
max = 10.0

[[services.api.gates]]
kind = "alb"
at = ["bake"]
max-5xx-percent = 5.0

[[services.api.gates]]
kind = "http"
at = ["post-traffic"]
url = "http://127.0.0.1:9/{{service}}/{{new-release}}"
"#
        ),
    )
    .unwrap();
    let out = plain()
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let list = "the placeholders are {new-target-group}, {stable-target-group}, \
                {new-target-group-name}, {stable-target-group-name}, {load-balancer}, \
                {service}, {new-release}, {stable-release}";
    for expected in [
        "deployer.toml:21:22: services.web.gates[0].alarms[1]: `{new-tg}-5xx`: unknown placeholder `{new-tg}`",
        list,
        "services.api.gates[0].dimensions.TargetGroup: `{new-target-group}`: placeholder \
         `{new-target-group}` names a side's target group, but service `api` has no \
         [services.api.traffic] table",
        "without a traffic table only {service}, {new-release}, {stable-release} can be used",
        "services.api.gates[1].kind: kind = \"alb\" watches the new side's target group, but \
         service `api` has no [services.api.traffic] table",
    ] {
        assert!(stderr.contains(expected), "`{expected}` in {stderr}");
    }
    // The service and release placeholders need no sides: the metric gate's `Service`
    // and the HTTP gate are fine.
    assert_eq!(stderr.matches("deployer.toml:").count(), 3, "{stderr}");
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}
