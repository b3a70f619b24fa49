//! Builds the built-in plugins into WebAssembly components and embeds them: the
//! strategies in `strategies/` and the hooks in `plugins/` (the canary judge).
//! `builtin.rs` and `builtin_hooks.rs` in OUT_DIR list them for `include_bytes!`, one
//! table per kind, so a strategy and a hook can never be taken for each other.
//!
//! Each built-in is also compiled to native code here, ahead of time, with the host's
//! own engine settings (`src/engine_config.rs`): a fresh CI runner, whose compile cache
//! is always empty, then pays no Cranelift compile for the strategy it deploys with. The
//! component stays embedded beside its code: its digest and world are checked as for any
//! plugin, and it is compiled at run time if the code cannot be used on that CPU.

use std::path::{Path, PathBuf};

use deployer_plugin_build::{Guest, GuestTarget, build, guest_target_dir};
use sha2::{Digest, Sha256};

#[path = "src/engine_config.rs"]
mod engine_config;

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
    println!("cargo:rerun-if-changed=src/engine_config.rs");
    // Compiled for the target's baseline CPU, not this machine's: the binary (a CI
    // image, a release download) runs on other machines than the one that built it.
    let target = std::env::var("TARGET").unwrap();
    let engine = wasmtime::Engine::new(
        &engine_config::engine_config(Some(&target))
            .unwrap_or_else(|err| panic!("configuring wasmtime for {target}: {err:#}")),
    )
    .unwrap_or_else(|err| panic!("configuring wasmtime for {target}: {err:#}"));
    embed(
        &root,
        &out_dir,
        &engine,
        "strategy",
        &strategies,
        "builtin.rs",
    );
    embed(&root, &out_dir, &engine, "hook", &hooks, "builtin_hooks.rs");
}

/// Build `guests` (name, package) and write the table `table` of their components.
fn embed(
    root: &Path,
    out_dir: &Path,
    engine: &wasmtime::Engine,
    kind: &str,
    guests: &[(String, String)],
    table: &str,
) {
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
        let compiled = engine
            .precompile_component(&bytes)
            .unwrap_or_else(|err| panic!("compiling the built-in {kind} {name}: {err:#}"));
        let file = out_dir.join(format!("{kind}-{name}.wasm"));
        let code = out_dir.join(format!("{kind}-{name}.cwasm"));
        std::fs::write(&file, &bytes).unwrap();
        std::fs::write(&code, compiled).unwrap();
        text += &format!(
            "    Builtin {{ name: {name:?}, component: include_bytes!({:?}), \
             compiled: include_bytes!({:?}), compiled_from: {:?} }},\n",
            file.display().to_string(),
            code.display().to_string(),
            hex::encode(Sha256::digest(&bytes)),
        );
    }
    text += "]\n";
    std::fs::write(out_dir.join(table), text).unwrap();
}
