use crate::exit::Outcome;
use deployer_plugin_host::{CONTRACT_VERSION, PluginError, builtin, inspect};

pub fn run(component: &str) -> anyhow::Result<Outcome> {
    let bytes = match component.strip_prefix("builtin:") {
        Some(name) => builtin::get(name)
            .ok_or_else(|| PluginError::Read {
                name: component.to_string(),
                path: component.into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "no built-in strategy `{name}` (built-ins: {})",
                        builtin::names().collect::<Vec<_>>().join(", ")
                    ),
                ),
            })?
            .to_vec(),
        // A file that cannot be read is bad input (exit 3), as when a run loads it.
        None => std::fs::read(component).map_err(|source| PluginError::Read {
            name: component.to_string(),
            path: component.into(),
            source,
        })?,
    };
    let report = inspect::inspect(component, &bytes)?;
    println!("component: {component}");
    println!("sha256:    {}", report.sha256);
    println!("size:      {} bytes", report.size);
    match (&report.kind, &report.contract) {
        (Some(kind), Some(version)) => {
            println!(
                "kind:      {kind} (deployer:plugin@{version}; this deployer implements {CONTRACT_VERSION})"
            )
        }
        _ => println!(
            "kind:      not a deployer plugin (exports no deployer:plugin/strategy or /hook)"
        ),
    }
    println!("imports:");
    for import in &report.imports {
        println!("  {import}");
    }
    println!("exports:");
    for export in &report.exports {
        println!("  {export}");
    }
    println!("world:");
    for line in report.wit.lines() {
        println!("  {line}");
    }
    Ok(Outcome::Success)
}
