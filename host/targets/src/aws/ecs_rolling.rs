//! ECS services with the ECS deployment controller, updated in place: a new task
//! definition revision with min-healthy / max percent bounds and the deployment circuit
//! breaker on, then watched until its deployment completes or fails.

use std::time::Duration;

use aws_sdk_ecs::types::{DeploymentCircuitBreaker, DeploymentConfiguration};

use super::ecs::{describe_service, same_task_definition};
use super::{Clients, classify};
use deployer_contract::RollingUpdate;
use deployer_engine::driver::{Backoff, DriverError, InPlace};

#[derive(Clone, Debug)]
pub struct EcsRolling {
    pub clients: Clients,
    pub cluster: String,
    pub service: String,
    /// How long a deployment may take before it counts as failed.
    pub progress_deadline: Duration,
    pub poll: Duration,
}

impl EcsRolling {
    async fn watch(&self, release: &str) -> Result<(), DriverError> {
        let deadline = tokio::time::Instant::now() + self.progress_deadline;
        let mut backoff = Backoff::new(self.poll);
        loop {
            let service = describe_service(&self.clients, &self.cluster, &self.service).await?;
            // The deployment of our release, once ECS has started it.
            let ours = service.deployments().iter().find(|d| {
                d.status() == Some("PRIMARY")
                    && same_task_definition(d.task_definition().unwrap_or_default(), release)
            });
            if let Some(deployment) = ours {
                let state = deployment
                    .rollout_state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                match state.as_str() {
                    "COMPLETED" => return Ok(()),
                    "FAILED" => {
                        return Err(DriverError::Failed(format!(
                            "ECS deployment of {release} failed: {}",
                            deployment
                                .rollout_state_reason()
                                .unwrap_or("no reason given")
                        )));
                    }
                    _ => {}
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Failed(format!(
                    "ECS deployment of {release} did not complete within {:?}",
                    self.progress_deadline
                )));
            }
            backoff.sleep().await;
        }
    }
}

impl InPlace for EcsRolling {
    fn describe(&self) -> String {
        format!("ECS service {}/{} (in place)", self.cluster, self.service)
    }

    fn not_side_by_side(&self, _what: &str) -> DriverError {
        DriverError::Failed(
            "this ECS service uses the ECS deployment controller, which updates in place: use the rolling \
             strategy, or for canary and blue-green configure two services side by side \
             (services = [blue, green] with a traffic table; see docs/targets.md)"
                .into(),
        )
    }

    async fn rolling_update(
        &self,
        release: &str,
        update: &RollingUpdate,
    ) -> Result<(), DriverError> {
        let config = DeploymentConfiguration::builder()
            .minimum_healthy_percent(update.min_healthy_percent as i32)
            .maximum_percent(update.max_percent as i32)
            .deployment_circuit_breaker(
                DeploymentCircuitBreaker::builder()
                    .enable(true)
                    .rollback(false)
                    .build(),
            )
            .build();
        self.clients
            .ecs
            .update_service()
            .cluster(&self.cluster)
            .service(&self.service)
            .task_definition(release)
            .deployment_configuration(config)
            .send()
            .await
            .map_err(|e| classify("updating the ECS service", e))?;
        self.watch(release).await
    }
}
