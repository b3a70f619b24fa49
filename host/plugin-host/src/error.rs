use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// Why a plugin could not be loaded or a plugin call did not return a result.
///
/// Load errors are raised before any guest code runs. Call errors (timeout, memory
/// limit, trap, failure) are failures of that one step: the caller fails closed (rolls
/// back), and the host itself keeps working.
#[derive(Debug, Error)]
pub enum PluginError {
    #[error("plugin `{name}`: cannot read {}: {source}", path.display())]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "plugin `{name}`: `sha256` in config is not a digest: {reason}\n  \
         fix: set sha256 to the 64 hex digits printed by `deployer plugin inspect {}`",
        path.display()
    )]
    BadDigest {
        name: String,
        path: PathBuf,
        reason: String,
    },

    #[error(
        "plugin `{name}`: {} has sha256 {actual}, but config expects {expected}; refusing to run it\n  \
         fix: if you rebuilt the plugin on purpose, set sha256 = \"{actual}\"",
        path.display()
    )]
    DigestMismatch {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("plugin `{name}` is not a WebAssembly component: {reason}")]
    NotAComponent { name: String, reason: String },

    #[error("plugin `{name}` is not a valid component: {reason}")]
    Invalid { name: String, reason: String },

    #[error("plugin `{name}` is not a {expected} plugin: {found}")]
    WrongWorld {
        name: String,
        expected: &'static str,
        found: String,
    },

    #[error(
        "plugin `{name}` needs capability `{capability}`, which its config does not grant\n  fix: {fix}"
    )]
    NotGranted {
        name: String,
        capability: String,
        fix: String,
    },

    #[error("plugin `{name}` was stopped: `{function}` ran longer than its {limit:?} time limit")]
    Timeout {
        name: String,
        function: &'static str,
        limit: Duration,
    },

    #[error(
        "plugin `{name}` was stopped: `{function}` tried to use more than its {limit_mib} MiB memory limit"
    )]
    MemoryLimit {
        name: String,
        function: &'static str,
        limit_mib: usize,
    },

    #[error("plugin `{name}` crashed (trap) in `{function}`: {trap}")]
    Trap {
        name: String,
        function: &'static str,
        trap: String,
    },

    #[error("plugin `{name}` reported an error from `{function}`: {message}")]
    Failed {
        name: String,
        function: &'static str,
        message: String,
    },

    #[error("plugin host error: {0:#}")]
    Host(#[from] anyhow::Error),
}

impl PluginError {
    /// True for errors found while loading, before any guest code ran.
    pub fn is_load_error(&self) -> bool {
        matches!(
            self,
            PluginError::Read { .. }
                | PluginError::BadDigest { .. }
                | PluginError::DigestMismatch { .. }
                | PluginError::NotAComponent { .. }
                | PluginError::Invalid { .. }
                | PluginError::WrongWorld { .. }
                | PluginError::NotGranted { .. }
        )
    }
}
