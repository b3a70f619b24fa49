use crate::exit::Outcome;
use deployer_engine::files::Kind;
use deployer_engine::redact::printable;
use deployer_plugin_host::{CONTRACT_VERSION, Contract, PluginError, PluginKind, builtin, inspect};

pub fn run(component: &str) -> anyhow::Result<Outcome> {
    let bytes = match component.strip_prefix("builtin:") {
        // Built-in strategies and hooks have distinct names; either may be inspected.
        Some(name) => builtin::get_kind(name, PluginKind::Strategy)
            .or_else(|| builtin::get_kind(name, PluginKind::Hook))
            .ok_or_else(|| PluginError::Read {
                name: component.to_string(),
                path: component.into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "no built-in plugin `{name}` (strategies: {}; hooks: {})",
                        builtin::names_of(PluginKind::Strategy)
                            .collect::<Vec<_>>()
                            .join(", "),
                        builtin::names_of(PluginKind::Hook)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            })?
            .to_vec(),
        // A file that cannot be read is bad input (exit 3), as when a run loads it.
        None => deployer_engine::files::read(std::path::Path::new(component), Kind::Plugin)
            .map_err(|err| PluginError::Read {
                name: component.to_string(),
                path: component.into(),
                source: err.into_io(),
            })?,
    };
    let report = inspect::inspect(component, &bytes)?;
    // Names inside a component (imports, exports, its WIT) are anyone's text.
    outln!("component: {}", printable(component));
    outln!("sha256:    {}", report.sha256);
    outln!("size:      {} bytes", report.size);
    match (&report.kind, &report.contract) {
        (Some(kind), Some(version)) => {
            let runs = match Contract::of(version) {
                // An earlier patch of the current minor links by semver (0.3.0 on 0.3.1).
                Some(Contract::V0_3) if version != CONTRACT_VERSION => {
                    format!(" and runs {version} components unchanged")
                }
                Some(Contract::V0_3) => String::new(),
                Some(earlier) => {
                    format!(" and still runs {} components unchanged", earlier.version())
                }
                None => " and cannot run it".to_string(),
            };
            outln!(
                "kind:      {kind} (deployer:plugin@{}; this deployer implements {CONTRACT_VERSION}{runs})",
                printable(version)
            )
        }
        _ => outln!(
            "kind:      not a deployer plugin (exports no deployer:plugin/strategy or /hook)"
        ),
    }
    outln!("imports:");
    for import in &report.imports {
        outln!("  {}", printable(import));
    }
    // What to write in its `[plugins.NAME]` table, so a missing grant is found here and
    // not as a refused load.
    match report.kind.as_deref() {
        Some("hook") => {
            outln!("grants it needs, under [plugins.NAME] in deployer.toml:");
            for need in &report.needs {
                outln!("  {}: {}", printable(&need.import), need.grant);
            }
        }
        Some("strategy") => {
            outln!("grants it needs: none (a strategy is granted nothing; it may import only log)");
            for need in report.needs.iter().filter(|n| !n.import.contains("/log@")) {
                outln!(
                    "  {}: refused at load for a strategy",
                    printable(&need.import)
                );
            }
        }
        _ => {}
    }
    outln!("exports:");
    for export in &report.exports {
        outln!("  {}", printable(export));
    }
    outln!("world:");
    for line in report.wit.lines() {
        outln!("  {}", printable(line));
    }
    Ok(Outcome::Success)
}
