//! Host-side bindings generated from `wit/`. The hook world imports every capability,
//! so its bindings define the shared interfaces; the strategy world reuses them.

pub mod hook_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "hook-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

pub mod strategy_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "strategy-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "deployer:plugin/types": super::hook_world::deployer::plugin::types,
            "deployer:plugin/log": super::hook_world::deployer::plugin::log,
        },
    });
}

pub use hook_world::deployer::plugin::types;
pub use hook_world::deployer::plugin::{http, log, metrics};
pub(crate) use hook_world::exports::deployer::plugin::hook::HookContext;
