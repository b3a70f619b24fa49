//! Hostile plugins inside real deployments: every misbehaviour of a strategy, and of a
//! hook at each lifecycle point, is stopped or refused, the deployment rolls back with
//! traffic on stable, and the same host then runs a good deployment.

use std::time::Duration;

use deployer_engine::gates::{ConfiguredGates, Gate, GatePoint};
use deployer_engine::gates::{Gates, NoGates};
use deployer_engine::rollout::{DeployRequest, Report};
use deployer_engine::state::DeployResult;
use deployer_plugin_host::hook::{HookGate, HookPlugin};
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Grants, Limits, PluginHost};
use deployer_tests::support::rollout::{Harness, request};
use deployer_tests::{components, source};

const CANARY: &str = r#"{"steps":[{"weight":25},{"weight":50}]}"#;

/// A deployment on a fresh simulated target and journal on `base`'s host, and the
/// journal's text.
async fn deploy(
    base: &Harness,
    strategy: &StrategyPlugin,
    gates: &impl Gates,
    request: DeployRequest,
) -> (Report, Harness, String) {
    let h = base.next();
    let report = h.deploy(strategy, gates, request).await;
    let journal = h.journal();
    (report, h, journal)
}

fn assert_rolled_back_safely(what: &str, report: &Report, h: &Harness) {
    assert_eq!(
        report.result,
        DeployResult::RolledBack,
        "{what}: {report:?}"
    );
    h.assert_safe_on_stable();
}

/// A limit short enough for a test, long enough for a normal call.
fn short_limits(mut limits: Limits) -> Limits {
    limits.timeout = Duration::from_millis(300);
    limits.memory_bytes = 32 << 20;
    limits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_strategy_is_stopped_or_refused_and_rolled_back() {
    let base = Harness::new();
    let hostile = StrategyPlugin::load(
        &base.host,
        &source("hostile", components::HOSTILE_STRATEGY),
        short_limits(Limits::strategy()),
    )
    .unwrap();
    for (mode, expected) in [
        ("loop", "time limit"),
        ("oom", "memory"),
        ("recurse", ""),
        ("trap", ""),
        ("error", "deliberate error"),
        ("huge", "more bytes cut"),
        ("weight", "not a traffic share"),
        (
            "drain-stable",
            "move the traffic off it before scaling it down",
        ),
        ("shift-first", "healthy unit(s) but 50% of traffic needs"),
        ("endless-bake", "longer than 24 hours"),
        ("promote-early", "promote after shifting 100%"),
    ] {
        let (report, h, journal) = deploy(
            &base,
            &hostile,
            &NoGates,
            request("hostile", &format!(r#"{{"mode":"{mode}"}}"#)),
        )
        .await;
        assert_rolled_back_safely(mode, &report, &h);
        assert!(
            report.detail.contains(expected),
            "{mode}: expected `{expected}` in: {}",
            &report.detail[..report.detail.len().min(300)]
        );
        assert!(
            report.detail.len() < 6000 && journal.len() < 64 << 10,
            "{mode}: the plugin's output is kept small ({} bytes of detail, {} of journal)",
            report.detail.len(),
            journal.len()
        );
    }
    // The host still serves: the built-in canary deploys on it.
    let canary = base.builtin("canary");
    let (report, _, _) = deploy(&base, &canary, &NoGates, request("canary", CANARY)).await;
    assert_eq!(report.result, DeployResult::Promoted, "{report:?}");
}

fn hook_gate(host: &PluginHost, at: GatePoint, params: &str) -> ConfiguredGates {
    let grants = Grants {
        http_allow: vec!["hooks.example.com".into()],
        kv: true,
        ..Grants::default()
    };
    let plugin = HookPlugin::load(
        host,
        &source("probe", components::HOSTILE_HOOK),
        short_limits(Limits::hook()),
        grants,
    )
    .unwrap();
    ConfiguredGates::new(vec![Gate {
        name: "hook:probe".into(),
        at: vec![at],
        failures: 1,
        check: Box::new(HookGate {
            plugin,
            params: params.into(),
            services: None,
        }),
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_hook_at_any_point_fails_its_gate_and_the_deployment_rolls_back() {
    let base = Harness::new();
    let canary = base.builtin("canary");
    for point in [
        GatePoint::PreDeploy,
        GatePoint::PreTraffic,
        GatePoint::PostTraffic,
        GatePoint::Bake,
    ] {
        for (params, expected) in [
            (r#"{"mode":"loop"}"#, "time limit"),
            (r#"{"mode":"trap"}"#, ""),
            (r#"{"mode":"oom"}"#, "memory"),
            // Not on its allow-list: refused by the host, the gate fails.
            (
                r#"{"url":"http://evil.example.net/exfiltrate"}"#,
                "not on this plugin's http-allow list",
            ),
        ] {
            let gates = hook_gate(&base.host, point, params);
            let params_with_bake = r#"{"steps":[{"weight":25,"bake":"100ms"},{"weight":50}]}"#;
            let (report, h, _) =
                deploy(&base, &canary, &gates, request("canary", params_with_bake)).await;
            let what = format!("{point:?} {params}");
            assert_rolled_back_safely(&what, &report, &h);
            assert!(
                report.detail.contains(expected),
                "{what}: {}",
                report.detail
            );
        }
    }
    // A huge result passes (the hook said pass) but is cut to size.
    let gates = hook_gate(&base.host, GatePoint::PreTraffic, r#"{"mode":"huge"}"#);
    let results = gates
        .run(
            deployer_contract::LifecyclePoint::PreTraffic,
            &deployer_engine::gates::GateContext {
                deployment_id: "d1".into(),
                service: "web".into(),
                new_release: "web:2".into(),
                stable_release: Some("web:1".into()),
                new_percent: 0,
                target_groups: Ok(None),
            },
        )
        .await;
    assert!(
        results[0].detail.len() < 6000,
        "{}",
        results[0].detail.len()
    );
    // Still serving: the same hook, behaving, passes a deployment.
    let gates = hook_gate(&base.host, GatePoint::PreTraffic, "{}");
    let (report, _, _) = deploy(&base, &canary, &gates, request("canary", CANARY)).await;
    assert_eq!(report.result, DeployResult::Promoted, "{report:?}");
}

/// Strategies that break the rules only a whole run shows: un-promoting, skipping the
/// configured gates, rolling in place on a pair, never finishing. The host refuses or
/// adds what is missing, and traffic ends on a side with full capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strategies_cannot_unpromote_skip_gates_roll_a_pair_or_run_forever() {
    use deployer_contract::LifecyclePoint::{PostDeploy, PostTraffic, PreDeploy, PreTraffic};
    use deployer_engine::rollout::Settings;
    use deployer_tests::support::rollout::{Scripted, settings};

    let base = Harness::new();
    let hostile = StrategyPlugin::load(
        &base.host,
        &source("hostile", components::HOSTILE_STRATEGY),
        short_limits(Limits::strategy()),
    )
    .unwrap();
    let mode = |m: &str| request("hostile", &format!(r#"{{"mode":"{m}"}}"#));

    // Promote, then shift everything back to stable and complete (removing stable).
    let (report, h, _) = deploy(&base, &hostile, &NoGates, mode("unpromote")).await;
    assert_rolled_back_safely("unpromote", &report, &h);
    assert!(
        report.detail.contains("traffic stays 100% on it"),
        "{}",
        report.detail
    );
    assert!(
        !h.state().operations.contains(&"finalize".to_string()),
        "{:?}",
        h.state()
    );

    // Never asks for a gate: the host runs each configured point where it is owed.
    let gates = Scripted::default();
    let (report, _, journal) = deploy(&base, &hostile, &gates, mode("no-gates")).await;
    assert_eq!(report.result, DeployResult::Promoted, "{report:?}");
    assert_eq!(
        *gates.runs.lock().unwrap(),
        [PreDeploy, PreTraffic, PostTraffic, PostTraffic, PostDeploy],
        "{journal}"
    );
    assert!(
        journal.contains(r#""host-gates":"PostTraffic""#),
        "{journal}"
    );

    // ... and a failing one still rolls it back, before traffic goes further.
    let gates = Scripted::failing(PostTraffic, 0);
    let (report, h, _) = deploy(&base, &hostile, &gates, mode("no-gates")).await;
    assert_rolled_back_safely("no-gates, failing", &report, &h);
    assert!(
        report.detail.contains("5/10 requests failed"),
        "{}",
        report.detail
    );
    assert_eq!(h.state().shifts.iter().max(), Some(&50), "{:?}", h.state());

    // A strategy that asks for its gates gets no second run of them.
    let gates = Scripted::default();
    let (report, _, _) = deploy(&base, &hostile, &gates, mode("with-gates")).await;
    assert_eq!(report.result, DeployResult::Promoted, "{report:?}");
    assert_eq!(
        *gates.runs.lock().unwrap(),
        [PreDeploy, PreTraffic, PostTraffic, PostDeploy]
    );

    // An in-place rolling update on two sides behind the load balancer.
    let (report, h, _) = deploy(&base, &hostile, &NoGates, mode("rolling-on-pair")).await;
    assert_rolled_back_safely("rolling-on-pair", &report, &h);
    assert!(
        report.detail.contains("could not be undone"),
        "{}",
        report.detail
    );

    // Never finishing: capped by steps, and by time.
    let h = base.next();
    let capped = Settings {
        max_steps: 40,
        ..settings()
    };
    let report = h
        .deploy_with(&hostile, &NoGates, capped, mode("many-bakes"))
        .await;
    assert_rolled_back_safely("many-bakes", &report, &h);
    assert!(
        report.detail.contains("more than 40 steps"),
        "{}",
        report.detail
    );

    let h = base.next();
    let capped = Settings {
        max_duration: Duration::from_millis(500),
        ..settings()
    };
    let report = h
        .deploy_with(&hostile, &NoGates, capped, mode("long-bake"))
        .await;
    assert_rolled_back_safely("long-bake", &report, &h);
    assert!(report.detail.contains("max-duration"), "{}", report.detail);

    // The built-in strategies ask for every gate themselves: nothing is run twice.
    let canary = base.builtin("canary");
    let gates = Scripted::default();
    let (report, _, journal) = deploy(&base, &canary, &gates, request("canary", CANARY)).await;
    assert_eq!(report.result, DeployResult::Promoted, "{report:?}");
    assert_eq!(
        *gates.runs.lock().unwrap(),
        [
            PreDeploy,
            PreTraffic,
            PostTraffic,
            PostTraffic,
            PostTraffic,
            PostDeploy
        ]
    );
    assert!(!journal.contains("host-gates"), "{journal}");
}
