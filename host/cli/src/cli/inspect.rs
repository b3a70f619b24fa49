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
    outln!("component: {component}");
    outln!("sha256:    {}", report.sha256);
    outln!("size:      {} bytes", report.size);
    match (&report.kind, &report.contract) {
        (Some(kind), Some(version)) => {
            outln!(
                "kind:      {kind} (deployer:plugin@{version}; this deployer implements {CONTRACT_VERSION})"
            )
        }
        _ => outln!(
            "kind:      not a deployer plugin (exports no deployer:plugin/strategy or /hook)"
        ),
    }
    outln!("imports:");
    for import in &report.imports {
        outln!("  {import}");
    }
    outln!("exports:");
    for export in &report.exports {
        outln!("  {export}");
    }
    outln!("world:");
    for line in report.wit.lines() {
        outln!("  {line}");
    }
    Ok(Outcome::Success)
}
