//! The wasmtime configuration of the plugin host, in one place because two programs use
//! it: the host at run time, and the build script, which compiles the built-in plugins
//! ahead of time (`build.rs` includes this file). Code compiled under one configuration
//! is only loaded by an engine whose settings match, so the two cannot drift apart.

/// The engine configuration every plugin is compiled and run under. `target` is a
/// target triple when compiling ahead of time for another machine than this one: the
/// code then assumes only that architecture's baseline CPU features, so it runs on any
/// CPU of it (at run time wasmtime checks that the CPU has each feature the code uses).
pub fn engine_config(target: Option<&str>) -> wasmtime::Result<wasmtime::Config> {
    let mut config = wasmtime::Config::new();
    // Plugin calls have deadlines: an epoch tick interrupts a guest that overruns.
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    if let Some(triple) = target {
        config.target(triple)?;
    }
    Ok(config)
}
