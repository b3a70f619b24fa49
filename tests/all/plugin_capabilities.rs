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
