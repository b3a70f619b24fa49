use std::path::Path;

use deployer_contract::TargetKind;
use deployer_engine::describe;
use deployer_engine::plan::{Ending, PlanError, over_caps, simulate};
use deployer_engine::rollout::{EngineError, fit_problem};
use deployer_plugin_host::{PluginHost, PluginSource};

use deployer_targets::spec::TargetSpec;

use crate::config::Config;
use crate::exit::Outcome;

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
    let sized_at_run = service.spec.target.desired().is_none() && desired.is_none();
    let mut target = Config::planned_target_info(service);
    if let Some(desired) = desired {
        target.desired_count = desired;
    }
    // What `run` would refuse before any change, refused here in its words (bad input,
    // exit 3): steps of the wrong shape for the target (a canary on one Auto Scaling
    // group updated in place), a plan the host refuses or that never ends.
    let refuse = |err: EngineError| super::run::engine_error(&config, service_name, strategy, err);
    let side_by_side = !target.native_rolling;
    let plan = match simulate(&plugin, &params, target).await {
        Ok(plan) => plan,
        Err(err @ (PlanError::Unsafe { .. } | PlanError::Endless)) => {
            let unfit = match &err {
                PlanError::Unsafe { step, .. } => fit_problem(
                    strategy,
                    target.kind,
                    std::slice::from_ref(step),
                    side_by_side,
                ),
                _ => None,
            };
            return Err(refuse(
                unfit.map_or(EngineError::Plan(err), EngineError::Unfit),
            ));
        }
        Err(err) => {
            return Err(anyhow::Error::from(err).context(format!(
                "simulating `{strategy}` for service `{service_name}`"
            )));
        }
    };
    let over_caps = over_caps(&plan.steps, service.max_steps, service.max_duration);

    let origin = match source {
        PluginSource::Builtin(_) => "built-in".to_string(),
        PluginSource::File { path, .. } => path.display().to_string(),
    };
    let lambda = service.spec.target.is_lambda();
    let kind = match &service.spec.target {
        TargetSpec::Lambda { function, alias } => {
            format!("Lambda function {function} alias {alias}")
        }
        _ => kind_words(target.kind).to_string(),
    };
    outln!(
        "Plan: `{strategy}` for service `{service_name}` ({kind}, {} units{}{})",
        target.desired_count,
        match (sized_at_run, lambda) {
            (true, true) => {
                " as an example: a run sizes it from the alias's provisioned concurrency; --desired N to plan for N"
            }
            (true, false) => {
                " as an example: a run sizes it from the live side; --desired N to plan for N"
            }
            _ => "",
        },
        if target.test_traffic {
            ", test listener"
        } else {
            ""
        }
    );
    if lambda {
        // Lambda has no instances: say what the scale steps below do there.
        outln!(
            "A unit is one provisioned concurrent execution: a scale step provisions the new version \
             (READY before it gets traffic) and 0 removes it. An alias without provisioned \
             concurrency sizes the run at 0 units: scale steps provision nothing and Lambda \
             scales the function itself."
        );
    }
    outln!("Strategy component: {origin}, sha256 {}", plugin.digest());
    outln!();
    let width = plan.steps.len().to_string().len();
    for (i, step) in plan.steps.iter().enumerate() {
        outln!("  {:>width$}. {}", i + 1, describe::step(step));
    }
    outln!();
    match &plan.ending {
        // Listed above so the length shows; `run` would not start it.
        Ending::Completed if let Some(problem) = over_caps => Err(refuse(EngineError::Unfit(
            format!("`{strategy}`: {problem}"),
        ))),
        Ending::Completed => {
            // An approval pause counts as given at once in the simulation; its
            // timeout is how long the real run may wait on it.
            let approvals = match plan.total_approval_ms() {
                0 => String::new(),
                ms => format!(
                    ", up to {} waiting for approval (given at once here)",
                    describe::duration_ms(ms)
                ),
            };
            outln!(
                "{} steps, {} traffic shift(s), {} of bake time{approvals}. Simulated with every gate passing; nothing was changed.",
                plan.steps.len(),
                plan.traffic_shifts(),
                describe::duration_ms(plan.total_bake_ms())
            );
            Ok(Outcome::Success)
        }
        Ending::Aborted(reason) => {
            outln!("The strategy would abort: {reason}");
            Ok(Outcome::BadInput)
        }
        // Every gate passes in a plan, so only a strategy that fails its own gates ends here.
        Ending::RolledBack(reason) => {
            outln!("The run would roll back: {reason}");
            Ok(Outcome::Error)
        }
    }
}

/// The kind of target in words.
fn kind_words(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::EcsService => "ECS service",
        TargetKind::EksDeployment => "EKS deployment",
        TargetKind::AutoScalingGroup => "Auto Scaling group",
        TargetKind::Simulated => "simulated target",
    }
}
