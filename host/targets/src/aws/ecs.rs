//! ECS services with the EXTERNAL deployment controller, deployed side by side with
//! task sets (the way CodeDeploy does it): the stable release is the primary task set
//! behind one target group, the new release a second task set behind the other, and
//! traffic moves between the two groups by ALB weights.
//!
//! Task sets are found by their task definition on every call, never by remembered
//! ids, so a driver built by a later invocation (resuming a killed run) sees the same
//! sides.

use std::time::Duration;

use aws_sdk_ecs::types::{LoadBalancer, Scale, ScaleUnit, TaskSet};

use super::alb::{AlbRouter, healthy_targets};
use super::{Clients, classify};
use deployer_contract::{RollingUpdate, Side};
use deployer_engine::driver::{Backoff, Driver, DriverError, TargetGroups, wait_for_units};

#[derive(Clone, Debug)]
pub struct EcsTaskSets {
    pub clients: Clients,
    pub router: AlbRouter,
    pub cluster: String,
    pub service: String,
    pub desired: u32,
    /// The two target groups the sides alternate between.
    pub target_groups: [String; 2],
    pub stable_release: String,
    pub new_release: String,
    /// How long a side may take to report its units healthy.
    pub health_timeout: Duration,
    pub poll: Duration,
}

/// `web:2` names the same task definition as `arn:aws:ecs:...:task-definition/web:2`.
pub fn same_task_definition(a: &str, b: &str) -> bool {
    let short = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    short(a) == short(b)
}

/// The live (not INACTIVE) ECS service, or an error naming what is missing.
///
/// # Errors
/// AWS errors; no such service in the cluster.
pub(crate) async fn describe_service(
    clients: &Clients,
    cluster: &str,
    service: &str,
) -> Result<aws_sdk_ecs::types::Service, DriverError> {
    let out = clients
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|e| classify("describing the ECS service", e))?;
    out.services()
        .iter()
        .find(|s| s.status() != Some("INACTIVE"))
        .cloned()
        .ok_or_else(|| {
            DriverError::Failed(format!(
                "ECS service {service} not found in cluster {cluster}"
            ))
        })
}

/// What `deployer run` learns about an ECS service before changing anything.
#[derive(Clone, Debug)]
pub struct EcsService {
    /// The release serving now: the primary task set's or the service's task definition.
    pub primary_release: String,
    /// EXTERNAL (task sets, side by side) or ECS (in place).
    pub side_by_side: bool,
    /// The service's desired count now (what its autoscaler set).
    pub desired: u32,
}

/// Read the service and check it can be deployed: side by side with task sets behind
/// one of `target_groups` (EXTERNAL controller), or in place (ECS controller). Only reads.
///
/// # Errors
/// What is missing or misconfigured, and how to fix it.
pub async fn inspect(
    clients: &Clients,
    cluster: &str,
    service: &str,
    target_groups: Option<&[String; 2]>,
) -> Result<EcsService, DriverError> {
    let svc = &describe_service(clients, cluster, service).await?;
    let controller = svc
        .deployment_controller()
        .map(|c| c.r#type().as_str().to_string())
        .unwrap_or_else(|| "ECS".into());
    match controller.as_str() {
        "ECS" => Ok(EcsService {
            primary_release: svc.task_definition().unwrap_or_default().to_string(),
            side_by_side: false,
            desired: u32::try_from(svc.desired_count()).unwrap_or(0),
        }),
        "EXTERNAL" => {
            let target_groups = target_groups.ok_or_else(|| {
                DriverError::Failed(format!(
                    "ECS service {service} deploys with task sets (EXTERNAL controller): configure its traffic \
                     table (listener and two target groups)"
                ))
            })?;
            let primary = primary_task_set_release(svc, service, target_groups)?;
            Ok(EcsService {
                primary_release: primary,
                side_by_side: true,
                desired: u32::try_from(svc.desired_count()).unwrap_or(0),
            })
        }
        other => Err(DriverError::Failed(format!(
            "ECS service {service} uses the {other} deployment controller, which deployer does not drive"
        ))),
    }
}

/// The primary task set's release, checking it sits behind one of `target_groups`.
fn primary_task_set_release(
    svc: &aws_sdk_ecs::types::Service,
    service: &str,
    target_groups: &[String; 2],
) -> Result<String, DriverError> {
    let primary = svc
        .task_sets()
        .iter()
        .find(|t| t.status() == Some("PRIMARY"))
        .ok_or_else(|| {
            DriverError::Failed(format!(
                "ECS service {service} has no primary task set to deploy from"
            ))
        })?;
    let tg = primary
        .load_balancers()
        .first()
        .and_then(|lb| lb.target_group_arn())
        .unwrap_or_default()
        .to_string();
    if !target_groups.contains(&tg) {
        return Err(DriverError::Failed(format!(
            "the primary task set of {service} is behind {tg}, which is not one of the service's configured target-groups"
        )));
    }
    Ok(primary.task_definition().unwrap_or_default().to_string())
}

impl EcsTaskSets {
    async fn task_sets(&self) -> Result<Vec<TaskSet>, DriverError> {
        Ok(
            describe_service(&self.clients, &self.cluster, &self.service)
                .await?
                .task_sets()
                .to_vec(),
        )
    }

    fn release(&self, side: Side) -> &str {
        match side {
            Side::Stable => &self.stable_release,
            Side::New => &self.new_release,
        }
    }

    /// The live task set of `side` among `sets`.
    fn side_of<'a>(&self, sets: &'a [TaskSet], side: Side) -> Option<&'a TaskSet> {
        let release = self.release(side);
        sets.iter().find(|t| {
            t.status() != Some("DRAINING")
                && same_task_definition(t.task_definition().unwrap_or_default(), release)
        })
    }

    async fn task_set(&self, side: Side) -> Result<Option<TaskSet>, DriverError> {
        Ok(self.side_of(&self.task_sets().await?, side).cloned())
    }

    async fn require(&self, side: Side) -> Result<TaskSet, DriverError> {
        self.task_set(side).await?.ok_or_else(|| {
            DriverError::Failed(format!(
                "no task set runs {} in service {}",
                self.release(side),
                self.service
            ))
        })
    }

    fn target_group(set: &TaskSet) -> Result<String, DriverError> {
        set.load_balancers()
            .first()
            .and_then(|lb| lb.target_group_arn())
            .map(str::to_string)
            .ok_or_else(|| DriverError::Failed("task set has no target group".into()))
    }

    /// (stable, new) target groups, from one read of the service: a traffic step costs
    /// three calls (this read, the route's actions, the weight change, whose answer is
    /// the read-back).
    async fn groups(&self) -> Result<(String, String), DriverError> {
        let sets = self.task_sets().await?;
        let find = |side: Side| {
            self.side_of(&sets, side)
                .ok_or_else(|| {
                    DriverError::Failed(format!(
                        "no task set runs {} in service {}",
                        self.release(side),
                        self.service
                    ))
                })
                .and_then(Self::target_group)
        };
        let stable = find(Side::Stable)?;
        let new = match find(Side::New) {
            Ok(tg) => tg,
            // No new side yet (a run killed early, being rolled back): its group is the
            // configured one that stable does not use.
            Err(missing) => self
                .target_groups
                .iter()
                .find(|tg| **tg != stable)
                .cloned()
                .ok_or(missing)?,
        };
        Ok((stable, new))
    }

    /// Set one side's task set to `count` units (as a percentage of the service's
    /// desired count); the task set, or `None` when the new side was never created and
    /// is being scaled to nothing.
    async fn set_units(&self, side: Side, count: u32) -> Result<Option<TaskSet>, DriverError> {
        // A run killed before it created the new side leaves nothing to scale down.
        let set = match (side, count) {
            (Side::New, 0) => match self.task_set(side).await? {
                Some(set) => set,
                None => return Ok(None),
            },
            _ => self.require(side).await?,
        };
        let percent = if self.desired == 0 {
            0.0
        } else {
            (f64::from(count) * 100.0 / f64::from(self.desired)).min(100.0)
        };
        self.clients
            .ecs
            .update_task_set()
            .cluster(&self.cluster)
            .service(&self.service)
            .task_set(set.task_set_arn().unwrap_or_default())
            .scale(
                Scale::builder()
                    .value(percent)
                    .unit(ScaleUnit::Percent)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("scaling a task set", e))?;
        Ok(Some(set))
    }

    async fn healthy(&self, tg: &str) -> Result<u32, DriverError> {
        Ok(healthy_targets(&self.clients.elb, tg).await?.len() as u32)
    }

    /// Wait (up to the health timeout) until the idle target group `tg` holds no healthy
    /// target. A task set removed moments ago (the last run's old side, or a rolled-back
    /// new side) leaves its targets there, healthy, until they are deregistered; the new
    /// side's health is counted in that group, so they would pass for the new release's
    /// units — a release that never gets healthy would be promoted on them.
    async fn wait_until_idle(&self, tg: &str) -> Result<(), DriverError> {
        let deadline = tokio::time::Instant::now() + self.health_timeout;
        let mut backoff = Backoff::new(self.poll);
        loop {
            let left = self.healthy(tg).await?;
            if left == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Failed(format!(
                    "the idle target group {tg} still has {left} healthy target(s) after {:?}, \
                     which the new side's health would count; deregister them (a task set \
                     removed by hand?) and deploy again",
                    self.health_timeout
                )));
            }
            backoff.sleep().await;
        }
    }

    async fn delete(&self, set: &TaskSet) -> Result<(), DriverError> {
        self.clients
            .ecs
            .delete_task_set()
            .cluster(&self.cluster)
            .service(&self.service)
            .task_set(set.task_set_arn().unwrap_or_default())
            .force(true)
            .send()
            .await
            .map_err(|e| classify("deleting a task set", e))?;
        Ok(())
    }
}

impl Driver for EcsTaskSets {
    fn describe(&self) -> String {
        format!("ECS service {}/{}", self.cluster, self.service)
    }

    async fn prepare(&self, release: &str) -> Result<(), DriverError> {
        if self.task_set(Side::New).await?.is_some() {
            return Ok(()); // created by an earlier, interrupted run
        }
        let stable = self.require(Side::Stable).await?;
        let stable_tg = Self::target_group(&stable)?;
        let new_tg = self
            .target_groups
            .iter()
            .find(|tg| **tg != stable_tg)
            .cloned()
            .ok_or_else(|| DriverError::Failed("the two target-groups must differ".into()))?;
        self.wait_until_idle(&new_tg).await?;
        let template = stable.load_balancers().first();
        let lb = LoadBalancer::builder()
            .target_group_arn(new_tg)
            .set_container_name(
                template
                    .and_then(|l| l.container_name())
                    .map(str::to_string),
            )
            .set_container_port(template.and_then(|l| l.container_port()))
            .build();
        self.clients
            .ecs
            .create_task_set()
            .cluster(&self.cluster)
            .service(&self.service)
            .task_definition(release)
            .load_balancers(lb)
            .scale(Scale::builder().value(0.0).unit(ScaleUnit::Percent).build())
            .set_launch_type(stable.launch_type().cloned())
            .set_network_configuration(stable.network_configuration().cloned())
            .set_platform_version(stable.platform_version().map(str::to_string))
            .set_capacity_provider_strategy(
                (!stable.capacity_provider_strategy().is_empty())
                    .then(|| stable.capacity_provider_strategy().to_vec()),
            )
            .send()
            .await
            .map_err(|e| classify("creating the new task set", e))?;
        Ok(())
    }

    async fn scale(&self, side: Side, count: u32) -> Result<(), DriverError> {
        let Some(set) = self.set_units(side, count).await? else {
            return Ok(());
        };
        if count == 0 {
            return Ok(());
        }
        let tg = Self::target_group(&set)?;
        wait_for_units(
            count,
            self.release(side),
            self.health_timeout,
            self.poll,
            || self.healthy(&tg),
        )
        .await
    }

    async fn request_units(&self, side: Side, count: u32) -> Result<(), DriverError> {
        self.set_units(side, count).await.map(drop)
    }

    async fn healthy_units(&self, side: Side) -> Result<Option<u32>, DriverError> {
        let set = self.require(side).await?;
        let tg = Self::target_group(&set)?;
        self.healthy(&tg).await.map(Some)
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
        Err(DriverError::Failed(
            "a service deployed with task sets is not updated in place; use canary or blue-green"
                .into(),
        ))
    }

    async fn promote(&self) -> Result<(), DriverError> {
        let set = self.require(Side::New).await?;
        self.clients
            .ecs
            .update_service_primary_task_set()
            .cluster(&self.cluster)
            .service(&self.service)
            .primary_task_set(set.task_set_arn().unwrap_or_default())
            .send()
            .await
            .map_err(|e| classify("promoting the new task set", e))?;
        Ok(())
    }

    async fn finalize(&self) -> Result<(), DriverError> {
        match self.task_set(Side::Stable).await? {
            Some(old) => self.delete(&old).await,
            None => Ok(()),
        }
    }

    async fn discard_new(&self) -> Result<(), DriverError> {
        // Before the new side goes: testers are sent back to stable, not to an empty
        // group that the next deployment fills.
        let (stable_tg, new_tg) = self.groups().await?;
        self.router.restore_test(&stable_tg, &new_tg).await?;
        if let Some(new) = self.task_set(Side::New).await? {
            // Never delete the primary: after a promotion, put the old release back first.
            if new.status() == Some("PRIMARY") {
                let stable = self.require(Side::Stable).await?;
                self.clients
                    .ecs
                    .update_service_primary_task_set()
                    .cluster(&self.cluster)
                    .service(&self.service)
                    .primary_task_set(stable.task_set_arn().unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| classify("restoring the primary task set", e))?;
            }
            self.delete(&new).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_definitions_match_by_family_and_revision() {
        assert!(same_task_definition(
            "web:2",
            "arn:aws:ecs:us-east-1:1:task-definition/web:2"
        ));
        assert!(!same_task_definition(
            "web:2",
            "arn:aws:ecs:us-east-1:1:task-definition/web:21"
        ));
    }
}
