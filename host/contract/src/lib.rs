//! The plugin contract, as the host crates see it: the data types of the WIT interface
//! `deployer:plugin/types` (in `wit/types.wit`) as plain Rust values, and the duration
//! syntax config, parameters and output share.
//!
//! This is the bottom of the dependency graph: it depends on serde and nothing else, so
//! the engine can reason about steps without linking a WebAssembly runtime, and the guest
//! SDK can share [`Duration`] with the host.
//!
//! What this crate must not do: generate runtime bindings or carry behaviour. The plugin
//! host (`deployer-plugin-host`) converts between these types and the ones wasmtime
//! generates from `wit/`, and a test there pins that both serialize identically (journals
//! written before this crate existed must still read).

mod duration;
pub mod types;

pub use duration::Duration;
pub use types::*;

/// The contract version the host implements (`deployer:plugin@CONTRACT_VERSION`).
pub const CONTRACT_VERSION: &str = "0.3.1";

/// The earlier contract versions the host still links, oldest first. Components built
/// against them keep loading and running: their types are the current ones less what
/// later versions added (0.1.0 also had `actions`, which a 0.1 hook may not import).
pub const EARLIER_CONTRACT_VERSIONS: [&str; 2] = ["0.1.0", "0.2.0"];

/// The longest bake one step may ask for. The host refuses a longer `bake` step; the
/// built-in strategies refuse longer bakes in their parameters, so a run never starts
/// on a plan the host would stop half-way.
pub const MAX_BAKE: Duration = Duration::from_secs(24 * 3600);
