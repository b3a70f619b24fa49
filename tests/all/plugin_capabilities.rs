//! A hook gets only the capabilities its config grants, checked at load and on each call.

use deployer_contract::{GateStatus, LifecyclePoint};
use deployer_plugin_host::hook::HookContext;
use deployer_plugin_host::hook::HookPlugin;
use deployer_plugin_host::{Grants, Limits, PluginError};
use deployer_tests::{components, host, source};

fn ctx(params: &str) -> HookContext {
    HookContext {
        point: LifecyclePoint::PreTraffic,
        deployment_id: "d-1".into(),
        service: "web".into(),
        new_release: "web:2".into(),
        stable_release: Some("web:1".into()),
        new_traffic_percent: 0,
        params: params.into(),
    }
}

fn granted() -> Grants {
    Grants {
        http_allow: vec!["hooks.example.com".into()],
        kv: true,
        ..Grants::default()
    }
}

#[tokio::test]
async fn ungranted_imports_are_refused_at_load_with_the_fix() {
    let (host, _cache) = host();
    let err = HookPlugin::load(
        &host,
        &source("probe", components::HOSTILE_HOOK),
        Limits::hook(),
        Grants::default(),
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
        ["http", "kv"].contains(&capability.as_str()),
        "{capability}"
    );
    assert!(
        fix.contains("under [plugins.probe] in deployer.toml"),
        "{fix}"
    );
}

#[tokio::test]
async fn hosts_off_the_allow_list_are_refused() {
    let (host, _cache) = host();
    let hook = HookPlugin::load(
        &host,
        &source("probe", components::HOSTILE_HOOK),
        Limits::hook(),
        granted(),
    )
    .unwrap();
    for url in [
        "https://evil.example.net/steal",
        "http://169.254.169.254/latest/meta-data/",
        "https://hooks.example.com@evil.io/",
    ] {
        let result = hook
            .run(&ctx(&format!(r#"{{"url":"{url}"}}"#)))
            .await
            .unwrap();
        assert_eq!(result.status, GateStatus::Fail, "{url}");
        // Refused before any connection: off the list, or not a URL the host will send.
        assert!(
            result.detail.contains("Denied") || result.detail.contains("Invalid"),
            "{url}: {}",
            result.detail
        );
    }
}

#[tokio::test]
async fn allowed_hosts_reach_the_transport() {
    // No transport in this host: the request passes the allow-list and is then reported
    // unavailable, which proves the check let it through.
    let (host, _cache) = host();
    let hook = HookPlugin::load(
        &host,
        &source("probe", components::HOSTILE_HOOK),
        Limits::hook(),
        granted(),
    )
    .unwrap();
    let result = hook
        .run(&ctx(r#"{"url":"https://hooks.example.com/x"}"#))
        .await
        .unwrap();
    assert!(result.detail.contains("Unavailable"), "{}", result.detail);
}

#[tokio::test]
async fn kv_is_shared_by_the_calls_of_one_deployment_only() {
    let (host, _cache) = host();
    let hook = HookPlugin::load(
        &host,
        &source("probe", components::HOSTILE_HOOK),
        Limits::hook(),
        granted(),
    )
    .unwrap();
    let deployment = host.services().clone();
    let first = hook
        .run_with(&ctx(r#"{"remember":"a"}"#), deployment.clone())
        .await
        .unwrap();
    assert_eq!(first.detail, "previous=None");
    let second = hook
        .run_with(&ctx(r#"{"remember":"b"}"#), deployment.clone())
        .await
        .unwrap();
    assert_eq!(second.detail, "previous=Some(\"a\")");
    let other = deployer_plugin_host::HostServices::default();
    let fresh = hook
        .run_with(&ctx(r#"{"remember":"c"}"#), other)
        .await
        .unwrap();
    assert_eq!(fresh.detail, "previous=None");
    assert_eq!(
        deployment
            .kv
            .snapshot()
            .get("remembered")
            .map(Vec::as_slice),
        Some(&b"b"[..])
    );
}

/// A hook filling its store is stopped at the store's total, with a `limit` error,
/// and the store holds no more than that (it is journaled whole).
#[tokio::test]
async fn kv_refuses_writes_past_the_stores_total() {
    use deployer_plugin_host::capabilities::KvStore;
    let (host, _cache) = host();
    let hook = HookPlugin::load(
        &host,
        &source("probe", components::HOSTILE_HOOK),
        Limits::hook(),
        granted(),
    )
    .unwrap();
    let deployment = host.services().clone();
    let result = hook
        .run_with(&ctx(r#"{"mode":"fill"}"#), deployment.clone())
        .await
        .unwrap();
    // 64 KiB holds 4 values of 15 KiB (with their keys), not 5.
    assert!(
        result
            .detail
            .starts_with("stored 4: CapabilityError::Limit("),
        "{}",
        result.detail
    );
    let total: usize = deployment
        .kv
        .snapshot()
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    assert!(total <= KvStore::MAX_TOTAL_BYTES, "{total}");
}

/// A run killed after a hook wrote to its key/value store: the run that resumes it
/// (a new process, with a new, empty store) gives the hook back what it wrote.
#[tokio::test]
async fn kv_survives_a_killed_run_into_the_run_that_resumes_it() {
    use deployer_engine::gates::{ConfiguredGates, Gate, GatePoint};
    use deployer_engine::rollout::{ResumePolicy, Settings};
    use deployer_plugin_host::capabilities::KvStore;
    use deployer_plugin_host::hook::HookGate;
    use deployer_tests::support::rollout::{Harness, request, settings};

    const CANARY: &str = r#"{"steps":[{"weight":10},{"weight":50},{"weight":100}]}"#;
    let h = Harness::new();
    let strategy = h.builtin("canary");
    // What a fresh process builds: the hook with an empty store of its own.
    let gates = || {
        let hook = HookPlugin::load(
            &h.host,
            &source("probe", components::HOSTILE_HOOK),
            Limits::hook(),
            granted(),
        )
        .unwrap();
        let services = deployer_plugin_host::HostServices {
            kv: KvStore::default(),
            ..hook.services()
        };
        ConfiguredGates::new(vec![Gate {
            name: "hook:probe".into(),
            at: vec![GatePoint::PostTraffic],
            failures: 1,
            check: Box::new(HookGate {
                plugin: hook,
                params: r#"{"remember":"x"}"#.into(),
                services: Some(services),
            }),
        }])
    };
    // Hang in the second traffic shift (found by a dry run: the simulated target's
    // operations are the same every run): the hook has run once, after the first.
    let dry = h.next();
    dry.deploy(
        &strategy,
        &deployer_engine::gates::NoGates,
        request("canary", CANARY),
    )
    .await;
    let second_shift = dry
        .state()
        .operations
        .iter()
        .enumerate()
        .filter(|(_, o)| *o == "shift_traffic")
        .nth(1)
        .map(|(n, _)| n)
        .unwrap();
    h.driver.hang_at(second_shift);
    {
        let first = gates();
        let engine = h.engine(&strategy, &first, settings());
        let run = engine.deploy(request("canary", CANARY));
        tokio::pin!(run);
        loop {
            tokio::select! {
                report = &mut run => panic!("the second shift was never reached: {report:?}"),
                () = tokio::time::sleep(std::time::Duration::from_millis(1)) => {
                    if h.state().operations.len() > second_shift {
                        break; // hanging in the second shift: drop the run, as SIGKILL would
                    }
                }
            }
        }
    }
    h.driver.disarm();
    let before = h.journal();
    assert_eq!(before.matches("previous=None").count(), 1, "{before}");
    assert!(before.contains(r#""record":"gate-state""#), "{before}");

    let second = gates();
    let resume = Settings {
        on_resume: ResumePolicy::Resume,
        ..settings()
    };
    let report = h
        .deploy_with(&strategy, &second, resume, request("canary", CANARY))
        .await;
    assert_eq!(
        report.result,
        deployer_engine::state::DeployResult::Promoted
    );
    let journal = h.journal();
    // Every call after the first saw the value; without the journal the resumed run's
    // first call would have seen an empty store.
    assert_eq!(journal.matches("previous=None").count(), 1, "{journal}");
    assert!(
        journal.matches(r#"previous=Some(\"x\")"#).count() >= 2,
        "{journal}"
    );
}

/// A damaged or hostile journal cannot grow a store past what a plugin could fill.
#[test]
fn kv_restored_from_a_journal_keeps_the_stores_limits() {
    use deployer_plugin_host::capabilities::KvStore;
    let store = KvStore::default();
    let mut huge = serde_json::Map::new();
    for i in 0..(KvStore::MAX_KEYS + 10) {
        huge.insert(format!("k{i:04}"), serde_json::Value::String("00".into()));
    }
    huge.insert("k-not-hex".into(), serde_json::Value::String("zz".into()));
    huge.insert("k-number".into(), serde_json::json!(7));
    huge.insert("x".repeat(KvStore::MAX_KEY_BYTES + 1), "00".into());
    huge.insert(
        "k-big".into(),
        serde_json::Value::String("00".repeat(KvStore::MAX_VALUE_BYTES + 1)),
    );
    store.restore_json(&serde_json::Value::Object(huge));
    let kept = store.snapshot();
    assert_eq!(kept.len(), KvStore::MAX_KEYS);
    assert!(
        kept.keys().all(|k| k.starts_with("k0")),
        "{:?}",
        kept.keys()
    );
    // Values each within bounds, but more than the store holds in all.
    let mut full = serde_json::Map::new();
    for i in 0..40 {
        full.insert(
            format!("v{i:02}"),
            serde_json::Value::String("ab".repeat(KvStore::MAX_VALUE_BYTES - 8)),
        );
    }
    let capped = KvStore::default();
    capped.restore_json(&serde_json::Value::Object(full));
    let total: usize = capped
        .snapshot()
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    assert!(total <= KvStore::MAX_TOTAL_BYTES, "{total}");
    assert!(capped.snapshot().len() >= 3, "{}", capped.snapshot().len());
    // What it writes reads back the same.
    let again = KvStore::default();
    again.restore_json(&store.to_json());
    assert_eq!(again.snapshot(), kept);
}
