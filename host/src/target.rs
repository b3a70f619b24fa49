//! What a service runs on, turned into one [`Driver`]: ECS (task sets or in place),
//! Auto Scaling (two groups or one), EKS (two Deployments or one). Everything above the
//! driver — engine, journal, lock, gates, rollback, CLI — is the same for all of them.

use std::time::Duration;

use anyhow::Context;

use crate::aws::Clients;
use crate::aws::alb::{AlbRouter, Route};
use crate::aws::asg::{AsgGroups, AsgRolling};
use crate::aws::ecs::{EcsTaskSets, same_task_definition};
use crate::aws::ecs_rolling::EcsRolling;
use crate::aws::pair::{self, SideBySide};
use crate::config::{Config, Service, Target, parse_duration};
use crate::k8s::deployments::{Deployments, EksDeployments, EksRolling};
use crate::plugin::bindings::types::{RollingUpdate, Side};
use crate::rollout::driver::{Driver, DriverError, InPlaceDriver};

/// How often drivers poll the target for progress, at most.
const POLL: Duration = Duration::from_secs(2);

/// The cloud and cluster clients a service's target needs.
#[derive(Clone)]
pub struct Access {
    pub clients: Clients,
    /// Set for EKS targets.
    pub kube: Option<std::sync::Arc<crate::k8s::Cluster>>,
}

/// Connect to what `service` runs on (for EKS: the cluster).
///
/// # Errors
/// The cluster cannot be reached or its access not read.
pub async fn connect(
    config: &Config,
    clients: &Clients,
    service: &Service,
) -> anyhow::Result<Access> {
    let kube = match &service.target {
        Target::Eks {
            cluster,
            kubeconfig,
            context,
            ..
        } => {
            // The config refuses both a cluster and a kubeconfig.
            let access = match (cluster, kubeconfig) {
                (Some(name), _) => crate::k8s::Access::Eks(name.clone()),
                (None, Some(path)) => crate::k8s::Access::Kubeconfig {
                    path: config.resolve(path),
                    context: context.clone(),
                },
                (None, None) => crate::k8s::Access::Infer {
                    context: context.clone(),
                },
            };
            Some(
                crate::k8s::Cluster::connect(clients, &access)
                    .await
                    .context("connecting to the Kubernetes cluster")?,
            )
        }
        _ => None,
    };
    Ok(Access {
        clients: clients.clone(),
        kube,
    })
}

/// What `run` and `rollback` learn before changing anything.
#[derive(Clone, Debug)]
pub struct Shape {
    /// The release serving production now.
    pub primary_release: String,
    /// Two sides behind the ALB (canary, blue-green) or one updated in place (rolling).
    pub side_by_side: bool,
}

/// Whether `a` and `b` name the same release of `target` (`web:2` and its ARN; `3` and
/// `web:3`).
pub fn same_release(target: &Target, a: &str, b: &str) -> bool {
    match target {
        Target::Ecs { .. } => same_task_definition(a, b),
        Target::Asg { .. } => crate::aws::asg::same_release(a, b),
        Target::Eks { .. } => a == b,
    }
}

fn router(access: &Access, service_name: &str, service: &Service) -> anyhow::Result<AlbRouter> {
    let traffic = service.traffic.as_ref().with_context(|| {
        format!(
            "service `{service_name}` has no [services.{service_name}.traffic] table: canary and blue-green need the listener and two target groups"
        )
    })?;
    let production = match (&traffic.listener_arn, &traffic.rule_arn) {
        (Some(listener), None) => Route::Listener(listener.clone()),
        (None, Some(rule)) => Route::Rule(rule.clone()),
        _ => unreachable!("checked when the config was loaded"),
    };
    Ok(AlbRouter {
        elb: access.clients.elb.clone(),
        production,
        test_listener: traffic.test_listener_arn.clone(),
    })
}

fn target_groups(service: &Service) -> Option<[String; 2]> {
    service
        .traffic
        .as_ref()
        .map(|t| [t.target_groups[0].clone(), t.target_groups[1].clone()])
}

fn pair_of(names: &[String]) -> [String; 2] {
    [names[0].clone(), names[1].clone()]
}

fn deployments(access: &Access, namespace: &str, container: &Option<String>) -> Deployments {
    Deployments {
        cluster: access
            .kube
            .clone()
            .expect("EKS targets are connected by `connect`"),
        namespace: namespace.to_string(),
        container: container.clone(),
    }
}

fn duration(text: &Option<String>, default: Duration) -> Duration {
    text.as_deref()
        .and_then(|t| parse_duration(t).ok())
        .unwrap_or(default)
}

/// Read what `service` runs and check it can be deployed. Only reads.
///
/// # Errors
/// What is missing or misconfigured, and how to fix it.
pub async fn inspect(
    access: &Access,
    service_name: &str,
    service: &Service,
) -> anyhow::Result<Shape> {
    let in_place = |release: String| Shape {
        primary_release: release,
        side_by_side: false,
    };
    let live_of = |slots| async move {
        let router = router(access, service_name, service)?;
        let groups = target_groups(service).expect("a router implies a traffic table");
        let live = pair::live(&slots, &router, &groups).await?;
        anyhow::Ok(Shape {
            primary_release: live.release.expect("live units run a release"),
            side_by_side: true,
        })
    };
    match &service.target {
        Target::Ecs {
            cluster,
            service: ecs_service,
            ..
        } => {
            let groups = target_groups(service);
            let ecs =
                crate::aws::ecs::inspect(&access.clients, cluster, ecs_service, groups.as_ref())
                    .await?;
            Ok(Shape {
                primary_release: ecs.primary_release,
                side_by_side: ecs.side_by_side,
            })
        }
        Target::Asg {
            group: Some(group), ..
        } => Ok(in_place(
            crate::aws::asg::current_release(&access.clients, group).await?,
        )),
        Target::Asg {
            groups: Some(names),
            ..
        } => {
            live_of(AnySlots::Asg(AsgGroups {
                clients: access.clients.clone(),
                names: pair_of(names),
            }))
            .await
        }
        Target::Eks {
            namespace,
            deployment: Some(name),
            container,
            ..
        } => Ok(in_place(
            deployments(access, namespace, container)
                .release(name)
                .await?,
        )),
        Target::Eks {
            namespace,
            deployments: Some(names),
            container,
            ..
        } => {
            live_of(AnySlots::Eks(EksDeployments {
                deployments: deployments(access, namespace, container),
                names: pair_of(names),
            }))
            .await
        }
        Target::Asg { .. } | Target::Eks { .. } => {
            unreachable!("checked when the config was loaded")
        }
    }
}

/// The driver for `service`, between releases `stable` and `new`.
///
/// # Errors
/// A side-by-side service without a traffic table.
pub fn driver(
    access: &Access,
    service_name: &str,
    service: &Service,
    side_by_side: bool,
    stable: &str,
    new: &str,
) -> anyhow::Result<TargetDriver> {
    let health_timeout = duration(&service.health_timeout, Duration::from_secs(600));
    let pair = |slots| -> anyhow::Result<TargetDriver> {
        Ok(TargetDriver::Pair(SideBySide {
            slots,
            router: router(access, service_name, service)?,
            target_groups: target_groups(service).expect("a router implies a traffic table"),
            stable_release: stable.to_string(),
            new_release: new.to_string(),
            health_timeout,
            poll: POLL,
        }))
    };
    match &service.target {
        Target::Ecs {
            cluster,
            service: ecs_service,
            ..
        } if !side_by_side => Ok(TargetDriver::EcsInPlace(InPlaceDriver(EcsRolling {
            clients: access.clients.clone(),
            cluster: cluster.clone(),
            service: ecs_service.clone(),
            progress_deadline: health_timeout,
            poll: POLL,
        }))),
        Target::Ecs {
            cluster,
            service: ecs_service,
            desired_count,
        } => Ok(TargetDriver::EcsTaskSets(EcsTaskSets {
            clients: access.clients.clone(),
            router: router(access, service_name, service)?,
            cluster: cluster.clone(),
            service: ecs_service.clone(),
            desired: *desired_count,
            target_groups: target_groups(service).expect("a router implies a traffic table"),
            stable_release: stable.to_string(),
            new_release: new.to_string(),
            health_timeout,
            poll: POLL,
        })),
        Target::Asg {
            group: Some(group),
            desired_count,
            ..
        } => Ok(TargetDriver::AsgInPlace(InPlaceDriver(AsgRolling {
            clients: access.clients.clone(),
            group: group.clone(),
            desired: *desired_count,
            progress_deadline: health_timeout,
            poll: POLL,
        }))),
        Target::Asg {
            groups: Some(names),
            ..
        } => pair(AnySlots::Asg(AsgGroups {
            clients: access.clients.clone(),
            names: pair_of(names),
        })),
        Target::Eks {
            namespace,
            deployment: Some(name),
            container,
            ..
        } => Ok(TargetDriver::EksInPlace(InPlaceDriver(EksRolling {
            deployments: deployments(access, namespace, container),
            name: name.clone(),
            progress_deadline: health_timeout,
            poll: POLL,
        }))),
        Target::Eks {
            namespace,
            deployments: Some(names),
            container,
            ..
        } => pair(AnySlots::Eks(EksDeployments {
            deployments: deployments(access, namespace, container),
            names: pair_of(names),
        })),
        Target::Asg { .. } | Target::Eks { .. } => {
            unreachable!("checked when the config was loaded")
        }
    }
}

/// The two units of an Auto Scaling or EKS service.
// One per run: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum AnySlots {
    Asg(AsgGroups),
    Eks(EksDeployments),
}

impl pair::Slots for AnySlots {
    fn describe(&self) -> String {
        match self {
            AnySlots::Asg(s) => s.describe(),
            AnySlots::Eks(s) => s.describe(),
        }
    }
    async fn read(&self) -> Result<[pair::Slot; 2], DriverError> {
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
    async fn set_release(&self, slot: &pair::Slot, release: &str) -> Result<(), DriverError> {
        match self {
            AnySlots::Asg(s) => s.set_release(slot, release).await,
            AnySlots::Eks(s) => s.set_release(slot, release).await,
        }
    }
    async fn set_count(&self, slot: &pair::Slot, count: u32) -> Result<(), DriverError> {
        match self {
            AnySlots::Asg(s) => s.set_count(slot, count).await,
            AnySlots::Eks(s) => s.set_count(slot, count).await,
        }
    }
    async fn healthy(&self, slot: &pair::Slot, target_group: &str) -> Result<u32, DriverError> {
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
    async fn adopt(&self, new: &pair::Slot, stable: &pair::Slot) -> Result<(), DriverError> {
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
    async fn shift_traffic(&self, new_percent: u8) -> Result<u8, DriverError> {
        delegate!(self, d => d.shift_traffic(new_percent).await)
    }
    async fn route_test_traffic(&self) -> Result<(), DriverError> {
        delegate!(self, d => d.route_test_traffic().await)
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
