//! What a service's target and gates are, as typed values: the binary resolves
//! `deployer.toml` into these once, and drivers and gates are built from them. Every
//! shape config allows has its own variant, so nothing here re-checks what config
//! checking already refused.

use std::time::Duration;

pub use crate::aws::alb::Route;
pub use crate::k8s::Access as KubeAccess;

/// ALB routing of a service deployed side by side (blue-green, canary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficSpec {
    /// The production listener (default action) or listener rule.
    pub production: Route,
    /// The two target groups the releases alternate between, in the order of the
    /// target's two units.
    pub target_groups: [String; 2],
    /// A second listener that can send test traffic to the new side only.
    pub test_listener: Option<String>,
}

/// What a service runs on, one variant per shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    /// An ECS service. Whether it deploys with task sets (EXTERNAL controller: side by
    /// side, `traffic` required) or in place (ECS controller) is the service's own
    /// setting, read from AWS before deploying; config cannot say it.
    Ecs {
        cluster: String,
        service: String,
        desired: Option<u32>,
        traffic: Option<TrafficSpec>,
    },
    /// Two ECS services on the ECS deployment controller side by side, behind
    /// `traffic.target_groups` in order.
    EcsPair {
        cluster: String,
        services: [String; 2],
        desired: Option<u32>,
        traffic: TrafficSpec,
    },
    /// Two Auto Scaling groups side by side, behind `traffic.target_groups` in order.
    AsgPair {
        groups: [String; 2],
        desired: Option<u32>,
        traffic: TrafficSpec,
    },
    /// One Auto Scaling group, updated in place.
    AsgOne { group: String, desired: Option<u32> },
    /// Two Deployments side by side (TargetGroupBinding to `traffic.target_groups`).
    EksPair {
        access: KubeAccess,
        namespace: String,
        deployments: [String; 2],
        container: Option<String>,
        desired: Option<u32>,
        traffic: TrafficSpec,
    },
    /// One Deployment, updated in place by its own rollout.
    EksOne {
        access: KubeAccess,
        namespace: String,
        deployment: String,
        container: Option<String>,
        desired: Option<u32>,
    },
    /// A Lambda function behind an alias: the alias points at the stable version and
    /// its routing config sends a weighted share to the new one. A unit is one
    /// provisioned concurrent execution (see [`crate::aws::lambda`]).
    Lambda { function: String, alias: String },
}

/// What a release of a target is, which decides how `--release` is pinned and what
/// `--image` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseKind {
    /// An ECS task definition revision (`web:7`).
    TaskDefinition,
    /// A launch template version (`web:3`).
    LaunchTemplateVersion,
    /// A container image (the image is the release).
    Image,
    /// A published Lambda function version (`42`).
    FunctionVersion,
}

impl TargetSpec {
    /// A Lambda function: versions behind an alias, not units behind a load balancer.
    pub fn is_lambda(&self) -> bool {
        matches!(self, TargetSpec::Lambda { .. })
    }

    /// What this target's releases are.
    pub fn release_kind(&self) -> ReleaseKind {
        match self {
            TargetSpec::Ecs { .. } | TargetSpec::EcsPair { .. } => ReleaseKind::TaskDefinition,
            TargetSpec::AsgPair { .. } | TargetSpec::AsgOne { .. } => {
                ReleaseKind::LaunchTemplateVersion
            }
            TargetSpec::EksPair { .. } | TargetSpec::EksOne { .. } => ReleaseKind::Image,
            TargetSpec::Lambda { .. } => ReleaseKind::FunctionVersion,
        }
    }

    /// Units of the service at full size, as configured; `None`: sized from what the
    /// live side runs when a deployment begins.
    pub fn desired(&self) -> Option<u32> {
        match self {
            TargetSpec::Ecs { desired, .. }
            | TargetSpec::EcsPair { desired, .. }
            | TargetSpec::AsgPair { desired, .. }
            | TargetSpec::AsgOne { desired, .. }
            | TargetSpec::EksPair { desired, .. }
            | TargetSpec::EksOne { desired, .. } => *desired,
            // Sized from the alias's provisioned concurrency when a deployment begins.
            TargetSpec::Lambda { .. } => None,
        }
    }

    /// The traffic table, for the shapes that have one.
    pub fn traffic(&self) -> Option<&TrafficSpec> {
        match self {
            TargetSpec::Ecs { traffic, .. } => traffic.as_ref(),
            TargetSpec::EcsPair { traffic, .. }
            | TargetSpec::AsgPair { traffic, .. }
            | TargetSpec::EksPair { traffic, .. } => Some(traffic),
            TargetSpec::AsgOne { .. } | TargetSpec::EksOne { .. } | TargetSpec::Lambda { .. } => {
                None
            }
        }
    }

    /// Whether `a` and `b` name the same release of this target (`web:2` and its ARN;
    /// `3` and `web:3`).
    pub fn same_release(&self, a: &str, b: &str) -> bool {
        match self {
            TargetSpec::Ecs { .. } | TargetSpec::EcsPair { .. } => {
                crate::aws::ecs::same_task_definition(a, b)
            }
            TargetSpec::AsgPair { .. } | TargetSpec::AsgOne { .. } => {
                crate::aws::asg::same_release(a, b)
            }
            TargetSpec::EksPair { .. } | TargetSpec::EksOne { .. } => a == b,
            TargetSpec::Lambda { .. } => crate::aws::lambda::same_version(a, b),
        }
    }
}

/// A whole service as deployer drives it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSpec {
    pub target: TargetSpec,
    /// How long new units may take to become healthy (and an in-place rollout to move).
    pub health_timeout: Duration,
}
