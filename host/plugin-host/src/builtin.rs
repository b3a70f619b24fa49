//! The built-in strategies, compiled from `strategies/` by the build script and
//! embedded in the binary.

static BUILTINS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// The component bytes of built-in strategy `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// Names of the built-in strategies.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(name, _)| *name)
}

/// The component bytes of built-in `name` of `kind`.
pub fn get_kind(name: &str, kind: crate::PluginKind) -> Option<&'static [u8]> {
    match kind {
        crate::PluginKind::Strategy => get(name),
        crate::PluginKind::Hook => None,
    }
}

/// Names of the built-ins of `kind`.
pub fn names_of(kind: crate::PluginKind) -> impl Iterator<Item = &'static str> {
    names().filter(move |_| kind == crate::PluginKind::Strategy)
}
