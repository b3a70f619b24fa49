//! The release journal: one document per release run, over its services' own journals.
//!
//! It is written before each change the release makes — before a wave begins (which
//! services start, and when), after each service ends, before the release rolls back —
//! and always whole (a local file renamed into place, an S3 object), by a run that holds
//! the locks of every service of the release. Each service's own journal says what
//! happened to that service; this document says which services belong to the run, so
//! the next command can take a killed release back as a whole.
//!
//! ```text
//! <state>/releases/<name>/active.json                       the unfinished release run
//! <state>/releases/<name>/history/<inverted time>-<id>.json  finished runs, newest first
//! ```
//!
//! History names sort newest first, so the last run is one listing of one key, however
//! many runs there were.

use std::collections::BTreeMap;

use deployer_engine::redact::printable;
use deployer_engine::state::StateError;
use deployer_engine::state::local::now_ms;
use serde::{Deserialize, Serialize};

use crate::cli::setup::Store;

/// How one service of a release ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceResult {
    Promoted,
    RolledBack,
    RollbackFailed,
    /// The release was live already: nothing changed.
    Unchanged,
    /// It never began: the run stopped before (its wave never came, or it could not start).
    NotStarted,
    /// Its deployment stopped with an error (the detail says which); whatever it changed
    /// is taken back with the release.
    Stopped,
}

/// One service of a release run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceEntry {
    pub wave: usize,
    pub strategy: String,
    /// The release it is deployed to (pinned, as its journal names it).
    pub release: String,
    /// When its deployment began: a deployment of the service begun at or after this is
    /// the release's (the release holds the service's lock all along).
    #[serde(default)]
    pub started_ms: Option<u64>,
    #[serde(default)]
    pub deployment: Option<String>,
    #[serde(default)]
    pub result: Option<ServiceResult>,
    #[serde(default)]
    pub detail: String,
    /// How taking it back as part of the release's rollback ended.
    #[serde(default)]
    pub undone: Option<ServiceResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RollingBack {
    pub reason: String,
    /// The service that failed, when one did (a release gate, a signal: none).
    #[serde(default)]
    pub service: Option<String>,
    pub at_ms: u64,
}

/// How a release run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseResult {
    Promoted,
    RolledBack,
    RollbackFailed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Finished {
    pub result: ReleaseResult,
    pub detail: String,
    pub at_ms: u64,
}

/// One release run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReleaseJournal {
    pub id: String,
    pub release: String,
    pub started_ms: u64,
    pub waves: Vec<Vec<String>>,
    pub services: BTreeMap<String, ServiceEntry>,
    /// The wave under way (or the last one begun).
    #[serde(default)]
    pub wave: Option<usize>,
    #[serde(default)]
    pub rolling_back: Option<RollingBack>,
    #[serde(default)]
    pub finished: Option<Finished>,
    /// Set on a run of `deployer rollback --release` that took this run back after it
    /// was promoted: a second one has nothing left to do.
    #[serde(default)]
    pub undone_by: Option<String>,
}

impl ReleaseJournal {
    /// The services of the run, last wave first (the order they are taken back in).
    pub fn services_backwards(&self) -> Vec<String> {
        self.waves.iter().rev().flatten().cloned().collect()
    }
}

const ACTIVE: &str = "active.json";

/// Where release journals live: beside the services' journals, in the same backend.
pub struct ReleaseStore<'a> {
    pub store: &'a Store,
    pub release: &'a str,
}

impl ReleaseStore<'_> {
    fn damaged(&self, name: &str, err: impl std::fmt::Display) -> StateError {
        StateError::Remote {
            what: format!("release `{}` document {name}", self.release),
            message: format!(
                "{}\n  fix: it was cut short or edited by hand; restore it from a backup, or move it \
                 aside (then take the release's services back one by one with `deployer rollback \
                 --service NAME` if its run was unfinished)",
                printable(&err.to_string())
            ),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<ReleaseJournal>, StateError> {
        let bytes = match self.store {
            Store::Local(s) => s.release_document(self.release, name)?,
            Store::Aws(s) => s.release_document(self.release, name).await?,
        };
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let journal: ReleaseJournal =
            serde_json::from_slice(&bytes).map_err(|e| self.damaged(name, e))?;
        if journal.release != self.release {
            return Err(self.damaged(
                name,
                format!("it is release `{}`'s", printable(&journal.release)),
            ));
        }
        Ok(Some(journal))
    }

    async fn put(&self, name: &str, journal: &ReleaseJournal) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(journal).expect("release journals serialize");
        match self.store {
            Store::Local(s) => s.put_release_document(self.release, name, &bytes),
            Store::Aws(s) => s.put_release_document(self.release, name, bytes).await,
        }
    }

    /// The unfinished run, if any.
    ///
    /// # Errors
    /// Backend errors, or a damaged document.
    pub async fn active(&self) -> Result<Option<ReleaseJournal>, StateError> {
        self.get(ACTIVE).await
    }

    /// Write the run's journal, before the change it announces.
    ///
    /// # Errors
    /// Backend errors: the caller must not make the change.
    pub async fn save(&self, journal: &ReleaseJournal) -> Result<(), StateError> {
        self.put(ACTIVE, journal).await
    }

    /// The run has ended: into the history (replacing its earlier entry, for a run taken
    /// back after it was promoted), then no longer active.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn finish(&self, journal: &ReleaseJournal) -> Result<(), StateError> {
        self.put(&history_name(journal), journal).await?;
        match self.store {
            Store::Local(s) => s.remove_release_document(self.release, ACTIVE),
            Store::Aws(s) => s.remove_release_document(self.release, ACTIVE).await,
        }
    }

    /// The newest `max` finished runs, newest first: one listing and `max` reads.
    ///
    /// # Errors
    /// Backend errors, or a damaged document.
    pub async fn recent(&self, max: usize) -> Result<Vec<ReleaseJournal>, StateError> {
        let names = match self.store {
            Store::Local(s) => s.first_release_documents(self.release, "history", max)?,
            Store::Aws(s) => {
                s.first_release_documents(
                    self.release,
                    "history",
                    i32::try_from(max).unwrap_or(i32::MAX),
                )
                .await?
            }
        };
        let mut runs = Vec::new();
        for name in names {
            if let Some(run) = self.get(&name).await? {
                runs.push(run);
            }
        }
        Ok(runs)
    }
}

/// A finished run's name in the history: newest first in key order.
fn history_name(journal: &ReleaseJournal) -> String {
    format!(
        "history/{:020}-{}.json",
        u64::MAX - journal.started_ms,
        journal.id
    )
}

/// Now, for the journal.
pub fn now() -> u64 {
    now_ms()
}
