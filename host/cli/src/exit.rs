//! Exit codes: what CI can rely on.

use std::process::ExitCode;

/// How a `deployer` invocation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The command did what it was asked (a deployment promoted).
    Success = 0,
    /// The deployment failed and was rolled back: traffic is on the stable release.
    RolledBack = 1,
    /// The rollback itself failed: traffic may not be safe, a person must look.
    RollbackFailed = 2,
    /// Bad input (arguments, config, plugin files): nothing was changed.
    BadInput = 3,
    /// Any other failure (internal error, unavailable feature).
    Error = 4,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        ExitCode::from(outcome as u8)
    }
}
