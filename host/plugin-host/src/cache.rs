//! On-disk cache of compiled components, so a plugin is compiled once per machine.
//!
//! Entries are keyed by the component's sha256 and by the engine's compatibility hash
//! (wasmtime version, compiler settings, CPU features): a different engine never loads
//! another one's code. The cache directory is trusted like the binary itself: whoever
//! can write it can run code as the user, which is why it lives in the user's own cache.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ComponentCache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn entry(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{digest}-{}.cwasm", self.engine_key)))
    }

    /// The compiled component for `bytes` (whose sha256 is `digest`), from the cache when
    /// a valid entry exists, else compiled and stored.
    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        let entry = self.entry(digest);
        if let Some(path) = entry.as_deref().filter(|p| p.is_file()) {
            // SAFETY: entries are written only by `store` below from `Component::serialize`
            // of this same engine configuration (the key includes its compatibility hash),
            // in a directory private to the user.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(component) => return Ok(component),
                Err(err) => eprintln!(
                    "warning: ignoring unusable cache entry {}: {err}",
                    path.display()
                ),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Some(path) = entry
            && let Err(err) = store(&component, &path)
        {
            eprintln!(
                "warning: cannot cache compiled plugin at {}: {err:#}",
                path.display()
            );
        }
        Ok(component)
    }
}

/// Write atomically (temp file + rename) so a concurrent reader never sees half a file.
fn store(component: &Component, path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
