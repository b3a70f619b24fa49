//! Durable deployment state: a journal per deployment, written before every action,
//! and a lock per service so two deploys of one service never interleave.
//!
//! Steps are absolute ("scale new side to 4", "new side gets 50%"), so replaying the
//! one step that was in flight when a run died is always safe: that is what lets the
//! next invocation resume or roll back a run killed at any point.

pub mod journal;
pub mod local;
mod store;

pub use journal::{Action, DeployResult, Journal, Record};
pub use local::{LocalStore, LockGuard};
pub use store::{Lease, Store};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StateError {
    #[error(
        "service `{service}` is already being deployed by {holder}\n  \
         fix: wait for it to finish; if that run died, the next `deployer run` or \
         `deployer rollback --service {service}` recovers it"
    )]
    Locked { service: String, holder: String },
    #[error("state at {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("state backend: {what}: {message}")]
    Remote { what: String, message: String },
    #[error("journal {path} is damaged at line {line}: {reason}")]
    Corrupt {
        path: std::path::PathBuf,
        line: usize,
        reason: String,
    },
}
