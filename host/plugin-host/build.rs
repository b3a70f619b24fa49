//! Builds the built-in strategies in `strategies/` into WebAssembly components and
//! embeds them: `builtin.rs` in OUT_DIR lists them for `include_bytes!`.

use std::path::PathBuf;

use deployer_plugin_build::{Guest, GuestTarget, build, guest_target_dir};

const BUILTINS: [&str; 3] = ["canary", "blue-green", "rolling"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    // host/plugin-host -> the repository root, whose workspace builds the guests.
    let root = manifest_dir.ancestors().nth(2).unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    for watched in ["wit", "plugins/sdk", "host/contract", "strategies"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let guests: Vec<Guest> = BUILTINS
        .iter()
        .map(|name| Guest::new(&format!("deployer-strategy-{name}"), GuestTarget::Unknown))
        .collect();
    let components = build(
        &root.join("Cargo.toml"),
        &guests,
        &guest_target_dir(&out_dir, "strategies"),
    )
    .unwrap_or_else(|err| panic!("building the built-in strategies: {err:#}"));
    let mut table = String::from("&[\n");
    for (name, bytes) in BUILTINS.iter().zip(components) {
        let file = out_dir.join(format!("{name}.wasm"));
        std::fs::write(&file, bytes).unwrap();
        table += &format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        );
    }
    table += "]\n";
    std::fs::write(out_dir.join("builtin.rs"), table).unwrap();
}
