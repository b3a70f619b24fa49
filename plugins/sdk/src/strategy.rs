//! Writing a strategy: implement [`Strategy`] and call [`export_strategy!`](crate::export_strategy).

use serde::de::DeserializeOwned;

use crate::{ParamError, PluginInfo, RolloutState, Step, params};

/// A deployment strategy: a deterministic function from the rollout so far to the next
/// step. It must not depend on anything but its arguments (no clock, no randomness).
pub trait Strategy {
    /// The strategy's parameters, parsed from the JSON the host passes.
    type Params: DeserializeOwned;

    fn info() -> PluginInfo;

    /// Checks beyond what `Params`' types enforce (ranges, ordering). Each error names
    /// the field and the fix.
    fn check(_params: &Self::Params) -> Vec<ParamError> {
        Vec::new()
    }

    /// The next step.
    ///
    /// # Errors
    /// A message the host logs before it rolls back.
    fn next(params: &Self::Params, state: &RolloutState) -> Result<Step, String>;
}

/// Parse and check parameters, as the exported `validate` does.
///
/// # Errors
/// All problems found, each naming its field.
pub fn validate<S: Strategy>(json: &str) -> Result<S::Params, Vec<ParamError>> {
    let parsed = params::parse::<S::Params>(json)?;
    let errors = S::check(&parsed);
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// The exported `next`: validate the parameters, then ask the strategy.
///
/// # Errors
/// Invalid parameters, or the strategy's own error.
pub fn next<S: Strategy>(state: &RolloutState) -> Result<Step, String> {
    let params = validate::<S>(&state.params).map_err(|errors| {
        let list: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        format!("invalid strategy parameters: {}", list.join("; "))
    })?;
    S::next(&params, state)
}

/// Export a [`Strategy`] implementation as the component's `strategy` interface.
///
/// ```ignore
/// struct MyStrategy;
/// impl deployer_plugin_sdk::Strategy for MyStrategy { /* ... */ }
/// deployer_plugin_sdk::export_strategy!(MyStrategy);
/// ```
#[macro_export]
macro_rules! export_strategy {
    ($ty:ty) => {
        // Exports only exist in the wasm build; natively the crate is a plain library
        // for unit tests (and export names like `deployer:plugin/...` are not symbols).
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __DeployerStrategyExport;
            impl $crate::bindings::strategy::exports::deployer::plugin::strategy::Guest
                for __DeployerStrategyExport
            {
                fn info() -> $crate::PluginInfo {
                    <$ty as $crate::Strategy>::info()
                }
                fn validate(params: ::std::string::String) -> ::std::result::Result<(), ::std::vec::Vec<$crate::ParamError>> {
                    $crate::strategy::validate::<$ty>(&params).map(|_| ())
                }
                fn next(state: $crate::RolloutState) -> ::std::result::Result<$crate::Step, ::std::string::String> {
                    $crate::strategy::next::<$ty>(&state)
                }
            }
            $crate::bindings::strategy::__export_strategy_world!(__DeployerStrategyExport with_types_in $crate::bindings::strategy);
        };
    };
}
