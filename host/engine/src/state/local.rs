//! The local file backend (the default): `.deployer/` next to `deployer.toml`.
//!
//! ```text
//! .deployer/services/<service>/lock                 holder of the service's lock
//! .deployer/services/<service>/active               id of the unfinished deployment
//! .deployer/services/<service>/deployments/<id>.jsonl   its journal, one record a line
//! .deployer/services/<service>/history.jsonl        one `Finished` summary per deployment
//! ```
//!
//! Every append is flushed and fsynced before the action it announces is taken.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Journal, Record, StateError};

#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
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

/// The lock of one service; released when dropped.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
    pub holder: LockHolder,
    /// The lock was taken over from a holder that is no longer running.
    pub took_over: Option<LockHolder>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Only remove the lock if it is still ours.
        if read_holder(&self.path).is_some_and(|h| h == self.holder) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_holder(path: &Path) -> Option<LockHolder> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether `holder` is a live process. Only a holder on this host can be checked; one
/// elsewhere is presumed alive (a shared file system is not a lock service: use the
/// S3 + DynamoDB backend for CI fleets).
pub fn alive(holder: &LockHolder) -> bool {
    holder.host != hostname()
        || holder.pid == std::process::id()
        || Path::new(&format!("/proc/{}", holder.pid)).exists()
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    fn service_dir(&self, service: &str) -> PathBuf {
        self.root.join("services").join(service)
    }

    fn journal_path(&self, service: &str, id: &str) -> PathBuf {
        self.service_dir(service)
            .join("deployments")
            .join(format!("{id}.jsonl"))
    }

    /// Take the service's lock, or fail at once naming who holds it. A lock left by a
    /// process that no longer runs (killed mid-deploy) is taken over.
    ///
    /// # Errors
    /// [`StateError::Locked`] when a live run holds it; I/O errors.
    fn lock_now(&self, service: &str, deployment: &str) -> Result<LockGuard, StateError> {
        let dir = self.service_dir(service);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join("lock");
        let holder = LockHolder {
            deployment: deployment.to_string(),
            pid: std::process::id(),
            host: hostname(),
            since_ms: now_ms(),
        };
        let mut took_over = None;
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let bytes = serde_json::to_vec(&holder).expect("lock holders serialize");
                    file.write_all(&bytes)
                        .and_then(|()| file.sync_all())
                        .map_err(io(&path))?;
                    return Ok(LockGuard {
                        path,
                        holder,
                        took_over,
                    });
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    match read_holder(&path) {
                        Some(current) if alive(&current) => {
                            return Err(StateError::Locked {
                                service: service.to_string(),
                                holder: current.to_string(),
                            });
                        }
                        // Dead holder, or a lock file half-written by a killed run.
                        stale => {
                            took_over = stale;
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(err) => return Err(io(&path)(err)),
            }
        }
        Err(StateError::Locked {
            service: service.to_string(),
            holder: "another run that took the lock at the same moment".into(),
        })
    }

    /// Begin a journal and mark it as the service's active deployment.
    ///
    /// # Errors
    /// I/O errors.
    fn begin_now(&self, service: &str, id: &str, started: &Record) -> Result<(), StateError> {
        let path = self.journal_path(service, id);
        let dir = path.parent().unwrap();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        self.append_now(service, id, started)?;
        let active = self.service_dir(service).join("active");
        write_synced(&active, id.as_bytes())
    }

    /// Append one record and sync it to disk.
    ///
    /// # Errors
    /// I/O errors: the caller must not take the action the record announces.
    fn append_now(&self, service: &str, id: &str, record: &Record) -> Result<(), StateError> {
        let path = self.journal_path(service, id);
        let mut line = serde_json::to_vec(record).expect("records serialize");
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(io(&path))
    }

    /// Record a deployment's end in the history and clear it as active.
    ///
    /// # Errors
    /// I/O errors.
    fn finish_now(&self, service: &str, id: &str, finished: &Record) -> Result<(), StateError> {
        self.append_now(service, id, finished)?;
        let history = self.service_dir(service).join("history.jsonl");
        let entry = HistoryEntry { id: id.to_string() };
        let mut line = serde_json::to_vec(&entry).expect("entries serialize");
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&history)
            .map_err(io(&history))?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(io(&history))?;
        let active = self.service_dir(service).join("active");
        match std::fs::remove_file(&active) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io(&active)(err)),
            _ => Ok(()),
        }
    }

    /// The unfinished deployment of `service`, if any.
    ///
    /// # Errors
    /// I/O errors or a damaged journal.
    fn active_now(&self, service: &str) -> Result<Option<Journal>, StateError> {
        let active = self.service_dir(service).join("active");
        let id = match std::fs::read_to_string(&active) {
            Ok(id) => id.trim().to_string(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io(&active)(err)),
        };
        self.read_now(service, &id).map(Some)
    }

    /// A deployment's journal.
    ///
    /// # Errors
    /// I/O errors or a damaged journal.
    fn read_now(&self, service: &str, id: &str) -> Result<Journal, StateError> {
        let path = self.journal_path(service, id);
        let file = File::open(&path).map_err(io(&path))?;
        let mut records = Vec::new();
        let lines: Vec<_> = BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(io(&path))?;
        let last = lines.len();
        for (n, line) in lines.into_iter().enumerate() {
            match serde_json::from_str(&line) {
                Ok(record) => records.push(record),
                // A run killed mid-write leaves a torn last line: that record was never
                // acted on (acting waits for the sync), so it is dropped.
                Err(_) if n + 1 == last => break,
                Err(err) => {
                    return Err(StateError::Corrupt {
                        path,
                        line: n + 1,
                        reason: err.to_string(),
                    });
                }
            }
        }
        Ok(Journal { records })
    }

    /// Finished deployments of `service`, oldest first.
    ///
    /// # Errors
    /// I/O errors or a damaged journal.
    fn history_now(&self, service: &str) -> Result<Vec<Journal>, StateError> {
        let path = self.service_dir(service).join("history.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io(&path)(err)),
        };
        text.lines()
            .filter_map(|l| serde_json::from_str::<HistoryEntry>(l).ok())
            .map(|entry| self.read_now(service, &entry.id))
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct HistoryEntry {
    id: String,
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
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

    async fn history(&self, service: &str) -> Result<Vec<Journal>, StateError> {
        LocalStore::history_now(self, service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Action, DeployResult};
    use deployer_contract::{Step, StepOutcome, TargetInfo, TargetKind};

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

    #[test]
    fn finishing_moves_a_deployment_into_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.begin_now("web", "d-1", &started("d-1")).unwrap();
        let finished = Record::Finished {
            result: DeployResult::Promoted,
            detail: String::new(),
            at_ms: 2,
        };
        store.finish_now("web", "d-1", &finished).unwrap();
        assert!(store.active_now("web").unwrap().is_none());
        let history = store.history_now("web").unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(
            history[0].finished().map(|f| f.0),
            Some(DeployResult::Promoted)
        );
    }
}
