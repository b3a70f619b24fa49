//! The state backend a deployment uses: local files (the default) or S3 + DynamoDB.

use super::aws::{AwsLock, AwsStore};
use super::local::{LocalStore, LockGuard};
use super::{Journal, Record, StateError};

pub enum Store {
    Local(LocalStore),
    Aws(AwsStore),
}

/// A held service lock. Release it explicitly; dropping it also frees a local lock,
/// while an AWS lease then expires on its own.
pub enum StoreLock {
    Local(LockGuard),
    Aws(AwsLock),
}

impl StoreLock {
    pub async fn release(self) {
        match self {
            StoreLock::Local(guard) => drop(guard),
            StoreLock::Aws(lock) => lock.release().await,
        }
    }
}

impl Store {
    /// # Errors
    /// [`StateError::Locked`] while a live run holds the lock; backend errors.
    pub async fn lock(&self, service: &str, deployment: &str) -> Result<StoreLock, StateError> {
        match self {
            Store::Local(s) => s.lock(service, deployment).map(StoreLock::Local),
            Store::Aws(s) => s.lock(service, deployment).await.map(StoreLock::Aws),
        }
    }

    /// # Errors
    /// Backend errors.
    pub async fn begin(&self, service: &str, id: &str, started: &Record) -> Result<(), StateError> {
        match self {
            Store::Local(s) => s.begin(service, id, started),
            Store::Aws(s) => s.begin(service, id, started).await,
        }
    }

    /// Append record number `index` of a journal, durably, before acting on it.
    ///
    /// # Errors
    /// Backend errors: the caller must not take the action the record announces.
    pub async fn append(
        &self,
        service: &str,
        id: &str,
        index: usize,
        record: &Record,
    ) -> Result<(), StateError> {
        match self {
            Store::Local(s) => s.append(service, id, record),
            Store::Aws(s) => s.append(service, id, index, record).await,
        }
    }

    /// # Errors
    /// Backend errors.
    pub async fn finish(
        &self,
        service: &str,
        id: &str,
        index: usize,
        finished: &Record,
    ) -> Result<(), StateError> {
        match self {
            Store::Local(s) => s.finish(service, id, finished),
            Store::Aws(s) => s.finish(service, id, index, finished).await,
        }
    }

    /// # Errors
    /// Backend errors or a damaged journal.
    pub async fn active(&self, service: &str) -> Result<Option<Journal>, StateError> {
        match self {
            Store::Local(s) => s.active(service),
            Store::Aws(s) => s.active(service).await,
        }
    }

    /// # Errors
    /// Backend errors or a damaged journal.
    pub async fn read(&self, service: &str, id: &str) -> Result<Journal, StateError> {
        match self {
            Store::Local(s) => s.read(service, id),
            Store::Aws(s) => s.read(service, id).await,
        }
    }

    /// # Errors
    /// Backend errors or a damaged journal.
    pub async fn history(&self, service: &str) -> Result<Vec<Journal>, StateError> {
        match self {
            Store::Local(s) => s.history(service),
            Store::Aws(s) => s.history(service).await,
        }
    }
}
