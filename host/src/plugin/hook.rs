//! Hook plugins: run at lifecycle points, their result counts as a gate.

use super::bindings::HookContext;
use super::bindings::hook_world::HookPluginPre;
use super::bindings::types::{GateResult, ParamError, PluginInfo};
use super::capabilities::{HostServices, HostState};
use super::prepared::Prepared;
use super::{Grants, Limits, PluginError, PluginHost, PluginSource};

/// A loaded hook with its grants. Each call gets a fresh instance.
pub struct HookPlugin(Prepared<HookPluginPre<HostState>>);

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
        Prepared::load(host, source, limits, grants).map(HookPlugin)
    }

    pub fn name(&self) -> &str {
        &self.0.loaded.name
    }

    pub fn digest(&self) -> &str {
        &self.0.loaded.digest
    }

    fn services(&self) -> HostServices {
        self.0.host.services().clone()
    }

    /// Instantiate in a fresh store and drop it (what every call pays first).
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
                b.deployer_plugin_hook().call_info(store).await
            })
            .await
    }

    /// # Errors
    /// A call failure (trap, timeout, memory limit).
    pub async fn validate(&self, params: &str) -> Result<Result<(), Vec<ParamError>>, PluginError> {
        let params = params.to_string();
        self.0
            .call("validate", self.services(), async move |b, store| {
                b.deployer_plugin_hook().call_validate(store, &params).await
            })
            .await
    }

    /// Run the hook with the host's default capability providers.
    ///
    /// # Errors
    /// A call failure (trap, timeout, memory limit); callers treat it as a failed gate.
    pub async fn run(&self, ctx: &HookContext) -> Result<GateResult, PluginError> {
        self.run_with(ctx, self.services()).await
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
        self.0
            .call("run", services, async move |b, store| {
                b.deployer_plugin_hook().call_run(store, &ctx).await
            })
            .await
            .map(|result| GateResult {
                name: super::limits::clip(result.name),
                detail: super::limits::clip(result.detail),
                ..result
            })
    }
}
