//! What a service runs on, turned into one [`Driver`]: ECS (task sets or in place),
//! Auto Scaling (two groups or one), EKS (two Deployments or one). Everything above the
//! driver — engine, journal, lock, gates, rollback, CLI — is the same for all of them.

use std::sync::Arc;
use std::time::Duration;

use deployer_contract::{RollingUpdate, Side};
use deployer_engine::driver::{Driver, DriverError, InPlaceDriver, Shape, Target, TargetGroups};

use crate::aws::Clients;
use crate::aws::alb::AlbRouter;
use crate::aws::asg::{AsgGroups, AsgRolling};
use crate::aws::ecs::EcsTaskSets;
use crate::aws::ecs_rolling::EcsRolling;
use crate::k8s::Cluster;
use crate::k8s::deployments::{Deployments, EksDeployments, EksRolling};
use crate::side_by_side::{self, SideBySide};
use crate::spec::{ServiceSpec, TargetSpec, TrafficSpec};

/// How often drivers poll the target for progress, at most.
const POLL: Duration = Duration::from_secs(2);

/// The cloud and cluster clients a service's target needs.
#[derive(Clone)]
pub struct Access {
    pub clients: Clients,
    /// Set for EKS targets.
    pub kube: Option<Arc<Cluster>>,
}

/// Connect to what `target` runs on (for EKS: the cluster).
///
/// # Errors
/// The cluster cannot be reached or its access not read.
pub async fn connect(clients: &Clients, target: &TargetSpec) -> Result<Access, DriverError> {
    let kube = match target {
        TargetSpec::EksPair { access, .. } | TargetSpec::EksOne { access, .. } => {
            Some(Cluster::connect(clients, access).await.map_err(|err| {
                DriverError::Failed(format!("connecting to the Kubernetes cluster: {err}"))
            })?)
        }
        _ => None,
    };
    Ok(Access {
        clients: clients.clone(),
        kube,
    })
}

/// A service's target, connected: what the engine reads and drives.
pub struct ServiceTarget {
    pub access: Access,
    pub service: ServiceSpec,
}

impl ServiceTarget {
    /// Connect to what `service` runs on.
    ///
    /// # Errors
    /// As [`connect`].
    pub async fn connect(clients: &Clients, service: ServiceSpec) -> Result<Self, DriverError> {
        Ok(ServiceTarget {
            access: connect(clients, &service.target).await?,
            service,
        })
    }

    /// `release` as the exact revision it names now, once ECS has confirmed it exists. An
    /// ECS task definition family
    /// without a revision (`web`) means its newest ACTIVE revision to ECS, but the task
    /// set it creates reports `web:7`: journaled as `web`, the run could not recognise
    /// its own task set (a retry would create a second one, a rollback miss it). So a
    /// release is pinned once, before anything is journaled. Other targets' releases
    /// (images, launch template versions) are taken as given.
    ///
    /// # Errors
    /// No such task definition; AWS errors.
    pub async fn pin_release(&self, release: &str) -> Result<String, DriverError> {
        let TargetSpec::Ecs { .. } = &self.service.target else {
            return Ok(release.to_string());
        };
        let last = release.rsplit('/').next().unwrap_or(release);
        let pinned = last.rsplit_once(':').is_some_and(|(_, revision)| {
            !revision.is_empty() && revision.bytes().all(|b| b.is_ascii_digit())
        });
        // Described even when pinned: a revision that does not exist is refused here,
        // before anything is journaled, not after a deployment has begun.
        let out = self
            .access
            .clients
            .ecs
            .describe_task_definition()
            .task_definition(release)
            .send()
            .await
            .map_err(|e| {
                crate::aws::classify(&format!("finding task definition `{release}`"), e)
            })?;
        let definition = out.task_definition().ok_or_else(|| {
            DriverError::Failed(format!("ECS knows no task definition `{release}`"))
        })?;
        match (definition.family(), definition.revision()) {
            _ if pinned => Ok(release.to_string()),
            (Some(family), revision) if revision > 0 => Ok(format!("{family}:{revision}")),
            _ => Err(DriverError::Failed(format!(
                "ECS did not say which revision `{release}` is"
            ))),
        }
    }
}

impl Target for ServiceTarget {
    type Driver = TargetDriver;

    async fn inspect(&self) -> Result<Shape, DriverError> {
        inspect(&self.access, &self.service.target).await
    }

    fn driver(
        &self,
        side_by_side: bool,
        stable: &str,
        new: &str,
    ) -> Result<TargetDriver, DriverError> {
        driver(&self.access, &self.service, side_by_side, stable, new)
    }

    fn same_release(&self, a: &str, b: &str) -> bool {
        self.service.target.same_release(a, b)
    }
}

fn router(access: &Access, traffic: &TrafficSpec) -> AlbRouter {
    AlbRouter {
        elb: access.clients.elb.clone(),
        production: traffic.production.clone(),
        test_listener: traffic.test_listener.clone(),
    }
}

fn deployments(
    access: &Access,
    namespace: &str,
    container: &Option<String>,
) -> Result<Deployments, DriverError> {
    let cluster = access.kube.clone().ok_or_else(|| {
        DriverError::Failed("the Kubernetes cluster of this EKS target was not connected".into())
    })?;
    Ok(Deployments {
        cluster,
        namespace: namespace.to_string(),
        container: container.clone(),
    })
}

/// Read what `target` runs and check it can be deployed. Only reads.
///
/// # Errors
/// What is missing or misconfigured, and how to fix it.
pub async fn inspect(access: &Access, target: &TargetSpec) -> Result<Shape, DriverError> {
    let in_place = |primary_release| Shape {
        primary_release,
        side_by_side: false,
    };
    let two_sides = |primary_release| Shape {
        primary_release,
        side_by_side: true,
    };
    match target {
        TargetSpec::Ecs {
            cluster,
            service,
            traffic,
            ..
        } => {
            let groups = traffic.as_ref().map(|t| &t.target_groups);
            let ecs = crate::aws::ecs::inspect(&access.clients, cluster, service, groups).await?;
            Ok(Shape {
                primary_release: ecs.primary_release,
                side_by_side: ecs.side_by_side,
            })
        }
        TargetSpec::AsgOne { group, .. } => Ok(in_place(
            crate::aws::asg::current_release(&access.clients, group).await?,
        )),
        TargetSpec::AsgPair {
            groups, traffic, ..
        } => {
            let slots = AsgGroups {
                clients: access.clients.clone(),
                names: groups.clone(),
            };
            let router = router(access, traffic);
            let live = side_by_side::live_release(&slots, &router, &traffic.target_groups);
            Ok(two_sides(live.await?))
        }
        TargetSpec::EksOne {
            namespace,
            deployment,
            container,
            ..
        } => Ok(in_place(
            deployments(access, namespace, container)?
                .release(deployment)
                .await?,
        )),
        TargetSpec::EksPair {
            namespace,
            deployments: names,
            container,
            traffic,
            ..
        } => {
            let slots = EksDeployments {
                deployments: deployments(access, namespace, container)?,
                names: names.clone(),
            };
            let router = router(access, traffic);
            let live = side_by_side::live_release(&slots, &router, &traffic.target_groups);
            Ok(two_sides(live.await?))
        }
    }
}

/// The driver for `service`, between releases `stable` and `new`; `side_by_side` is what
/// [`inspect`] found.
///
/// # Errors
/// A service found to deploy side by side that has no traffic table.
pub fn driver(
    access: &Access,
    service: &ServiceSpec,
    side_by_side: bool,
    stable: &str,
    new: &str,
) -> Result<TargetDriver, DriverError> {
    let health_timeout = service.health_timeout;
    let pair = |slots, traffic: &TrafficSpec| {
        TargetDriver::Pair(SideBySide {
            slots,
            router: router(access, traffic),
            target_groups: traffic.target_groups.clone(),
            stable_release: stable.to_string(),
            new_release: new.to_string(),
            health_timeout,
            poll: POLL,
        })
    };
    Ok(match &service.target {
        TargetSpec::Ecs {
            cluster, service, ..
        } if !side_by_side => TargetDriver::EcsInPlace(InPlaceDriver(EcsRolling {
            clients: access.clients.clone(),
            cluster: cluster.clone(),
            service: service.clone(),
            progress_deadline: health_timeout,
            poll: POLL,
        })),
        TargetSpec::Ecs {
            cluster,
            service,
            desired,
            traffic,
        } => {
            let traffic = traffic.as_ref().ok_or_else(|| {
                DriverError::Failed(format!(
                    "ECS service {service} deploys with task sets (EXTERNAL controller): configure its traffic \
                     table (listener and two target groups)"
                ))
            })?;
            TargetDriver::EcsTaskSets(EcsTaskSets {
                clients: access.clients.clone(),
                router: router(access, traffic),
                cluster: cluster.clone(),
                service: service.clone(),
                desired: *desired,
                target_groups: traffic.target_groups.clone(),
                stable_release: stable.to_string(),
                new_release: new.to_string(),
                health_timeout,
                poll: POLL,
            })
        }
        TargetSpec::AsgOne { group, desired } => {
            TargetDriver::AsgInPlace(InPlaceDriver(AsgRolling {
                clients: access.clients.clone(),
                group: group.clone(),
                desired: *desired,
                progress_deadline: health_timeout,
                poll: POLL,
            }))
        }
        TargetSpec::AsgPair {
            groups, traffic, ..
        } => pair(
            AnySlots::Asg(AsgGroups {
                clients: access.clients.clone(),
                names: groups.clone(),
            }),
            traffic,
        ),
        TargetSpec::EksOne {
            namespace,
            deployment,
            container,
            ..
        } => TargetDriver::EksInPlace(InPlaceDriver(EksRolling {
            deployments: deployments(access, namespace, container)?,
            name: deployment.clone(),
            progress_deadline: health_timeout,
            poll: POLL,
        })),
        TargetSpec::EksPair {
            namespace,
            deployments: names,
            container,
            traffic,
            ..
        } => pair(
            AnySlots::Eks(EksDeployments {
                deployments: deployments(access, namespace, container)?,
                names: names.clone(),
            }),
            traffic,
        ),
    })
}

/// The two units of an Auto Scaling or EKS service.
// One per run: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum AnySlots {
    Asg(AsgGroups),
    Eks(EksDeployments),
}

impl side_by_side::Slots for AnySlots {
    fn describe(&self) -> String {
        match self {
            AnySlots::Asg(s) => s.describe(),
            AnySlots::Eks(s) => s.describe(),
        }
    }
    async fn read(&self) -> Result<[side_by_side::Slot; 2], DriverError> {
        match self {
            AnySlots::Asg(s) => s.read().await,
            AnySlots::Eks(s) => s.read().await,
        }
    }
    fn same_release(&self, a: &str, b: &str) -> bool {
        match self {
            AnySlots::Asg(s) => s.same_release(a, b),
            AnySlots::Eks(s) => s.same_release(a, b),
        }
    }
    async fn set_release(
        &self,
        slot: &side_by_side::Slot,
        release: &str,
    ) -> Result<(), DriverError> {
        match self {
            AnySlots::Asg(s) => s.set_release(slot, release).await,
            AnySlots::Eks(s) => s.set_release(slot, release).await,
        }
    }
    async fn set_count(&self, slot: &side_by_side::Slot, count: u32) -> Result<(), DriverError> {
        match self {
            AnySlots::Asg(s) => s.set_count(slot, count).await,
            AnySlots::Eks(s) => s.set_count(slot, count).await,
        }
    }
    async fn healthy(
        &self,
        slot: &side_by_side::Slot,
        target_group: &str,
    ) -> Result<u32, DriverError> {
        match self {
            AnySlots::Asg(s) => s.healthy(slot, target_group).await,
            AnySlots::Eks(s) => s.healthy(slot, target_group).await,
        }
    }
    async fn verify(&self, target_groups: &[String; 2]) -> Result<(), DriverError> {
        match self {
            AnySlots::Asg(s) => s.verify(target_groups).await,
            AnySlots::Eks(s) => s.verify(target_groups).await,
        }
    }
    async fn adopt(
        &self,
        new: &side_by_side::Slot,
        stable: &side_by_side::Slot,
    ) -> Result<(), DriverError> {
        match self {
            AnySlots::Asg(s) => s.adopt(new, stable).await,
            AnySlots::Eks(s) => s.adopt(new, stable).await,
        }
    }
}

/// Every target behind the one driver interface.
pub enum TargetDriver {
    EcsTaskSets(EcsTaskSets),
    EcsInPlace(InPlaceDriver<EcsRolling>),
    AsgInPlace(InPlaceDriver<AsgRolling>),
    EksInPlace(InPlaceDriver<EksRolling>),
    Pair(SideBySide<AnySlots>),
}

macro_rules! delegate {
    ($self:ident, $d:ident => $call:expr) => {
        match $self {
            TargetDriver::EcsTaskSets($d) => $call,
            TargetDriver::EcsInPlace($d) => $call,
            TargetDriver::AsgInPlace($d) => $call,
            TargetDriver::EksInPlace($d) => $call,
            TargetDriver::Pair($d) => $call,
        }
    };
}

impl Driver for TargetDriver {
    fn describe(&self) -> String {
        delegate!(self, d => d.describe())
    }
    async fn prepare(&self, release: &str) -> Result<(), DriverError> {
        delegate!(self, d => d.prepare(release).await)
    }
    async fn scale(&self, side: Side, count: u32) -> Result<(), DriverError> {
        delegate!(self, d => d.scale(side, count).await)
    }
    async fn request_units(&self, side: Side, count: u32) -> Result<(), DriverError> {
        delegate!(self, d => d.request_units(side, count).await)
    }
    async fn healthy_units(&self, side: Side) -> Result<Option<u32>, DriverError> {
        delegate!(self, d => d.healthy_units(side).await)
    }
    async fn shift_traffic(&self, new_percent: u8) -> Result<u8, DriverError> {
        delegate!(self, d => d.shift_traffic(new_percent).await)
    }
    async fn route_test_traffic(&self) -> Result<(), DriverError> {
        delegate!(self, d => d.route_test_traffic().await)
    }
    async fn traffic_share(&self) -> Result<Option<u8>, DriverError> {
        delegate!(self, d => d.traffic_share().await)
    }
    async fn target_groups(&self) -> Result<Option<TargetGroups>, DriverError> {
        delegate!(self, d => d.target_groups().await)
    }
    async fn rolling_update(
        &self,
        release: &str,
        update: &RollingUpdate,
    ) -> Result<(), DriverError> {
        delegate!(self, d => d.rolling_update(release, update).await)
    }
    async fn promote(&self) -> Result<(), DriverError> {
        delegate!(self, d => d.promote().await)
    }
    async fn finalize(&self) -> Result<(), DriverError> {
        delegate!(self, d => d.finalize().await)
    }
    async fn discard_new(&self) -> Result<(), DriverError> {
        delegate!(self, d => d.discard_new().await)
    }
}
