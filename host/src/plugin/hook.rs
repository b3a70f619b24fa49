//! Hook plugins: run at lifecycle points, their result counts as a gate.

use super::bindings::HookContext;
use super::bindings::hook_world::{HookPlugin as Bindings, HookPluginPre};
use super::bindings::types::{GateResult, ParamError, PluginInfo};
use super::capabilities::{HostServices, HostState};
use super::load::Loaded;
use super::{Grants, Limits, PluginError, PluginHost, PluginKind, PluginSource};

/// A loaded hook with its grants.
pub struct HookPlugin {
    host: PluginHost,
    loaded: Loaded,
    pre: HookPluginPre<HostState>,
}

impl HookPlugin {
    /// Load and check a hook component against its grants.
    ///
    /// # Errors
    /// Any [`PluginError`] load error, including imports its grants do not cover.
    pub fn load(
        host: &PluginHost,
        source: &PluginSource,
        limits: Limits,
        grants: Grants,
    ) -> Result<Self, PluginError> {
        let loaded = host.load(source, PluginKind::Hook, limits, grants)?;
        let pre = host
            .linker()
            .instantiate_pre(&loaded.component)
            .and_then(HookPluginPre::new)
            .map_err(|err| PluginError::WrongWorld {
                name: loaded.name.to_string(),
                expected: "hook",
                found: format!("its interface does not match this deployer's: {err:#}"),
            })?;
        Ok(HookPlugin {
            host: host.clone(),
            loaded,
            pre,
        })
    }

    pub fn name(&self) -> &str {
        &self.loaded.name
    }

    pub fn digest(&self) -> &str {
        &self.loaded.digest
    }

    async fn call<R: Send + 'static>(
        &self,
        function: &'static str,
        services: HostServices,
        f: impl AsyncFnOnce(&Bindings, &mut wasmtime::Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let pre = self.pre.clone();
        self.host
            .call(&self.loaded, function, services, async move |mut store| {
                let result = match pre.instantiate_async(&mut store).await {
                    Ok(bindings) => f(&bindings, &mut store).await,
                    Err(err) => Err(err),
                };
                (store, result)
            })
            .await
    }

    /// # Errors
    /// A call failure (trap, timeout, memory limit).
    pub async fn info(&self) -> Result<PluginInfo, PluginError> {
        self.call("info", self.host.services().clone(), async |b, store| {
            b.deployer_plugin_hook().call_info(store).await
        })
        .await
    }

    /// # Errors
    /// A call failure (trap, timeout, memory limit).
    pub async fn validate(&self, params: &str) -> Result<Result<(), Vec<ParamError>>, PluginError> {
        let params = params.to_string();
        self.call(
            "validate",
            self.host.services().clone(),
            async move |b, store| b.deployer_plugin_hook().call_validate(store, &params).await,
        )
        .await
    }

    /// Run the hook with the host's default capability providers.
    ///
    /// # Errors
    /// A call failure (trap, timeout, memory limit); callers treat it as a failed gate.
    pub async fn run(&self, ctx: &HookContext) -> Result<GateResult, PluginError> {
        self.run_with(ctx, self.host.services().clone()).await
    }

    /// Run the hook with the capability providers of one deployment.
    ///
    /// # Errors
    /// A call failure (trap, timeout, memory limit); callers treat it as a failed gate.
    pub async fn run_with(
        &self,
        ctx: &HookContext,
        services: HostServices,
    ) -> Result<GateResult, PluginError> {
        let ctx = ctx.clone();
        self.call("run", services, async move |b, store| {
            b.deployer_plugin_hook().call_run(store, &ctx).await
        })
        .await
    }
}
