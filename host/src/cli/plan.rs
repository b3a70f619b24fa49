use std::path::Path;

use anyhow::Context;

use crate::config::Config;
use crate::exit::Outcome;
use crate::plan::{Ending, simulate};
use crate::plugin::bindings::types::TargetKind;
use crate::plugin::{PluginHost, PluginSource};
use crate::rollout::describe;

pub async fn run(
    host: &PluginHost,
    config_path: &Path,
    strategy: &str,
    service: Option<&str>,
    desired: Option<u32>,
) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let (service_name, service) = config
        .service(service)
        .map_err(|e| crate::config::ConfigErrors(vec![e]))?;
    let (plugin, source, params) =
        super::setup::strategy(host, &config, service_name, service, strategy).await?;
    let mut target = config.target_info(service);
    if let Some(desired) = desired {
        target.desired_count = desired;
    }
    let plan = simulate(&plugin, &params, target)
        .await
        .with_context(|| format!("simulating `{strategy}` for service `{service_name}`"))?;

    let origin = match source {
        PluginSource::Builtin(_) => "built-in".to_string(),
        PluginSource::File { path, .. } => path.display().to_string(),
    };
    let kind = match target.kind {
        TargetKind::EcsService => "ECS service",
        TargetKind::EksDeployment => "EKS deployment",
        TargetKind::AutoScalingGroup => "Auto Scaling group",
        TargetKind::Simulated => "simulated target",
    };
    println!(
        "Plan: `{strategy}` for service `{service_name}` ({kind}, {} units{})",
        target.desired_count,
        if target.test_traffic {
            ", test listener"
        } else {
            ""
        }
    );
    println!("Strategy component: {origin}, sha256 {}", plugin.digest());
    println!();
    let width = plan.steps.len().to_string().len();
    for (i, step) in plan.steps.iter().enumerate() {
        println!("  {:>width$}. {}", i + 1, describe::step(step));
    }
    println!();
    match &plan.ending {
        Ending::Completed => {
            println!(
                "{} steps, {} traffic shift(s), {} of bake time. Simulated with every gate passing; nothing was changed.",
                plan.steps.len(),
                plan.traffic_shifts(),
                describe::duration_ms(plan.total_bake_ms())
            );
            Ok(Outcome::Success)
        }
        Ending::Aborted(reason) => {
            println!("The strategy would abort: {reason}");
            Ok(Outcome::BadInput)
        }
        Ending::RolledBack(reason) => unreachable!("every gate passes in a plan: {reason}"),
    }
}
