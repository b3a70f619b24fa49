//! Blue-green and canary on targets that have no task sets: two long-lived units (two
//! Auto Scaling groups, two Kubernetes Deployments), each behind one of the traffic
//! table's target groups, that take turns holding the live release. The new release goes
//! to the idle one; traffic moves by ALB weights; the old one is scaled to zero at the
//! end and becomes the idle one of the next deployment.
//!
//! Like the ECS driver, sides are found by the release they run on every call, never by
//! remembered state, so a later invocation resuming or rolling back a killed run sees
//! the same sides.

use std::future::Future;
use std::time::Duration;

use crate::aws::alb::AlbRouter;
use deployer_contract::{RollingUpdate, Side};
use deployer_engine::driver::{Driver, DriverError, TargetGroups, wait_for_units};

/// One of the two units, as read now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    /// What it runs (`None`: nothing deployer can name, e.g. an unpinned template).
    pub release: Option<String>,
    /// Units asked for.
    pub desired: u32,
    /// Scaling bounds (min, max) where the target has them.
    pub bounds: Option<(u32, u32)>,
}

/// The two units of a target, and how to change one.
pub trait Slots: Send + Sync {
    /// For logs: "Auto Scaling groups web-blue / web-green".
    fn describe(&self) -> String;

    /// Both units, in the order of the traffic table's target groups.
    fn read(&self) -> impl Future<Output = Result<[Slot; 2], DriverError>> + Send;

    /// Whether two release names mean the same release (`web:3` and `3`).
    fn same_release(&self, a: &str, b: &str) -> bool;

    /// Make an idle unit run `release` (with no units yet).
    fn set_release(
        &self,
        slot: &Slot,
        release: &str,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Ask for `count` units.
    fn set_count(
        &self,
        slot: &Slot,
        count: u32,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// How many of the unit's units run its release and are healthy; `target_group` is
    /// the group its units sit behind.
    fn healthy(
        &self,
        slot: &Slot,
        target_group: &str,
    ) -> impl Future<Output = Result<u32, DriverError>> + Send;

    /// Check, before anything changes, that unit `i` sits behind `target_groups[i]`
    /// where the target can tell. Nothing by default.
    fn verify(
        &self,
        _target_groups: &[String; 2],
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        async { Ok(()) }
    }

    /// After promotion: the new unit takes over what belongs to the live one (scaling
    /// bounds). Nothing by default.
    fn adopt(
        &self,
        _new: &Slot,
        _stable: &Slot,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        async { Ok(()) }
    }
}

/// Index of the unit that runs `release`, skipping `except`; when both do, the one with
/// more units (the live one, right after a deployment of the same release).
fn find<S: Slots>(
    slots: &S,
    read: &[Slot; 2],
    release: &str,
    except: Option<usize>,
) -> Option<usize> {
    (0..2)
        .filter(|&i| Some(i) != except)
        .filter(|&i| {
            read[i]
                .release
                .as_deref()
                .is_some_and(|r| slots.same_release(r, release))
        })
        .max_by_key(|&i| (read[i].desired, std::cmp::Reverse(i)))
}

/// What is live on a two-unit target, and whether a new deployment may begin on it.
pub struct Live {
    pub release: String,
    pub slot: Slot,
    /// Why the idle unit cannot take a new release now (see `Shape::blocked`).
    pub blocked: Option<String>,
}

/// The release production runs now and the unit that runs it: that of the unit whose
/// target group the route weighs most, which must run something and have units.
///
/// # Errors
/// AWS errors; a live unit with no units or no nameable release.
pub async fn live<S: Slots>(
    slots: &S,
    router: &AlbRouter,
    target_groups: &[String; 2],
) -> Result<Live, DriverError> {
    slots.verify(target_groups).await?;
    let read = slots.read().await?;
    let weights = router.weights().await?;
    let share = |i: usize| crate::aws::alb::share_of(&weights, &target_groups[i]);
    let live = if share(1) > share(0) { 1 } else { 0 };
    let slot = read[live].clone();
    if share(live) == 0 {
        return Err(DriverError::Failed(format!(
            "the route sends traffic to neither of {}'s target groups; check traffic.target-groups",
            slots.describe()
        )));
    }
    let idle = &read[1 - live];
    let blocked = if share(1 - live) > 0 {
        Some(format!(
            "the route sends {}% of traffic to {}, which is not the live side; move it all to {} \
             (or run `deployer rollback`) before deploying",
            share(1 - live),
            idle.name,
            slot.name
        ))
    } else if idle.desired > 0 {
        Some(idle_busy(idle))
    } else {
        None
    };
    match slot.release.clone() {
        Some(release) if slot.desired > 0 => Ok(Live {
            release,
            slot,
            blocked,
        }),
        release => Err(DriverError::Failed(format!(
            "{} gets the traffic but runs {}; give it units and a pinned release first",
            slot.name,
            if release.is_some() {
                "no units"
            } else {
                "no release deployer can name"
            }
        ))),
    }
}

/// Why `idle` cannot take a new release: it still runs units (another deployment's new
/// side, or a leftover).
fn idle_busy(idle: &Slot) -> String {
    format!(
        "{} should be idle but has {} unit(s) of {}; scale it to 0 (or run `deployer rollback`) first",
        idle.name,
        idle.desired,
        idle.release.as_deref().unwrap_or("an unknown release")
    )
}

/// The driver of a two-unit target.
#[derive(Clone, Debug)]
pub struct SideBySide<S> {
    pub slots: S,
    pub router: AlbRouter,
    /// The target groups of the two units, in the same order.
    pub target_groups: [String; 2],
    pub stable_release: String,
    pub new_release: String,
    /// How long a unit may take to report its units healthy.
    pub health_timeout: Duration,
    pub poll: Duration,
}

impl<S: Slots> SideBySide<S> {
    fn release(&self, side: Side) -> &str {
        match side {
            Side::Stable => &self.stable_release,
            Side::New => &self.new_release,
        }
    }

    /// (stable, new) indexes among `read`.
    fn sides(&self, read: &[Slot; 2]) -> (Option<usize>, Option<usize>) {
        let stable = find(&self.slots, read, &self.stable_release, None);
        let new = find(&self.slots, read, &self.new_release, stable);
        (stable, new)
    }

    fn missing(&self, side: Side) -> DriverError {
        DriverError::Failed(format!(
            "neither of {} runs {}",
            self.slots.describe(),
            self.release(side)
        ))
    }

    /// The unit of `side` and its index (that of its target group), if it exists.
    /// Ask for `count` units on one side; the side's index and unit, or `None` when the
    /// new side was never prepared and is being scaled to nothing.
    async fn set_units(
        &self,
        side: Side,
        count: u32,
    ) -> Result<Option<(usize, Slot)>, DriverError> {
        let (index, slot) = match (self.slot(side).await?, side, count) {
            (Some(found), ..) => found,
            // A run killed before it prepared the new side leaves nothing to scale down.
            (None, Side::New, 0) => return Ok(None),
            (None, ..) => return Err(self.missing(side)),
        };
        if slot.desired != count {
            self.slots.set_count(&slot, count).await?;
        }
        Ok(Some((index, slot)))
    }

    async fn slot(&self, side: Side) -> Result<Option<(usize, Slot)>, DriverError> {
        let read = self.slots.read().await?;
        let (stable, new) = self.sides(&read);
        let index = match side {
            Side::Stable => stable,
            Side::New => new,
        };
        Ok(index.map(|i| (i, read[i].clone())))
    }

    /// (stable, new) target groups. With no new unit yet (a run killed early, being
    /// rolled back) the new group is the one stable does not use.
    async fn groups(&self) -> Result<(String, String), DriverError> {
        let read = self.slots.read().await?;
        let (stable, new) = self.sides(&read);
        let stable = stable.ok_or_else(|| self.missing(Side::Stable))?;
        let new = new.unwrap_or(1 - stable);
        Ok((
            self.target_groups[stable].clone(),
            self.target_groups[new].clone(),
        ))
    }
}

impl<S: Slots> Driver for SideBySide<S> {
    fn describe(&self) -> String {
        self.slots.describe()
    }

    async fn prepare(&self, release: &str) -> Result<(), DriverError> {
        let read = self.slots.read().await?;
        let (stable, new) = self.sides(&read);
        if new.is_some() {
            return Ok(()); // done by an earlier, interrupted run, or idle with it already
        }
        let stable = stable.ok_or_else(|| self.missing(Side::Stable))?;
        let idle = &read[1 - stable];
        // Never repurpose a unit that still has units: it may be serving.
        if idle.desired > 0 {
            return Err(DriverError::Failed(idle_busy(idle)));
        }
        self.slots.set_release(idle, release).await
    }

    async fn scale(&self, side: Side, count: u32) -> Result<(), DriverError> {
        let Some((index, slot)) = self.set_units(side, count).await? else {
            return Ok(());
        };
        if count == 0 {
            return Ok(());
        }
        let tg = &self.target_groups[index];
        wait_for_units(
            count,
            self.release(side),
            self.health_timeout,
            self.poll,
            || self.slots.healthy(&slot, tg),
        )
        .await
    }

    async fn request_units(&self, side: Side, count: u32) -> Result<(), DriverError> {
        self.set_units(side, count).await.map(drop)
    }

    async fn healthy_units(&self, side: Side) -> Result<Option<u32>, DriverError> {
        let (index, slot) = self.slot(side).await?.ok_or_else(|| self.missing(side))?;
        self.slots
            .healthy(&slot, &self.target_groups[index])
            .await
            .map(Some)
    }

    async fn shift_traffic(&self, new_percent: u8) -> Result<u8, DriverError> {
        let (stable_tg, new_tg) = self.groups().await?;
        self.router.shift(&stable_tg, &new_tg, new_percent).await
    }

    async fn target_groups(&self) -> Result<Option<TargetGroups>, DriverError> {
        let (stable, new) = self.groups().await?;
        Ok(Some(TargetGroups { stable, new }))
    }

    async fn route_test_traffic(&self) -> Result<(), DriverError> {
        let (_, new_tg) = self.groups().await?;
        self.router.route_test(&new_tg).await
    }

    async fn traffic_share(&self) -> Result<Option<u8>, DriverError> {
        let (_, new_tg) = self.groups().await?;
        self.router.share(&new_tg).await.map(Some)
    }

    async fn rolling_update(
        &self,
        _release: &str,
        _update: &RollingUpdate,
    ) -> Result<(), DriverError> {
        Err(DriverError::Failed(format!(
            "{} take turns side by side; use canary or blue-green, or configure a single unit for rolling",
            self.slots.describe()
        )))
    }

    async fn promote(&self) -> Result<(), DriverError> {
        let read = self.slots.read().await?;
        let (stable, new) = self.sides(&read);
        let new = new.ok_or_else(|| self.missing(Side::New))?;
        match stable {
            Some(stable) => self.slots.adopt(&read[new], &read[stable]).await,
            None => Ok(()),
        }
    }

    async fn finalize(&self) -> Result<(), DriverError> {
        match self.slot(Side::Stable).await? {
            Some((_, old)) if old.desired > 0 => self.slots.set_count(&old, 0).await,
            _ => Ok(()),
        }
    }

    async fn discard_new(&self) -> Result<(), DriverError> {
        // Testers back to stable, not to a group the next deployment fills.
        let (stable_tg, new_tg) = self.groups().await?;
        self.router.restore_test(&stable_tg, &new_tg).await?;
        match self.slot(Side::New).await? {
            Some((_, new)) if new.desired > 0 => self.slots.set_count(&new, 0).await,
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named;
    impl Slots for Named {
        fn describe(&self) -> String {
            "a / b".into()
        }
        async fn read(&self) -> Result<[Slot; 2], DriverError> {
            unreachable!()
        }
        fn same_release(&self, a: &str, b: &str) -> bool {
            a == b
        }
        async fn set_release(&self, _: &Slot, _: &str) -> Result<(), DriverError> {
            unreachable!()
        }
        async fn set_count(&self, _: &Slot, _: u32) -> Result<(), DriverError> {
            unreachable!()
        }
        async fn healthy(&self, _: &Slot, _: &str) -> Result<u32, DriverError> {
            unreachable!()
        }
    }

    fn slot(name: &str, release: &str, desired: u32) -> Slot {
        Slot {
            name: name.into(),
            release: Some(release.into()),
            desired,
            bounds: None,
        }
    }

    #[test]
    fn the_live_unit_wins_when_both_run_the_same_release() {
        let read = [slot("a", "v1", 0), slot("b", "v1", 3)];
        assert_eq!(find(&Named, &read, "v1", None), Some(1));
        assert_eq!(find(&Named, &read, "v1", Some(1)), Some(0));
        assert_eq!(find(&Named, &read, "v2", None), None);
        let read = [slot("a", "v1", 2), slot("b", "v2", 0)];
        assert_eq!(find(&Named, &read, "v2", Some(0)), Some(1));
    }
}
