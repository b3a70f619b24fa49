//! Integration suites, one module per feature (wasmtime's `tests/all` layout).

mod cli;
mod ecs;
mod examples;
mod gates;
mod plan;
mod plugin_cache;
mod plugin_capabilities;
mod plugin_loading;
mod plugin_sandbox;
mod rollout;
