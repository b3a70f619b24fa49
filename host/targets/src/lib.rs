//! deployer's targets: everything that talks to a cloud or a cluster on the engine's
//! behalf.
//!
//! - [`spec`]: what a service's target is, as typed values (config resolves into them).
//! - [`target`]: one engine [`Driver`](deployer_engine::driver::Driver) per target shape,
//!   built from a spec, and the read-only inspection that runs before any change.
//! - [`aws`]: the AWS clients (with API call counting and the account-wide retry budget),
//!   ECS task sets and in-place deployments, Auto Scaling groups, ALB weights, EKS access.
//! - [`k8s`]: Kubernetes Deployments on EKS.
//! - [`side_by_side`]: the generic driver for two long-lived units that take turns (two
//!   Auto Scaling groups, two Deployments).
//! - [`gates`]: HTTP smoke tests, CloudWatch alarms and metrics, PromQL queries as engine
//!   gate checks.
//! - [`prometheus`]: Prometheus's query API (self-run, or Amazon Managed Service for
//!   Prometheus with SigV4), for gates and for hooks' `metrics` capability.
//! - [`state`]: the S3 + DynamoDB journal store and lease.
//!
//! What this crate must not do: decide. Ordering, journaling, safety rules and rollback
//! are the engine's; every operation here is absolute and idempotent (see
//! `deployer_engine::driver`), and knows nothing of the CLI, config files or plugins.

pub mod aws;
pub mod gates;
pub mod k8s;
pub mod prometheus;
pub mod side_by_side;
pub mod spec;
pub mod state;
pub mod target;
