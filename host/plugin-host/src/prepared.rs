//! What strategies and hooks share: load and pre-link a component for one world, then
//! give every call a fresh instance in a store of its own.

use std::future::Future;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::hook_world::HookPluginPre;
use super::bindings::strategy_world::StrategyPluginPre;
use super::capabilities::{HostServices, HostState};
use super::load::Loaded;
use super::{Grants, Limits, PluginError, PluginHost, PluginKind, PluginSource};

/// A world's generated `*Pre` type: checks a component's exports once, then makes
/// instances cheaply.
pub(crate) trait WorldPre: Clone + Send + Sync + 'static {
    type Bindings: Send;
    const KIND: PluginKind;

    fn new(pre: InstancePre<HostState>) -> wasmtime::Result<Self>;

    fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Bindings>> + Send;
}

impl WorldPre for StrategyPluginPre<HostState> {
    type Bindings = super::bindings::strategy_world::StrategyPlugin;
    const KIND: PluginKind = PluginKind::Strategy;

    fn new(pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        StrategyPluginPre::new(pre)
    }

    async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Self::Bindings> {
        self.instantiate_async(store).await
    }
}

impl WorldPre for HookPluginPre<HostState> {
    type Bindings = super::bindings::hook_world::HookPlugin;
    const KIND: PluginKind = PluginKind::Hook;

    fn new(pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        HookPluginPre::new(pre)
    }

    async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Self::Bindings> {
        self.instantiate_async(store).await
    }
}

/// A component that passed every load check, linked for world `P`.
pub(crate) struct Prepared<P> {
    pub(crate) host: PluginHost,
    pub(crate) loaded: Loaded,
    pre: P,
}

impl<P: WorldPre> Prepared<P> {
    pub(crate) fn load(
        host: &PluginHost,
        source: &PluginSource,
        limits: Limits,
        grants: Grants,
    ) -> Result<Self, PluginError> {
        let loaded = host.load(source, P::KIND, limits, grants)?;
        let pre = host
            .linker()
            .instantiate_pre(&loaded.component)
            .and_then(P::new)
            .map_err(|err| PluginError::WrongWorld {
                name: loaded.name.to_string(),
                expected: P::KIND.as_str(),
                found: format!("its interface does not match this deployer's: {err:#}"),
            })?;
        Ok(Prepared {
            host: host.clone(),
            loaded,
            pre,
        })
    }

    /// Instantiate afresh and run `f` on the instance, under the plugin's limits.
    pub(crate) async fn call<R: Send + 'static>(
        &self,
        function: &'static str,
        services: HostServices,
        f: impl AsyncFnOnce(&P::Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let pre = self.pre.clone();
        self.host
            .call(&self.loaded, function, services, async move |mut store| {
                let result = match pre.instantiate(&mut store).await {
                    Ok(bindings) => f(&bindings, &mut store).await,
                    Err(err) => Err(err),
                };
                (store, result)
            })
            .await
    }
}
