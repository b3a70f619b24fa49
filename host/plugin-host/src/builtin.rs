//! The built-in plugins, compiled by the build script and embedded in the binary: the
//! strategies from `strategies/` and the hooks from `plugins/` (the canary judge).
//!
//! Each kind has its own table. [`get`] and [`names`] are the strategies (what a
//! service's `strategy` and `deployer plugin inspect builtin:NAME` name); [`get_kind`]
//! and [`names_of`] take the kind, so a strategy named like a built-in hook, or a hook
//! like a built-in strategy, finds nothing.

//!
//! Each built-in also carries its native code, compiled ahead of time by the build
//! script with the host's engine settings, so no run pays a Cranelift compile for it.

use crate::PluginKind;

/// One built-in plugin as the build script embedded it.
struct Builtin {
    name: &'static str,
    /// The component: what digest, world and import checks read.
    component: &'static [u8],
    /// `Engine::precompile_component` of `component`, for the target's baseline CPU.
    compiled: &'static [u8],
    /// The sha256 of the component `compiled` was compiled from.
    compiled_from: &'static str,
}

static STRATEGIES: &[Builtin] = include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
static HOOKS: &[Builtin] = include!(concat!(env!("OUT_DIR"), "/builtin_hooks.rs"));

fn table(kind: PluginKind) -> &'static [Builtin] {
    match kind {
        PluginKind::Strategy => STRATEGIES,
        PluginKind::Hook => HOOKS,
    }
}

fn find(name: &str, kind: PluginKind) -> Option<&'static Builtin> {
    table(kind).iter().find(|builtin| builtin.name == name)
}

/// The component bytes of built-in strategy `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    get_kind(name, PluginKind::Strategy)
}

/// Names of the built-in strategies.
pub fn names() -> impl Iterator<Item = &'static str> {
    names_of(PluginKind::Strategy)
}

/// The component bytes of built-in `name` of `kind`.
pub fn get_kind(name: &str, kind: PluginKind) -> Option<&'static [u8]> {
    find(name, kind).map(|builtin| builtin.component)
}

/// The ahead-of-time compiled code of built-in `name` of `kind`, when it was compiled
/// from the component whose sha256 is `digest` (always, unless the build went wrong:
/// code is never run for another component than the one that was checked).
pub(crate) fn compiled(name: &str, kind: PluginKind, digest: &str) -> Option<&'static [u8]> {
    find(name, kind)
        .filter(|builtin| builtin.compiled_from == digest)
        .map(|builtin| builtin.compiled)
}

/// Names of the built-ins of `kind`.
pub fn names_of(kind: PluginKind) -> impl Iterator<Item = &'static str> {
    table(kind).iter().map(|builtin| builtin.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_names() {
        assert_eq!(
            names().collect::<Vec<_>>(),
            ["canary", "blue-green", "rolling"]
        );
        assert_eq!(names_of(PluginKind::Hook).collect::<Vec<_>>(), ["judge"]);
        assert!(
            get("judge").is_none(),
            "a strategy named `judge` is not the hook"
        );
        assert!(get_kind("judge", PluginKind::Strategy).is_none());
        assert!(get_kind("canary", PluginKind::Hook).is_none());
        assert!(get_kind("judge", PluginKind::Hook).is_some());
        assert_eq!(get("canary"), get_kind("canary", PluginKind::Strategy));
    }

    #[test]
    fn each_builtins_code_is_its_own_components_and_this_engine_runs_it() {
        let host = crate::PluginHost::new(None).unwrap();
        for kind in [PluginKind::Strategy, PluginKind::Hook] {
            for name in names_of(kind) {
                let digest = crate::sha256_hex(get_kind(name, kind).unwrap());
                let code = compiled(name, kind, &digest).unwrap();
                // Not compiled again at run time: wasmtime takes the code as it is.
                host.deserialize_builtin(code)
                    .unwrap_or_else(|err| panic!("{kind} {name}: {err:#}"));
                // Code is handed out only for the component it was compiled from.
                let other = crate::sha256_hex(b"another component");
                assert!(compiled(name, kind, &other).is_none());
            }
        }
    }
}
