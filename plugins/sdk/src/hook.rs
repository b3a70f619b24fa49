//! Writing a hook: implement [`Hook`] and call [`export_hook!`](crate::export_hook).
//!
//! A hook reaches the outside only through the capability modules re-exported here
//! (`http`, `kv`, `clock`, `metrics`), and only as far as its config grants.

use serde::de::DeserializeOwned;

pub use crate::bindings::hook::deployer::plugin::{clock, http, kv, metrics};
pub use crate::bindings::hook::exports::deployer::plugin::hook::HookContext;
use crate::{GateResult, GateStatus, ParamError, PluginInfo, params};

/// A hook run at a lifecycle point; its result counts as a gate.
pub trait Hook {
    type Params: DeserializeOwned;

    fn info() -> PluginInfo;

    fn check(_params: &Self::Params) -> Vec<ParamError> {
        Vec::new()
    }

    fn run(params: &Self::Params, ctx: &HookContext) -> GateResult;
}

/// Parse and check parameters, as the exported `validate` does.
///
/// # Errors
/// All problems found, each naming its field.
pub fn validate<H: Hook>(json: &str) -> Result<H::Params, Vec<ParamError>> {
    let parsed = params::parse::<H::Params>(json)?;
    let errors = H::check(&parsed);
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// The exported `run`: bad parameters make the gate fail rather than trap.
pub fn run<H: Hook>(name: &str, ctx: &HookContext) -> GateResult {
    match validate::<H>(&ctx.params) {
        Ok(params) => H::run(&params, ctx),
        Err(errors) => result(
            name,
            GateStatus::Fail,
            format!(
                "invalid hook parameters: {}",
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
    }
}

/// Short constructor for a [`GateResult`] without a measured value.
pub fn result(name: &str, status: GateStatus, detail: impl Into<String>) -> GateResult {
    GateResult {
        name: name.to_string(),
        status,
        detail: detail.into(),
        observed: None,
    }
}

/// Export a [`Hook`] implementation as the component's `hook` interface.
#[macro_export]
macro_rules! export_hook {
    ($ty:ty) => {
        // Exports only exist in the wasm build; natively the crate is a plain library
        // for unit tests (and export names like `deployer:plugin/...` are not symbols).
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __DeployerHookExport;
            impl $crate::bindings::hook::exports::deployer::plugin::hook::Guest for __DeployerHookExport {
                fn info() -> $crate::PluginInfo {
                    <$ty as $crate::Hook>::info()
                }
                fn validate(params: ::std::string::String) -> ::std::result::Result<(), ::std::vec::Vec<$crate::ParamError>> {
                    $crate::hook::validate::<$ty>(&params).map(|_| ())
                }
                fn run(ctx: $crate::hook::HookContext) -> $crate::GateResult {
                    let name = <$ty as $crate::Hook>::info().name;
                    $crate::hook::run::<$ty>(&name, &ctx)
                }
            }
            $crate::bindings::hook::__export_hook_world!(__DeployerHookExport with_types_in $crate::bindings::hook);
        };
    };
}
