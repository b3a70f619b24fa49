//! The local file backend (the default): `.deployer/` next to `deployer.toml`.
//!
//! ```text
//! .deployer/services/<service>/lock                 holder of the service's lock
//! .deployer/services/<service>/active               id of the unfinished deployment
//! .deployer/services/<service>/deployments/<id>.jsonl   its journal, one record a line
//! .deployer/services/<service>/history.jsonl        one `Finished` summary per deployment
//! ```
//!
//! Every append is flushed and fsynced before the action it announces is taken. A run
//! killed mid-append leaves a torn last line: reading skips it, and the next append cuts
//! it off first (with a warning), so later records never follow half of one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::names;
use super::{Journal, Latest, Page, Record, StateError, Summary};
use crate::files::{self, Kind};
use crate::redact::printable;

/// Where a store's warnings go (a repaired journal): one message, without a prefix.
pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone)]
pub struct LocalStore {
    root: PathBuf,
    warn: Warn,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Who holds a lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub deployment: String,
    pub pid: u32,
    pub host: String,
    pub since_ms: u64,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deployment {} (pid {} on {})",
            self.deployment, self.pid, self.host
        )
    }
}

/// The lock of one service: an OS lock (`flock`) on its `lock` file, held while the
/// file is open — so it is released when the process ends, however it ends, and can
/// never be taken from a live holder. The file names the holder, for messages only.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    pub holder: LockHolder,
    /// The holder a run that died holding the lock left in the file.
    pub took_over: Option<LockHolder>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Released cleanly: the file names nobody. The OS lock goes with the file.
        let _ = self.file.set_len(0);
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |error| StateError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn read_holder(path: &Path) -> Option<LockHolder> {
    serde_json::from_slice(&files::read(path, Kind::Marker).ok()?).ok()
}

/// A state file that could not be read as one: I/O errors as such, anything else
/// (not a regular file, too large) as [`StateError::Unreadable`].
fn unreadable(path: &Path) -> impl FnOnce(files::ReadError) -> StateError + '_ {
    move |err| match err {
        files::ReadError::Io(error) => StateError::Io {
            path: path.to_path_buf(),
            error,
        },
        other => StateError::Unreadable {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// A state file opened as a regular file (never a FIFO or a device left in its place).
fn open_state(options: &mut OpenOptions, path: &Path) -> Result<File, StateError> {
    files::open(options, path).map_err(unreadable(path))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

impl LocalStore {
    /// The store at `root`; warnings go to stderr until [`LocalStore::with_warnings`]
    /// sends them elsewhere.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore {
            root: root.into(),
            warn: Arc::new(|message| eprintln!("deployer: warning: {message}")),
        }
    }

    /// Send warnings (a torn journal line cut off before an append) to `warn`.
    #[must_use]
    pub fn with_warnings(mut self, warn: Warn) -> Self {
        self.warn = warn;
        self
    }

    /// The service's directory. The name is checked again here, whatever the caller
    /// checked: it becomes a path.
    fn service_dir(&self, service: &str) -> Result<PathBuf, StateError> {
        if !names::valid_service(service) {
            return Err(StateError::BadName {
                what: "service name",
                value: printable(service).into_owned(),
            });
        }
        let services = self.root.join("services");
        let dir = services.join(service);
        files::no_linked_dirs([services.as_path(), dir.as_path()])
            .map_err(|(path, err)| unreadable(path)(err))?;
        Ok(dir)
    }

    /// The directory of release `release`'s documents (`releases/<release>/`).
    fn release_dir(&self, release: &str) -> Result<PathBuf, StateError> {
        if !names::valid_service(release) {
            return Err(StateError::BadName {
                what: "release name",
                value: printable(release).into_owned(),
            });
        }
        let releases = self.root.join("releases");
        let dir = releases.join(release);
        files::no_linked_dirs([releases.as_path(), dir.as_path()])
            .map_err(|(path, err)| unreadable(path)(err))?;
        Ok(dir)
    }

    /// Release `release`'s document `name` (`active.json`), if there is one.
    ///
    /// # Errors
    /// I/O errors, or a file that is not what deployer writes there.
    pub fn release_document(
        &self,
        release: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.release_dir(release)?.join(name);
        match files::read(&path, Kind::Journal) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.not_found() => Ok(None),
            Err(err) => Err(unreadable(&path)(err)),
        }
    }

    /// Write release `release`'s document `name`, whole or not at all, synced.
    ///
    /// # Errors
    /// I/O errors.
    pub fn put_release_document(
        &self,
        release: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), StateError> {
        let path = self.release_dir(release)?.join(name);
        let dir = path.parent().unwrap_or(&path).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_synced(&path, bytes)
    }

    /// The names of at most `max` of release `release`'s documents under `folder/`, in
    /// name order.
    ///
    /// # Errors
    /// I/O errors.
    pub fn first_release_documents(
        &self,
        release: &str,
        folder: &str,
        max: usize,
    ) -> Result<Vec<String>, StateError> {
        let dir = self.release_dir(release)?.join(folder);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io(&dir)(err)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry.map_err(io(&dir))?.file_name();
            // Only deployer's own names: a stray `.tmp` or editor file is not a release.
            if let Some(name) = name.to_str()
                && name.ends_with(".json")
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        names.truncate(max);
        Ok(names.into_iter().map(|n| format!("{folder}/{n}")).collect())
    }

    /// Remove release `release`'s document `name`; gone already is fine.
    ///
    /// # Errors
    /// I/O errors.
    pub fn remove_release_document(&self, release: &str, name: &str) -> Result<(), StateError> {
        let path = self.release_dir(release)?.join(name);
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(err)),
            _ => Ok(()),
        }
    }

    fn journal_path(&self, service: &str, id: &str) -> Result<PathBuf, StateError> {
        if !names::valid_id(id) {
            return Err(StateError::BadName {
                what: "deployment id",
                value: printable(id).into_owned(),
            });
        }
        let deployments = self.service_dir(service)?.join("deployments");
        files::no_linked_dirs([deployments.as_path()])
            .map_err(|(path, err)| unreadable(path)(err))?;
        Ok(deployments.join(format!("{id}.jsonl")))
    }

    /// Check that the service's state files that exist are regular files, not links or
    /// anything else, before a command touches anything: the lock is otherwise opened
    /// only once the run is under way.
    ///
    /// # Errors
    /// [`StateError::Unreadable`] naming the file; an invalid service name.
    pub fn check_files(&self, service: &str) -> Result<(), StateError> {
        let dir = self.service_dir(service)?;
        files::no_linked_dirs([dir.join("deployments").as_path()])
            .map_err(|(path, err)| unreadable(path)(err))?;
        for name in ["lock", "active", "history.jsonl"] {
            let path = dir.join(name);
            if let Ok(meta) = std::fs::symlink_metadata(&path)
                && !meta.is_file()
            {
                return Err(unreadable(&path)(files::ReadError::NotAFile(
                    files::kind_of(meta.file_type()),
                )));
            }
        }
        Ok(())
    }

    /// Take the service's lock, or fail at once naming who holds it. A run that died
    /// holding it released it with its process; the name it left is reported.
    ///
    /// # Errors
    /// [`StateError::Locked`] when a live run holds it; I/O errors.
    fn lock_now(&self, service: &str, deployment: &str) -> Result<LockGuard, StateError> {
        let dir = self.service_dir(service)?;
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join("lock");
        let mut file = open_state(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            &path,
        )?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    service: service.to_string(),
                    holder: read_holder(&path)
                        .map_or_else(|| "another run".to_string(), |h| h.to_string()),
                });
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(io(&path)(err)),
        }
        let took_over = read_holder(&path);
        let holder = LockHolder {
            deployment: deployment.to_string(),
            pid: std::process::id(),
            host: hostname(),
            since_ms: now_ms(),
        };
        let bytes = serde_json::to_vec(&holder).expect("lock holders serialize");
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| file.write_all(&bytes))
            .and_then(|()| file.sync_all())
            .map_err(io(&path))?;
        Ok(LockGuard {
            file,
            holder,
            took_over,
        })
    }

    /// Begin a journal and mark it as the service's active deployment.
    ///
    /// # Errors
    /// I/O errors.
    fn begin_now(&self, service: &str, id: &str, started: &Record) -> Result<(), StateError> {
        let path = self.journal_path(service, id)?;
        let dir = path.parent().unwrap();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        self.append_now(service, id, started)?;
        let active = self.service_dir(service)?.join("active");
        write_synced(&active, id.as_bytes())
    }

    /// Append one record and sync it to disk.
    ///
    /// # Errors
    /// I/O errors: the caller must not take the action the record announces.
    fn append_now(&self, service: &str, id: &str, record: &Record) -> Result<(), StateError> {
        let path = self.journal_path(service, id)?;
        let line = serde_json::to_vec(record).expect("records serialize");
        self.append_line(&path, &line, |tail| {
            serde_json::from_slice::<Record>(tail).is_ok()
        })
    }

    /// Append `line` and a newline to the file at `path` and sync it. A last line left
    /// without its newline by a run killed mid-write is dealt with first: completed when
    /// `whole` says it is a whole line that only lacks the newline, else cut off (the
    /// cut synced before anything is appended) with a warning.
    fn append_line(
        &self,
        path: &Path,
        line: &[u8],
        whole: impl Fn(&[u8]) -> bool,
    ) -> Result<(), StateError> {
        let mut file = open_state(
            OpenOptions::new().create(true).read(true).append(true),
            path,
        )?;
        if let Some(torn) = mend_tail(&mut file, &whole).map_err(io(path))? {
            (self.warn)(&format!(
                "{}: cut off a torn last line ({torn} byte(s) from a run killed while \
                 writing it, before it could act on them) so that the next record follows \
                 a whole one",
                path.display()
            ));
        }
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(io(path))
    }

    /// Record a deployment's end in the history and clear it as active.
    ///
    /// # Errors
    /// I/O errors.
    fn finish_now(&self, service: &str, id: &str, finished: &Record) -> Result<(), StateError> {
        self.append_now(service, id, finished)?;
        let history = self.service_dir(service)?.join("history.jsonl");
        let entry = HistoryEntry { id: id.to_string() };
        let line = serde_json::to_vec(&entry).expect("entries serialize");
        self.append_line(&history, &line, |tail| {
            serde_json::from_slice::<HistoryEntry>(tail).is_ok()
        })?;
        let active = self.service_dir(service)?.join("active");
        match std::fs::remove_file(&active) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io(&active)(err)),
            _ => Ok(()),
        }
    }

    /// Write `signal` into its kind's slot (`signal-abort.json`, `signal-promote.json`),
    /// whole or not at all: through a file of its own, renamed over the slot, so two
    /// senders at once cannot interleave their bytes.
    ///
    /// # Errors
    /// I/O errors.
    fn send_now(&self, service: &str, signal: &super::Signal) -> Result<(), StateError> {
        let dir = self.service_dir(service)?;
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = signal_slot(&dir, signal.kind);
        let tmp = dir.join(format!("signal-{}.{}.tmp", signal.kind.slot(), signal.id));
        let bytes = serde_json::to_vec(signal).expect("signals serialize");
        let mut file = open_state(OpenOptions::new().write(true).create_new(true), &tmp)?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// The signals in the service's slots; a slot that holds something else is passed
    /// over.
    ///
    /// # Errors
    /// A service name that cannot be a directory.
    fn signals_now(&self, service: &str) -> Result<Vec<super::Signal>, StateError> {
        let dir = self.service_dir(service)?;
        let mut found = Vec::new();
        for kind in [
            super::SignalKind::Abort,
            super::SignalKind::Promote { full: false },
        ] {
            let path = signal_slot(&dir, kind);
            // A slot that holds anything but a signal (a half-written file, junk, a
            // huge or special file) is passed over: it must not hide the other slot's
            // signal, and the next signal of its kind replaces it.
            if let Ok(text) = files::read_text(&path, Kind::Marker)
                && let Ok(signal) = serde_json::from_str::<super::Signal>(&text)
                && signal.kind.slot() == kind.slot()
            {
                found.push(signal);
            }
        }
        Ok(found)
    }

    /// The unfinished deployment of `service`, if any.
    ///
    /// # Errors
    /// I/O errors or a damaged journal.
    fn active_now(&self, service: &str) -> Result<Option<Journal>, StateError> {
        let active = self.service_dir(service)?.join("active");
        let id = match files::read_text(&active, Kind::Marker) {
            Ok(id) => id.trim().to_string(),
            Err(err) if err.not_found() => return Ok(None),
            Err(err) => return Err(unreadable(&active)(err)),
        };
        if !names::valid_id(&id) {
            return Err(StateError::Corrupt {
                path: active,
                line: 1,
                reason: format!("`{}` is not a deployment id", printable(&id)),
            });
        }
        self.read_now(service, &id).map(Some)
    }

    /// A deployment's journal.
    ///
    /// # Errors
    /// I/O errors or a damaged journal.
    fn read_now(&self, service: &str, id: &str) -> Result<Journal, StateError> {
        let path = self.journal_path(service, id)?;
        let bytes = files::read(&path, Kind::Journal).map_err(unreadable(&path))?;
        let (lines, tail) = split_lines(&bytes);
        let mut records = Vec::new();
        for (n, line) in lines.enumerate() {
            match serde_json::from_slice(line) {
                Ok(record) => records.push(record),
                Err(err) => {
                    return Err(StateError::Corrupt {
                        path,
                        line: n + 1,
                        reason: err.to_string(),
                    });
                }
            }
        }
        // A last line without its newline is a record whose write was cut short unless
        // it reads whole. Cut short, it was never acted on (acting waits for the sync),
        // so it is dropped; the next append cuts it off the file.
        if let Some(Ok(record)) = tail.map(serde_json::from_slice) {
            records.push(record);
        }
        let journal = Journal { records };
        if let Some((line, reason)) = journal.damage(id) {
            return Err(StateError::Corrupt { path, line, reason });
        }
        Ok(journal)
    }

    /// The ids `history.jsonl` lists, oldest first: the deployment numbered n is the
    /// n-th. One file, read whole: cheap next to the journals, which are read only for
    /// the deployments asked about.
    ///
    /// # Errors
    /// I/O errors or a damaged line.
    fn history_ids(&self, service: &str) -> Result<(PathBuf, Vec<String>), StateError> {
        let path = self.service_dir(service)?.join("history.jsonl");
        let text = match files::read_text(&path, Kind::History) {
            Ok(text) => text,
            Err(err) if err.not_found() => return Ok((path, Vec::new())),
            Err(err) => return Err(unreadable(&path)(err)),
        };
        // As with a journal, a last line without its newline was cut short by a kill
        // and never counted (the deployment is still `active`); any other line must be
        // an entry naming a deployment, or the history is reported damaged rather than
        // read as shorter than it is.
        let (lines, _torn) = split_lines(text.as_bytes());
        let mut ids = Vec::new();
        for (n, line) in lines.enumerate() {
            let damaged = |reason: String| StateError::Corrupt {
                path: path.clone(),
                line: n + 1,
                reason,
            };
            let entry: HistoryEntry =
                serde_json::from_slice(line).map_err(|err| damaged(err.to_string()))?;
            if !names::valid_id(&entry.id) {
                return Err(damaged(format!(
                    "`{}` is not a deployment id",
                    printable(&entry.id)
                )));
            }
            ids.push(entry.id);
        }
        Ok((path, ids))
    }

    /// The summary of deployment `number` (`id`, line `number` of `history`), from its
    /// journal, which must have ended.
    fn summary_now(
        &self,
        service: &str,
        history: &Path,
        number: u64,
        id: &str,
    ) -> Result<Summary, StateError> {
        let journal = self.read_now(service, id)?;
        Summary::of(&journal, number).ok_or_else(|| StateError::Corrupt {
            path: self.journal_path(service, id).unwrap_or_default(),
            line: journal.records.len() + 1,
            reason: format!(
                "the deployment has no end record, yet {} lists it as finished (line {number})",
                history.display(),
            ),
        })
    }

    /// Finished deployments of `service`, newest first: at most `limit` numbered below
    /// `before`; only their journals are read.
    ///
    /// # Errors
    /// I/O errors or a damaged journal.
    fn recent_now(
        &self,
        service: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page, StateError> {
        let (path, ids) = self.history_ids(service)?;
        let top = before.map_or(ids.len() as u64, |b| {
            b.saturating_sub(1).min(ids.len() as u64)
        });
        let mut entries = Vec::new();
        let mut number = top;
        while number > 0 && entries.len() < limit {
            let id = &ids[number as usize - 1];
            entries.push(self.summary_now(service, &path, number, id)?);
            number -= 1;
        }
        Ok(Page {
            entries,
            more: number > 0,
        })
    }

    /// The newest finished deployment of `service` and the newest promoted one.
    ///
    /// # Errors
    /// I/O errors or a damaged journal.
    fn latest_now(&self, service: &str) -> Result<Latest, StateError> {
        let (path, ids) = self.history_ids(service)?;
        let mut latest = Latest::default();
        // Back from the newest to the first promoted one: a run of rollbacks is short,
        // and local journals are cheap to read.
        for (i, id) in ids.iter().enumerate().rev() {
            let summary = self.summary_now(service, &path, i as u64 + 1, id)?;
            let promoted = summary.result == super::DeployResult::Promoted;
            latest.finished.get_or_insert_with(|| summary.clone());
            if promoted {
                latest.promoted = Some(summary);
                break;
            }
        }
        Ok(latest)
    }
}

#[derive(Serialize, Deserialize)]
struct HistoryEntry {
    id: String,
}

/// The newline-terminated lines of `bytes` (without their newlines), and what follows
/// the last newline when that is not empty: a last line whose newline was never written.
fn split_lines(bytes: &[u8]) -> (impl Iterator<Item = &[u8]>, Option<&[u8]>) {
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (whole, tail) = bytes.split_at(end);
    let lines = whole
        .split_inclusive(|&b| b == b'\n')
        .map(|line| &line[..line.len() - 1]);
    (lines, (!tail.is_empty()).then_some(tail))
}

/// Make `file` (opened to read and append) end in a newline again after a write was cut
/// short: a last line `whole` accepts only lacks its newline, which is added; anything
/// else after the last newline is a torn line and is truncated away, the new length
/// synced before returning. Returns the number of bytes cut off, if any.
fn mend_tail(file: &mut File, whole: &dyn Fn(&[u8]) -> bool) -> std::io::Result<Option<u64>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    // The common case costs one byte of reading.
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(None);
    }
    // Only the torn line matters, but finding where it starts means reading back to the
    // last newline; a file past the journal limit is refused rather than read whole.
    if len > Kind::Journal.limit() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            files::ReadError::TooLarge {
                kind: Kind::Journal,
            }
            .to_string(),
        ));
    }
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    let (_, tail) = split_lines(&bytes);
    let tail = tail.unwrap_or_default();
    if whole(tail) {
        file.write_all(b"\n")?;
        file.sync_data()?;
        return Ok(None);
    }
    let keep = (bytes.len() - tail.len()) as u64;
    file.set_len(keep)?;
    file.sync_all()?;
    Ok(Some(len - keep))
}

/// The file that holds the service's (in `dir`) signal of `kind`.
fn signal_slot(dir: &Path, kind: super::SignalKind) -> PathBuf {
    dir.join(format!("signal-{}.json", kind.slot()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let mut file = open_state(
        OpenOptions::new().write(true).create(true).truncate(true),
        &tmp,
    )?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl super::Lease for LockGuard {
    async fn release(self) {
        drop(self);
    }

    /// An OS lock is held until this process ends: it cannot be lost meanwhile.
    fn fence(&self) -> super::Fence {
        super::unfenced()
    }
}

impl super::Store for LocalStore {
    type Lock = LockGuard;

    async fn lock(&self, service: &str, deployment: &str) -> Result<LockGuard, StateError> {
        LocalStore::lock_now(self, service, deployment)
    }

    async fn begin(&self, service: &str, id: &str, started: &Record) -> Result<(), StateError> {
        LocalStore::begin_now(self, service, id, started)
    }

    async fn append(
        &self,
        service: &str,
        id: &str,
        _index: usize,
        record: &Record,
    ) -> Result<(), StateError> {
        LocalStore::append_now(self, service, id, record)
    }

    async fn finish(
        &self,
        service: &str,
        id: &str,
        _index: usize,
        finished: &Record,
    ) -> Result<(), StateError> {
        LocalStore::finish_now(self, service, id, finished)
    }

    async fn active(&self, service: &str) -> Result<Option<Journal>, StateError> {
        LocalStore::active_now(self, service)
    }

    async fn read(&self, service: &str, id: &str) -> Result<Journal, StateError> {
        LocalStore::read_now(self, service, id)
    }

    /// Local files have kept one layout: nothing to prepare.
    async fn prepare(&self, _service: &str) -> Result<(), StateError> {
        Ok(())
    }

    async fn recent(
        &self,
        service: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page, StateError> {
        LocalStore::recent_now(self, service, limit, before)
    }

    async fn latest(&self, service: &str) -> Result<Latest, StateError> {
        LocalStore::latest_now(self, service)
    }

    async fn send(&self, service: &str, signal: &super::Signal) -> Result<(), StateError> {
        LocalStore::send_now(self, service, signal)
    }

    async fn signals(&self, service: &str) -> Result<Vec<super::Signal>, StateError> {
        LocalStore::signals_now(self, service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Action, DeployResult};
    use deployer_contract::{Step, StepOutcome, TargetInfo, TargetKind};

    /// Begin `id` and carry out its promotion, so that it may end promoted.
    fn begin_promoted(store: &LocalStore, id: &str) {
        store.begin_now("web", id, &started(id)).unwrap();
        for record in [
            Record::Intent {
                seq: 0,
                action: Action::Step(Step::Promote),
            },
            Record::Done {
                seq: 0,
                outcome: StepOutcome::Done,
            },
        ] {
            store.append_now("web", id, &record).unwrap();
        }
    }

    fn started(id: &str) -> Record {
        Record::Started {
            id: id.into(),
            service: "web".into(),
            strategy: "canary".into(),
            strategy_digest: "d".into(),
            params: "{}".into(),
            target: TargetInfo {
                kind: TargetKind::Simulated,
                desired_count: 2,
                native_rolling: true,
                test_traffic: false,
            },
            new_release: "web:2".into(),
            stable_release: Some("web:1".into()),
            at_ms: 1,
            undoes: None,
            scaling: None,
            warm_units: None,
        }
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let first = store.lock_now("web", "d-1").unwrap();
        let err = store.lock_now("web", "d-2").unwrap_err();
        assert!(err.to_string().contains("deployment d-1"), "{err}");
        drop(first);
        store.lock_now("web", "d-2").unwrap();
    }

    #[test]
    fn of_many_runs_racing_for_a_stale_lock_exactly_one_wins() {
        // A run died holding the lock (its name is still in the file); 16 runs start
        // at once. Taking the lock is one OS call: exactly one of them gets it.
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("services/web/lock");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let dead = LockHolder {
                deployment: "d-0".into(),
                pid: u32::MAX - 1,
                host: hostname(),
                since_ms: 0,
            };
            std::fs::write(&path, serde_json::to_vec(&dead).unwrap()).unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
            let winners: Vec<LockGuard> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..16)
                    .map(|n| {
                        let (store, barrier) = (LocalStore::new(dir.path()), barrier.clone());
                        scope.spawn(move || {
                            barrier.wait();
                            store.lock_now("web", &format!("d-{n}")).ok()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .filter_map(|h| h.join().unwrap())
                    .collect()
            });
            assert_eq!(winners.len(), 1, "round {round}");
            assert_eq!(winners[0].took_over, Some(dead), "round {round}");
        }
    }

    #[test]
    fn a_lock_held_by_another_process_is_refused_until_that_process_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let path = dir.path().join("services/web/lock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Another process (as another container sharing the host name would be) holds
        // the OS lock on the file: util-linux's flock(1).
        // `--no-fork`: flock(1) becomes the sleep, so killing it ends the holder.
        let mut holder = std::process::Command::new("flock")
            .arg("--no-fork")
            .arg(&path)
            .args(["sleep", "30"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match store.lock_now("web", "d-1") {
                Err(StateError::Locked { .. }) => break,
                Ok(guard) => {
                    drop(guard);
                    assert!(std::time::Instant::now() < deadline, "flock never held it");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(err) => panic!("{err}"),
            }
        }
        holder.kill().unwrap();
        holder.wait().unwrap();
        store.lock_now("web", "d-1").unwrap();
    }

    #[test]
    fn a_dead_holders_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let path = dir.path().join("services/web/lock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let dead = LockHolder {
            deployment: "d-0".into(),
            pid: u32::MAX - 1,
            host: hostname(),
            since_ms: 0,
        };
        std::fs::write(&path, serde_json::to_vec(&dead).unwrap()).unwrap();
        let guard = store.lock_now("web", "d-1").unwrap();
        assert_eq!(guard.took_over, Some(dead));
    }

    #[test]
    fn journals_round_trip_and_show_the_step_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.begin_now("web", "d-1", &started("d-1")).unwrap();
        let shift = Action::Step(Step::ShiftTraffic(10));
        store
            .append_now(
                "web",
                "d-1",
                &Record::Intent {
                    seq: 0,
                    action: shift.clone(),
                },
            )
            .unwrap();
        let journal = store.active_now("web").unwrap().unwrap();
        assert_eq!(journal.id(), Some("d-1"));
        assert_eq!(journal.in_flight(), Some((0, &shift)));
        store
            .append_now(
                "web",
                "d-1",
                &Record::Done {
                    seq: 0,
                    outcome: StepOutcome::Done,
                },
            )
            .unwrap();
        let journal = store.read_now("web", "d-1").unwrap();
        assert_eq!(journal.in_flight(), None);
        assert_eq!(journal.history().len(), 1);
        assert_eq!(journal.next_seq(), 1);
    }

    #[test]
    fn a_torn_last_line_is_dropped_but_earlier_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.begin_now("web", "d-1", &started("d-1")).unwrap();
        let path = dir.path().join("services/web/deployments/d-1.jsonl");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"record\":\"inte").unwrap();
        assert_eq!(store.read_now("web", "d-1").unwrap().records.len(), 1);
        file.write_all(b"\n{\"record\":\"done\",\"seq\":0,\"outcome\":\"done\"}\n")
            .unwrap();
        assert!(matches!(
            store.read_now("web", "d-1"),
            Err(StateError::Corrupt { line: 2, .. })
        ));
    }

    /// A store whose warnings are kept, to be looked at.
    fn store_with_warnings(root: &Path) -> (LocalStore, Arc<std::sync::Mutex<Vec<String>>>) {
        let warnings = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = warnings.clone();
        let store = LocalStore::new(root)
            .with_warnings(Arc::new(move |m: &str| kept.lock().unwrap().push(m.into())));
        (store, warnings)
    }

    /// A real journal: begun, an intent and its completion, and a rollback whose reason
    /// has multi-byte characters (a cut can fall inside one).
    fn written_journal(store: &LocalStore) -> Vec<Record> {
        let records = vec![
            started("d-1"),
            Record::Intent {
                seq: 0,
                action: Action::Step(Step::ShiftTraffic(10)),
            },
            Record::Done {
                seq: 0,
                outcome: StepOutcome::Done,
            },
            Record::RollbackStarted {
                reason: "gate p99 → 5xx ≥ 1% «bad»".into(),
                at_ms: 7,
            },
        ];
        store.begin_now("web", "d-1", &records[0]).unwrap();
        for record in &records[1..] {
            store.append_now("web", "d-1", record).unwrap();
        }
        records
    }

    #[test]
    fn a_torn_last_record_is_cut_off_before_the_next_append_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let (store, warnings) = store_with_warnings(dir.path());
        let records = written_journal(&store);
        let path = dir.path().join("services/web/deployments/d-1.jsonl");
        let full = std::fs::read(&path).unwrap();
        let body = &full[..full.len() - 1];
        let start = body.iter().rposition(|&b| b == b'\n').unwrap() + 1;
        let (whole, last) = full.split_at(start);
        let last = &last[..last.len() - 1];
        let next = Record::RollbackStarted {
            reason: "after the torn line".into(),
            at_ms: 9,
        };
        let kept = &records[..records.len() - 1];
        for cut in 1..last.len() {
            warnings.lock().unwrap().clear();
            let mut torn = whole.to_vec();
            torn.extend_from_slice(&last[..cut]);
            std::fs::write(&path, &torn).unwrap();
            assert_eq!(
                store.read_now("web", "d-1").unwrap().records,
                kept,
                "read with {cut} byte(s) of the last record"
            );
            store.append_now("web", "d-1", &next).unwrap();
            let mut expected = kept.to_vec();
            expected.push(next.clone());
            assert_eq!(
                store.read_now("web", "d-1").unwrap().records,
                expected,
                "after an append behind {cut} byte(s) of the last record"
            );
            let mut bytes = whole.to_vec();
            bytes.extend_from_slice(&serde_json::to_vec(&next).unwrap());
            bytes.push(b'\n');
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "cut at {cut}");
            let warned = warnings.lock().unwrap();
            assert_eq!(warned.len(), 1, "cut at {cut}: {warned:?}");
            assert!(
                warned[0].contains("d-1.jsonl") && warned[0].contains(&format!("({cut} byte(s)")),
                "{}",
                warned[0]
            );
        }
    }

    #[test]
    fn a_whole_last_record_missing_only_its_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (store, warnings) = store_with_warnings(dir.path());
        let mut records = written_journal(&store);
        let path = dir.path().join("services/web/deployments/d-1.jsonl");
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 1]).unwrap();
        assert_eq!(store.read_now("web", "d-1").unwrap().records, records);
        let next = Record::Intent {
            seq: 1,
            action: Action::Step(Step::ShiftTraffic(50)),
        };
        store.append_now("web", "d-1", &next).unwrap();
        records.push(next);
        assert_eq!(store.read_now("web", "d-1").unwrap().records, records);
        assert!(warnings.lock().unwrap().is_empty());
    }

    #[test]
    fn damage_before_the_last_line_is_reported_and_never_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (store, warnings) = store_with_warnings(dir.path());
        written_journal(&store);
        let path = dir.path().join("services/web/deployments/d-1.jsonl");
        let full = std::fs::read(&path).unwrap();
        let text = String::from_utf8(full).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[1] = "{\"record\":\"intent\",\"seq\":0,\"act";
        // Damaged in the middle, and a newline-terminated bad last line: neither is a
        // write cut short.
        for damaged in [
            format!("{}\n", lines.join("\n")),
            format!("{}\n{{not json}}\n", text.trim_end()),
        ] {
            std::fs::write(&path, &damaged).unwrap();
            let err = store.read_now("web", "d-1").unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
            let next = Record::Done {
                seq: 1,
                outcome: StepOutcome::Done,
            };
            store.append_now("web", "d-1", &next).unwrap();
            let after = std::fs::read_to_string(&path).unwrap();
            assert!(after.starts_with(&damaged), "the damage was cut: {after}");
            assert!(store.read_now("web", "d-1").is_err());
        }
        // Damage in the middle and a torn tail: only the tail goes.
        let damaged = format!("{}\n{{\"record\":\"do", lines.join("\n"));
        std::fs::write(&path, &damaged).unwrap();
        store
            .append_now(
                "web",
                "d-1",
                &Record::Done {
                    seq: 1,
                    outcome: StepOutcome::Done,
                },
            )
            .unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(
            after.starts_with(&format!("{}\n", lines.join("\n"))),
            "{after}"
        );
        assert!(!after.contains("{\"record\":\"do{"), "{after}");
        assert!(matches!(
            store.read_now("web", "d-1"),
            Err(StateError::Corrupt { line: 2, .. })
        ));
        assert_eq!(warnings.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_torn_history_line_does_not_swallow_the_next_deployment() {
        let dir = tempfile::tempdir().unwrap();
        let (store, warnings) = store_with_warnings(dir.path());
        let finished = Record::Finished {
            result: DeployResult::Promoted,
            detail: String::new(),
            at_ms: 2,
        };
        begin_promoted(&store, "d-1");
        store.finish_now("web", "d-1", &finished).unwrap();
        let history = dir.path().join("services/web/history.jsonl");
        let mut file = OpenOptions::new().append(true).open(&history).unwrap();
        file.write_all(b"{\"id\":\"d-").unwrap();
        begin_promoted(&store, "d-2");
        store.finish_now("web", "d-2", &finished).unwrap();
        let ids: Vec<_> = store
            .recent_now("web", 10, None)
            .unwrap()
            .entries
            .iter()
            .map(|s| (s.number, s.id.clone()))
            .collect();
        assert_eq!(ids, [(2, "d-2".to_string()), (1, "d-1".to_string())]);
        assert_eq!(warnings.lock().unwrap().len(), 1);
    }

    #[test]
    fn finishing_moves_a_deployment_into_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        begin_promoted(&store, "d-1");
        let finished = Record::Finished {
            result: DeployResult::Promoted,
            detail: String::new(),
            at_ms: 2,
        };
        store.finish_now("web", "d-1", &finished).unwrap();
        assert!(store.active_now("web").unwrap().is_none());
        let page = store.recent_now("web", 10, None).unwrap();
        assert_eq!(page.entries.len(), 1);
        assert!(!page.more);
        assert_eq!(page.entries[0].result, DeployResult::Promoted);
        let latest = store.latest_now("web").unwrap();
        assert_eq!(latest.finished, latest.promoted);
        assert_eq!(latest.finished.map(|s| s.id), Some("d-1".to_string()));
    }

    /// Pages newest first, `before` a number, and the newest promoted found behind
    /// rollbacks: the local backend answers the bounded queries as the S3 one does.
    #[test]
    fn history_pages_newest_first_and_latest_skips_rollbacks() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        for n in 1..=5 {
            let id = format!("d-{n}");
            let result = if n <= 3 {
                begin_promoted(&store, &id);
                DeployResult::Promoted
            } else {
                store.begin_now("web", &id, &started(&id)).unwrap();
                let rollback = Record::RollbackStarted {
                    reason: "gate".into(),
                    at_ms: 1,
                };
                store.append_now("web", &id, &rollback).unwrap();
                DeployResult::RolledBack
            };
            let finished = Record::Finished {
                result,
                detail: String::new(),
                at_ms: 2,
            };
            store.finish_now("web", &id, &finished).unwrap();
        }
        let numbers = |page: &Page| page.entries.iter().map(|s| s.number).collect::<Vec<_>>();
        let first = store.recent_now("web", 2, None).unwrap();
        assert_eq!((numbers(&first), first.more), (vec![5, 4], true));
        let next = store.recent_now("web", 2, Some(4)).unwrap();
        assert_eq!((numbers(&next), next.more), (vec![3, 2], true));
        let last = store.recent_now("web", 2, Some(2)).unwrap();
        assert_eq!((numbers(&last), last.more), (vec![1], false));
        assert_eq!(last.entries[0].id, "d-1");
        let past_the_end = store.recent_now("web", 2, Some(99)).unwrap();
        assert_eq!(numbers(&past_the_end), vec![5, 4]);
        let latest = store.latest_now("web").unwrap();
        assert_eq!(latest.finished.map(|s| s.number), Some(5));
        assert_eq!(
            latest.promoted.map(|s| (s.number, s.id)),
            Some((3, "d-3".into()))
        );
    }
}
