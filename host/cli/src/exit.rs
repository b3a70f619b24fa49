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

impl Outcome {
    /// The outcome in words, with its exit code.
    pub fn describe(self) -> &'static str {
        match self {
            Outcome::Success => "success, exit 0",
            Outcome::RolledBack => "rolled back, exit 1",
            Outcome::RollbackFailed => "rollback failed, exit 2",
            Outcome::BadInput => "bad input, exit 3",
            Outcome::Error => "error, exit 4",
        }
    }
}

/// Bad input found outside the config file (the environment, a state file the user
/// points at): exit 3, with the message as it stands.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);
