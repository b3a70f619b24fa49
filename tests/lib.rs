//! Shared helpers of the integration suites.

#[path = "support/mod.rs"]
pub mod support;

use std::path::{Path, PathBuf};

use deployer_plugin_host::{PluginHost, PluginSource, sha256_hex};

/// Paths of the test plugins built by `build.rs`.
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/components.rs"));
}

/// A plugin host with a private, empty compile cache.
pub fn host() -> (PluginHost, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let host = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    (host, cache)
}

/// A file source for `path` with its correct digest.
pub fn source(name: &str, path: &str) -> PluginSource {
    let bytes = std::fs::read(path).unwrap();
    PluginSource::File {
        name: name.to_string(),
        path: PathBuf::from(path),
        sha256: sha256_hex(&bytes),
    }
}

/// Write `bytes` to `dir/name` and return its source with the correct digest.
pub fn source_from_bytes(dir: &Path, name: &str, bytes: &[u8]) -> PluginSource {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    PluginSource::File {
        name: name.to_string(),
        path,
        sha256: sha256_hex(bytes),
    }
}
