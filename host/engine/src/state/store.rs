//! The interface of a state backend: local files ([`LocalStore`](super::LocalStore), the
//! default, here) or S3 + DynamoDB (in `deployer-targets`). The engine journals and
//! locks through this trait only.

use std::future::Future;
use std::sync::Arc;

use super::{Journal, Latest, Page, Record, Signal, StateError};

/// Whether this run still holds the service's lock: cheap (no I/O), called before
/// every journal write and every change to the target. An error (a lease that expired
/// or was taken over) means the run must change nothing more.
pub type Fence = Arc<dyn Fn() -> Result<(), StateError> + Send + Sync>;

/// A held service lock. Release it explicitly; dropping it also frees a local lock,
/// while a remote lease then expires on its own.
pub trait Lease: Send {
    fn release(self) -> impl Future<Output = ()> + Send;

    /// The check that this lock is still held. A lock that cannot be lost while the
    /// process lives (an OS file lock) always passes ([`unfenced`]). No default: a
    /// wrapper that did not pass its inner lock's fence on would silently unfence every
    /// run (the binary's backend wrapper once did, so a paused `aws` run acted after a
    /// takeover).
    fn fence(&self) -> Fence;
}

/// The fence of a lock that cannot be lost, or of no lock: always passes.
pub fn unfenced() -> Fence {
    Arc::new(|| Ok(()))
}

/// Where journals, history and locks live.
pub trait Store: Send + Sync {
    type Lock: Lease;

    /// Take the service's lock for `deployment`.
    ///
    /// # Errors
    /// [`StateError::Locked`] while a live run holds the lock; backend errors.
    fn lock(
        &self,
        service: &str,
        deployment: &str,
    ) -> impl Future<Output = Result<Self::Lock, StateError>> + Send;

    /// Start the journal of deployment `id` with its `Started` record and mark it active.
    ///
    /// # Errors
    /// Backend errors.
    fn begin(
        &self,
        service: &str,
        id: &str,
        started: &Record,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Append record number `index` of a journal, durably, before acting on it.
    ///
    /// # Errors
    /// Backend errors: the caller must not take the action the record announces.
    fn append(
        &self,
        service: &str,
        id: &str,
        index: usize,
        record: &Record,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Append the `Finished` record (number `index`), add the deployment to the history
    /// and clear the active mark.
    ///
    /// # Errors
    /// Backend errors.
    fn finish(
        &self,
        service: &str,
        id: &str,
        index: usize,
        finished: &Record,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// The service's unfinished deployment, if any.
    ///
    /// # Errors
    /// Backend errors or a damaged journal.
    fn active(
        &self,
        service: &str,
    ) -> impl Future<Output = Result<Option<Journal>, StateError>> + Send;

    /// One deployment's journal.
    ///
    /// # Errors
    /// Backend errors or a damaged journal.
    fn read(
        &self,
        service: &str,
        id: &str,
    ) -> impl Future<Output = Result<Journal, StateError>> + Send;

    /// Bring the service's state up to this version's layout, holding its lock (called
    /// right after [`Store::lock`]): the S3 backend builds its history index the first
    /// time, from state an earlier version wrote, and says so. Nothing to do for a store
    /// whose layout never changed.
    ///
    /// # Errors
    /// Backend errors or a damaged journal.
    fn prepare(&self, service: &str) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Finished deployments, newest first: at most `limit` of those numbered below
    /// `before` (from the newest when `None`), and whether older ones remain. Reads a
    /// bounded amount however long the history is (where the backend can: the local
    /// files' history list is one file).
    ///
    /// # Errors
    /// Backend errors, a damaged journal or index.
    fn recent(
        &self,
        service: &str,
        limit: usize,
        before: Option<u64>,
    ) -> impl Future<Output = Result<Page, StateError>> + Send;

    /// The newest finished deployment and the newest promoted one, in a bounded number
    /// of reads: what `status` shows as live and what `rollback` starts from. Their
    /// journals are a [`journal_of`](super::journal_of) away.
    ///
    /// # Errors
    /// Backend errors, a damaged journal or index.
    fn latest(&self, service: &str) -> impl Future<Output = Result<Latest, StateError>> + Send;

    /// Leave `signal` for the service's running deployment, replacing an earlier signal
    /// of the same kind. Needs no lock: the run holds it.
    ///
    /// # Errors
    /// Backend errors.
    fn send(
        &self,
        service: &str,
        signal: &Signal,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// The signals left for the service (at most one per kind), for any deployment:
    /// the reader checks whom each is meant for. A slot that cannot be read or holds
    /// anything but a signal is passed over, so it cannot hide the other's.
    ///
    /// # Errors
    /// Backend errors that affect every slot.
    fn signals(
        &self,
        service: &str,
    ) -> impl Future<Output = Result<Vec<Signal>, StateError>> + Send;
}
