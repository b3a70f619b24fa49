//! Two ECS services on the ECS deployment controller, side by side: canary and
//! blue-green for services created the way most teams create them (Terraform, no
//! `deployment_controller` block), without recreating them on the EXTERNAL controller.
//!
//! Each service sits behind one of the traffic table's two target groups. Between
//! deployments the idle one runs 0 tasks. A deployment points the idle service at the
//! new task definition (ECS starts a deployment of nothing), scales it up, moves ALB
//! weights, and at the end scales the old service to 0 — the driver in
//! [`crate::side_by_side`] does the ordering; this module reads and changes the services.
//!
//! A side's healthy units are the running tasks of the service's PRIMARY deployment of
//! the release (a deployment ECS's circuit breaker failed is an error at once), bounded
//! by the healthy targets in its target group: ECS registers a service's tasks there.
//!
//! Scaling: a service's Application Auto Scaling bounds belong to the live side. On
//! promotion the new service takes the live one's (min, max) and the old one's minimum
//! drops to 0, so the autoscaler never brings the idle side back up.

use aws_sdk_ecs::types::Service;

use super::alb::healthy_targets;
use super::ecs::same_task_definition;
use super::scaling::{self, ecs_resource_id};
use super::{Clients, classify};
use crate::side_by_side::{Slot, Slots};
use deployer_engine::driver::DriverError;

/// The two services of a side-by-side ECS service.
#[derive(Clone, Debug)]
pub struct EcsServices {
    pub clients: Clients,
    pub cluster: String,
    pub names: [String; 2],
}

impl EcsServices {
    /// Both services, in order, as ECS has them now; `None` for one that does not exist
    /// (deleted: INACTIVE or gone). A rollback reads the pair this way, so that a new
    /// side deleted mid-run does not stop traffic going back to the live one.
    async fn found(&self) -> Result<[Option<Service>; 2], DriverError> {
        let out = self
            .clients
            .ecs
            .describe_services()
            .cluster(&self.cluster)
            .services(&self.names[0])
            .services(&self.names[1])
            .send()
            .await
            .map_err(|e| classify("describing the ECS services", e))?;
        let find = |name: &str| {
            out.services()
                .iter()
                .find(|s| s.service_name() == Some(name) && s.status() != Some("INACTIVE"))
                .cloned()
        };
        Ok([find(&self.names[0]), find(&self.names[1])])
    }

    /// Both services, which must exist on the ECS controller: what is checked before a
    /// deployment changes anything.
    pub async fn services(&self) -> Result<[Service; 2], DriverError> {
        let [a, b] = self.found().await?;
        let exists = |s: Option<Service>, name: &str| {
            s.ok_or_else(|| {
                DriverError::Failed(format!(
                    "ECS service {name} not found in cluster {}; both services of the pair must exist \
                     (see docs/targets.md, \"ECS services on the ECS deployment controller\")",
                    self.cluster
                ))
            })
        };
        let (a, b) = (exists(a, &self.names[0])?, exists(b, &self.names[1])?);
        for service in [&a, &b] {
            on_ecs_controller(service)?;
        }
        Ok([a, b])
    }

    fn resource_ids(&self) -> [String; 2] {
        self.names
            .clone()
            .map(|name| ecs_resource_id(&self.cluster, &name))
    }

    async fn update(
        &self,
        name: &str,
        release: Option<&str>,
        count: Option<u32>,
    ) -> Result<(), DriverError> {
        self.clients
            .ecs
            .update_service()
            .cluster(&self.cluster)
            .service(name)
            .set_task_definition(release.map(str::to_string))
            .set_desired_count(count.map(|c| i32::try_from(c).unwrap_or(i32::MAX)))
            .send()
            .await
            .map_err(|e| classify("updating the ECS service", e))?;
        Ok(())
    }
}

/// A pair needs the ECS deployment controller on both services.
fn on_ecs_controller(service: &Service) -> Result<(), DriverError> {
    let controller = service
        .deployment_controller()
        .map(|c| c.r#type().as_str().to_string())
        .unwrap_or_else(|| "ECS".into());
    if controller == "ECS" {
        return Ok(());
    }
    Err(DriverError::Failed(format!(
        "ECS service {} uses the {controller} deployment controller; a pair of services needs the \
         ECS controller on both (for task sets, configure `service = \"NAME\"` instead)",
        service.service_name().unwrap_or_default()
    )))
}

/// The target groups a service's load balancers name.
fn target_groups_of(service: &Service) -> Vec<String> {
    service
        .load_balancers()
        .iter()
        .filter_map(|lb| lb.target_group_arn().map(str::to_string))
        .collect()
}

/// Running tasks of `service`'s deployment of `release`: its PRIMARY deployment when that
/// runs the release. A deployment the circuit breaker failed is an error.
fn running_of(service: &Service, release: &str) -> Result<u32, DriverError> {
    let Some(primary) = service.deployments().iter().find(|d| {
        d.status() == Some("PRIMARY")
            && same_task_definition(d.task_definition().unwrap_or_default(), release)
    }) else {
        return Ok(0); // ECS has not started the deployment yet
    };
    if primary.rollout_state().map(|s| s.as_str()) == Some("FAILED") {
        return Err(DriverError::Failed(format!(
            "ECS deployment of {release} on service {} failed: {}",
            service.service_name().unwrap_or_default(),
            primary.rollout_state_reason().unwrap_or("no reason given")
        )));
    }
    Ok(u32::try_from(primary.running_count()).unwrap_or(0))
}

impl Slots for EcsServices {
    fn describe(&self) -> String {
        format!(
            "ECS services {}/{} / {}",
            self.cluster, self.names[0], self.names[1]
        )
    }

    async fn read(&self) -> Result<[Slot; 2], DriverError> {
        let services = self.found().await?;
        let bounds = scaling::describe_scalable(&self.clients, &self.resource_ids()).await?;
        // A deleted service runs nothing and can be given nothing: it is never found as a
        // side, so a rollback moves traffic to the live one and has nothing to remove.
        let slot = |i: usize| match &services[i] {
            Some(s) => Slot {
                name: self.names[i].clone(),
                release: s.task_definition().map(|t| {
                    // As the config names releases: `web:7`, not the ARN.
                    t.rsplit('/').next().unwrap_or(t).to_string()
                }),
                desired: u32::try_from(s.desired_count()).unwrap_or(0),
                bounds: bounds[i].as_ref().map(|b| (b.min, b.max)),
            },
            None => Slot {
                name: self.names[i].clone(),
                release: None,
                desired: 0,
                bounds: None,
            },
        };
        Ok([slot(0), slot(1)])
    }

    fn same_release(&self, a: &str, b: &str) -> bool {
        same_task_definition(a, b)
    }

    async fn set_release(&self, slot: &Slot, release: &str) -> Result<(), DriverError> {
        self.update(&slot.name, Some(release), None).await
    }

    async fn set_count(&self, slot: &Slot, count: u32) -> Result<(), DriverError> {
        self.update(&slot.name, None, Some(count)).await
    }

    async fn healthy(&self, slot: &Slot, target_group: &str) -> Result<u32, DriverError> {
        let Some(release) = &slot.release else {
            return Ok(0);
        };
        let services = self.found().await?;
        let Some(service) = services
            .iter()
            .flatten()
            .find(|s| s.service_name() == Some(slot.name.as_str()))
        else {
            return Ok(0);
        };
        if !same_task_definition(service.task_definition().unwrap_or_default(), release) {
            return Ok(0);
        }
        let running = running_of(service, release)?;
        let healthy = healthy_targets(&self.clients.elb, target_group)
            .await?
            .len() as u32;
        Ok(running.min(healthy))
    }

    async fn verify(&self, target_groups: &[String; 2]) -> Result<(), DriverError> {
        // A service deleted since is checked by what reads it (a live side must run
        // units; an idle one must take the release): a rollback must still be possible.
        let services = self.found().await?;
        for (service, tg) in services.iter().zip(target_groups) {
            let Some(service) = service else { continue };
            on_ecs_controller(service)?;
            let behind = target_groups_of(service);
            if !behind.iter().any(|b| b == tg) {
                return Err(DriverError::Failed(format!(
                    "ECS service {} is not behind target group {tg} (services and traffic.target-groups pair \
                     up in order); its load balancers name: {}",
                    service.service_name().unwrap_or_default(),
                    if behind.is_empty() {
                        "none".to_string()
                    } else {
                        behind.join(", ")
                    }
                )));
            }
        }
        Ok(())
    }

    async fn adopt(&self, new: &Slot, stable: &Slot) -> Result<(), DriverError> {
        // The live service's scaling bounds move with the traffic; the old service may
        // then go to 0 and stay there.
        let Some((min, max)) = stable.bounds else {
            return Ok(());
        };
        let id = |name: &str| ecs_resource_id(&self.cluster, name);
        scaling::set_bounds(
            &self.clients,
            &id(&new.name),
            min.min(new.desired),
            max.max(new.desired),
        )
        .await?;
        scaling::set_bounds(&self.clients, &id(&stable.name), 0, max).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState};

    fn service(deployments: Vec<Deployment>) -> Service {
        Service::builder()
            .service_name("web-green")
            .set_deployments(Some(deployments))
            .build()
    }

    fn deployment(
        status: &str,
        td: &str,
        state: DeploymentRolloutState,
        running: i32,
    ) -> Deployment {
        Deployment::builder()
            .status(status)
            .task_definition(format!("arn:aws:ecs:eu-west-1:1:task-definition/{td}"))
            .rollout_state(state)
            .rollout_state_reason("tasks failed to start")
            .running_count(running)
            .build()
    }

    #[test]
    fn only_the_primary_deployment_of_the_release_counts_and_a_failed_one_is_an_error() {
        let old_draining = deployment("ACTIVE", "web:1", DeploymentRolloutState::Completed, 5);
        let new = deployment("PRIMARY", "web:2", DeploymentRolloutState::InProgress, 2);
        let s = service(vec![new.clone(), old_draining.clone()]);
        assert_eq!(running_of(&s, "web:2").unwrap(), 2);
        // Old tasks still running never pass for the release's.
        assert_eq!(running_of(&s, "web:1").unwrap(), 0);
        // Not started yet.
        assert_eq!(
            running_of(&service(vec![old_draining]), "web:2").unwrap(),
            0
        );
        let failed = deployment("PRIMARY", "web:2", DeploymentRolloutState::Failed, 0);
        let err = running_of(&service(vec![failed]), "web:2").unwrap_err();
        assert!(err.to_string().contains("tasks failed to start"), "{err}");
    }
}
