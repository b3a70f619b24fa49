//! A service's own scaling, held still for a deployment and put back after it.
//!
//! Teams scale ECS services with Application Auto Scaling (a scalable target on
//! `ecs:service:DesiredCount`, with target-tracking policies) and Auto Scaling groups
//! with their own policies and scheduled actions. Left running during a deployment, an
//! autoscaler resizes a side under the rollout: it scales the canary in, or the stable
//! side out and back while traffic is being moved. So a deployment suspends them
//! (Application Auto Scaling's `SuspendedState`, as AWS documents for deployments; the
//! groups' `AlarmNotification`, `ScheduledActions` and `AZRebalance` processes, as
//! CodeDeploy does) and restores them when it ends.
//!
//! [`Saved`] is what was suspended *before* the deployment, read before anything
//! changes and journaled in its `started` record: restoring puts back exactly that, so a
//! scalable target a team had suspended on purpose stays suspended, and a run killed in
//! the middle is restored by whichever command recovers it.

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace, SuspendedState};
use serde::{Deserialize, Serialize};

use super::{Clients, classify};
use deployer_engine::driver::DriverError;

/// The Auto Scaling processes a deployment suspends: scaling policies' alarms, scheduled
/// actions and AZ rebalancing. Launch, Terminate and health checks keep running: the
/// deployment needs them to resize the groups.
pub const GROUP_PROCESSES: [&str; 3] = ["AlarmNotification", "ScheduledActions", "AZRebalance"];

/// A service's scaling as it was before a deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Saved {
    /// Scalable targets of ECS services, with what was suspended on each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scalable_targets: Vec<ScalableTarget>,
    /// Auto Scaling groups, with the processes that were already suspended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupProcesses>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScalableTarget {
    /// `service/CLUSTER/SERVICE`.
    pub resource_id: String,
    pub scale_in_suspended: bool,
    pub scale_out_suspended: bool,
    pub scheduled_suspended: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GroupProcesses {
    pub group: String,
    /// Of [`GROUP_PROCESSES`], those suspended before the deployment.
    pub suspended: Vec<String>,
}

impl Saved {
    pub fn is_empty(&self) -> bool {
        self.scalable_targets.is_empty() && self.groups.is_empty()
    }

    /// As journaled; `None` when there is nothing to suspend.
    pub fn to_journal(&self) -> Option<serde_json::Value> {
        (!self.is_empty()).then(|| serde_json::to_value(self).unwrap_or_default())
    }

    /// From the journal: a value this version cannot read is refused rather than
    /// guessed at (restoring the wrong thing is worse than saying so).
    ///
    /// # Errors
    /// The journaled value is not a [`Saved`].
    pub fn from_journal(value: &serde_json::Value) -> Result<Saved, DriverError> {
        serde_json::from_value(value.clone()).map_err(|err| {
            DriverError::Failed(format!(
                "the journal's record of the service's scaling cannot be read ({err}); \
                 check its scalable targets and Auto Scaling processes by hand"
            ))
        })
    }
}

/// The resource id Application Auto Scaling gives an ECS service.
pub fn ecs_resource_id(cluster: &str, service: &str) -> String {
    // The cluster may be given as an ARN; the resource id wants its name.
    let cluster = cluster.rsplit('/').next().unwrap_or(cluster);
    format!("service/{cluster}/{service}")
}

/// One ECS service's scalable target, as Application Auto Scaling has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scalable {
    pub min: u32,
    pub max: u32,
    pub suspended: ScalableTarget,
}

/// The scalable targets of `resource_ids` (ECS services), each `None` when it has none.
///
/// # Errors
/// AWS errors.
pub async fn describe_scalable(
    clients: &Clients,
    resource_ids: &[String],
) -> Result<Vec<Option<Scalable>>, DriverError> {
    let out = clients
        .app_autoscaling
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .set_resource_ids(Some(resource_ids.to_vec()))
        .send()
        .await
        .map_err(|e| classify("reading the services' scalable targets", e))?;
    Ok(resource_ids
        .iter()
        .map(|id| {
            out.scalable_targets()
                .iter()
                .find(|t| t.resource_id() == id)
                .map(|t| {
                    let s = t.suspended_state();
                    let flag = |f: Option<bool>| f.unwrap_or(false);
                    Scalable {
                        min: u32::try_from(t.min_capacity()).unwrap_or(0),
                        max: u32::try_from(t.max_capacity()).unwrap_or(0),
                        suspended: ScalableTarget {
                            resource_id: id.clone(),
                            scale_in_suspended: flag(
                                s.and_then(|s| s.dynamic_scaling_in_suspended()),
                            ),
                            scale_out_suspended: flag(
                                s.and_then(|s| s.dynamic_scaling_out_suspended()),
                            ),
                            scheduled_suspended: flag(
                                s.and_then(|s| s.scheduled_scaling_suspended()),
                            ),
                        },
                    }
                })
        })
        .collect())
}

/// The processes of [`GROUP_PROCESSES`] suspended on each of `groups` now.
///
/// # Errors
/// AWS errors; a group that does not exist.
pub async fn describe_groups(
    clients: &Clients,
    groups: &[String],
) -> Result<Vec<GroupProcesses>, DriverError> {
    let out = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(groups.to_vec()))
        .send()
        .await
        .map_err(|e| classify("reading the Auto Scaling groups' processes", e))?;
    groups
        .iter()
        .map(|name| {
            let group = out
                .auto_scaling_groups()
                .iter()
                .find(|g| g.auto_scaling_group_name() == Some(name))
                .ok_or_else(|| {
                    DriverError::Failed(format!("Auto Scaling group {name} not found"))
                })?;
            let suspended = group
                .suspended_processes()
                .iter()
                .filter_map(|p| p.process_name())
                .filter(|p| GROUP_PROCESSES.contains(p))
                .map(str::to_string)
                .collect();
            Ok(GroupProcesses {
                group: name.clone(),
                suspended,
            })
        })
        .collect()
}

/// Suspend what `saved` names: every scalable target's dynamic and scheduled scaling,
/// every group's [`GROUP_PROCESSES`]. Idempotent.
///
/// # Errors
/// AWS errors.
pub async fn suspend(clients: &Clients, saved: &Saved) -> Result<(), DriverError> {
    for target in &saved.scalable_targets {
        set_suspended(clients, &target.resource_id, true, true, true).await?;
    }
    for group in &saved.groups {
        clients
            .autoscaling
            .suspend_processes()
            .auto_scaling_group_name(&group.group)
            .set_scaling_processes(Some(GROUP_PROCESSES.map(str::to_string).to_vec()))
            .send()
            .await
            .map_err(|e| classify("suspending the Auto Scaling group's scaling processes", e))?;
    }
    Ok(())
}

/// Put back what `saved` recorded: each scalable target's flags as they were, and the
/// processes a deployment suspended that were not suspended before. Idempotent.
///
/// # Errors
/// AWS errors.
pub async fn restore(clients: &Clients, saved: &Saved) -> Result<(), DriverError> {
    for target in &saved.scalable_targets {
        set_suspended(
            clients,
            &target.resource_id,
            target.scale_in_suspended,
            target.scale_out_suspended,
            target.scheduled_suspended,
        )
        .await?;
    }
    for group in &saved.groups {
        let resume: Vec<String> = GROUP_PROCESSES
            .iter()
            .filter(|p| !group.suspended.iter().any(|s| s == *p))
            .map(|p| p.to_string())
            .collect();
        if resume.is_empty() {
            continue;
        }
        clients
            .autoscaling
            .resume_processes()
            .auto_scaling_group_name(&group.group)
            .set_scaling_processes(Some(resume))
            .send()
            .await
            .map_err(|e| classify("resuming the Auto Scaling group's scaling processes", e))?;
    }
    Ok(())
}

/// RegisterScalableTarget for an ECS service's desired count; only what the caller sets
/// changes on an existing target.
fn register(
    clients: &Clients,
    resource_id: &str,
) -> aws_sdk_applicationautoscaling::operation::register_scalable_target::builders::RegisterScalableTargetFluentBuilder{
    clients
        .app_autoscaling
        .register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .resource_id(resource_id)
}

async fn set_suspended(
    clients: &Clients,
    resource_id: &str,
    scale_in: bool,
    scale_out: bool,
    scheduled: bool,
) -> Result<(), DriverError> {
    // Registering an existing scalable target with only `SuspendedState` changes only
    // that: its bounds and policies stay as they are.
    register(clients, resource_id)
        .suspended_state(
            SuspendedState::builder()
                .dynamic_scaling_in_suspended(scale_in)
                .dynamic_scaling_out_suspended(scale_out)
                .scheduled_scaling_suspended(scheduled)
                .build(),
        )
        .send()
        .await
        .map_err(|e| classify("setting the service's scalable target's suspended state", e))?;
    Ok(())
}

/// Set an ECS service's scalable target's bounds (its suspended state unchanged).
///
/// # Errors
/// AWS errors.
pub async fn set_bounds(
    clients: &Clients,
    resource_id: &str,
    min: u32,
    max: u32,
) -> Result<(), DriverError> {
    register(clients, resource_id)
        .min_capacity(i32::try_from(min).unwrap_or(i32::MAX))
        .max_capacity(i32::try_from(max).unwrap_or(i32::MAX))
        .send()
        .await
        .map_err(|e| classify("setting the service's scaling bounds", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_saved_survives_the_journal_and_nothing_saved_is_not_journaled() {
        let saved = Saved {
            scalable_targets: vec![ScalableTarget {
                resource_id: ecs_resource_id("arn:aws:ecs:eu-west-1:1:cluster/prod", "web-blue"),
                scale_in_suspended: true,
                scale_out_suspended: false,
                scheduled_suspended: false,
            }],
            groups: vec![GroupProcesses {
                group: "web".into(),
                suspended: vec!["AZRebalance".into()],
            }],
        };
        assert_eq!(
            saved.scalable_targets[0].resource_id,
            "service/prod/web-blue"
        );
        let value = saved.to_journal().unwrap();
        assert_eq!(Saved::from_journal(&value).unwrap(), saved);
        assert_eq!(Saved::default().to_journal(), None);
        assert!(Saved::from_journal(&serde_json::json!({"groups": "x"})).is_err());
    }
}
