//! `deployer plugin inspect`: what a component is, without running it.

use wit_component::{DecodedWasm, WitPrinter};
use wit_parser::{Resolve, WorldItem, WorldKey};

use super::load::{check_is_component, sha256_hex, split_contract_name};

/// What a component declares.
#[derive(Debug)]
pub struct Report {
    pub sha256: String,
    pub size: usize,
    /// `strategy` or `hook`, when it exports one of deployer's interfaces.
    pub kind: Option<String>,
    /// The `deployer:plugin` contract version it was built against.
    pub contract: Option<String>,
    pub imports: Vec<String>,
    /// Per import, what a hook's `[plugins.NAME]` must grant for it to load and work.
    pub needs: Vec<Need>,
    pub exports: Vec<String>,
    /// Its world, as WIT text.
    pub wit: String,
}

/// Decode the world of component `name` (a file name, for errors).
///
/// # Errors
/// When `bytes` is not a component: a core module, or not WebAssembly, refused as
/// loading would refuse it ([`crate::PluginError::NotAComponent`], bad input), with how
/// to make a component.
pub fn inspect(name: &str, bytes: &[u8]) -> anyhow::Result<Report> {
    // First: wit-component decodes a core module too, as an empty world, which made a
    // core module look like a component that exports nothing.
    check_is_component(name, bytes)?;
    let decoded = wit_component::decode(bytes).map_err(|err| crate::PluginError::Invalid {
        name: name.to_string(),
        reason: format!("{err:#}"),
    })?;
    let DecodedWasm::Component(resolve, world_id) = decoded else {
        anyhow::bail!("this is a WIT package, not a component");
    };
    let world = &resolve.worlds[world_id];
    let imports: Vec<String> = world
        .imports
        .keys()
        .map(|k| resolve.name_world_key(k))
        .collect();
    let needs = world
        .imports
        .iter()
        .filter_map(|(key, item)| need(&resolve, key, item))
        .collect();
    let exports: Vec<String> = world
        .exports
        .keys()
        .map(|k| resolve.name_world_key(k))
        .collect();
    let (kind, contract) = exports
        .iter()
        .filter_map(|e| split_contract_name(e))
        .find(|(iface, _)| matches!(*iface, "strategy" | "hook"))
        .map(|(iface, version)| (Some(iface.to_string()), Some(version.to_string())))
        .unwrap_or((None, None));
    let mut printer = WitPrinter::default();
    let package = world
        .package
        .ok_or_else(|| anyhow::anyhow!("decoded world has no package"))?;
    printer.print(&resolve, package, &[])?;
    Ok(Report {
        sha256: sha256_hex(bytes),
        size: bytes.len(),
        kind,
        contract,
        imports,
        needs,
        exports,
        wit: printer.output.to_string(),
    })
}

/// What one import asks of a hook's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The import as the component names it (`deployer:plugin/http@0.3.1`).
    pub import: String,
    /// The `[plugins.NAME]` line that grants it, or what the host does with it.
    pub grant: String,
}

/// The grant an imported interface needs, in `deployer.toml`'s words (the same keys
/// [`crate::Grants`] is read from); `None` for imports that need nothing said
/// (`types`, WASI beyond its clocks).
fn need(resolve: &Resolve, key: &WorldKey, item: &WorldItem) -> Option<Need> {
    let import = resolve.name_world_key(key);
    let WorldItem::Interface { id, .. } = item else {
        return None;
    };
    // `metrics` holds two queries, granted separately: say which this component calls.
    // A component's import lists only the functions it uses (toolchains that import a
    // whole world list them all, and need both grants to call both).
    let calls = |function: &str| resolve.interfaces[*id].functions.contains_key(function);
    let grant = match super::load::split_contract_name(&import) {
        Some(("log", _)) => "nothing: always granted".to_string(),
        Some(("clock", _)) => "clock = true".to_string(),
        Some(("kv", _)) => "kv = true".to_string(),
        Some(("http", _)) => "http-allow = [\"HOST\", …]: the hosts it may call".to_string(),
        Some(("metrics", _)) => {
            let mut grants = Vec::new();
            if calls("query") {
                grants.push("metrics-namespaces = [\"NAMESPACE\", …] for CloudWatch `query`");
            }
            if calls("query-prometheus") {
                grants.push(
                    "prometheus-metrics = [\"METRIC\", …] for `query-prometheus` (and a \
                     [prometheus] server)",
                );
            }
            if grants.is_empty() {
                "metrics-namespaces or prometheus-metrics".to_string()
            } else {
                grants.join("; ")
            }
        }
        Some(("actions", _)) => {
            "nothing can: contract 0.2.0 removed `actions`, and a plugin importing it is \
             refused at load"
                .to_string()
        }
        Some(_) => return None,
        None if import.starts_with("wasi:clocks/") => {
            "clock = true to read the time (a hook without it reads zero; a strategy that \
             imports it is refused)"
                .to_string()
        }
        None => return None,
    };
    Some(Need { import, grant })
}

#[cfg(test)]
mod tests {
    /// Each grant inspect names is the key the load check asks for when it is missing.
    #[test]
    fn the_grants_named_are_the_ones_loading_asks_for() {
        let grants = crate::Grants::default();
        for (capability, key) in [
            ("clock", "clock = true"),
            ("kv", "kv = true"),
            ("http", "http-allow = ["),
            ("metrics", "metrics-namespaces = ["),
            ("metrics", "prometheus-metrics = ["),
        ] {
            let fix = grants.check(capability).unwrap_err();
            assert!(fix.contains(key), "{capability}: {fix}");
        }
    }
}
