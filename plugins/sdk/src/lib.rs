//! Guest SDK for deployer plugins.
//!
//! A plugin is a WebAssembly component that implements the `strategy` or `hook` world
//! of the `deployer:plugin` WIT package (see `wit/` in the deployer repository). This
//! crate wraps the generated bindings in plain Rust:
//!
//! - [`Strategy`] and [`export_strategy!`]: a strategy is a deterministic function from
//!   [`RolloutState`] to the next [`Step`]. Most strategies only compute a fixed script
//!   of steps and let [`script::next_step`] follow it, including the gate retry policy.
//! - [`Hook`] and [`export_hook!`]: a hook runs at a lifecycle point and returns a gate
//!   result.
//! - [`params`]: parameter parsing with field paths in errors, and [`params::Duration`].
//! - [`testing`]: run a strategy natively through a whole rollout, no WASM needed.
//!
//! Enable the `strategy` or `hook` feature to choose what the crate exports. With
//! neither, it is the shared part only (types, [`params`], [`script`], [`log`]): enough
//! for a library of helpers that a hook crate and a strategy crate both use.

pub mod bindings;
#[cfg(feature = "hook")]
pub mod hook;
pub mod params;
pub mod script;
#[cfg(feature = "strategy")]
pub mod strategy;
#[cfg(feature = "strategy")]
pub mod testing;

pub use bindings::types::*;
#[cfg(feature = "hook")]
pub use hook::Hook;
pub use params::Duration;
#[cfg(feature = "strategy")]
pub use strategy::Strategy;

/// Short constructor for [`ParamError`].
pub fn param_error(field: impl Into<String>, message: impl Into<String>) -> ParamError {
    ParamError {
        field: field.into(),
        message: message.into(),
    }
}

/// Log into the deployment's log. Natively (in unit tests) this prints to stderr.
pub fn log(level: bindings::log::Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}
