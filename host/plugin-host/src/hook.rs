//! Hook plugins: run at lifecycle points, their result counts as a gate.

use deployer_contract::{GateResult, GateStatus, LifecyclePoint, ParamError, PluginInfo};
use deployer_engine::gates::{Check, CheckFuture, GateContext};

use super::bindings::previous::{v0_1, v0_2};
use super::capabilities::HostServices;
use super::load::Contract;
use super::prepared::{HookInstance, HookPre, Prepared};
use super::{Grants, Limits, PluginError, PluginHost, PluginSource};

/// What a hook is told when it runs (the WIT `hook-context`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookContext {
    pub point: LifecyclePoint,
    pub deployment_id: String,
    pub service: String,
    pub new_release: String,
    pub stable_release: Option<String>,
    pub new_traffic_percent: u8,
    /// The hook's parameters from config, as a JSON object.
    pub params: String,
}

/// A loaded hook with its grants. Each call gets a fresh instance.
pub struct HookPlugin(Prepared<HookPre>);

/// Call `$call` on whichever version's hook export `$instance` has, the result turned
/// into plain contract types by `$plain`.
macro_rules! on_hook {
    ($instance:expr, $store:expr, |$guest:ident| $call:expr, $plain:expr) => {
        match $instance {
            HookInstance::V0_3(b) => {
                let $guest = b.deployer_plugin_hook();
                $call($store).await.map($plain)
            }
            HookInstance::V0_2(b) => {
                let $guest = b.deployer_plugin_hook();
                $call($store).await.map($plain)
            }
            HookInstance::V0_1(b) => {
                let $guest = b.deployer_plugin_hook();
                $call($store).await.map($plain)
            }
        }
    };
}

/// The WIT `hook-context` of every version (unchanged since 0.1.0) from the plain one.
macro_rules! wit_context {
    ($ty:path, $ctx:expr) => {{
        let ctx: &HookContext = $ctx;
        $ty {
            point: ctx.point.into(),
            deployment_id: ctx.deployment_id.clone(),
            service: ctx.service.clone(),
            new_release: ctx.new_release.clone(),
            stable_release: ctx.stable_release.clone(),
            new_traffic_percent: ctx.new_traffic_percent,
            params: ctx.params.clone(),
        }
    }};
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
        Prepared::load(host, source, limits, grants).map(HookPlugin)
    }

    pub fn name(&self) -> &str {
        &self.0.loaded.name
    }

    pub fn digest(&self) -> &str {
        &self.0.loaded.digest
    }

    /// The contract version the component was built against.
    pub fn contract(&self) -> Contract {
        self.0.loaded.contract
    }

    /// The host's default capability providers.
    pub fn services(&self) -> HostServices {
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
                on_hook!(b, store, |g| |s| g.call_info(s), PluginInfo::from)
            })
            .await
            .map(super::limits::plugin_info)
    }

    /// # Errors
    /// A call failure (trap, timeout, memory limit).
    pub async fn validate(&self, params: &str) -> Result<Result<(), Vec<ParamError>>, PluginError> {
        let params = params.to_string();
        self.0
            .call("validate", self.services(), async move |b, store| {
                on_hook!(b, store, |g| |s| g.call_validate(s, &params), |checked| {
                    checked.map_err(|errors| {
                        errors.into_iter().map(ParamError::from).collect::<Vec<_>>()
                    })
                })
            })
            .await
            .map(|checked| checked.map_err(super::limits::param_errors))
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
            .call("run", services, async move |b, store| match b {
                HookInstance::V0_3(b) => {
                    let ctx = wit_context!(super::bindings::HookContext, &ctx);
                    let result = b.deployer_plugin_hook().call_run(store, &ctx).await;
                    result.map(GateResult::from)
                }
                HookInstance::V0_2(b) => {
                    let ctx = wit_context!(v0_2::HookContext, &ctx);
                    let result = b.deployer_plugin_hook().call_run(store, &ctx).await;
                    result.map(GateResult::from)
                }
                HookInstance::V0_1(b) => {
                    let ctx = wit_context!(v0_1::HookContext, &ctx);
                    let result = b.deployer_plugin_hook().call_run(store, &ctx).await;
                    result.map(GateResult::from)
                }
            })
            .await
            .map(|result| GateResult {
                name: super::limits::clip_line(result.name),
                detail: super::limits::clip_line(result.detail),
                ..result
            })
    }
}

/// A hook as a gate: run with its parameters at the points config names. A hook that
/// crashes, times out or hits a limit fails its gate (fail closed).
pub struct HookGate {
    pub plugin: HookPlugin,
    /// Parameters from config, as a JSON object.
    pub params: String,
    /// The capability providers of this hook in this deployment (its own key/value
    /// store, the deployment's metric source); `None`: the host's defaults.
    pub services: Option<HostServices>,
}

impl Check for HookGate {
    fn check<'a>(
        &'a self,
        name: &'a str,
        point: LifecyclePoint,
        ctx: &'a GateContext,
    ) -> CheckFuture<'a> {
        Box::pin(async move {
            let hook_ctx = HookContext {
                point,
                deployment_id: ctx.deployment_id.clone(),
                service: ctx.service.clone(),
                new_release: ctx.new_release.clone(),
                stable_release: ctx.stable_release.clone(),
                new_traffic_percent: ctx.new_percent,
                params: self.params.clone(),
            };
            let services = self
                .services
                .clone()
                .unwrap_or_else(|| self.plugin.services());
            match self.plugin.run_with(&hook_ctx, services).await {
                Ok(result) => GateResult {
                    name: name.to_string(),
                    ..result
                },
                Err(err) => GateResult {
                    name: name.to_string(),
                    status: GateStatus::Fail,
                    detail: err.to_string(),
                    observed: None,
                },
            }
        })
    }

    /// A hook granted `kv` keeps its store in the journal, so a resumed run sees it.
    fn state(&self) -> Option<serde_json::Value> {
        let kv = &self.services.as_ref()?.kv;
        self.plugin.0.loaded.grants.kv.then(|| kv.to_json())
    }

    fn restore(&self, state: &serde_json::Value) {
        if let Some(services) = &self.services {
            services.kv.restore_json(state);
        }
    }
}
