//! Compiled components are cached on disk, keyed by digest and engine, and a damaged
//! entry is recompiled rather than trusted or fatal.

use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Limits, PluginHost, PluginSource};

fn cwasm_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_second_process_loads_from_the_disk_cache() {
    let cache = tempfile::tempdir().unwrap();
    let canary = PluginSource::Builtin("canary".into());
    let host = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    let plugin = StrategyPlugin::load(&host, &canary, Limits::strategy()).unwrap();
    let files = cwasm_files(cache.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with(plugin.digest()), "{name}");

    // A new host (a new process) uses the entry: its mtime does not change.
    let before = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    let again = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    let plugin = StrategyPlugin::load(&again, &canary, Limits::strategy()).unwrap();
    assert_eq!(plugin.info().await.unwrap().name, "canary");
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        before
    );
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_replaced() {
    let cache = tempfile::tempdir().unwrap();
    let canary = PluginSource::Builtin("canary".into());
    let host = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    StrategyPlugin::load(&host, &canary, Limits::strategy()).unwrap();
    let entry = cwasm_files(cache.path()).remove(0);
    std::fs::write(&entry, b"garbage").unwrap();

    let again = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    let plugin = StrategyPlugin::load(&again, &canary, Limits::strategy()).unwrap();
    assert_eq!(plugin.info().await.unwrap().name, "canary");
    assert!(
        std::fs::metadata(&entry).unwrap().len() > 1000,
        "entry was rewritten"
    );
}

#[tokio::test]
async fn an_unwritable_cache_only_costs_speed() {
    let host = PluginHost::new(Some("/proc/deployer-cannot-write-here".into())).unwrap();
    let plugin = StrategyPlugin::load(
        &host,
        &PluginSource::Builtin("rolling".into()),
        Limits::strategy(),
    )
    .unwrap();
    assert_eq!(plugin.info().await.unwrap().name, "rolling");
}
