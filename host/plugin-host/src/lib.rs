//! The sandboxed WebAssembly plugin host of deployer: wasmtime, the capabilities a
//! plugin may be granted, and the cache of compiled components.
//!
//! What this crate must not do: make cloud calls of its own or hold credentials (the
//! capabilities reach the outside only through providers the binary injects, see
//! [`HostServices`]), or know about deployments beyond the engine's traits: a strategy
//! component is an engine [`Strategy`](deployer_engine::strategy::Strategy), a hook a
//! gate [`Check`](deployer_engine::gates::Check).
//!
//! One [`PluginHost`] per process owns the wasmtime engine, the compiled-component cache
//! and the capability providers. Loading a plugin checks, in order and before any guest
//! code runs: the sha256 digest from config, that the file is a component, that it
//! implements the expected world at a contract version the host runs (the current one,
//! or an earlier one kept in `wit/previous/`: see [`Contract`]), and that it imports
//! only what its config grants. Every call then runs in a fresh store with memory and
//! instance limits and a deadline; a trap, timeout or limit hit comes back as a typed
//! [`PluginError`] for that call, and the host goes on serving the next one.

pub mod bindings;
pub mod builtin;
mod cache;
pub mod capabilities;
mod convert;
pub mod egress;
mod engine;
mod engine_config;
mod error;
pub mod hook;
pub mod inspect;
mod limits;
mod load;
mod prepared;
pub mod promql;
pub mod strategy;
mod ticker;
pub mod wit_source;

pub use capabilities::{Grants, HostServices};
pub use engine::PluginHost;
pub use error::PluginError;
pub use limits::Limits;
pub use load::{Contract, PluginKind, PluginSource, sha256_hex};

pub use deployer_contract::CONTRACT_VERSION;
