//! The rollout engine of deployer: everything that decides, nothing that touches a cloud.
//!
//! - [`rollout`]: the [`Engine`](rollout::Engine) asks a [`Strategy`](strategy::Strategy)
//!   for one step at a time, checks it against the [`safety`] rules, journals it
//!   ([`state`]) before carrying it out through a [`Driver`](driver::Driver), runs
//!   [`gates`], and rolls back on any failure.
//! - [`plan`]: the same strategy and rules against a simulated target, for `deployer plan`
//!   and for the check that a strategy fits its target before anything changes.
//! - [`events`] and [`describe`]: what happened, in words; [`redact`]: URLs fit to print.
//! - [`sim`]: an in-memory target for simulations and tests.
//! - [`files`]: local files read as what they claim to be: regular, and bounded.
//!
//! What this crate must not do: link a cloud SDK, Kubernetes, a WebAssembly runtime or
//! the CLI (`cargo tree -p deployer-engine` shows none of them). Targets, the plugin host
//! and the binary implement this crate's traits ([`driver::Driver`], [`gates::Check`],
//! [`strategy::Strategy`], [`state::Store`]) from above.

pub mod describe;
pub mod driver;
pub mod events;
pub mod files;
pub mod gates;
pub mod plan;
pub mod redact;
pub mod rollout;
pub mod safety;
pub mod sim;
pub mod state;
pub mod strategy;
pub mod walk_back;
