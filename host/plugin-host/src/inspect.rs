//! `deployer plugin inspect`: what a component is, without running it.

use wit_component::{DecodedWasm, WitPrinter};

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
        exports,
        wit: printer.output.to_string(),
    })
}
