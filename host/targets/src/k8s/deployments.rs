//! Kubernetes Deployments. A release is a container image (`registry/app:1.4.2`).
//!
//! In place (rolling): the Deployment's own rollout, with deployer's bounds as its
//! `maxUnavailable` / `maxSurge` and deadline as its `progressDeadlineSeconds`, watched to
//! completion the way `kubectl rollout status` does. Side by side (blue-green, canary):
//! two Deployments take turns, see [`crate::side_by_side`]; their pods sit behind the two
//! target groups (AWS Load Balancer Controller TargetGroupBinding), whose pod readiness
//! gates make "Ready" mean "healthy in the target group".
//!
//! HorizontalPodAutoscalers are not suspended: Kubernetes has no pause for one. In place,
//! the rollout is Kubernetes's own and an HPA resizing it is safe. Side by side, the new
//! Deployment is sized from the live one's replicas (what its HPA set), the HPA keeps
//! scaling the live side during the deployment, and at promotion it is pointed at the new
//! Deployment, so the old one can go to 0 and stay there.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
// autoscaling/v1: served by every Kubernetes version deployer supports, and all a
// scale target reference needs.
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::classify;
use crate::side_by_side::{Slot, Slots};
use deployer_contract::RollingUpdate;
use deployer_engine::driver::{Backoff, DriverError, InPlace};

/// Where a Deployment lives and which container carries the release.
#[derive(Clone)]
pub struct Deployments {
    pub cluster: std::sync::Arc<super::Cluster>,
    pub namespace: String,
    /// The container whose image is the release; `None`: the pod's only container.
    pub container: Option<String>,
}

impl Deployments {
    async fn api(&self) -> Result<Api<Deployment>, DriverError> {
        Ok(Api::namespaced(
            self.cluster.client().await?,
            &self.namespace,
        ))
    }

    async fn get(&self, name: &str) -> Result<Deployment, DriverError> {
        self.api().await?.get(name).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => {
                DriverError::Failed(format!("Deployment {}/{name} not found", self.namespace))
            }
            e => classify("reading the Deployment", e),
        })
    }

    /// (container name, image) of the release container.
    fn container(&self, d: &Deployment) -> Result<(String, String), DriverError> {
        let name = d.metadata.name.as_deref().unwrap_or_default();
        let containers = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        let found = match &self.container {
            Some(wanted) => containers.iter().find(|c| &c.name == wanted),
            None if containers.len() == 1 => containers.first(),
            None => {
                return Err(DriverError::Failed(format!(
                    "Deployment {name} has {} containers: set target.container to the one whose image is the release",
                    containers.len()
                )));
            }
        };
        let c = found.ok_or_else(|| {
            DriverError::Failed(format!(
                "Deployment {name} has no container named {}",
                self.container.as_deref().unwrap_or("?")
            ))
        })?;
        Ok((c.name.clone(), c.image.clone().unwrap_or_default()))
    }

    async fn patch(
        &self,
        name: &str,
        what: &str,
        patch: serde_json::Value,
    ) -> Result<(), DriverError> {
        self.api()
            .await?
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map_err(|e| classify(what, e))?;
        Ok(())
    }

    fn image_patch(container: &str, release: &str) -> serde_json::Value {
        json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": release}]}}}})
    }

    /// The image Deployment `name` runs now.
    ///
    /// # Errors
    /// API errors; no such Deployment or container.
    pub async fn release(&self, name: &str) -> Result<String, DriverError> {
        Ok(self.container(&self.get(name).await?)?.1)
    }

    /// The release Deployment `name` runs and the replicas it asks for (what an HPA set).
    pub async fn release_and_replicas(&self, name: &str) -> Result<(String, u32), DriverError> {
        let d = self.get(name).await?;
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as u32;
        Ok((self.container(&d)?.1, replicas))
    }
}

/// What `kubectl rollout status` checks: the controller has seen the latest spec, every
/// replica runs it, no old one is left and all are available.
/// `Err` when the controller gave up (progress deadline exceeded).
fn rollout_done(d: &Deployment) -> Result<bool, String> {
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(status) = &d.status else {
        return Ok(false);
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Ok(false);
    }
    if let Some(stuck) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        return Err(stuck
            .message
            .clone()
            .unwrap_or_else(|| "progress deadline exceeded".into()));
    }
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    Ok(updated >= wanted
        && status.replicas.unwrap_or(0) <= updated
        && status.available_replicas.unwrap_or(0) >= updated)
}

/// Ready pods of the Deployment's current spec.
fn ready_updated(d: &Deployment) -> u32 {
    let generation = d.metadata.generation.unwrap_or(0);
    match &d.status {
        Some(s) if s.observed_generation.unwrap_or(0) >= generation => {
            // Never negative from a real API server, but `clamp` panics if it were.
            let updated = s.updated_replicas.unwrap_or(0).max(0);
            let old = s.replicas.unwrap_or(0).saturating_sub(updated);
            // Old pods still counted as ready belong to a previous image.
            (s.ready_replicas.unwrap_or(0).saturating_sub(old.max(0))).clamp(0, updated) as u32
        }
        _ => 0,
    }
}

/// The two Deployments of a side-by-side service.
#[derive(Clone)]
pub struct EksDeployments {
    pub deployments: Deployments,
    pub names: [String; 2],
}

impl Slots for EksDeployments {
    fn describe(&self) -> String {
        format!(
            "Deployments {ns}/{} / {ns}/{}",
            self.names[0],
            self.names[1],
            ns = self.deployments.namespace
        )
    }

    async fn read(&self) -> Result<[Slot; 2], DriverError> {
        let mut slots = Vec::with_capacity(2);
        for name in &self.names {
            let d = self.deployments.get(name).await?;
            let (_, image) = self.deployments.container(&d)?;
            slots.push(Slot {
                name: name.clone(),
                release: (!image.is_empty()).then_some(image),
                desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as u32,
                bounds: None,
            });
        }
        Ok([slots.remove(0), slots.remove(0)])
    }

    fn same_release(&self, a: &str, b: &str) -> bool {
        a == b
    }

    async fn set_release(&self, slot: &Slot, release: &str) -> Result<(), DriverError> {
        let d = self.deployments.get(&slot.name).await?;
        let (container, _) = self.deployments.container(&d)?;
        self.deployments
            .patch(
                &slot.name,
                "setting the Deployment's image",
                Deployments::image_patch(&container, release),
            )
            .await
    }

    async fn set_count(&self, slot: &Slot, count: u32) -> Result<(), DriverError> {
        self.deployments
            .patch(
                &slot.name,
                "scaling the Deployment",
                json!({"spec": {"replicas": count}}),
            )
            .await
    }

    async fn healthy(&self, slot: &Slot, _target_group: &str) -> Result<u32, DriverError> {
        let d = self.deployments.get(&slot.name).await?;
        let (_, image) = self.deployments.container(&d)?;
        if slot.release.as_deref() != Some(image.as_str()) {
            return Ok(0); // changed under us: none of these pods run the release
        }
        Ok(ready_updated(&d))
    }

    async fn verify(&self, _target_groups: &[String; 2]) -> Result<(), DriverError> {
        // One HPA follows the live Deployment (see `adopt`). An HPA on each would keep
        // the idle one at its minReplicas, never at 0, serving nothing but costing pods.
        let scaled = self.autoscaled().await?;
        if self
            .names
            .iter()
            .all(|n| scaled.iter().any(|(_, t)| t == n))
        {
            return Err(DriverError::Failed(format!(
                "both Deployments {} and {} have a HorizontalPodAutoscaler; keep one, on the live \
                 Deployment: deployer moves it to the new one when it promotes (an HPA on the idle \
                 Deployment would hold it at its minReplicas instead of 0)",
                self.names[0], self.names[1]
            )));
        }
        Ok(())
    }

    async fn adopt(&self, new: &Slot, stable: &Slot) -> Result<(), DriverError> {
        // The HPA scaling the live Deployment moves with the traffic, so it scales the
        // release that serves; the old Deployment is then scaled to 0 and stays there.
        for (hpa, target) in self.autoscaled().await? {
            if target == stable.name {
                self.hpas()
                    .await?
                    .patch(
                        &hpa,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"scaleTargetRef": {"name": new.name}}})),
                    )
                    .await
                    .map_err(|e| {
                        classify(
                            "pointing the HorizontalPodAutoscaler at the new Deployment",
                            e,
                        )
                    })?;
            }
        }
        Ok(())
    }
}

impl EksDeployments {
    async fn hpas(&self) -> Result<Api<HorizontalPodAutoscaler>, DriverError> {
        Ok(Api::namespaced(
            self.deployments.cluster.client().await?,
            &self.deployments.namespace,
        ))
    }

    /// (HPA, Deployment it scales) for the HPAs in the namespace that scale one of the
    /// pair.
    async fn autoscaled(&self) -> Result<Vec<(String, String)>, DriverError> {
        let list = self
            .hpas()
            .await?
            .list(&Default::default())
            .await
            .map_err(|e| classify("listing HorizontalPodAutoscalers", e))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|h| {
                let target = h.spec?.scale_target_ref;
                (target.kind == "Deployment" && self.names.contains(&target.name))
                    .then(|| (h.metadata.name.unwrap_or_default(), target.name))
            })
            .collect())
    }
}

/// One Deployment updated in place by its own rollout.
#[derive(Clone)]
pub struct EksRolling {
    pub deployments: Deployments,
    pub name: String,
    /// How long the rollout may go without progress, and in all.
    pub progress_deadline: Duration,
    pub poll: Duration,
}

impl EksRolling {
    async fn watch(&self, release: &str) -> Result<(), DriverError> {
        // The controller's own deadline counts from the last progress; this one bounds
        // the whole rollout, with room for the controller to report first.
        let deadline = tokio::time::Instant::now() + self.progress_deadline * 2;
        let mut backoff = Backoff::new(self.poll);
        loop {
            let d = self.deployments.get(&self.name).await?;
            let (_, image) = self.deployments.container(&d)?;
            if image != release {
                return Err(DriverError::Failed(format!(
                    "Deployment {} was changed to {image} during the rollout of {release}",
                    self.name
                )));
            }
            match rollout_done(&d) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(reason) => {
                    return Err(DriverError::Failed(format!(
                        "rollout of {release} on Deployment {} failed: {reason}",
                        self.name
                    )));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Failed(format!(
                    "rollout of {release} on Deployment {} did not complete within {:?}",
                    self.name,
                    self.progress_deadline * 2
                )));
            }
            backoff.sleep().await;
        }
    }
}

/// `maxUnavailable` and `maxSurge` for deployer's bounds; Kubernetes refuses both at 0,
/// so a 100%/100% update surges by one pod.
fn surge_bounds(update: &RollingUpdate) -> (serde_json::Value, serde_json::Value) {
    let unavailable = 100u32.saturating_sub(update.min_healthy_percent.min(100));
    let surge = update.max_percent.saturating_sub(100);
    let pct = |p: u32| json!(format!("{p}%"));
    if unavailable == 0 && surge == 0 {
        (json!(0), json!(1))
    } else {
        (pct(unavailable), pct(surge))
    }
}

impl InPlace for EksRolling {
    fn describe(&self) -> String {
        format!(
            "Deployment {}/{} (rolling)",
            self.deployments.namespace, self.name
        )
    }

    fn not_side_by_side(&self, what: &str) -> DriverError {
        DriverError::Failed(format!(
            "a single Deployment is updated in place, so it cannot {what}: use the rolling strategy, \
             or configure deployments = [blue, green] and a traffic table for canary and blue-green"
        ))
    }

    async fn rolling_update(
        &self,
        release: &str,
        update: &RollingUpdate,
    ) -> Result<(), DriverError> {
        let d = self.deployments.get(&self.name).await?;
        if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            return Err(DriverError::Failed(format!(
                "Deployment {} is paused; `kubectl rollout resume deployment/{}` first",
                self.name, self.name
            )));
        }
        let (container, _) = self.deployments.container(&d)?;
        let (unavailable, surge) = surge_bounds(update);
        let mut patch = Deployments::image_patch(&container, release);
        patch["spec"]["strategy"] = json!({
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": unavailable, "maxSurge": surge},
        });
        patch["spec"]["progressDeadlineSeconds"] = json!(self.progress_deadline.as_secs().max(1));
        self.deployments
            .patch(&self.name, "updating the Deployment", patch)
            .await?;
        self.watch(release).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    fn deployment(generation: i64, status: DeploymentStatus, replicas: i32) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.generation = Some(generation);
        d.spec = Some(k8s_openapi::api::apps::v1::DeploymentSpec {
            replicas: Some(replicas),
            ..Default::default()
        });
        d.status = Some(status);
        d
    }

    #[test]
    fn a_rollout_is_done_when_every_replica_is_new_and_available() {
        let status = |observed, replicas, updated, available| DeploymentStatus {
            observed_generation: Some(observed),
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            available_replicas: Some(available),
            ready_replicas: Some(available),
            ..Default::default()
        };
        assert_eq!(
            rollout_done(&deployment(2, status(1, 3, 3, 3), 3)),
            Ok(false)
        );
        assert_eq!(
            rollout_done(&deployment(2, status(2, 4, 3, 3), 3)),
            Ok(false)
        );
        assert_eq!(
            rollout_done(&deployment(2, status(2, 3, 3, 2), 3)),
            Ok(false)
        );
        assert_eq!(
            rollout_done(&deployment(2, status(2, 3, 3, 3), 3)),
            Ok(true)
        );
        let mut stuck = status(2, 4, 1, 3);
        stuck.conditions = Some(vec![k8s_openapi::api::apps::v1::DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("ReplicaSet \"web-2\" has timed out progressing.".into()),
            ..Default::default()
        }]);
        assert!(rollout_done(&deployment(2, stuck, 3)).is_err());
        // Ready pods of the old spec are not counted.
        assert_eq!(ready_updated(&deployment(2, status(2, 4, 1, 4), 3)), 1);
    }

    #[test]
    fn bounds_never_ask_for_zero_and_zero() {
        let b = |min, max| {
            surge_bounds(&RollingUpdate {
                min_healthy_percent: min,
                max_percent: max,
            })
        };
        assert_eq!(b(100, 100), (json!(0), json!(1)));
        assert_eq!(b(75, 125), (json!("25%"), json!("25%")));
        assert_eq!(b(100, 200), (json!("0%"), json!("100%")));
    }
}
