//! A hook built against `deployer:plugin@0.1.0` that imports the removed `actions`.

wit_bindgen::generate!({ world: "hook-plugin", path: "wit" });

struct Old;

impl exports::deployer::plugin::hook::Guest for Old {
    fn run(ctx: String) -> String {
        let _ = deployer::plugin::actions::shift_traffic(100);
        ctx
    }
}

export!(Old);
