//! Integration suites, one module per feature (wasmtime's `tests/all` layout).

mod bad_input;
mod ci_output;
mod cli;
mod cli_snapshots;
mod crashes;
mod ecs;
mod examples;
mod faults;
mod gates;
mod hostile;
mod plan;
mod plugin_cache;
mod plugin_capabilities;
mod plugin_loading;
mod plugin_sandbox;
mod quickstart;
mod rollout;
