//! The process-wide plugin host: engine, epoch ticker, linker and compiled components.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::PluginError;
use super::bindings::hook_world::HookPlugin;
use super::cache::ComponentCache;
use super::capabilities::{HostServices, HostState};
use super::engine_config::engine_config;
use super::limits::Limiter;
use super::load::Loaded;
use super::ticker::{TICK, Ticker};

/// The plugin host. Cheap to clone; clones share the engine and caches.
#[derive(Clone)]
pub struct PluginHost(Arc<Inner>);

struct Inner {
    engine: Engine,
    cache: ComponentCache,
    linker: Linker<HostState>,
    compiled: Mutex<HashMap<String, Component>>,
    services: HostServices,
    ticker: Arc<Ticker>,
}

impl PluginHost {
    /// A host caching compiled components in `cache_dir` (none: compile every run).
    ///
    /// # Errors
    /// When the engine cannot be configured for this machine.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        Self::with_services(cache_dir, HostServices::default())
    }

    /// Like [`PluginHost::new`] with capability providers.
    ///
    /// # Errors
    /// When the engine cannot be configured for this machine.
    pub fn with_services(
        cache_dir: Option<PathBuf>,
        services: HostServices,
    ) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(None)?)?;
        let mut linker = Linker::new(&engine);
        HookPlugin::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;
        link_earlier_contracts(&mut linker)?;
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        let ticker = Ticker::start(engine.clone());
        Ok(PluginHost(Arc::new(Inner {
            cache: ComponentCache::new(&engine, cache_dir),
            engine,
            linker,
            compiled: Mutex::new(HashMap::new()),
            services,
            ticker,
        })))
    }

    /// `$DEPLOYER_CACHE_DIR`, else `$XDG_CACHE_HOME/deployer/components`, else
    /// `~/.cache/deployer/components`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DEPLOYER_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("deployer").join("components"))
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.0.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.0.linker
    }

    pub fn services(&self) -> &HostServices {
        &self.0.services
    }

    /// Drop the in-memory compiled components; the next load reads the disk cache.
    pub fn forget_compiled(&self) {
        self.0.compiled.lock().unwrap().clear();
    }

    /// The compiled component for `bytes` (sha256 `digest`): from this process's memory,
    /// else from `precompiled` (a built-in's code, compiled when the binary was built),
    /// else from the disk cache, else compiled now.
    pub(crate) fn compile(
        &self,
        digest: &str,
        bytes: &[u8],
        precompiled: Option<&'static [u8]>,
    ) -> wasmtime::Result<Component> {
        if let Some(component) = self.0.compiled.lock().unwrap().get(digest) {
            return Ok(component.clone());
        }
        let component = match precompiled.map(|code| self.deserialize_builtin(code)) {
            Some(Ok(component)) => component,
            // Code this engine refuses costs only speed: the component is compiled here
            // (and cached) like any plugin. The built-ins' test checks it is not refused.
            Some(Err(_)) | None => self.0.cache.get_or_compile(&self.0.engine, digest, bytes)?,
        };
        self.0
            .compiled
            .lock()
            .unwrap()
            .insert(digest.to_string(), component.clone());
        Ok(component)
    }

    pub(crate) fn deserialize_builtin(&self, code: &'static [u8]) -> wasmtime::Result<Component> {
        // SAFETY: `code` is part of this binary: the build script wrote it with
        // `Engine::precompile_component` of the wasmtime this binary links, and the caller
        // matched it to the component whose digest was just checked. wasmtime still
        // refuses it if its version, settings or CPU features do not fit this engine.
        unsafe { Component::deserialize(&self.0.engine, code) }
    }

    /// Run one plugin call in a fresh store under the plugin's limits. `body` gets the
    /// store and must instantiate and call; whatever goes wrong becomes a typed error.
    pub(crate) async fn call<R, F, Fut>(
        &self,
        plugin: &Loaded,
        function: &'static str,
        services: HostServices,
        body: F,
    ) -> Result<R, PluginError>
    where
        F: FnOnce(Store<HostState>) -> Fut,
        Fut: Future<Output = (Store<HostState>, wasmtime::Result<R>)>,
    {
        let limits = &plugin.limits;
        let state = HostState::new(
            plugin.name.clone(),
            Limiter::new(limits),
            plugin.grants.clone(),
            services,
        );
        let mut store = Store::new(&self.0.engine, state);
        store.limiter(|state| &mut state.limiter);
        // The call's clock starts here and, like the limit it enforces, counts only
        // time the process runs: a deployer paused by SIGSTOP (a CI runner suspended, a
        // debugger) does not find its plugin call over time when it is continued.
        let running = self.0.ticker.running();
        let clock = running.clock();
        store.set_epoch_deadline(1);
        // Yield to the executor every tick (a busy guest never starves other
        // deployments) and trap once the call's deadline has passed.
        let guest_clock = clock.clone();
        let limit = limits.timeout;
        store.epoch_deadline_callback(move |_| {
            Ok(if guest_clock.elapsed() >= limit {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        // The outer bound also covers time spent in host capabilities (HTTP, metrics),
        // where no epoch check runs.
        let outcome = tokio::select! {
            biased;
            outcome = body(store) => Some(outcome),
            () = clock.expired(limits.timeout + TICK * 10) => None,
        };
        drop(running);
        let timeout = || PluginError::Timeout {
            name: plugin.name.to_string(),
            function,
            limit: limits.timeout,
        };
        let (store, result) = outcome.ok_or_else(timeout)?;
        result.map_err(|err| {
            if store.data().limiter.memory_refused {
                return PluginError::MemoryLimit {
                    name: plugin.name.to_string(),
                    function,
                    limit_mib: limits.memory_bytes >> 20,
                };
            }
            match err.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => timeout(),
                Some(Trap::StackOverflow) => PluginError::Trap {
                    name: plugin.name.to_string(),
                    function,
                    trap: "stack overflow (recursion too deep)".into(),
                },
                // The wasm backtrace is context around the trap; the trap says what happened.
                Some(trap) => PluginError::Trap {
                    name: plugin.name.to_string(),
                    function,
                    trap: trap.to_string(),
                },
                None => PluginError::Trap {
                    name: plugin.name.to_string(),
                    function,
                    trap: first_line(&format!("{err:#}")),
                },
            }
        })
    }
}

/// The capabilities under the names of every earlier contract version, with the same
/// implementations: their WIT has not changed shape since 0.1.0 (`log`, `clock`, `kv`,
/// `http`, `metrics` and the `capability-error` they share), and the component model
/// checks an import's type by its structure, not by the version in its name. 0.1.0's
/// `actions` is not linked: no deployer ever provided it, and loading refuses a hook
/// that imports it before linking.
fn link_earlier_contracts(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use super::bindings::{clock, http, kv, log, metrics};
    type Host = wasmtime::component::HasSelf<HostState>;
    fn this(state: &mut HostState) -> &mut HostState {
        state
    }
    for version in deployer_contract::EARLIER_CONTRACT_VERSIONS {
        let name = |interface: &str| format!("deployer:plugin/{interface}@{version}");
        // `types` has no functions: wasmtime checks its types where they are used.
        log::add_to_linker_instance::<_, Host>(&mut linker.instance(&name("log"))?, this)?;
        clock::add_to_linker_instance::<_, Host>(&mut linker.instance(&name("clock"))?, this)?;
        kv::add_to_linker_instance::<_, Host>(&mut linker.instance(&name("kv"))?, this)?;
        http::add_to_linker_instance::<_, Host>(&mut linker.instance(&name("http"))?, this)?;
        metrics::add_to_linker_instance::<_, Host>(&mut linker.instance(&name("metrics"))?, this)?;
    }
    Ok(())
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or(text);
    if line.len() > 500 {
        format!("{}…", &line[..line.floor_char_boundary(500)])
    } else {
        line.to_string()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}
