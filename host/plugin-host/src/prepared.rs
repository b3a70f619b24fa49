//! What strategies and hooks share: load and pre-link a component for one world, then
//! give every call a fresh instance in a store of its own.

use std::future::Future;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::previous::{v0_1, v0_2};
use super::bindings::{hook_world, strategy_world};
use super::capabilities::{HostServices, HostState};
use super::load::{Contract, Loaded};
use super::{Grants, Limits, PluginError, PluginHost, PluginKind, PluginSource};

/// A world's generated `*Pre` types, one per contract version: checks a component's
/// exports once, then makes instances cheaply.
pub(crate) trait WorldPre: Clone + Send + Sync + 'static {
    type Bindings: Send;
    const KIND: PluginKind;

    /// `pre` as the world of `contract`, the version the component was built against.
    fn new(pre: InstancePre<HostState>, contract: Contract) -> wasmtime::Result<Self>;

    fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Bindings>> + Send;
}

/// The strategy world at every contract version the host runs.
#[derive(Clone)]
pub(crate) enum StrategyPre {
    V0_3(strategy_world::StrategyPluginPre<HostState>),
    V0_2(v0_2::strategy_world::StrategyPluginPre<HostState>),
    V0_1(v0_1::strategy_world::StrategyPluginPre<HostState>),
}

/// An instance of a strategy, with the bindings of its contract version.
pub(crate) enum StrategyInstance {
    V0_3(strategy_world::StrategyPlugin),
    V0_2(v0_2::strategy_world::StrategyPlugin),
    V0_1(v0_1::strategy_world::StrategyPlugin),
}

impl WorldPre for StrategyPre {
    type Bindings = StrategyInstance;
    const KIND: PluginKind = PluginKind::Strategy;

    fn new(pre: InstancePre<HostState>, contract: Contract) -> wasmtime::Result<Self> {
        Ok(match contract {
            Contract::V0_3 => StrategyPre::V0_3(strategy_world::StrategyPluginPre::new(pre)?),
            Contract::V0_2 => StrategyPre::V0_2(v0_2::strategy_world::StrategyPluginPre::new(pre)?),
            Contract::V0_1 => StrategyPre::V0_1(v0_1::strategy_world::StrategyPluginPre::new(pre)?),
        })
    }

    async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Self::Bindings> {
        Ok(match self {
            StrategyPre::V0_3(pre) => StrategyInstance::V0_3(pre.instantiate_async(store).await?),
            StrategyPre::V0_2(pre) => StrategyInstance::V0_2(pre.instantiate_async(store).await?),
            StrategyPre::V0_1(pre) => StrategyInstance::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

/// The hook world at every contract version the host runs.
#[derive(Clone)]
pub(crate) enum HookPre {
    V0_3(hook_world::HookPluginPre<HostState>),
    V0_2(v0_2::hook_world::HookPluginPre<HostState>),
    V0_1(v0_1::hook_world::HookPluginPre<HostState>),
}

/// An instance of a hook, with the bindings of its contract version.
pub(crate) enum HookInstance {
    V0_3(hook_world::HookPlugin),
    V0_2(v0_2::hook_world::HookPlugin),
    V0_1(v0_1::hook_world::HookPlugin),
}

impl WorldPre for HookPre {
    type Bindings = HookInstance;
    const KIND: PluginKind = PluginKind::Hook;

    fn new(pre: InstancePre<HostState>, contract: Contract) -> wasmtime::Result<Self> {
        Ok(match contract {
            Contract::V0_3 => HookPre::V0_3(hook_world::HookPluginPre::new(pre)?),
            Contract::V0_2 => HookPre::V0_2(v0_2::hook_world::HookPluginPre::new(pre)?),
            Contract::V0_1 => HookPre::V0_1(v0_1::hook_world::HookPluginPre::new(pre)?),
        })
    }

    async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Self::Bindings> {
        Ok(match self {
            HookPre::V0_3(pre) => HookInstance::V0_3(pre.instantiate_async(store).await?),
            HookPre::V0_2(pre) => HookInstance::V0_2(pre.instantiate_async(store).await?),
            HookPre::V0_1(pre) => HookInstance::V0_1(pre.instantiate_async(store).await?),
        })
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
            .and_then(|pre| P::new(pre, loaded.contract))
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
