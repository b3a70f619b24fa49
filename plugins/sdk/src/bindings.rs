//! Bindings generated from `wit/` by wit-bindgen, one module per world.
//!
//! The WIT is `wit/` of this crate, a copy of the repository's `wit/` (a published crate
//! holds only its own files); a workspace test fails when the two differ.
//!
//! When both worlds are compiled in (native tests of a workspace), the hook world reuses
//! the strategy world's shared interfaces so there is one Rust type per WIT type.

#[cfg(feature = "strategy")]
pub mod strategy {
    wit_bindgen::generate!({
        world: "strategy-plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_strategy_world",
        default_bindings_module: "deployer_plugin_sdk::bindings::strategy",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
}

#[cfg(all(feature = "hook", feature = "strategy"))]
pub mod hook {
    wit_bindgen::generate!({
        world: "hook-plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_hook_world",
        default_bindings_module: "deployer_plugin_sdk::bindings::hook",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
        with: {
            "deployer:plugin/types@0.3.1": crate::bindings::strategy::deployer::plugin::types,
            "deployer:plugin/log@0.3.1": crate::bindings::strategy::deployer::plugin::log,
        },
    });
}

#[cfg(all(feature = "hook", not(feature = "strategy")))]
pub mod hook {
    wit_bindgen::generate!({
        world: "hook-plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_hook_world",
        default_bindings_module: "deployer_plugin_sdk::bindings::hook",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
}

/// Neither world: the shared part only (types and log), which is what a library used by
/// both a hook crate and a strategy crate needs, and what docs.rs and `cargo package`
/// build. Nothing is exported, so nothing here can become a plugin by itself.
#[cfg(not(any(feature = "hook", feature = "strategy")))]
pub mod shared {
    wit_bindgen::generate!({
        inline: "
            package deployer:sdk-shared;
            world shared {
                import deployer:plugin/types@0.3.1;
                import deployer:plugin/log@0.3.1;
            }
        ",
        path: "wit",
        world: "deployer:sdk-shared/shared",
        // The interfaces are the contract's (another package than the inline world's).
        generate_all,
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
}

#[cfg(not(any(feature = "hook", feature = "strategy")))]
pub use shared::deployer::plugin::{log, types};

#[cfg(all(feature = "hook", not(feature = "strategy")))]
pub use hook::deployer::plugin::types;
/// The shared data types (`deployer:plugin/types`).
#[cfg(feature = "strategy")]
pub use strategy::deployer::plugin::types;

#[cfg(all(feature = "hook", not(feature = "strategy")))]
pub use hook::deployer::plugin::log;
/// Logging into the deployment's log (always granted).
#[cfg(feature = "strategy")]
pub use strategy::deployer::plugin::log;
