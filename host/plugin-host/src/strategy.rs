//! Strategy plugins: deterministic step functions.

use deployer_contract::{ParamError, PluginInfo, RolloutState, Step};
use deployer_engine::strategy::{Strategy, StrategyError};

use super::bindings::strategy_world::StrategyPluginPre;
use super::capabilities::HostState;
use super::prepared::Prepared;
use super::{Grants, Limits, PluginError, PluginHost, PluginSource};

/// A loaded strategy, ready to be called. Each call gets a fresh instance.
pub struct StrategyPlugin(Prepared<StrategyPluginPre<HostState>>);

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
                b.deployer_plugin_strategy().call_info(store).await
            })
            .await
            .map(|info| super::limits::plugin_info(info.into()))
    }

    /// Check parameters (JSON). `Ok(Err(..))` lists the problems the strategy found.
    ///
    /// # Errors
    /// A call failure (trap, timeout, memory limit).
    pub async fn validate(&self, params: &str) -> Result<Result<(), Vec<ParamError>>, PluginError> {
        let params = params.to_string();
        self.0
            .call("validate", self.services(), async move |b, store| {
                b.deployer_plugin_strategy()
                    .call_validate(store, &params)
                    .await
            })
            .await
            .map(|checked| {
                checked.map_err(|errors| {
                    super::limits::param_errors(errors.into_iter().map(Into::into))
                })
            })
    }

    /// The next step for `state`.
    ///
    /// # Errors
    /// A call failure, or [`PluginError::Failed`] when the strategy returned an error.
    pub async fn next(&self, state: &RolloutState) -> Result<Step, PluginError> {
        let state = state.clone().into();
        self.0
            .call("next", self.services(), async move |b, store| {
                b.deployer_plugin_strategy().call_next(store, &state).await
            })
            .await?
            .map(|step| match step.into() {
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
        let state = state.clone().into();
        self.0
            .call("next", self.services(), async move |b, store| {
                let mut last = Err(String::from("called zero times"));
                for _ in 0..times.max(1) {
                    last = b
                        .deployer_plugin_strategy()
                        .call_next(&mut *store, &state)
                        .await?;
                }
                Ok(last)
            })
            .await?
            .map(Into::into)
            .map_err(|message| PluginError::Failed {
                name: self.name().to_string(),
                function: "next",
                message,
            })
    }
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
