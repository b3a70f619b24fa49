use anyhow::Context;

use crate::exit::Outcome;
use deployer_plugin_host::{CONTRACT_VERSION, builtin, inspect};

pub fn run(component: &str) -> anyhow::Result<Outcome> {
    let bytes = match component.strip_prefix("builtin:") {
        Some(name) => builtin::get(name)
            .with_context(|| {
                format!(
                    "no built-in strategy `{name}` (built-ins: {})",
                    builtin::names().collect::<Vec<_>>().join(", ")
                )
            })?
            .to_vec(),
        None => std::fs::read(component).with_context(|| format!("reading {component}"))?,
    };
    let report = inspect::inspect(&bytes)
        .with_context(|| format!("{component} is not a WebAssembly component"))?;
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
