//! Built against a future, incompatible `deployer:plugin@0.4.0`.

wit_bindgen::generate!({ world: "strategy-plugin", path: "wit" });

struct Future;

impl exports::deployer::plugin::strategy::Guest for Future {
    fn next(state: String) -> String {
        state
    }
}

export!(Future);
