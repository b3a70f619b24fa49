//! The built-in plugins, compiled by the build script and embedded in the binary: the
//! strategies from `strategies/` and the hooks from `plugins/` (the canary judge).
//!
//! Each kind has its own table. [`get`] and [`names`] are the strategies (what a
//! service's `strategy` and `deployer plugin inspect builtin:NAME` name); [`get_kind`]
//! and [`names_of`] take the kind, so a strategy named like a built-in hook, or a hook
//! like a built-in strategy, finds nothing.

use crate::PluginKind;

static STRATEGIES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
static HOOKS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/builtin_hooks.rs"));

fn table(kind: PluginKind) -> &'static [(&'static str, &'static [u8])] {
    match kind {
        PluginKind::Strategy => STRATEGIES,
        PluginKind::Hook => HOOKS,
    }
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
    table(kind)
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// Names of the built-ins of `kind`.
pub fn names_of(kind: PluginKind) -> impl Iterator<Item = &'static str> {
    table(kind).iter().map(|(name, _)| *name)
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
}
