//! Strategy plugins: deterministic step functions.

use deployer_contract::{ParamError, PluginInfo, RolloutState, Step};
use deployer_engine::strategy::{Strategy, StrategyError};

use super::bindings::previous::{v0_1, v0_2};
use super::bindings::types as wit;
use super::load::Contract;
use super::prepared::{Prepared, StrategyInstance, StrategyPre};
use super::{Grants, Limits, PluginError, PluginHost, PluginSource};

/// A loaded strategy, ready to be called. Each call gets a fresh instance.
pub struct StrategyPlugin(Prepared<StrategyPre>);

/// A rollout state in the types of the strategy's contract version.
enum VersionedState {
    V0_3(wit::RolloutState),
    V0_2(v0_2::types::RolloutState),
    V0_1(v0_1::types::RolloutState),
}

/// Call `$call` on whichever version's strategy export `$instance` has, the result
/// turned into plain contract types by `$plain`.
macro_rules! on_strategy {
    ($instance:expr, $store:expr, |$guest:ident| $call:expr, $plain:expr) => {
        match $instance {
            StrategyInstance::V0_3(b) => {
                let $guest = b.deployer_plugin_strategy();
                $call($store).await.map($plain)
            }
            StrategyInstance::V0_2(b) => {
                let $guest = b.deployer_plugin_strategy();
                $call($store).await.map($plain)
            }
            StrategyInstance::V0_1(b) => {
                let $guest = b.deployer_plugin_strategy();
                $call($store).await.map($plain)
            }
        }
    };
}

impl StrategyPlugin {
    /// Load and check a strategy component.
    ///
    /// # Errors
    /// Any [`PluginError`] load error: wrong digest, not a component, wrong world or
    /// contract version, forbidden imports.
    pub fn load(
        host: &PluginHost,
        source: &PluginSource,
        limits: Limits,
    ) -> Result<Self, PluginError> {
        Prepared::load(host, source, limits, Grants::default()).map(StrategyPlugin)
    }

    pub fn name(&self) -> &str {
        &self.0.loaded.name
    }

    /// sha256 of the component.
    pub fn digest(&self) -> &str {
        &self.0.loaded.digest
    }

    /// The contract version the component was built against.
    pub fn contract(&self) -> Contract {
        self.0.loaded.contract
    }

    /// `state` in the types of this strategy's contract version.
    fn versioned(&self, state: &RolloutState) -> Result<VersionedState, PluginError> {
        let failed = |message| PluginError::Failed {
            name: self.name().to_string(),
            function: "next",
            message,
        };
        let state = state.clone();
        Ok(match self.contract() {
            Contract::V0_3 => VersionedState::V0_3(state.into()),
            Contract::V0_2 => VersionedState::V0_2(state.try_into().map_err(failed)?),
            Contract::V0_1 => VersionedState::V0_1(state.try_into().map_err(failed)?),
        })
    }

    fn services(&self) -> super::HostServices {
        self.0.host.services().clone()
    }

    /// Instantiate the component in a fresh store and call nothing: what every call
    /// pays before it starts (measured by the benchmarks).
    ///
    /// # Errors
    /// A failure of instantiation (limits, start function traps).
    pub async fn instantiate(&self) -> Result<(), PluginError> {
        self.0
            .call("instantiate", self.services(), async |_, _| Ok(()))
            .await
    }

    /// # Errors
    /// A call failure (trap, timeout, memory limit).
    pub async fn info(&self) -> Result<PluginInfo, PluginError> {
        self.0
            .call("info", self.services(), async |b, store| {
                on_strategy!(b, store, |g| |s| g.call_info(s), PluginInfo::from)
            })
            .await
            .map(super::limits::plugin_info)
    }

    /// Check parameters (JSON). `Ok(Err(..))` lists the problems the strategy found.
    ///
    /// # Errors
    /// A call failure (trap, timeout, memory limit).
    pub async fn validate(&self, params: &str) -> Result<Result<(), Vec<ParamError>>, PluginError> {
        let params = params.to_string();
        self.0
            .call("validate", self.services(), async move |b, store| {
                on_strategy!(b, store, |g| |s| g.call_validate(s, &params), |checked| {
                    checked.map_err(|errors| {
                        errors.into_iter().map(ParamError::from).collect::<Vec<_>>()
                    })
                })
            })
            .await
            .map(|checked| checked.map_err(super::limits::param_errors))
    }

    /// The next step for `state`.
    ///
    /// # Errors
    /// A call failure, or [`PluginError::Failed`] when the strategy returned an error.
    pub async fn next(&self, state: &RolloutState) -> Result<Step, PluginError> {
        let state = self.versioned(state)?;
        self.0
            .call("next", self.services(), async move |b, store| {
                call_next(b, store, &state).await
            })
            .await?
            .map(|step| match step {
                Step::Abort(reason) => Step::Abort(super::limits::clip_line(reason)),
                step => step,
            })
            .map_err(|message| PluginError::Failed {
                name: self.name().to_string(),
                function: "next",
                message: super::limits::clip_line(message),
            })
    }

    /// Call `next` `times` times on one instance and return the last step: the cost of
    /// the call alone, for benchmarks. The host itself gives every call a fresh instance.
    ///
    /// # Errors
    /// As [`StrategyPlugin::next`].
    pub async fn next_repeated(
        &self,
        state: &RolloutState,
        times: u64,
    ) -> Result<Step, PluginError> {
        let state = self.versioned(state)?;
        self.0
            .call("next", self.services(), async move |b, store| {
                let mut last = Err(String::from("called zero times"));
                for _ in 0..times.max(1) {
                    last = call_next(b, &mut *store, &state).await?;
                }
                Ok(last)
            })
            .await?
            .map_err(|message| PluginError::Failed {
                name: self.name().to_string(),
                function: "next",
                message,
            })
    }
}

/// `next` of whichever version `instance` is, with `state` in that version's types.
async fn call_next(
    instance: &StrategyInstance,
    store: &mut wasmtime::Store<super::capabilities::HostState>,
    state: &VersionedState,
) -> wasmtime::Result<Result<Step, String>> {
    Ok(match (instance, state) {
        (StrategyInstance::V0_3(b), VersionedState::V0_3(state)) => b
            .deployer_plugin_strategy()
            .call_next(store, state)
            .await?
            .map(Step::from),
        (StrategyInstance::V0_2(b), VersionedState::V0_2(state)) => b
            .deployer_plugin_strategy()
            .call_next(store, state)
            .await?
            .map(Step::from),
        (StrategyInstance::V0_1(b), VersionedState::V0_1(state)) => b
            .deployer_plugin_strategy()
            .call_next(store, state)
            .await?
            .map(Step::from),
        // Both come from the same loaded component's contract version.
        _ => wasmtime::bail!("internal error: a rollout state of another contract version"),
    })
}

impl Strategy for StrategyPlugin {
    fn name(&self) -> &str {
        StrategyPlugin::name(self)
    }

    fn digest(&self) -> &str {
        StrategyPlugin::digest(self)
    }

    async fn next(&self, state: &RolloutState) -> Result<Step, StrategyError> {
        StrategyPlugin::next(self, state)
            .await
            .map_err(|err| StrategyError(err.to_string()))
    }
}
