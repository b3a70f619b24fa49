//! EC2 Auto Scaling groups behind an ALB. A release is a launch template version,
//! written `3` or `web:3` (template `web`, version 3).
//!
//! Side by side (blue-green, canary): two groups take turns, see [`super::pair`].
//! In place (rolling): the group's template version changes and its instances are
//! replaced — by an instance refresh where the API has one, otherwise by deployer itself,
//! in batches that keep the minimum-healthy bound (new instances first when the maximum
//! allows a surge).

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, InstanceRefreshStatus, LaunchTemplateSpecification, LifecycleState,
    RefreshPreferences,
};

use super::alb::healthy_targets;
use super::{Clients, classify};
use crate::side_by_side::{Slot, Slots};
use deployer_contract::RollingUpdate;
use deployer_engine::driver::{Backoff, DriverError, InPlace};

/// The version part of a release: `web:3` → `3`.
fn version(release: &str) -> &str {
    release.rsplit(':').next().unwrap_or(release)
}

/// `3` and `web:3` name the same release; `web:3` and `api:3` do not.
pub fn same_release(a: &str, b: &str) -> bool {
    let template = |r: &str| r.rsplit_once(':').map(|(t, _)| t.to_string());
    version(a) == version(b)
        && match (template(a), template(b)) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
}

/// A group's release, `template:version`, when the version is pinned.
fn release_of(spec: Option<&LaunchTemplateSpecification>) -> Option<String> {
    let spec = spec?;
    let version = spec.version().unwrap_or("$Default");
    if !version.chars().all(|c| c.is_ascii_digit()) {
        return None; // $Latest / $Default: not a release anyone can name or return to
    }
    let template = spec
        .launch_template_name()
        .or(spec.launch_template_id())
        .unwrap_or("template");
    Some(format!("{template}:{version}"))
}

/// The launch template spec for `release`, on the template `current` uses unless the
/// release names one.
fn spec_for(
    release: &str,
    current: Option<&LaunchTemplateSpecification>,
) -> Result<LaunchTemplateSpecification, DriverError> {
    let version = version(release);
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit()) {
        return Err(DriverError::Failed(format!(
            "release `{release}` is not a launch template version; use a version number (`3`) or `TEMPLATE:3`"
        )));
    }
    let builder = LaunchTemplateSpecification::builder().version(version);
    Ok(match release.rsplit_once(':') {
        Some((template, _)) if template.starts_with("lt-") => {
            builder.launch_template_id(template).build()
        }
        Some((template, _)) => builder.launch_template_name(template).build(),
        None => {
            let current = current.ok_or_else(|| {
                DriverError::Failed(format!(
                    "release `{release}` names no launch template and the group has none; use `TEMPLATE:{version}`"
                ))
            })?;
            match current.launch_template_id() {
                Some(id) => builder.launch_template_id(id).build(),
                None => builder
                    .set_launch_template_name(current.launch_template_name().map(str::to_string))
                    .build(),
            }
        }
    })
}

fn units(n: Option<i32>) -> u32 {
    n.unwrap_or(0).max(0) as u32
}

/// Read groups by name, in the order asked.
///
/// # Errors
/// AWS errors; a group that does not exist.
async fn describe(clients: &Clients, names: &[&str]) -> Result<Vec<AutoScalingGroup>, DriverError> {
    let out = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(names.iter().map(|n| n.to_string()).collect()))
        .send()
        .await
        .map_err(|e| classify("describing Auto Scaling groups", e))?;
    names
        .iter()
        .map(|name| {
            out.auto_scaling_groups()
                .iter()
                .find(|g| g.auto_scaling_group_name() == Some(name))
                .cloned()
                .ok_or_else(|| DriverError::Failed(format!("Auto Scaling group {name} not found")))
        })
        .collect()
}

/// Point `group` at the launch template version of `release`.
async fn set_template(
    clients: &Clients,
    group: &AutoScalingGroup,
    release: &str,
) -> Result<(), DriverError> {
    clients
        .autoscaling
        .update_auto_scaling_group()
        .set_auto_scaling_group_name(group.auto_scaling_group_name().map(str::to_string))
        .launch_template(spec_for(release, group.launch_template())?)
        .send()
        .await
        .map_err(|e| classify("setting the group's launch template version", e))?;
    Ok(())
}

/// Ask `group` for `desired` instances, widening its (min, max) bounds only as far as
/// `desired` needs.
async fn resize(
    clients: &Clients,
    group: &str,
    desired: u32,
    (min, max): (u32, u32),
) -> Result<(), DriverError> {
    clients
        .autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(group)
        .min_size(min.min(desired) as i32)
        .max_size(max.max(desired) as i32)
        .desired_capacity(desired as i32)
        .send()
        .await
        .map_err(|e| classify("setting the group's desired capacity", e))?;
    Ok(())
}

/// Healthy targets of `target_group` among `instances`.
async fn healthy_in(
    clients: &Clients,
    target_group: &str,
    instances: &HashSet<String>,
) -> Result<u32, DriverError> {
    Ok(healthy_targets(&clients.elb, target_group)
        .await?
        .iter()
        .filter(|id| instances.contains(*id))
        .count() as u32)
}

/// In-service instances of `group` launched from `release`.
fn in_service(group: &AutoScalingGroup, release: &str) -> HashSet<String> {
    group
        .instances()
        .iter()
        .filter(|i| {
            i.lifecycle_state() == Some(&LifecycleState::InService)
                && i.health_status() == Some("Healthy")
                && release_of(i.launch_template()).is_some_and(|r| same_release(&r, release))
        })
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

/// Instances of `group` on `release` that serve: in service, and healthy in every target
/// group the group is attached to.
async fn serving(
    clients: &Clients,
    group: &AutoScalingGroup,
    release: &str,
) -> Result<u32, DriverError> {
    let ids = in_service(group, release);
    let mut serving = ids.len() as u32;
    for tg in group.target_group_arns() {
        serving = serving.min(healthy_in(clients, tg, &ids).await?);
    }
    Ok(serving)
}

/// The two groups of a side-by-side service.
#[derive(Clone, Debug)]
pub struct AsgGroups {
    pub clients: Clients,
    pub names: [String; 2],
}

impl Slots for AsgGroups {
    fn describe(&self) -> String {
        format!("Auto Scaling groups {} / {}", self.names[0], self.names[1])
    }

    async fn read(&self) -> Result<[Slot; 2], DriverError> {
        let groups = describe(&self.clients, &[&self.names[0], &self.names[1]]).await?;
        let slot = |g: &AutoScalingGroup| Slot {
            name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
            release: release_of(g.launch_template()),
            desired: units(g.desired_capacity()),
            bounds: Some((units(g.min_size()), units(g.max_size()))),
        };
        Ok([slot(&groups[0]), slot(&groups[1])])
    }

    fn same_release(&self, a: &str, b: &str) -> bool {
        same_release(a, b)
    }

    async fn set_release(&self, slot: &Slot, release: &str) -> Result<(), DriverError> {
        let group = &describe(&self.clients, &[&slot.name]).await?[0];
        set_template(&self.clients, group, release).await
    }

    async fn set_count(&self, slot: &Slot, count: u32) -> Result<(), DriverError> {
        resize(
            &self.clients,
            &slot.name,
            count,
            slot.bounds.unwrap_or((0, count)),
        )
        .await
    }

    async fn healthy(&self, slot: &Slot, target_group: &str) -> Result<u32, DriverError> {
        let group = &describe(&self.clients, &[&slot.name]).await?[0];
        let Some(release) = &slot.release else {
            return Ok(0);
        };
        if !group.target_group_arns().iter().any(|t| t == target_group) {
            return Err(DriverError::Failed(format!(
                "group {} is not attached to target group {target_group}; attach it (groups and traffic.target-groups pair up in order)",
                slot.name
            )));
        }
        healthy_in(&self.clients, target_group, &in_service(group, release)).await
    }

    async fn verify(&self, target_groups: &[String; 2]) -> Result<(), DriverError> {
        let groups = describe(&self.clients, &[&self.names[0], &self.names[1]]).await?;
        for (group, tg) in groups.iter().zip(target_groups) {
            let attached = group.target_group_arns();
            if !attached.iter().any(|a| a == tg) {
                return Err(DriverError::Failed(format!(
                    "group {} is not attached to target group {tg} (groups and traffic.target-groups pair up in order); \
                     it is attached to: {}",
                    group.auto_scaling_group_name().unwrap_or_default(),
                    if attached.is_empty() {
                        "none".to_string()
                    } else {
                        attached.join(", ")
                    }
                )));
            }
        }
        Ok(())
    }

    async fn adopt(&self, new: &Slot, stable: &Slot) -> Result<(), DriverError> {
        // The live group keeps the scaling bounds the team set on it.
        let (Some((min, max)), Some(_)) = (stable.bounds, new.bounds) else {
            return Ok(());
        };
        self.clients
            .autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(&new.name)
            .min_size(min.min(new.desired) as i32)
            .max_size(max.max(new.desired) as i32)
            .send()
            .await
            .map_err(|e| classify("copying scaling bounds to the new group", e))?;
        Ok(())
    }
}

/// One group updated in place.
#[derive(Clone, Debug)]
pub struct AsgRolling {
    pub clients: Clients,
    pub group: String,
    /// The group's size at rest (a killed run may have left it surged).
    pub desired: u32,
    /// How long the whole replacement may take.
    pub progress_deadline: Duration,
    pub poll: Duration,
}

/// The release an in-place group runs now and its desired capacity.
///
/// # Errors
/// AWS errors; a group without a pinned launch template version.
pub async fn current(clients: &Clients, group: &str) -> Result<(String, u32), DriverError> {
    let g = &describe(clients, &[group]).await?[0];
    let desired = units(g.desired_capacity());
    release_of(g.launch_template()).map(|r| (r, desired)).ok_or_else(|| {
        DriverError::Failed(format!(
            "group {group} has no pinned launch template version ($Latest, $Default or a launch configuration); \
             pin one (update-auto-scaling-group --launch-template LaunchTemplateName=NAME,Version=N) so releases can be told apart"
        ))
    })
}

/// Whether an error says the endpoint has no instance refresh (moto answers HTTP 500
/// with an HTML page that does not parse).
fn refresh_unsupported<E: ProvideErrorMetadata, R>(
    err: &aws_sdk_autoscaling::error::SdkError<E, R>,
) -> bool {
    use aws_sdk_autoscaling::error::SdkError;
    match err {
        SdkError::ResponseError(_) => true,
        SdkError::ServiceError(e) => matches!(
            e.err().code(),
            None | Some("InvalidAction" | "UnknownOperationException" | "NotImplemented")
        ),
        _ => false,
    }
}

impl AsgRolling {
    async fn group(&self) -> Result<AutoScalingGroup, DriverError> {
        Ok(describe(&self.clients, &[&self.group]).await?.remove(0))
    }

    fn deadline_passed(&self, started: tokio::time::Instant, what: &str) -> Option<DriverError> {
        (started.elapsed() >= self.progress_deadline).then(|| {
            DriverError::Failed(format!(
                "{what} in {} did not finish within {:?}",
                self.group, self.progress_deadline
            ))
        })
    }

    /// Start an instance refresh (or find the one a killed run started).
    /// `Ok(None)`: this endpoint has no instance refresh.
    async fn start_refresh(&self, update: &RollingUpdate) -> Result<Option<String>, DriverError> {
        let min = update.min_healthy_percent.min(100) as i32;
        // AWS wants max in 100..=200 and max - min <= 100.
        let max = (update.max_percent as i32).clamp(100, 200).min(min + 100);
        let started = self
            .clients
            .autoscaling
            .start_instance_refresh()
            .auto_scaling_group_name(&self.group)
            .preferences(
                RefreshPreferences::builder()
                    .min_healthy_percentage(min)
                    .max_healthy_percentage(max)
                    .skip_matching(true)
                    .build(),
            )
            .send()
            .await;
        match started {
            Ok(out) => Ok(out.instance_refresh_id().map(str::to_string)),
            Err(e) if e.code() == Some("InstanceRefreshInProgress") => {
                let out = self
                    .clients
                    .autoscaling
                    .describe_instance_refreshes()
                    .auto_scaling_group_name(&self.group)
                    .send()
                    .await
                    .map_err(|e| classify("reading instance refreshes", e))?;
                Ok(out
                    .instance_refreshes()
                    .iter()
                    .find(|r| {
                        matches!(
                            r.status(),
                            Some(
                                InstanceRefreshStatus::Pending | InstanceRefreshStatus::InProgress
                            )
                        )
                    })
                    .and_then(|r| r.instance_refresh_id())
                    .map(str::to_string))
            }
            Err(e) if refresh_unsupported(&e) => Ok(None),
            Err(e) => Err(classify("starting an instance refresh", e)),
        }
    }

    async fn watch_refresh(&self, id: &str) -> Result<(), DriverError> {
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(self.poll);
        loop {
            let out = self
                .clients
                .autoscaling
                .describe_instance_refreshes()
                .auto_scaling_group_name(&self.group)
                .instance_refresh_ids(id)
                .send()
                .await
                .map_err(|e| classify("reading the instance refresh", e))?;
            let refresh = out.instance_refreshes().first();
            match refresh.and_then(|r| r.status()) {
                Some(InstanceRefreshStatus::Successful) => return Ok(()),
                Some(
                    status @ (InstanceRefreshStatus::Failed
                    | InstanceRefreshStatus::Cancelled
                    | InstanceRefreshStatus::RollbackSuccessful
                    | InstanceRefreshStatus::RollbackFailed),
                ) => {
                    return Err(DriverError::Failed(format!(
                        "instance refresh of {} ended {}: {}",
                        self.group,
                        status.as_str(),
                        refresh
                            .and_then(|r| r.status_reason())
                            .unwrap_or("no reason given")
                    )));
                }
                _ => {}
            }
            if let Some(err) = self.deadline_passed(started, "the instance refresh") {
                let _ = self
                    .clients
                    .autoscaling
                    .cancel_instance_refresh()
                    .auto_scaling_group_name(&self.group)
                    .send()
                    .await;
                return Err(err);
            }
            backoff.sleep().await;
        }
    }

    /// What an instance refresh does, done by deployer: replace instances not on
    /// `release` in batches, never letting serving instances drop below the minimum.
    /// Each round reads the group afresh, so a resumed run carries on where it was.
    async fn replace_in_batches(
        &self,
        release: &str,
        update: &RollingUpdate,
    ) -> Result<(), DriverError> {
        let first = self.group().await?;
        let desired = self.desired;
        let (min_size, max_size) = (units(first.min_size()), units(first.max_size()));
        // A surge the maximum allows: start new instances before stopping old ones.
        let surge = (desired * update.max_percent.saturating_sub(100)) / 100;
        let may_stop =
            desired.saturating_sub((desired * update.min_healthy_percent.min(100)).div_ceil(100));
        if surge == 0 && may_stop == 0 && desired > 0 {
            return Err(DriverError::Failed(format!(
                "replacing instances of {} needs room: with min healthy {}% and max {}% of {desired} none may stop and none may be added",
                self.group, update.min_healthy_percent, update.max_percent
            )));
        }
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(self.poll);
        loop {
            let group = self.group().await?;
            let old: Vec<String> = group
                .instances()
                .iter()
                .filter(|i| {
                    !release_of(i.launch_template()).is_some_and(|r| same_release(&r, release))
                        && !matches!(
                            i.lifecycle_state(),
                            Some(LifecycleState::Terminating | LifecycleState::Terminated)
                        )
                })
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect();
            let new_serving = serving(&self.clients, &group, release).await?;
            let asked = units(group.desired_capacity());
            let settled = new_serving + old.len() as u32 >= asked;
            if old.is_empty() && new_serving >= desired {
                if asked != desired || units(group.max_size()) != max_size {
                    resize(&self.clients, &self.group, desired, (min_size, max_size)).await?;
                }
                return Ok(());
            }
            if settled && !old.is_empty() {
                if asked > desired {
                    // The surge is up and serving: retire as many old instances.
                    let extra = (asked - desired).min(old.len() as u32) as usize;
                    self.terminate(&old[..extra], true).await?;
                } else if surge > 0 {
                    let batch = surge.min(old.len() as u32);
                    resize(
                        &self.clients,
                        &self.group,
                        desired + batch,
                        (min_size, max_size),
                    )
                    .await?;
                } else {
                    // No surge allowed: stop a batch; the group replaces it from `release`.
                    let batch = may_stop.min(old.len() as u32) as usize;
                    self.terminate(&old[..batch], false).await?;
                }
                backoff.reset();
            }
            if let Some(err) = self.deadline_passed(started, "replacing instances") {
                return Err(err);
            }
            backoff.sleep().await;
        }
    }

    async fn terminate(&self, instances: &[String], shrink: bool) -> Result<(), DriverError> {
        for id in instances {
            self.clients
                .autoscaling
                .terminate_instance_in_auto_scaling_group()
                .instance_id(id)
                .should_decrement_desired_capacity(shrink)
                .send()
                .await
                .map_err(|e| classify("terminating an old instance", e))?;
        }
        Ok(())
    }
}

impl InPlace for AsgRolling {
    fn describe(&self) -> String {
        format!("Auto Scaling group {} (in place)", self.group)
    }

    fn not_side_by_side(&self, what: &str) -> DriverError {
        DriverError::Failed(format!(
            "a single Auto Scaling group is updated in place, so it cannot {what}: use the rolling strategy, \
             or configure groups = [blue, green] and a traffic table for canary and blue-green"
        ))
    }

    async fn rolling_update(
        &self,
        release: &str,
        update: &RollingUpdate,
    ) -> Result<(), DriverError> {
        let group = self.group().await?;
        if !release_of(group.launch_template()).is_some_and(|r| same_release(&r, release)) {
            set_template(&self.clients, &group, release).await?;
        }
        match self.start_refresh(update).await? {
            Some(id) => self.watch_refresh(&id).await,
            None => self.replace_in_batches(release, update).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_match_by_version_and_template() {
        assert!(same_release("3", "web:3"));
        assert!(same_release("web:3", "web:3"));
        assert!(!same_release("web:3", "api:3"));
        assert!(!same_release("web:3", "web:13"));
    }

    #[test]
    fn only_pinned_versions_are_releases() {
        let spec = |v: &str| {
            LaunchTemplateSpecification::builder()
                .launch_template_name("web")
                .version(v)
                .build()
        };
        assert_eq!(release_of(Some(&spec("4"))).as_deref(), Some("web:4"));
        assert_eq!(release_of(Some(&spec("$Latest"))), None);
        assert!(spec_for("$Latest", Some(&spec("4"))).is_err());
        let next = spec_for("5", Some(&spec("4"))).unwrap();
        assert_eq!(next.launch_template_name(), Some("web"));
        assert_eq!(next.version(), Some("5"));
    }
}
