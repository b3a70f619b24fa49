//! What a deployment target must do. A target (ECS, EKS, Auto Scaling) is a driver
//! behind this one interface, not a second orchestrator: the engine owns ordering,
//! journaling, gates, safety rules and rollback.
//!
//! Every operation is absolute and idempotent ("new side at 4 units", "new side gets
//! 50%"), so the engine may repeat the one that was in flight when a run died.

use std::future::Future;

use thiserror::Error;

use crate::plugin::bindings::types::{RollingUpdate, Side};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DriverError {
    /// Worth retrying: throttling, 5xx, timeouts, eventual consistency.
    #[error("{0} (transient)")]
    Transient(String),
    /// Retrying will not help: missing resources, bad permissions, failed rollout.
    #[error("{0}")]
    Failed(String),
}

/// A deployment target.
pub trait Driver: Send + Sync {
    /// What is being deployed, for logs ("ECS service prod/web").
    fn describe(&self) -> String;

    /// Create the new side for `release`, with no units and no traffic.
    fn prepare(&self, release: &str) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Set one side to `count` units and wait until that many are healthy.
    fn scale(&self, side: Side, count: u32)
    -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Route `new_percent` of production traffic to the new side and return the share
    /// read back from the load balancer.
    fn shift_traffic(
        &self,
        new_percent: u8,
    ) -> impl Future<Output = Result<u8, DriverError>> + Send;

    /// Route the test listener to the new side.
    fn route_test_traffic(&self) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Replace units in place with `release` and wait for the update to finish.
    fn rolling_update(
        &self,
        release: &str,
        update: &RollingUpdate,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Make the new side the primary one (the old side stays until `finalize`).
    fn promote(&self) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// After a successful rollout: remove the old side.
    fn finalize(&self) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// After a rollback: remove the new side.
    fn discard_new(&self) -> impl Future<Output = Result<(), DriverError>> + Send;
}
