//! On-disk cache of compiled components, so a plugin is compiled once per machine.
//!
//! Entries are keyed by the component's sha256 and by the engine's compatibility hash
//! (wasmtime version, compiler settings, CPU features): a different engine never loads
//! another one's code. An entry is native code the host will run, so it is loaded only
//! when nobody else could have written it and it is what the host wrote:
//! - the directory and the entry belong to this user and are writable by no one else
//!   (as ssh checks its keys), and the entry is a regular file, not a link;
//! - the entry carries a sha256 over the component's digest and the compiled bytes,
//!   checked before the bytes are deserialized: a changed, truncated or swapped entry
//!   (another component's code under this name) is refused.
//!
//! Anything refused is compiled again from the component, with a warning.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// What an entry starts with (format version 1).
const MAGIC: &[u8; 8] = b"dplyrc1\n";
/// The magic and the checksum before the compiled bytes.
const HEADER: usize = MAGIC.len() + 32;
/// Larger entries are not read (a compiled component is a few MiB).
const MAX_ENTRY_BYTES: u64 = 512 << 20;

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
    /// a trustworthy entry exists, else compiled and stored.
    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        let entry = self.entry(digest);
        if let Some(path) = entry.as_deref() {
            match read_entry(path, digest) {
                Ok(Some(entry)) => {
                    // SAFETY: `read_entry` checked that this user alone could have
                    // written the entry and that it is, byte for byte, what `store` wrote
                    // for this component from `Component::serialize` of an engine with
                    // this compatibility hash (part of the file name).
                    match unsafe { Component::deserialize(engine, &entry[HEADER..]) } {
                        Ok(component) => return Ok(component),
                        Err(err) => eprintln!(
                            "warning: ignoring unusable cache entry {}: {err}",
                            path.display()
                        ),
                    }
                }
                Ok(None) => {}
                Err(why) => eprintln!(
                    "warning: not loading cache entry {}: {why}; compiling the plugin again",
                    path.display()
                ),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Some(path) = entry
            && let Err(err) = store(&component, digest, &path)
        {
            eprintln!(
                "warning: cannot cache compiled plugin at {}: {err:#}",
                path.display()
            );
        }
        Ok(component)
    }
}

/// The effective user, who alone may have written what the host loads.
fn me() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Why `meta` (of `path`) could have been written by someone else, if it could.
fn foreign(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    if meta.uid() != me() {
        return Some(format!(
            "{} belongs to user {}, not to this user ({})",
            path.display(),
            meta.uid(),
            me()
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Some(format!(
            "{} is writable by group or others (mode {:o}); fix: chmod go-w {}",
            path.display(),
            meta.permissions().mode() & 0o7777,
            path.display()
        ));
    }
    None
}

/// The entry at `path` for component `digest`, its compiled bytes from [`HEADER`] on:
/// `Ok(None)` when there is none, `Err(why)` when there is one the host must not trust.
fn read_entry(path: &Path, digest: &str) -> Result<Option<Vec<u8>>, String> {
    let dir = path.parent().ok_or("the entry has no directory")?;
    let dir_meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(_) => return Ok(None),
    };
    if !dir_meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if let Some(why) = foreign(dir, &dir_meta) {
        return Err(why);
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(_) => return Ok(None),
    };
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    if let Some(why) = foreign(path, &meta) {
        return Err(why);
    }
    if meta.len() > MAX_ENTRY_BYTES {
        return Err(format!("it is larger than {MAX_ENTRY_BYTES} bytes"));
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| e.to_string())?;
    let mut data: Vec<u8> = Vec::with_capacity(meta.len() as usize);
    file.by_ref()
        .take(MAX_ENTRY_BYTES)
        .read_to_end(&mut data)
        .map_err(|e| e.to_string())?;
    if data.len() < HEADER || &data[..MAGIC.len()] != MAGIC {
        return Err("it is not a cache entry of this version".into());
    }
    if data[MAGIC.len()..HEADER] != seal(digest, &data[HEADER..])[..] {
        return Err("its checksum does not match: it changed after it was written".into());
    }
    Ok(Some(data))
}

/// The checksum an entry carries: binds the compiled bytes to the component they were
/// compiled from.
fn seal(digest: &str, compiled: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(digest.as_bytes());
    hasher.update([0]);
    hasher.update(compiled);
    hasher.finalize().into()
}

/// Write atomically (temp file + rename) so a concurrent reader never sees half a file,
/// in a directory only this user can write.
fn store(component: &Component, digest: &str, path: &Path) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow::anyhow!("cache entries live in a directory"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if let Some(why) = foreign(dir, &std::fs::symlink_metadata(dir)?) {
        anyhow::bail!(why);
    }
    let compiled = component.serialize()?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    use std::io::Write;
    file.write_all(MAGIC)?;
    file.write_all(&seal(digest, &compiled))?;
    file.write_all(&compiled)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
