//! Builds the built-in plugins into WebAssembly components and embeds them: the
//! strategies in `strategies/` and the hooks in `plugins/` (the canary judge).
//! `builtin.rs` and `builtin_hooks.rs` in OUT_DIR list them for `include_bytes!`, one
//! table per kind, so a strategy and a hook can never be taken for each other.

use std::path::{Path, PathBuf};

use deployer_plugin_build::{Guest, GuestTarget, build, guest_target_dir};

/// Built-in strategies: `strategies/NAME`, package `deployer-strategy-NAME`.
const STRATEGIES: [&str; 3] = ["canary", "blue-green", "rolling"];

/// Built-in hooks: name and package.
const HOOKS: [(&str, &str); 1] = [("judge", "deployer-hook-judge")];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    // host/plugin-host -> the repository root, whose workspace builds the guests.
    let root = manifest_dir.ancestors().nth(2).unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    for watched in [
        "wit",
        "plugins/sdk",
        "host/contract",
        "strategies",
        "plugins/judge",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let strategies: Vec<(String, String)> = STRATEGIES
        .iter()
        .map(|name| (name.to_string(), format!("deployer-strategy-{name}")))
        .collect();
    let hooks: Vec<(String, String)> = HOOKS
        .iter()
        .map(|(name, package)| (name.to_string(), package.to_string()))
        .collect();
    embed(&root, &out_dir, "strategy", &strategies, "builtin.rs");
    embed(&root, &out_dir, "hook", &hooks, "builtin_hooks.rs");
}

/// Build `guests` (name, package) and write the table `table` of their components.
fn embed(root: &Path, out_dir: &Path, kind: &str, guests: &[(String, String)], table: &str) {
    // No WASI: none of the built-ins needs it, and a strategy must not have it.
    let packages: Vec<Guest> = guests
        .iter()
        .map(|(_, package)| Guest::new(package, GuestTarget::Unknown))
        .collect();
    let components = build(
        &root.join("Cargo.toml"),
        &packages,
        &guest_target_dir(out_dir, "strategies"),
    )
    .unwrap_or_else(|err| panic!("building the built-in {kind} plugins: {err:#}"));
    let mut text = String::from("&[\n");
    for ((name, _), bytes) in guests.iter().zip(components) {
        let file = out_dir.join(format!("{kind}-{name}.wasm"));
        std::fs::write(&file, bytes).unwrap();
        text += &format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        );
    }
    text += "]\n";
    std::fs::write(out_dir.join(table), text).unwrap();
}
