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
use crate::aws::ecs_pair::EcsServices;
use crate::aws::ecs_rolling::EcsRolling;
use crate::aws::images::{self, ImageError, ImageRelease, Images};
use crate::aws::lambda::{self, FunctionAlias, LambdaVersions};
use crate::aws::scaling::{self, Saved};
use crate::k8s::Cluster;
use crate::k8s::deployments::{Deployments, EksDeployments, EksRolling};
use crate::side_by_side::{self, SideBySide};
use crate::spec::{ReleaseKind, ServiceSpec, TargetSpec, TrafficSpec};

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
        if let TargetSpec::Lambda { function, alias } = &self.service.target {
            return lambda::pin(&function_alias(&self.access, function, alias), release).await;
        }
        if self.service.target.release_kind() != ReleaseKind::TaskDefinition {
            return Ok(release.to_string());
        }
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

impl ServiceTarget {
    /// `deployer run --publish`: the function's current code published as a version (or
    /// the newest version, when nothing changed since it was published).
    ///
    /// # Errors
    /// A target that is not a Lambda function; AWS errors.
    pub async fn publish(&self) -> Result<String, DriverError> {
        match &self.service.target {
            TargetSpec::Lambda { function, alias } => {
                lambda::publish(&function_alias(&self.access, function, alias)).await
            }
            _ => Err(DriverError::Failed(
                "--publish publishes a Lambda function's code as a version; this service is \
                 not a Lambda function: deploy it with --release or --image"
                    .into(),
            )),
        }
    }

    /// The release `deployer run --image` deploys: the live release with only these
    /// images changed (see [`images`]), registered or reused, pinned. Made before the
    /// engine runs, so it is journaled like any `--release`.
    ///
    /// # Errors
    /// Refused when the images do not fit the live release; AWS errors.
    pub async fn release_from_images(&self, wanted: &Images) -> Result<ImageRelease, ImageError> {
        let clients = &self.access.clients;
        match self.service.target.release_kind() {
            ReleaseKind::TaskDefinition => {
                let live = self.inspect().await?.primary_release;
                images::register_image_release(clients, &live, wanted).await
            }
            ReleaseKind::LaunchTemplateVersion => {
                let live = self.inspect().await?.primary_release;
                images::launch_template_release(clients, &live, wanted).await
            }
            ReleaseKind::Image => {
                let container = match &self.service.target {
                    TargetSpec::EksPair { container, .. }
                    | TargetSpec::EksOne { container, .. } => container.as_deref(),
                    _ => None,
                };
                images::image_release("", container, wanted)
            }
            ReleaseKind::FunctionVersion => Err(ImageError::Refused(
                "a Lambda function's release is a published version, not an image: deploy \
                 with --release VERSION, or --publish to publish its current code"
                    .into(),
            )),
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
        desired: u32,
    ) -> Result<TargetDriver, DriverError> {
        driver(
            &self.access,
            &self.service,
            side_by_side,
            stable,
            new,
            desired,
        )
    }

    fn same_release(&self, a: &str, b: &str) -> bool {
        self.service.target.same_release(a, b)
    }
}

fn function_alias(access: &Access, function: &str, alias: &str) -> FunctionAlias {
    FunctionAlias {
        clients: access.clients.clone(),
        function: function.to_string(),
        alias: alias.to_string(),
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
    let clients = &access.clients;
    let shape = |primary_release, side_by_side, live_units, saved: Saved| Shape {
        primary_release,
        side_by_side,
        live_units: Some(live_units),
        scaling: saved.to_journal(),
        blocked: None,
        serves_on_demand: false,
    };
    let pair = |live: side_by_side::Live, saved: Saved| Shape {
        blocked: live.blocked,
        ..shape(live.release, true, live.slot.desired, saved)
    };
    match target {
        TargetSpec::Ecs {
            cluster,
            service,
            traffic,
            ..
        } => {
            let groups = traffic.as_ref().map(|t| &t.target_groups);
            let ecs = crate::aws::ecs::inspect(clients, cluster, service, groups).await?;
            let saved = ecs_scaling(clients, cluster, std::slice::from_ref(service)).await?;
            Ok(shape(
                ecs.primary_release,
                ecs.side_by_side,
                ecs.desired,
                saved,
            ))
        }
        TargetSpec::EcsPair {
            cluster,
            services,
            traffic,
            ..
        } => {
            let slots = EcsServices {
                clients: clients.clone(),
                cluster: cluster.clone(),
                names: services.clone(),
            };
            let router = router(access, traffic);
            let live = side_by_side::live(&slots, &router, &traffic.target_groups).await?;
            let saved = ecs_scaling(clients, cluster, services).await?;
            Ok(pair(live, saved))
        }
        TargetSpec::AsgOne { group, .. } => {
            let (release, desired) = crate::aws::asg::current(clients, group).await?;
            let saved = group_scaling(clients, std::slice::from_ref(group)).await?;
            Ok(shape(release, false, desired, saved))
        }
        TargetSpec::AsgPair {
            groups, traffic, ..
        } => {
            let slots = AsgGroups {
                clients: clients.clone(),
                names: groups.clone(),
            };
            let router = router(access, traffic);
            let live = side_by_side::live(&slots, &router, &traffic.target_groups).await?;
            let saved = group_scaling(clients, groups).await?;
            Ok(pair(live, saved))
        }
        TargetSpec::EksOne {
            namespace,
            deployment,
            container,
            ..
        } => {
            let (release, replicas) = deployments(access, namespace, container)?
                .release_and_replicas(deployment)
                .await?;
            // A HorizontalPodAutoscaler is not suspended: Kubernetes has no pause for
            // one, and an in-place rollout is Kubernetes's own, which an HPA may resize
            // safely (see docs/targets.md).
            Ok(shape(release, false, replicas, Saved::default()))
        }
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
            let live = side_by_side::live(&slots, &router, &traffic.target_groups).await?;
            Ok(pair(live, Saved::default()))
        }
        TargetSpec::Lambda { function, alias } => {
            lambda::inspect(&function_alias(access, function, alias)).await
        }
    }
}

/// What `deployer validate --account` reports of a target, changing nothing: a line
/// saying what was found, or the problems (each with its fix). `Err` only for errors
/// that say nothing about the config (throttling, the network, credentials).
///
/// # Errors
/// Transient AWS or cluster errors.
pub async fn account_check(
    access: &Access,
    target: &TargetSpec,
) -> Result<Result<String, Vec<String>>, DriverError> {
    let shape = match inspect(access, target).await {
        Ok(shape) => shape,
        Err(DriverError::Failed(problem)) => return Ok(Err(vec![problem])),
        Err(transient) => return Err(transient),
    };
    let mut problems: Vec<String> = shape.blocked.iter().cloned().collect();
    if let TargetSpec::EcsPair {
        cluster, services, ..
    } = target
    {
        let slots = EcsServices {
            clients: access.clients.clone(),
            cluster: cluster.clone(),
            names: services.clone(),
        };
        if let Err(DriverError::Failed(missing)) = slots.services().await {
            problems.push(missing);
        }
        // Each slot's bounds are its scalable target's (min, max), if it has one.
        let read = side_by_side::Slots::read(&slots).await?;
        for slot in &read {
            if let (0, Some((min, _))) = (slot.desired, slot.bounds)
                && min > 0
            {
                problems.push(format!(
                    "ECS service {} is idle but its scalable target's minimum capacity is {min}: Application \
                     Auto Scaling may start tasks there that serve nothing, and a deployment refuses an idle \
                     side with tasks. Set its minimum to 0 (deployer moves the live side's bounds to the new \
                     service at each promotion; docs/targets.md)",
                    slot.name
                ));
            }
        }
        // Scaling belongs to whichever side is live, so both need it or neither.
        let (scaled, unscaled): (Vec<_>, Vec<_>) = read.iter().partition(|s| s.bounds.is_some());
        if let ([has], [lacks]) = (scaled.as_slice(), unscaled.as_slice()) {
            let (has, lacks) = (&has.name, &lacks.name);
            problems.push(format!(
                "ECS service {has} has an Application Auto Scaling scalable target and {lacks} has none; \
                 after a deployment {lacks} is the live side and would not scale. Register one for \
                 {lacks} with the same policies (docs/targets.md), or remove both"
            ));
        }
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let suspended = shape
        .scaling
        .as_ref()
        .and_then(|s| Saved::from_journal(s).ok())
        .map(|s| {
            let n = s.scalable_targets.len() + s.groups.len();
            format!("; held still while it deploys: {n} scalable target(s) or group(s)")
        })
        .unwrap_or_default();
    Ok(Ok(format!(
        "{} is live on {} unit(s), {}{suspended}",
        shape.primary_release,
        shape.live_units.unwrap_or(0),
        if shape.side_by_side {
            "side by side"
        } else {
            "updated in place"
        }
    )))
}

/// What is suspended on the scalable targets of these ECS services (those that have one).
async fn ecs_scaling(
    clients: &Clients,
    cluster: &str,
    services: &[String],
) -> Result<Saved, DriverError> {
    let ids: Vec<String> = services
        .iter()
        .map(|s| scaling::ecs_resource_id(cluster, s))
        .collect();
    Ok(Saved {
        scalable_targets: scaling::describe_scalable(clients, &ids)
            .await?
            .into_iter()
            .flatten()
            .map(|s| s.suspended)
            .collect(),
        groups: Vec::new(),
    })
}

/// Which scaling processes are suspended on these groups.
async fn group_scaling(clients: &Clients, groups: &[String]) -> Result<Saved, DriverError> {
    Ok(Saved {
        scalable_targets: Vec::new(),
        groups: scaling::describe_groups(clients, groups).await?,
    })
}

/// The driver for `service`, between releases `stable` and `new` at `desired` units;
/// `side_by_side` is what [`inspect`] found.
///
/// # Errors
/// A service found to deploy side by side that has no traffic table.
pub fn driver(
    access: &Access,
    service: &ServiceSpec,
    side_by_side: bool,
    stable: &str,
    new: &str,
    desired: u32,
) -> Result<TargetDriver, DriverError> {
    let health_timeout = service.health_timeout;
    let pair = |slots, traffic: &TrafficSpec| {
        AnyDriver::Pair(SideBySide {
            slots,
            router: router(access, traffic),
            target_groups: traffic.target_groups.clone(),
            stable_release: stable.to_string(),
            new_release: new.to_string(),
            health_timeout,
            poll: POLL,
        })
    };
    let inner = match &service.target {
        TargetSpec::Ecs {
            cluster, service, ..
        } if !side_by_side => AnyDriver::EcsInPlace(InPlaceDriver(EcsRolling {
            clients: access.clients.clone(),
            cluster: cluster.clone(),
            service: service.clone(),
            progress_deadline: health_timeout,
            poll: POLL,
        })),
        TargetSpec::Ecs {
            cluster,
            service,
            traffic,
            ..
        } => {
            let traffic = traffic.as_ref().ok_or_else(|| {
                DriverError::Failed(format!(
                    "ECS service {service} deploys with task sets (EXTERNAL controller): configure its traffic \
                     table (listener and two target groups)"
                ))
            })?;
            AnyDriver::EcsTaskSets(EcsTaskSets {
                clients: access.clients.clone(),
                router: router(access, traffic),
                cluster: cluster.clone(),
                service: service.clone(),
                desired,
                target_groups: traffic.target_groups.clone(),
                stable_release: stable.to_string(),
                new_release: new.to_string(),
                health_timeout,
                poll: POLL,
            })
        }
        TargetSpec::EcsPair {
            cluster,
            services,
            traffic,
            ..
        } => pair(
            AnySlots::Ecs(EcsServices {
                clients: access.clients.clone(),
                cluster: cluster.clone(),
                names: services.clone(),
            }),
            traffic,
        ),
        TargetSpec::AsgOne { group, .. } => AnyDriver::AsgInPlace(InPlaceDriver(AsgRolling {
            clients: access.clients.clone(),
            group: group.clone(),
            desired,
            progress_deadline: health_timeout,
            poll: POLL,
        })),
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
        } => AnyDriver::EksInPlace(InPlaceDriver(EksRolling {
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
        TargetSpec::Lambda { function, alias } => AnyDriver::Lambda(LambdaVersions::new(
            function_alias(access, function, alias),
            stable,
            new,
            health_timeout,
            POLL,
        )),
    };
    Ok(TargetDriver {
        inner,
        clients: access.clients.clone(),
    })
}

/// The two units of an ECS, Auto Scaling or EKS service.
// One per run: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum AnySlots {
    Ecs(EcsServices),
    Asg(AsgGroups),
    Eks(EksDeployments),
}

impl side_by_side::Slots for AnySlots {
    fn describe(&self) -> String {
        match self {
            AnySlots::Ecs(s) => s.describe(),
            AnySlots::Asg(s) => s.describe(),
            AnySlots::Eks(s) => s.describe(),
        }
    }
    async fn read(&self) -> Result<[side_by_side::Slot; 2], DriverError> {
        match self {
            AnySlots::Ecs(s) => s.read().await,
            AnySlots::Asg(s) => s.read().await,
            AnySlots::Eks(s) => s.read().await,
        }
    }
    fn same_release(&self, a: &str, b: &str) -> bool {
        match self {
            AnySlots::Ecs(s) => s.same_release(a, b),
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
            AnySlots::Ecs(s) => s.set_release(slot, release).await,
            AnySlots::Asg(s) => s.set_release(slot, release).await,
            AnySlots::Eks(s) => s.set_release(slot, release).await,
        }
    }
    async fn set_count(&self, slot: &side_by_side::Slot, count: u32) -> Result<(), DriverError> {
        match self {
            AnySlots::Ecs(s) => s.set_count(slot, count).await,
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
            AnySlots::Ecs(s) => s.healthy(slot, target_group).await,
            AnySlots::Asg(s) => s.healthy(slot, target_group).await,
            AnySlots::Eks(s) => s.healthy(slot, target_group).await,
        }
    }
    async fn verify(&self, target_groups: &[String; 2]) -> Result<(), DriverError> {
        match self {
            AnySlots::Ecs(s) => s.verify(target_groups).await,
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
            AnySlots::Ecs(s) => s.adopt(new, stable).await,
            AnySlots::Asg(s) => s.adopt(new, stable).await,
            AnySlots::Eks(s) => s.adopt(new, stable).await,
        }
    }
}

/// Every target behind the one driver interface.
pub enum AnyDriver {
    EcsTaskSets(EcsTaskSets),
    EcsInPlace(InPlaceDriver<EcsRolling>),
    AsgInPlace(InPlaceDriver<AsgRolling>),
    EksInPlace(InPlaceDriver<EksRolling>),
    Pair(SideBySide<AnySlots>),
    Lambda(LambdaVersions),
}

/// A target's driver, and the clients that hold its own scaling still during a
/// deployment (the same for every shape: see [`scaling`]).
pub struct TargetDriver {
    pub inner: AnyDriver,
    clients: Clients,
}

macro_rules! delegate {
    ($self:ident, $d:ident => $call:expr) => {
        match &$self.inner {
            AnyDriver::EcsTaskSets($d) => $call,
            AnyDriver::EcsInPlace($d) => $call,
            AnyDriver::AsgInPlace($d) => $call,
            AnyDriver::EksInPlace($d) => $call,
            AnyDriver::Pair($d) => $call,
            AnyDriver::Lambda($d) => $call,
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
    async fn suspend_scaling(&self, saved: &serde_json::Value) -> Result<(), DriverError> {
        scaling::suspend(&self.clients, &Saved::from_journal(saved)?).await
    }
    async fn restore_scaling(&self, saved: &serde_json::Value) -> Result<(), DriverError> {
        scaling::restore(&self.clients, &Saved::from_journal(saved)?).await
    }
}
