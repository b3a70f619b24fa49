//! How the engine reaches a strategy: one trait, so the engine never names the
//! WebAssembly host. The plugin host implements it for sandboxed components; tests
//! implement it for the built-in strategies compiled natively.

use std::future::Future;

use deployer_contract::{RolloutState, Step};

/// Why a strategy gave no step: it failed, trapped, timed out or returned an error. The
/// engine fails closed (rolls back) and shows the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StrategyError(pub String);

/// A deterministic step function: the same state always gives the same step, which is
/// what makes resume, replay and `plan` true.
pub trait Strategy: Send + Sync {
    /// The strategy's name, for logs.
    fn name(&self) -> &str;

    /// sha256 of the code that decides (the component's digest): a journal is resumed
    /// only by the same code.
    fn digest(&self) -> &str;

    /// The next step for `state`.
    fn next(
        &self,
        state: &RolloutState,
    ) -> impl Future<Output = Result<Step, StrategyError>> + Send;
}
