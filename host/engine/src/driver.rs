//! What a deployment target must do. A target (ECS, EKS, Auto Scaling) is a driver
//! behind this one interface, not a second orchestrator: the engine owns ordering,
//! journaling, gates, safety rules and rollback.
//!
//! Every operation is absolute and idempotent ("new side at 4 units", "new side gets
//! 50%"), so the engine may repeat the one that was in flight when a run died.

use std::future::Future;
use std::time::Duration;

use thiserror::Error;

use deployer_contract::{RollingUpdate, Side};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DriverError {
    /// Worth retrying: throttling, 5xx, timeouts, eventual consistency.
    #[error("{0} (transient)")]
    Transient(String),
    /// Retrying will not help: missing resources, bad permissions, failed rollout.
    #[error("{0}")]
    Failed(String),
}

/// The target groups (ARNs) the two sides of a side-by-side deployment sit behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetGroups {
    pub stable: String,
    pub new: String,
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

    /// Ask for `count` units on one side without waiting for them (rollback moves
    /// traffic back as they come up). Targets that cannot tell how many are healthy
    /// wait here, as [`Driver::scale`] does.
    fn request_units(
        &self,
        side: Side,
        count: u32,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        self.scale(side, count)
    }

    /// How many of one side's units are healthy now; `None` where the target cannot
    /// tell (then [`Driver::request_units`] has waited for all of them).
    fn healthy_units(
        &self,
        side: Side,
    ) -> impl Future<Output = Result<Option<u32>, DriverError>> + Send {
        let _ = side;
        async { Ok(None) }
    }

    /// Route `new_percent` of production traffic to the new side and return the share
    /// read back from the load balancer.
    fn shift_traffic(
        &self,
        new_percent: u8,
    ) -> impl Future<Output = Result<u8, DriverError>> + Send;

    /// The share of production traffic on the new side as the load balancer reads now;
    /// `None` where the target has no weights to read (in-place targets).
    fn traffic_share(&self) -> impl Future<Output = Result<Option<u8>, DriverError>> + Send {
        async { Ok(None) }
    }

    /// The target groups of the stable and the new side this run, where the target has
    /// two (`None` for in-place targets). Gates resolve their side placeholders with it
    /// (`{new-target-group}`), so it must name the same groups every time it is asked
    /// during one deployment, a resumed or rolling-back run included: before the new
    /// side exists, its group is the one prepare will give it.
    fn target_groups(
        &self,
    ) -> impl Future<Output = Result<Option<TargetGroups>, DriverError>> + Send {
        async { Ok(None) }
    }

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

    /// Stop the target's own scaling (Application Auto Scaling, an Auto Scaling group's
    /// scaling processes) for the deployment, so an autoscaler does not resize a side
    /// under the rollout. `saved` is what [`Shape::scaling`] read before the deployment
    /// began, journaled in its `started` record. Idempotent. Nothing by default.
    fn suspend_scaling(
        &self,
        saved: &serde_json::Value,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        let _ = saved;
        async { Ok(()) }
    }

    /// Put the target's scaling back as `saved` recorded it, when the deployment ends
    /// (promoted, rolled back, or recovered after a kill). Idempotent. Nothing by default.
    fn restore_scaling(
        &self,
        saved: &serde_json::Value,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        let _ = saved;
        async { Ok(()) }
    }
}

/// A target updated in place — one unit, no second side (ECS deployment controller, one
/// Auto Scaling group, one Deployment): it only does rolling updates.
pub trait InPlace: Send + Sync {
    /// What is being deployed, for logs.
    fn describe(&self) -> String;

    /// Why side-by-side steps cannot run here (`what` is the step), and what to do.
    fn not_side_by_side(&self, what: &str) -> DriverError;

    /// Replace units in place with `release` and wait for the update to finish.
    fn rolling_update(
        &self,
        release: &str,
        update: &RollingUpdate,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;
}

/// An [`InPlace`] target as a [`Driver`]: nothing to create, promote or remove, and
/// side-by-side steps refused.
#[derive(Clone, Debug)]
pub struct InPlaceDriver<T>(pub T);

impl<T: InPlace> Driver for InPlaceDriver<T> {
    fn describe(&self) -> String {
        self.0.describe()
    }

    async fn prepare(&self, _release: &str) -> Result<(), DriverError> {
        Ok(()) // nothing to create: the update replaces units in place
    }

    async fn scale(&self, _side: Side, _count: u32) -> Result<(), DriverError> {
        Err(self.0.not_side_by_side("scale a second side"))
    }

    async fn shift_traffic(&self, new_percent: u8) -> Result<u8, DriverError> {
        // Rollback asks for 0% on the new side; in place there is no new side.
        if new_percent == 0 {
            Ok(0)
        } else {
            Err(self.0.not_side_by_side("shift traffic"))
        }
    }

    async fn route_test_traffic(&self) -> Result<(), DriverError> {
        Err(self.0.not_side_by_side("route test traffic"))
    }

    async fn rolling_update(
        &self,
        release: &str,
        update: &RollingUpdate,
    ) -> Result<(), DriverError> {
        self.0.rolling_update(release, update).await
    }

    async fn promote(&self) -> Result<(), DriverError> {
        Ok(()) // a finished update already is the target's release
    }

    async fn finalize(&self) -> Result<(), DriverError> {
        Ok(())
    }

    async fn discard_new(&self) -> Result<(), DriverError> {
        Ok(())
    }
}

/// Waits between polls of a target: the first soon, since units are often quick, then
/// doubling up to `max` to spare the account's shared request budget.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    wait: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        let first = Duration::from_millis(50).min(max);
        Backoff { wait: first, max }
    }

    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(self.max);
    }

    /// Something moved: check soon again.
    pub fn reset(&mut self) {
        *self = Backoff::new(self.max);
    }
}

/// Poll `healthy` until it counts at least `count` units; after `timeout`, fail saying
/// how many of `what` became healthy.
///
/// # Errors
/// Errors of `healthy`; too few healthy units in time.
pub async fn wait_for_units<F, Fut>(
    count: u32,
    what: &str,
    timeout: Duration,
    poll: Duration,
    healthy: F,
) -> Result<(), DriverError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<u32, DriverError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut backoff = Backoff::new(poll);
    loop {
        let healthy = healthy().await?;
        if healthy >= count {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DriverError::Failed(format!(
                "only {healthy} of {count} {what} unit(s) became healthy within {timeout:?}"
            )));
        }
        backoff.sleep().await;
    }
}

/// What a target is right now, as read before changing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The release serving production.
    pub primary_release: String,
    /// Two sides behind the load balancer (canary, blue-green), or one updated in place.
    pub side_by_side: bool,
    /// Units the live side runs now (what an autoscaler set), where the target can
    /// tell: a service configured without a desired count is sized from it.
    pub live_units: Option<u32>,
    /// The target's own scaling as it is now (which scalable targets and processes are
    /// suspended), for [`Driver::suspend_scaling`] and [`Driver::restore_scaling`];
    /// `None` where the target has nothing deployer suspends.
    pub scaling: Option<serde_json::Value>,
    /// Why a new deployment cannot begin on the target as it is, though an earlier one
    /// can still be recovered or rolled back: the idle side still runs units, or the
    /// route sends traffic to it. Checked under the lock, after recovery, before anything
    /// is journaled, so such a run changes nothing.
    pub blocked: Option<String>,
    /// The target serves on demand without units (Lambda: units are provisioned
    /// concurrency, which may be none), so a live side at 0 units is a size to deploy
    /// at, not a sign that the service's size is unknown.
    pub serves_on_demand: bool,
}

/// A deployment target as the engine sees it before and between deployments: read what
/// runs, and make a [`Driver`] between two releases.
pub trait Target: Send + Sync {
    type Driver: Driver;

    /// Read what the target runs. Only reads.
    fn inspect(&self) -> impl Future<Output = Result<Shape, DriverError>> + Send;

    /// The driver that moves the target from `stable` to `new`, side by side or in
    /// place, at `desired` units at full size (as journaled when the deployment began).
    ///
    /// # Errors
    /// The target cannot be driven that way (what is missing, and how to fix it).
    fn driver(
        &self,
        side_by_side: bool,
        stable: &str,
        new: &str,
        desired: u32,
    ) -> Result<Self::Driver, DriverError>;

    /// Whether `a` and `b` name the same release (`web:2` and its ARN).
    fn same_release(&self, a: &str, b: &str) -> bool;
}
