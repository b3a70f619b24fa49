//! Durable deployment state: a journal per deployment, written before every action,
//! and a lock per service so two deploys of one service never interleave.
//!
//! Steps are absolute ("scale new side to 4", "new side gets 50%"), so replaying the
//! one step that was in flight when a run died is always safe: that is what lets the
//! next invocation resume or roll back a run killed at any point.

pub mod index;
pub mod journal;
pub mod local;
pub mod names;
pub mod signal;
mod store;

pub use index::{Latest, Page, Summary, journal_of};
pub use journal::{Action, DeployResult, Journal, Record};
pub use local::{LocalStore, LockGuard};
pub use signal::{Signal, SignalKind};
pub use store::{Fence, Lease, Store, unfenced};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StateError {
    #[error(
        "service `{service}` is already being deployed by {holder}\n  \
         fix: wait for it to finish; if that run died, the next `deployer run` or \
         `deployer rollback --service {service}` recovers it"
    )]
    Locked { service: String, holder: String },
    // Not `#[source]`: the message already says it, and a chain would say it twice.
    #[error("state at {path}: {error}")]
    Io {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    /// A state file that is not a regular file, or larger than any deployer writes.
    #[error(
        "state file {path} cannot be read: {reason}\n  \
         fix: deployer writes only regular files there; move it aside (and restore the \
         file from a backup if you have one)"
    )]
    Unreadable {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("state backend: {what}: {message}")]
    Remote { what: String, message: String },
    /// Another run wrote where this one meant to: it holds the service now, and this
    /// run must change nothing more.
    #[error(
        "{what}: another run holds the service now ({detail}); this run stops without changing anything more"
    )]
    Superseded { what: String, detail: String },
    #[error(
        "`{value}` is not a valid {what}: {rule}",
        rule = names::NAME_RULE
    )]
    BadName { what: &'static str, value: String },
    /// The history index (what bounds the reads of `history`, `status` and `rollback`)
    /// disagrees with itself or with a journal. It is derived data: deleted, it is built
    /// again from the journals.
    #[error(
        "the history index {location} is damaged: {reason}\n  \
         fix: delete {head}; the next `deployer run`, `deployer rollback` or \
         `deployer tidy` of the service builds the index again from its journals"
    )]
    Index {
        /// Where: the object read, or the service.
        location: String,
        reason: String,
        /// What to delete so that the index is built again: its head object.
        head: String,
    },
    #[error(
        "state file {path} is damaged at line {line}: {reason}\n  \
         fix: it was cut short or edited by hand; restore it from a backup, or move the \
         service's state directory aside to start its history afresh"
    )]
    Corrupt {
        path: std::path::PathBuf,
        line: usize,
        reason: String,
    },
}

impl StateError {
    /// This run no longer holds the service: it must stop, not roll back (the run that
    /// holds it decides what happens to traffic).
    pub fn lost_the_service(&self) -> bool {
        matches!(
            self,
            StateError::Locked { .. } | StateError::Superseded { .. }
        )
    }
}
