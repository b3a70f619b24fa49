//! Compiled components are cached on disk, keyed by digest and engine, and a damaged
//! entry is recompiled rather than trusted or fatal. An entry is native code: one that
//! changed, one that is another component's, or one that someone else could have written
//! (a directory or entry others can write, a link, another owner) is never loaded.
//!
//! The built-ins ship compiled ahead of time and never touch the cache, so these tests
//! load the built-ins' components as the files a user's plugins are.

use deployer_plugin_host::hook::HookPlugin;
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Grants, Limits, PluginHost, PluginKind, PluginSource, builtin};

/// Built-in strategy `name`'s component as a plugin file, the way config names one.
fn builtin(name: &str) -> PluginSource {
    let bytes = builtin::get(name).unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin_cache");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.wasm"));
    // Tests run at once: each writes its own copy and renames it into place, so none
    // reads a file another is still writing.
    let partial = tempfile::NamedTempFile::new_in(&dir).unwrap();
    std::fs::write(partial.path(), bytes).unwrap();
    partial.persist(&path).unwrap();
    PluginSource::File {
        name: name.into(),
        path,
        sha256: deployer_plugin_host::sha256_hex(bytes),
    }
}

#[tokio::test]
async fn built_ins_run_their_ahead_of_time_code_and_leave_the_cache_alone() {
    // A fresh CI runner: an empty cache. Every built-in loads and works without writing
    // an entry, which it would if its embedded code were refused and compiled here.
    let cache = tempfile::tempdir().unwrap();
    let host = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    let strategies: Vec<_> = builtin::names().collect();
    assert!(strategies.len() >= 3, "{strategies:?}");
    for name in strategies {
        let source = PluginSource::Builtin(name.into());
        let plugin = StrategyPlugin::load(&host, &source, Limits::strategy()).unwrap();
        assert_works(&plugin, name).await;
    }
    for name in builtin::names_of(PluginKind::Hook) {
        let source = PluginSource::Builtin(name.into());
        // Every capability granted: the judge reads metrics.
        let grants = Grants {
            metrics_namespaces: vec!["*".into()],
            prometheus_metrics: vec!["*".into()],
            ..Grants::default()
        };
        let hook = HookPlugin::load(&host, &source, Limits::hook(), grants).unwrap();
        assert_eq!(hook.info().await.unwrap().name, name);
    }
    assert_eq!(cwasm_files(cache.path()), Vec::<std::path::PathBuf>::new());

    // The control: the same component as a file, in a new process, is compiled and cached.
    let again = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    StrategyPlugin::load(&again, &builtin("canary"), Limits::strategy()).unwrap();
    assert_eq!(cwasm_files(cache.path()).len(), 1);
}

#[tokio::test]
async fn a_forged_cache_entry_under_a_built_ins_digest_is_never_read() {
    // Someone who can write the cache puts rolling's code, with a valid checksum, under
    // canary's digest: what a plugin file named by that digest would load. The built-in
    // canary does not consult the cache, so it stays canary.
    let cache = tempfile::tempdir().unwrap();
    let canary = load_fresh(cache.path(), "canary").await;
    let rolling = load_fresh(cache.path(), "rolling").await;
    let rolling_code =
        std::fs::read(entry_of(cache.path(), rolling.digest())).unwrap()[HEADER..].to_vec();
    std::fs::write(
        entry_of(cache.path(), canary.digest()),
        forge(canary.digest(), &rolling_code),
    )
    .unwrap();
    // Control: the canary component as a file does load the forged code.
    let forged = load_fresh(cache.path(), "canary").await;
    assert_eq!(forged.info().await.unwrap().name, "rolling");

    let host = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    let builtin = StrategyPlugin::load(
        &host,
        &PluginSource::Builtin("canary".into()),
        Limits::strategy(),
    )
    .unwrap();
    assert_works(&builtin, "canary").await;
}

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
    let canary = builtin("canary");
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
    let canary = builtin("canary");
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
    let plugin = StrategyPlugin::load(&host, &builtin("rolling"), Limits::strategy()).unwrap();
    assert_eq!(plugin.info().await.unwrap().name, "rolling");
}

/// What an entry starts with (the cache's format, version 1).
const MAGIC: &[u8; 8] = b"dplyrc1\n";
const HEADER: usize = MAGIC.len() + 32;

/// The entry of component `digest` in `dir`.
fn entry_of(dir: &std::path::Path, digest: &str) -> std::path::PathBuf {
    cwasm_files(dir)
        .into_iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{digest}-"))
        })
        .unwrap_or_else(|| panic!("no entry for {digest} in {}", dir.display()))
}

/// A well-formed entry for component `digest` holding `compiled` (another component's
/// code): what someone who can write the cache could put there.
fn forge(digest: &str, compiled: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut seal = Sha256::new();
    seal.update(digest.as_bytes());
    seal.update([0]);
    seal.update(compiled);
    [&MAGIC[..], &seal.finalize()[..], compiled].concat()
}

/// Load built-in `name` in a new host (a new process) on cache `dir`.
async fn load_fresh(dir: &std::path::Path, name: &str) -> StrategyPlugin {
    let host = PluginHost::new(Some(dir.to_path_buf())).unwrap();
    StrategyPlugin::load(&host, &builtin(name), Limits::strategy()).unwrap()
}

/// The plugin works: it names itself and plans a step.
async fn assert_works(plugin: &StrategyPlugin, name: &str) {
    use deployer_contract::{RolloutState, Step, TargetInfo, TargetKind};
    assert_eq!(plugin.info().await.unwrap().name, name);
    let state = RolloutState {
        params: match name {
            "canary" => r#"{"steps":[{"weight":10}]}"#.into(),
            _ => "{}".into(),
        },
        target: TargetInfo {
            kind: TargetKind::Simulated,
            desired_count: 2,
            native_rolling: true,
            test_traffic: false,
        },
        history: vec![],
    };
    let step = plugin.next(&state).await.unwrap();
    assert!(!matches!(step, Step::Abort(_)), "{name}: {step:?}");
}

#[tokio::test]
async fn a_changed_byte_anywhere_in_an_entry_means_a_recompile() {
    let cache = tempfile::tempdir().unwrap();
    let first = load_fresh(cache.path(), "canary").await;
    let entry = entry_of(cache.path(), first.digest());
    let original = std::fs::read(&entry).unwrap();
    // In the checksum, in the middle of the compiled code, in its last byte.
    for offset in [
        MAGIC.len() + 5,
        HEADER + (original.len() - HEADER) / 2,
        original.len() - 1,
    ] {
        let mut changed = original.clone();
        changed[offset] ^= 0x20;
        std::fs::write(&entry, &changed).unwrap();
        let plugin = load_fresh(cache.path(), "canary").await;
        assert_works(&plugin, "canary").await;
        let now = std::fs::read(&entry).unwrap();
        assert!(now != changed, "byte {offset}: the entry was not rewritten");
        assert!(now == original, "byte {offset}: rewritten as compiled");
    }
}

#[tokio::test]
async fn another_components_entry_under_this_ones_name_is_not_loaded() {
    let cache = tempfile::tempdir().unwrap();
    let canary = load_fresh(cache.path(), "canary").await;
    let rolling = load_fresh(cache.path(), "rolling").await;
    let (canary_entry, rolling_entry) = (
        entry_of(cache.path(), canary.digest()),
        entry_of(cache.path(), rolling.digest()),
    );
    let canary_bytes = std::fs::read(&canary_entry).unwrap();
    std::fs::write(&rolling_entry, &canary_bytes).unwrap();

    let plugin = load_fresh(cache.path(), "rolling").await;
    assert_works(&plugin, "rolling").await;
    assert!(
        std::fs::read(&rolling_entry).unwrap() != canary_bytes,
        "rolling's entry was compiled again"
    );
    let plugin = load_fresh(cache.path(), "canary").await;
    assert_works(&plugin, "canary").await;
}

#[tokio::test]
async fn an_entry_someone_else_could_have_written_is_not_loaded() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // Entries of canary and rolling; then one for rolling that holds canary's code, with
    // a correct checksum: the checksum alone cannot tell it from a real one, so only the
    // ownership and mode checks stand between it and the host.
    let seed = tempfile::tempdir().unwrap();
    let canary = load_fresh(seed.path(), "canary").await;
    let rolling = load_fresh(seed.path(), "rolling").await;
    let canary_code =
        std::fs::read(entry_of(seed.path(), canary.digest())).unwrap()[HEADER..].to_vec();
    let forged = forge(rolling.digest(), &canary_code);
    let rolling_entry_name = entry_of(seed.path(), rolling.digest())
        .file_name()
        .unwrap()
        .to_owned();
    let elsewhere = tempfile::tempdir().unwrap();
    chmod(elsewhere.path(), 0o700);
    let root = unsafe { libc::geteuid() } == 0;

    // (case, what rolling loads as, whether the forged entry must have been replaced)
    let cases: Vec<(&str, &str, bool)> = vec![
        ("trusted (control)", "canary", false),
        ("directory mode 777", "rolling", false),
        ("directory mode 775", "rolling", false),
        ("directory mode 757", "rolling", false),
        ("entry mode 666", "rolling", true),
        ("entry mode 620", "rolling", true),
        ("entry mode 602", "rolling", true),
        ("entry a symlink", "rolling", true),
        ("a directory in the entry's place", "rolling", false),
        ("entry owned by another user", "rolling", true),
        ("directory owned by another user", "rolling", false),
    ];
    for (case, expected, replaced) in cases {
        if case.contains("another user") && !root {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        chmod(&cache, 0o700);
        let entry = cache.join(&rolling_entry_name);
        std::fs::write(&entry, &forged).unwrap();
        chmod(&entry, 0o600);
        match case {
            "directory mode 777" => chmod(&cache, 0o777),
            "directory mode 775" => chmod(&cache, 0o775),
            "directory mode 757" => chmod(&cache, 0o757),
            "entry mode 666" => chmod(&entry, 0o666),
            "entry mode 620" => chmod(&entry, 0o620),
            "entry mode 602" => chmod(&entry, 0o602),
            "entry a symlink" => {
                std::fs::remove_file(&entry).unwrap();
                let target = elsewhere.path().join("forged.cwasm");
                std::fs::write(&target, &forged).unwrap();
                chmod(&target, 0o600);
                symlink(&target, &entry).unwrap();
            }
            "a directory in the entry's place" => {
                std::fs::remove_file(&entry).unwrap();
                std::fs::create_dir(&entry).unwrap();
            }
            "entry owned by another user" => {
                std::os::unix::fs::chown(&entry, Some(65534), None).unwrap()
            }
            "directory owned by another user" => {
                std::os::unix::fs::chown(&cache, Some(65534), None).unwrap()
            }
            _ => {}
        }
        let plugin = load_fresh(&cache, "rolling").await;
        assert_works(&plugin, expected).await;
        if replaced {
            let meta = std::fs::symlink_metadata(&entry).unwrap();
            assert!(meta.is_file(), "{case}: a regular file now");
            assert!(
                std::fs::read(&entry).unwrap() != forged,
                "{case}: compiled again"
            );
        }
        if case == "entry a symlink" {
            assert_eq!(
                std::fs::read(elsewhere.path().join("forged.cwasm")).unwrap(),
                forged,
                "the link's target was not written through"
            );
        }
    }
}

#[test]
fn refused_entries_are_reported_with_the_reason_and_the_fix() {
    // The real binary, loading a hook through `plugin test` with its own cache directory.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(
        &scenario,
        "kind = \"hook\"\n[grants]\nhttp-allow = [\"hooks.example.com\"]\nkv = true\n",
    )
    .unwrap();
    let load = || {
        let out = deployer_tests::support::cli::plain()
            .args(["plugin", "test", deployer_tests::components::HOSTILE_HOOK])
            .arg("--scenario")
            .arg(&scenario)
            .env("DEPLOYER_CACHE_DIR", &cache)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    let err = load();
    assert!(!err.contains("warning"), "{err}");
    let entry = cwasm_files(&cache).remove(0);
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&entry, &bytes).unwrap();

    let err = load();
    assert!(
        err.contains("warning: not loading cache entry")
            && err.contains("its checksum does not match")
            && err.contains("compiling the plugin again"),
        "{err}"
    );
    let err = load();
    assert!(
        !err.contains("warning"),
        "rewritten and trusted again: {err}"
    );

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = load();
    assert!(
        err.contains("is writable by group or others (mode 777); fix: chmod go-w"),
        "{err}"
    );
}
