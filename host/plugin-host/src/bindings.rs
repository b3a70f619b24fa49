//! Host-side bindings generated from `wit/`. The hook world imports every capability,
//! so its bindings define the shared interfaces; the strategy world reuses them.
//!
//! [`previous`] holds the bindings of the earlier contract versions the host still runs
//! (`wit/previous/`).

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
pub use hook_world::deployer::plugin::{clock, http, kv, log, metrics};
pub(crate) use hook_world::exports::deployer::plugin::hook::HookContext;

/// Bindings of earlier contract versions, for calling their exports with their own
/// types (a 0.2 `step` has one case less than a 0.3 one, and the component model checks
/// a variant's cases exactly). Their imports are not linked through these bindings:
/// the capability interfaces have kept their shape since 0.1.0, and component types are
/// structural, so the host links the current implementations under each earlier
/// version's names (see `PluginHost::with_services`).
pub mod previous {
    macro_rules! earlier_contract {
        ($module:ident, $wit:literal) => {
            pub mod $module {
                pub mod hook_world {
                    wasmtime::component::bindgen!({
                        path: $wit,
                        world: "hook-plugin",
                        imports: { default: async | trappable },
                        exports: { default: async },
                    });
                }

                pub mod strategy_world {
                    wasmtime::component::bindgen!({
                        path: $wit,
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
                pub(crate) use hook_world::exports::deployer::plugin::hook::HookContext;
            }
        };
    }

    earlier_contract!(v0_2, "../../wit/previous/0.2.0");
    earlier_contract!(v0_1, "../../wit/previous/0.1.0");
}
