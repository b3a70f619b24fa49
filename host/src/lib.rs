//! deployer: progressive deployments for AWS ECS, EKS and EC2 Auto Scaling, with
//! strategies and hooks as sandboxed WebAssembly components.
//!
//! - [`plugin`] is the wasmtime host that loads, checks and runs plugin components.
//! - [`rollout`] holds the safety rules every step passes, and steps in words.
//! - [`plan`] simulates a strategy without touching any cloud.
//! - [`config`] reads `deployer.toml`.
//! - [`cli`]: the command line, and [`exit`] its exit codes; [`redact`] keeps secrets
//!   out of everything it prints.

pub mod aws;
pub mod cli;
pub mod config;
pub mod exit;
pub mod gates;
pub mod k8s;
pub mod plan;
pub mod plugin;
pub mod redact;
pub mod rollout;
pub mod state;
pub mod target;
