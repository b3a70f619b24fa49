//! Everything that can refuse a plugin does so at load time, before any guest code runs,
//! with an error that says what to fix; the host keeps working afterwards.

use std::path::PathBuf;

use deployer_plugin_host::hook::HookPlugin;
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Grants, Limits, PluginError, PluginHost, PluginSource};
use deployer_tests::{components, host, source, source_from_bytes};

fn load_strategy(host: &PluginHost, source: &PluginSource) -> Result<StrategyPlugin, PluginError> {
    StrategyPlugin::load(host, source, Limits::strategy())
}

async fn builtin_still_works(host: &PluginHost) {
    let canary = load_strategy(host, &PluginSource::Builtin("canary".into())).unwrap();
    assert_eq!(canary.info().await.unwrap().name, "canary");
}

#[tokio::test]
async fn a_wrong_digest_is_refused_with_the_actual_digest() {
    let (host, _cache) = host();
    let PluginSource::File { name, path, sha256 } = source("hostile", components::HOSTILE_STRATEGY)
    else {
        unreachable!()
    };
    let wrong = PluginSource::File {
        name,
        path,
        sha256: "0".repeat(64),
    };
    let err = load_strategy(&host, &wrong).err().unwrap();
    assert!(
        matches!(&err, PluginError::DigestMismatch { actual, .. } if *actual == sha256),
        "{err}"
    );
    assert!(err.is_load_error());
    assert!(
        err.to_string()
            .contains(&format!("set sha256 = \"{sha256}\"")),
        "{err}"
    );
    builtin_still_works(&host).await;
}

#[tokio::test]
async fn a_malformed_digest_is_refused() {
    let (host, _cache) = host();
    let bad = PluginSource::File {
        name: "x".into(),
        path: PathBuf::from(components::HOSTILE_STRATEGY),
        sha256: "latest".into(),
    };
    assert!(matches!(
        load_strategy(&host, &bad),
        Err(PluginError::BadDigest { .. })
    ));
}

#[tokio::test]
async fn a_missing_file_names_the_path() {
    let (host, _cache) = host();
    let missing = PluginSource::File {
        name: "gone".into(),
        path: PathBuf::from("/nonexistent/gone.wasm"),
        sha256: "a".repeat(64),
    };
    let err = load_strategy(&host, &missing).err().unwrap();
    assert!(err.to_string().contains("/nonexistent/gone.wasm"), "{err}");
}

#[tokio::test]
async fn a_hook_is_not_accepted_as_a_strategy_and_vice_versa() {
    let (host, _cache) = host();
    let err = load_strategy(&host, &source("probe", components::HOSTILE_HOOK))
        .err()
        .unwrap();
    assert!(
        matches!(&err, PluginError::WrongWorld { expected: "strategy", found, .. } if found.contains("it is a hook plugin")),
        "{err}"
    );
    let err = HookPlugin::load(
        &host,
        &source("hostile", components::HOSTILE_STRATEGY),
        Limits::hook(),
        Grants::default(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, PluginError::WrongWorld { expected: "hook", found, .. } if found.contains("it is a strategy plugin")),
        "{err}"
    );
    builtin_still_works(&host).await;
}

#[tokio::test]
async fn an_incompatible_contract_version_is_refused_by_name() {
    let (host, _cache) = host();
    let err = load_strategy(&host, &source("future", components::FUTURE_STRATEGY))
        .err()
        .unwrap();
    assert!(
        matches!(&err, PluginError::WrongWorld { found, .. } if found.contains("built against deployer:plugin@0.4.0")),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("implements deployer:plugin@0.3.1 (and still runs components built against 0.1.0 and 0.2.0)"),
        "{text}"
    );
    builtin_still_works(&host).await;
}

/// Contract 0.2.0 removed `actions`: a hook built against 0.1.0 that imports it is
/// refused when loaded, whatever it is granted, with the fix — never run with the
/// import left dangling. (0.1 components that do not import it run: see
/// `contract_versions`.)
#[tokio::test]
async fn a_plugin_built_against_contract_0_1_is_refused_with_the_fix() {
    let (host, _cache) = host();
    let everything = Grants {
        http_allow: vec!["example.com".into()],
        kv: true,
        clock: true,
        metrics_namespaces: vec!["AWS/ApplicationELB".into()],
        prometheus_metrics: vec!["http_requests_total".into()],
    };
    let err = HookPlugin::load(
        &host,
        &source("old", components::V01_HOOK),
        Limits::hook(),
        everything,
    )
    .err()
    .unwrap();
    let text = err.to_string();
    assert!(
        matches!(&err, PluginError::WrongWorld { found, .. } if found.contains("built against deployer:plugin@0.1.0")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "rebuild the plugin with the {} SDK",
            deployer_plugin_host::CONTRACT_VERSION
        )),
        "{text}"
    );
    assert!(
        text.contains("imports `deployer:plugin/actions@0.1.0`, which 0.2.0 removed"),
        "{text}"
    );
    builtin_still_works(&host).await;
}

#[tokio::test]
async fn non_components_are_refused() {
    let (host, _cache) = host();
    let dir = tempfile::tempdir().unwrap();
    let core_module = b"\0asm\x01\0\0\0";
    let err = load_strategy(&host, &source_from_bytes(dir.path(), "core", core_module))
        .err()
        .unwrap();
    assert!(
        matches!(&err, PluginError::NotAComponent { reason, .. } if reason.contains("core WebAssembly module")),
        "{err}"
    );
    let err = load_strategy(
        &host,
        &source_from_bytes(dir.path(), "text", b"#!/bin/sh\nrm -rf /\n"),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, PluginError::NotAComponent { reason, .. } if reason.contains("magic")),
        "{err}"
    );
    let full = std::fs::read(components::HOSTILE_STRATEGY).unwrap();
    let err = load_strategy(
        &host,
        &source_from_bytes(dir.path(), "truncated", &full[..full.len() / 2]),
    )
    .err()
    .unwrap();
    assert!(matches!(err, PluginError::Invalid { .. }), "{err}");
    builtin_still_works(&host).await;
}

#[tokio::test]
async fn unknown_builtins_list_the_real_ones() {
    let (host, _cache) = host();
    let err = load_strategy(&host, &PluginSource::Builtin("canery".into()))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("canary, blue-green, rolling"),
        "{err}"
    );
}
