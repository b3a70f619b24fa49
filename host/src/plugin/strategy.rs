//! Strategy plugins: deterministic step functions.

use super::bindings::strategy_world::{StrategyPlugin as Bindings, StrategyPluginPre};
use super::bindings::types::{ParamError, PluginInfo, RolloutState, Step};
use super::load::Loaded;
use super::{Grants, Limits, PluginError, PluginHost, PluginKind, PluginSource};

/// A loaded strategy, ready to be called. Each call gets a fresh instance.
pub struct StrategyPlugin {
    host: PluginHost,
    loaded: Loaded,
    pre: StrategyPluginPre<super::capabilities::HostState>,
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
        let loaded = host.load(source, PluginKind::Strategy, limits, Grants::default())?;
        let pre = host
            .linker()
            .instantiate_pre(&loaded.component)
            .and_then(StrategyPluginPre::new)
            .map_err(|err| PluginError::WrongWorld {
                name: loaded.name.to_string(),
                expected: "strategy",
                found: format!("its interface does not match this deployer's: {err:#}"),
            })?;
        Ok(StrategyPlugin {
            host: host.clone(),
            loaded,
            pre,
        })
    }

    pub fn name(&self) -> &str {
        &self.loaded.name
    }

    /// sha256 of the component.
    pub fn digest(&self) -> &str {
        &self.loaded.digest
    }

    async fn call<R: Send + 'static>(
        &self,
        function: &'static str,
        f: impl AsyncFnOnce(
            &Bindings,
            &mut wasmtime::Store<super::capabilities::HostState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let pre = self.pre.clone();
        self.host
            .call(
                &self.loaded,
                function,
                self.host.services().clone(),
                async move |mut store| {
                    let result = match pre.instantiate_async(&mut store).await {
                        Ok(bindings) => f(&bindings, &mut store).await,
                        Err(err) => Err(err),
                    };
                    (store, result)
                },
            )
            .await
    }

    /// Instantiate the component in a fresh store and call nothing: what every call
    /// pays before it starts (measured by the benchmarks).
    ///
    /// # Errors
    /// A failure of instantiation (limits, start function traps).
    pub async fn instantiate(&self) -> Result<(), PluginError> {
        self.call("instantiate", async |_, _| Ok(())).await
    }

    /// # Errors
    /// A call failure (trap, timeout, memory limit).
    pub async fn info(&self) -> Result<PluginInfo, PluginError> {
        self.call("info", async |b, store| {
            b.deployer_plugin_strategy().call_info(store).await
        })
        .await
    }

    /// Check parameters (JSON). `Ok(Err(..))` lists the problems the strategy found.
    ///
    /// # Errors
    /// A call failure (trap, timeout, memory limit).
    pub async fn validate(&self, params: &str) -> Result<Result<(), Vec<ParamError>>, PluginError> {
        let params = params.to_string();
        self.call("validate", async move |b, store| {
            b.deployer_plugin_strategy()
                .call_validate(store, &params)
                .await
        })
        .await
    }

    /// The next step for `state`.
    ///
    /// # Errors
    /// A call failure, or [`PluginError::Failed`] when the strategy returned an error.
    pub async fn next(&self, state: &RolloutState) -> Result<Step, PluginError> {
        let state = state.clone();
        self.call("next", async move |b, store| {
            b.deployer_plugin_strategy().call_next(store, &state).await
        })
        .await?
        .map_err(|message| PluginError::Failed {
            name: self.loaded.name.to_string(),
            function: "next",
            message,
        })
    }
}
