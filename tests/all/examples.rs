//! The example plugins in `plugins/examples/`, built as users build theirs and run in
//! the real host against real HTTP servers.

use deployer_contract::{GateStatus, LifecyclePoint, Step, TargetInfo, TargetKind};
use deployer_engine::plan::{Ending, simulate};
use deployer_plugin_host::capabilities::ReqwestTransport;
use deployer_plugin_host::hook::HookContext;
use deployer_plugin_host::hook::HookPlugin;
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Grants, HostServices, Limits, PluginHost};
use deployer_tests::components;
use deployer_tests::source;
use deployer_tests::support::App;

fn host_with_http() -> (PluginHost, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let services = HostServices {
        http: Some(std::sync::Arc::new(ReqwestTransport::new().unwrap())),
        ..HostServices::default()
    };
    (
        PluginHost::with_services(Some(cache.path().to_path_buf()), services).unwrap(),
        cache,
    )
}

/// Health-check example `name` built to `wasm`, loaded with only `http-allow = 127.0.0.1`.
fn health_hook(name: &str, wasm: &std::path::Path) -> (HookPlugin, tempfile::TempDir) {
    let (host, cache) = host_with_http();
    let grants = Grants {
        http_allow: vec!["127.0.0.1".into()],
        ..Grants::default()
    };
    let hook = HookPlugin::load(
        &host,
        &source(name, wasm.to_str().unwrap()),
        Limits::hook(),
        grants,
    )
    .unwrap();
    (hook, cache)
}

fn ctx(point: LifecyclePoint, params: String) -> HookContext {
    HookContext {
        point,
        deployment_id: "d-7".into(),
        service: "web".into(),
        new_release: "web:2".into(),
        stable_release: Some("web:1".into()),
        new_traffic_percent: 100,
        params,
    }
}

fn local_http() -> Grants {
    Grants {
        http_allow: vec!["127.0.0.1".into()],
        kv: true,
        ..Grants::default()
    }
}

#[tokio::test]
async fn the_webhook_notifier_posts_what_happened() {
    let (host, _cache) = host_with_http();
    let hook = HookPlugin::load(
        &host,
        &source("notify", components::EXAMPLE_WEBHOOK_NOTIFY),
        Limits::hook(),
        local_http(),
    )
    .unwrap();
    let chat = App::start(200, "ok");
    let params = format!(r##"{{"webhook":"{}","channel":"#deploys"}}"##, chat.url);
    let result = hook
        .run(&ctx(LifecyclePoint::PostRollback, params))
        .await
        .unwrap();
    assert_eq!(result.status, GateStatus::Pass, "{}", result.detail);
    let requests = chat.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].starts_with("POST /health"), "{}", requests[0]);
    assert!(
        requests[0].contains(r##""channel":"#deploys""##),
        "{}",
        requests[0]
    );
    assert!(
        requests[0].contains("`web` was rolled back to web:1 (deployment d-7)"),
        "{}",
        requests[0]
    );
}

#[tokio::test]
async fn a_chat_outage_does_not_fail_the_deployment() {
    let (host, _cache) = host_with_http();
    let hook = HookPlugin::load(
        &host,
        &source("notify", components::EXAMPLE_WEBHOOK_NOTIFY),
        Limits::hook(),
        local_http(),
    )
    .unwrap();
    let chat = App::start(503, "down");
    let result = hook
        .run(&ctx(
            LifecyclePoint::PostDeploy,
            format!(r#"{{"webhook":"{}"}}"#, chat.url),
        ))
        .await
        .unwrap();
    assert_eq!(result.status, GateStatus::Inconclusive, "{}", result.detail);
}

#[tokio::test]
async fn the_migration_gate_holds_until_the_schema_is_ready() {
    let (host, _cache) = host_with_http();
    let hook = HookPlugin::load(
        &host,
        &source("migrations", components::EXAMPLE_DB_MIGRATION),
        Limits::hook(),
        local_http(),
    )
    .unwrap();
    for (body, expected) in [
        (r#"{"version":"v1","pending":2}"#, GateStatus::Inconclusive),
        (r#"{"version":"v1","pending":0}"#, GateStatus::Fail),
        (r#"{"version":"v2","pending":0}"#, GateStatus::Pass),
        ("not json", GateStatus::Fail),
    ] {
        let body: &'static str = Box::leak(body.to_string().into_boxed_str());
        let service = App::start(200, body);
        let params = format!(
            r#"{{"status-url":"{}","expect-version":"v2"}}"#,
            service.url
        );
        let deployment = HostServices {
            http: host.services().http.clone(),
            ..HostServices::default()
        };
        let result = hook
            .run_with(&ctx(LifecyclePoint::PreDeploy, params), deployment.clone())
            .await
            .unwrap();
        assert_eq!(result.status, expected, "{body}: {}", result.detail);
        if body.starts_with('{') {
            assert!(
                deployment.kv.snapshot().contains_key("schema-version"),
                "{body}"
            );
        }
    }
}

#[tokio::test]
async fn the_doubling_strategy_plans_under_the_safety_rules() {
    let cache = tempfile::tempdir().unwrap();
    let host = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    let plugin = StrategyPlugin::load(
        &host,
        &source("doubling", components::EXAMPLE_STEPPED_STRATEGY),
        Limits::strategy(),
    )
    .unwrap();
    let target = TargetInfo {
        kind: TargetKind::Simulated,
        desired_count: 4,
        native_rolling: false,
        test_traffic: false,
    };
    let plan = simulate(&plugin, r#"{"start":10}"#, target).await.unwrap();
    assert_eq!(plan.ending, Ending::Completed);
    let shifts: Vec<u8> = plan
        .steps
        .iter()
        .filter_map(|s| {
            if let Step::ShiftTraffic(p) = s {
                Some(*p)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(shifts, [10, 20, 40, 100]);
}

/// The Python example, built offline with componentize-py as its docstring says, runs in
/// the host with WASI's empty context and only the capabilities its world imports. It is
/// built the way an author with only the binary builds it: its two files copied out of
/// the checkout, the contract from `deployer plugin wit --out wit/deps/deployer-plugin`.
#[tokio::test]
async fn the_python_health_check_runs_in_the_host() {
    let venv = std::env::var_os("DEPLOYER_MOTO_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/deployer/moto-venv")
        });
    let componentize = venv.join("bin/componentize-py");
    assert!(
        componentize.exists(),
        "componentize-py is missing: run scripts/setup.sh"
    );
    let checkout =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/python-health");
    let author = tempfile::tempdir().unwrap();
    let example = author.path().to_path_buf();
    std::fs::create_dir_all(example.join("wit")).unwrap();
    for file in ["app.py", "wit/world.wit"] {
        std::fs::copy(checkout.join(file), example.join(file)).unwrap();
    }
    let deps = example.join("wit/deps/deployer-plugin");
    let (code, out, err) =
        deployer_tests::support::cli::run(&["plugin", "wit", "--out", deps.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("wrote deployer:plugin@"), "{out}");
    let out_dir = tempfile::tempdir().unwrap();
    let wasm = out_dir.path().join("python-health.wasm");
    let built = std::process::Command::new(componentize)
        .args([
            "-d",
            "wit",
            "-w",
            "health-hook",
            "componentize",
            "app",
            "-o",
        ])
        .arg(&wasm)
        .current_dir(&example)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let (hook, _cache) = health_hook("python-health", &wasm);
    let app = App::start(200, r#"{"status":"ok"}"#);
    for (expect_json, expected) in [
        (r#"{"status":"ok"}"#, GateStatus::Pass),
        (r#"{"status":"degraded"}"#, GateStatus::Fail),
    ] {
        let params = format!(r#"{{"url":"{}","expect-json":{expect_json}}}"#, app.url);
        let result = hook
            .run(&ctx(LifecyclePoint::PreTraffic, params))
            .await
            .unwrap();
        assert_eq!(result.status, expected, "{}", result.detail);
    }
    let denied = check_unlisted_host(&hook).await;
    assert!(
        denied
            .detail
            .contains("not on this plugin's http-allow list"),
        "{}",
        denied.detail
    );
}

/// A health hook's check of a host its `http-allow` does not list.
async fn check_unlisted_host(hook: &HookPlugin) -> deployer_contract::GateResult {
    hook.run(&ctx(
        LifecyclePoint::PreTraffic,
        r#"{"url":"http://evil.example.net/"}"#.into(),
    ))
    .await
    .unwrap()
}

/// Plugin log lines as deployer prints them, kept so a test can see what a hook logged.
#[derive(Default)]
struct KeptLog(std::sync::Mutex<Vec<String>>);

impl deployer_plugin_host::capabilities::LogSink for KeptLog {
    fn log(&self, plugin: &str, level: deployer_plugin_host::bindings::log::Level, message: &str) {
        self.0
            .lock()
            .unwrap()
            .push(deployer_plugin_host::capabilities::log_line(
                plugin, level, message,
            ));
    }
}

/// The JavaScript example built the way an author with only the binary, Node.js and npm
/// builds it: its files copied out of the checkout, `npm ci --offline` from its lockfile
/// (against the npm cache scripts/setup.sh filled, so nothing is downloaded here), the
/// contract from `deployer plugin wit`, then `npm run build` (componentize-js). Returns
/// the author's directory (kept alive) and the component's path.
fn build_js_health() -> (tempfile::TempDir, std::path::PathBuf) {
    let npm_cache = std::env::var_os("DEPLOYER_NPM_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/deployer/npm")
        });
    assert!(
        npm_cache.is_dir(),
        "the npm cache {} is missing: run scripts/setup.sh",
        npm_cache.display()
    );
    let checkout =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/js-health");
    let author = tempfile::tempdir().unwrap();
    let example = author.path().to_path_buf();
    std::fs::create_dir_all(example.join("wit")).unwrap();
    for file in [
        "app.js",
        "package.json",
        "package-lock.json",
        "wit/world.wit",
    ] {
        std::fs::copy(checkout.join(file), example.join(file)).unwrap();
    }
    let deps = example.join("wit/deps/deployer-plugin");
    let (code, out, err) =
        deployer_tests::support::cli::run(&["plugin", "wit", "--out", deps.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    for args in [&["ci", "--offline"][..], &["run", "build"]] {
        let step = std::process::Command::new("npm")
            .args(args)
            .current_dir(&example)
            .env("npm_config_cache", &npm_cache)
            .env("npm_config_audit", "false")
            .env("npm_config_fund", "false")
            .env("npm_config_update_notifier", "false")
            .output()
            .unwrap_or_else(|e| panic!("cannot run npm ({e}): install Node.js 20+ with npm"));
        assert!(
            step.status.success(),
            "npm {args:?} failed (run scripts/setup.sh to fill the npm cache):\n{}{}",
            String::from_utf8_lossy(&step.stdout),
            String::from_utf8_lossy(&step.stderr)
        );
    }
    let wasm = example.join("js-health.wasm");
    assert!(wasm.is_file(), "npm run build wrote no {}", wasm.display());
    (author, wasm)
}

/// The JavaScript example: componentize-js with every StarlingMonkey feature that needs
/// WASI disabled, so the component imports the contract's log and http and nothing else;
/// it passes a healthy app, fails an unhealthy one, is inconclusive where http is denied,
/// and its `validate` names each bad parameter.
#[tokio::test]
async fn the_javascript_health_check_runs_in_the_host() {
    let (_author, wasm) = build_js_health();
    let (code, out, err) =
        deployer_tests::support::cli::run(&["plugin", "inspect", wasm.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let imports: Vec<&str> = out
        .split("imports:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no imports section in:\n{out}"))
        .lines()
        // The section's lines are indented; the next heading is not.
        .take_while(|line| line.starts_with("  "))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(
        imports,
        [
            "deployer:plugin/log@0.3.1",
            "deployer:plugin/types@0.3.1",
            "deployer:plugin/http@0.3.1"
        ],
        "{out}"
    );

    let (hook, _cache) = health_hook("js-health", &wasm);
    assert_eq!(hook.info().await.unwrap().name, "js-health");

    let healthy = App::start(200, r#"{"status":"ok","checks":{"db":"up"}}"#);
    let unhealthy = App::start(503, r#"{"status":"down"}"#);
    let kept = std::sync::Arc::new(KeptLog::default());
    let services = HostServices {
        log: kept.clone(),
        ..hook.services()
    };
    for (url, expect_json, expected, detail) in [
        (
            &healthy.url,
            r#"{"checks":{"db":"up"},"status":"ok"}"#,
            GateStatus::Pass,
            "status 200",
        ),
        (
            &healthy.url,
            r#"{"status":"degraded"}"#,
            GateStatus::Fail,
            r#"unexpected {"status":"ok"}"#,
        ),
        (
            &unhealthy.url,
            "{}",
            GateStatus::Fail,
            "status 503, expected 200",
        ),
    ] {
        let params = format!(r#"{{"url":"{url}","expect-json":{expect_json}}}"#);
        let result = hook
            .run_with(&ctx(LifecyclePoint::PreTraffic, params), services.clone())
            .await
            .unwrap();
        assert_eq!(
            (result.status, result.detail.as_str()),
            (expected, detail),
            "{url} {expect_json}"
        );
    }
    assert_eq!(
        *kept.0.lock().unwrap(),
        [format!(
            "[plugin js-health] info: {} healthy for web:2",
            healthy.url
        )]
    );

    let denied = check_unlisted_host(&hook).await;
    assert_eq!(denied.status, GateStatus::Inconclusive, "{}", denied.detail);
    // The capability-error reaches JS as a thrown ComponentError; its tag and text are kept.
    assert!(
        denied
            .detail
            .starts_with("cannot reach http://evil.example.net/: denied: ")
            && denied
                .detail
                .contains("not on this plugin's http-allow list"),
        "{}",
        denied.detail
    );

    assert_eq!(
        hook.validate(r#"{"url":"http://127.0.0.1/health","expect-status":204}"#)
            .await
            .unwrap(),
        Ok(())
    );
    let refused = hook
        .validate(r#"{"url":"ftp://127.0.0.1/","expect-status":"200","expect-json":[1]}"#)
        .await
        .unwrap()
        .unwrap_err();
    let fields: Vec<&str> = refused.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["url", "expect-status", "expect-json"],
        "{refused:?}"
    );
    let not_json = hook.validate("{url:").await.unwrap().unwrap_err();
    assert_eq!(not_json.len(), 1, "{not_json:?}");
    assert!(not_json[0].message.starts_with("not JSON"), "{not_json:?}");
}
