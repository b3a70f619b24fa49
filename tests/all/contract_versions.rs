//! Components built against earlier contract versions keep loading and running on this
//! host, unchanged: the 0.1.0 and 0.2.0 canary and db-migration hook, and the 0.3.0
//! metrics hook (from before 0.3.1's `query-prometheus`), in `tests/fixtures/contract-*/`,
//! built from the old commits with the old SDK (see the README there). A 0.2 strategy
//! cannot ask for approval (its `step` has no such case); everything else it did, it
//! still does, step for step.

use deployer_contract::{
    Approval, ApprovalTimeout, CONTRACT_VERSION, GateStatus, LifecyclePoint, RolloutState, Step,
    StepOutcome, StepRecord,
};
use deployer_engine::state::DeployResult;
use deployer_plugin_host::capabilities::ReqwestTransport;
use deployer_plugin_host::hook::{HookContext, HookPlugin};
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{Contract, Grants, HostServices, Limits, PluginError, PluginHost};
use deployer_tests::source;
use deployer_tests::support::App;
use deployer_tests::support::rollout::{Harness, Scripted, request};

const CANARY: &str = r#"{"steps":[{"weight":10,"bake":"1s"},{"weight":50}]}"#;

/// A fixture's path, by contract version and file name.
fn fixture(version: &str, file: &str) -> String {
    format!(
        "{}/fixtures/contract-{version}/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Each earlier version with what the host makes of it.
const EARLIER: [(&str, Contract); 2] = [("0.1.0", Contract::V0_1), ("0.2.0", Contract::V0_2)];

fn old_canary(h: &Harness, version: &str) -> StrategyPlugin {
    let source = source("old-canary", &fixture(version, "canary.wasm"));
    StrategyPlugin::load(&h.host, &source, Limits::strategy()).unwrap()
}

/// A rebuilt fixture must not silently become a current component: its export and
/// import names still carry the version it was built against.
#[test]
fn the_fixtures_carry_their_old_version_in_their_names() {
    for (version, _) in EARLIER {
        for (file, kind, imports) in [
            ("canary.wasm", "strategy", &["types"][..]),
            ("db-migration.wasm", "hook", &["http", "kv"][..]),
        ] {
            let path = fixture(version, file);
            let report =
                deployer_plugin_host::inspect::inspect(file, &std::fs::read(&path).unwrap())
                    .unwrap();
            assert_eq!(report.kind.as_deref(), Some(kind), "{path}");
            assert_eq!(report.contract.as_deref(), Some(version), "{path}");
            assert!(
                report
                    .exports
                    .contains(&format!("deployer:plugin/{kind}@{version}")),
                "{path}: {:?}",
                report.exports
            );
            for capability in imports {
                let name = format!("deployer:plugin/{capability}@{version}");
                assert!(
                    report.imports.contains(&name),
                    "{path}: {:?}",
                    report.imports
                );
            }
            assert!(
                !report.imports.iter().any(|i| i.contains("/actions@")),
                "{path}: {:?}",
                report.imports
            );
        }
    }
}

/// The 0.1.0 and 0.2.0 canaries deploy end to end on the simulated target and take
/// exactly the steps the current canary takes with the same parameters (which have
/// not changed since 0.1.0): the same driver operations in the same order, the same
/// journaled steps.
#[tokio::test]
async fn old_canaries_deploy_end_to_end_with_the_same_steps_as_before() {
    let current = Harness::new();
    let report = current
        .deploy(
            &current.builtin("canary"),
            &Scripted::default(),
            request("canary", CANARY),
        )
        .await;
    assert_eq!(report.result, DeployResult::Promoted, "{}", report.detail);
    let expected = current.state();
    assert_eq!(expected.shifts, [10, 50, 100]);
    let expected_steps = journaled_steps(&current.journal());
    assert!(expected_steps.len() > 10, "{expected_steps:?}");

    for (version, contract) in EARLIER {
        let h = current.next();
        let canary = old_canary(&h, version);
        assert_eq!(canary.contract(), contract);
        assert_eq!(canary.info().await.unwrap().name, "canary");
        let report = h
            .deploy(&canary, &Scripted::default(), request("canary", CANARY))
            .await;
        assert_eq!(
            report.result,
            DeployResult::Promoted,
            "{version}: {}",
            report.detail
        );
        let state = h.state();
        assert_eq!(state.live_release(), Some("web:2"), "{version}");
        assert_eq!(state.shifts, expected.shifts, "{version}");
        assert_eq!(state.operations, expected.operations, "{version}");
        assert_eq!(journaled_steps(&h.journal()), expected_steps, "{version}");
    }
}

/// The steps a journal records as asked for, in order.
fn journaled_steps(journal: &str) -> Vec<serde_json::Value> {
    journal
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|record| record.pointer("/action/step").cloned())
        .collect()
}

/// Gate results reach an old strategy in its own types: a failed post-traffic gate
/// makes it abort, and the host rolls back to the stable side.
#[tokio::test]
async fn an_old_canary_sees_a_failed_gate_and_the_run_rolls_back() {
    for (version, _) in EARLIER {
        let h = Harness::new();
        let canary = old_canary(&h, version);
        let gates = Scripted::failing(LifecyclePoint::PostTraffic, 1);
        let report = h.deploy(&canary, &gates, request("canary", CANARY)).await;
        assert_eq!(
            report.result,
            DeployResult::RolledBack,
            "{version}: {}",
            report.detail
        );
        assert!(
            report.detail.contains("5/10 requests failed"),
            "{version}: {}",
            report.detail
        );
        assert_eq!(h.state().shifts, [10, 50, 0], "{version}");
        h.assert_safe_on_stable();
    }
}

/// What an old component cannot do, it is told in its own terms: a 0.2 canary does not
/// know `pause` (its parameters are checked by its own validate), and a history holding
/// an approval pause (which no 0.2 strategy can have asked for) is refused by name
/// rather than handed over mangled.
#[tokio::test]
async fn an_old_strategy_cannot_ask_for_approval_and_is_never_handed_one() {
    let h = Harness::new();
    let pause = r#"{"steps":[{"weight":10,"pause":"approval"}]}"#;
    let current = h.builtin("canary").validate(pause).await.unwrap();
    assert_eq!(current, Ok(()));
    for (version, _) in EARLIER {
        let canary = old_canary(&h, version);
        let errors = canary.validate(pause).await.unwrap().unwrap_err();
        assert!(
            errors[0].message.contains("unknown field `pause`"),
            "{version}: {errors:?}"
        );
        let state = RolloutState {
            params: CANARY.into(),
            target: request("canary", CANARY).target,
            history: vec![StepRecord {
                step: Step::AwaitApproval(Approval {
                    timeout_ms: 60_000,
                    on_timeout: ApprovalTimeout::RollBack,
                }),
                outcome: StepOutcome::Done,
            }],
        };
        let err = canary.next(&state).await.unwrap_err();
        assert!(
            matches!(&err, PluginError::Failed { function: "next", message, .. }
                if message.contains("approval pause") && message.contains(version)),
            "{version}: {err}"
        );
    }
}

fn host_with_http() -> (PluginHost, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let services = HostServices {
        http: Some(std::sync::Arc::new(ReqwestTransport::new().unwrap())),
        ..HostServices::default()
    };
    (
        PluginHost::with_services(Some(cache.path().to_path_buf()), services).unwrap(),
        cache,
    )
}

/// Old hooks get the same capabilities under their version's names: the 0.1.0 and 0.2.0
/// db-migration hooks, granted `http` and `kv`, reach the migration service, judge its
/// answer and keep what they saw in the deployment's store.
#[tokio::test]
async fn old_hooks_with_http_and_kv_grants_work() {
    let (host, _cache) = host_with_http();
    let grants = Grants {
        http_allow: vec!["127.0.0.1".into()],
        kv: true,
        ..Grants::default()
    };
    for (version, contract) in EARLIER {
        let hook = HookPlugin::load(
            &host,
            &source("migrations", &fixture(version, "db-migration.wasm")),
            Limits::hook(),
            grants.clone(),
        )
        .unwrap();
        assert_eq!(hook.contract(), contract);
        assert_eq!(hook.info().await.unwrap().name, "db-migration", "{version}");
        let errors = hook.validate(r#"{"expect-version":"v2"}"#).await.unwrap();
        assert!(
            errors.unwrap_err()[0].message.contains("status-url"),
            "{version}"
        );
        for (body, expected, seen) in [
            (
                r#"{"version":"v1","pending":2}"#,
                GateStatus::Inconclusive,
                "v1",
            ),
            (r#"{"version":"v1","pending":0}"#, GateStatus::Fail, "v1"),
            (r#"{"version":"v2","pending":0}"#, GateStatus::Pass, "v2"),
        ] {
            let service = App::start(200, body);
            let params = format!(
                r#"{{"status-url":"{}","expect-version":"v2"}}"#,
                service.url
            );
            let deployment = HostServices {
                http: host.services().http.clone(),
                ..HostServices::default()
            };
            let ctx = HookContext {
                point: LifecyclePoint::PreDeploy,
                deployment_id: "d-7".into(),
                service: "web".into(),
                new_release: "web:2".into(),
                stable_release: Some("web:1".into()),
                new_traffic_percent: 0,
                params,
            };
            let result = hook.run_with(&ctx, deployment.clone()).await.unwrap();
            assert_eq!(
                result.status, expected,
                "{version} {body}: {}",
                result.detail
            );
            assert_eq!(service.requests().len(), 1, "{version} {body}");
            assert_eq!(
                deployment.kv.snapshot().get("schema-version"),
                Some(&seen.as_bytes().to_vec()),
                "{version} {body}"
            );
        }
    }
}

/// `deployer plugin inspect` says which version a component was built against and
/// whether this deployer runs it.
#[test]
fn inspect_shows_the_version_and_that_it_still_runs() {
    for (version, _) in EARLIER {
        let path = fixture(version, "canary.wasm");
        let (code, out, err) = deployer_tests::support::cli::run(&["plugin", "inspect", &path]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains(&format!(
                "kind:      strategy (deployer:plugin@{version}; this deployer implements \
                 {CONTRACT_VERSION} and still runs {version} components unchanged)"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("export deployer:plugin/strategy@{version};")),
            "{out}"
        );
    }
    // A 0.3.0 component is of the contract this deployer implements (0.3.x, linked by
    // semver): it runs unchanged, and never "cannot run it".
    let path = metrics_hook_0_3_0();
    let (code, out, err) = deployer_tests::support::cli::run(&["plugin", "inspect", &path]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "kind:      hook (deployer:plugin@0.3.0; this deployer implements {CONTRACT_VERSION} \
             and runs 0.3.0 components unchanged)"
        )),
        "{out}"
    );
    assert!(
        out.contains("import deployer:plugin/metrics@0.3.0;"),
        "{out}"
    );
}

/// The 0.3.0 metrics hook (`tests/components/metrics-hook` as it was at 7f2aea7, built
/// with that commit's SDK), from before `query-prometheus` (0.3.1).
fn metrics_hook_0_3_0() -> String {
    fixture("0.3.0", "metrics-hook.wasm")
}

/// A rebuilt 0.3.0 fixture must not silently become a 0.3.1 component: its names carry
/// 0.3.0, and it imports the `metrics` interface of 0.3.0 (without `query-prometheus`).
#[test]
fn the_0_3_0_metrics_hook_carries_0_3_0_in_its_names() {
    let path = metrics_hook_0_3_0();
    let report =
        deployer_plugin_host::inspect::inspect("metrics-hook.wasm", &std::fs::read(&path).unwrap())
            .unwrap();
    assert_eq!(report.kind.as_deref(), Some("hook"), "{path}");
    assert_eq!(report.contract.as_deref(), Some("0.3.0"), "{path}");
    assert!(
        report
            .exports
            .contains(&"deployer:plugin/hook@0.3.0".to_string()),
        "{path}: {:?}",
        report.exports
    );
    assert!(
        report
            .imports
            .contains(&"deployer:plugin/metrics@0.3.0".to_string()),
        "{path}: {:?}",
        report.imports
    );
    let current = format!("@{CONTRACT_VERSION}");
    assert!(
        !report
            .exports
            .iter()
            .chain(&report.imports)
            .any(|name| name.ends_with(&current)),
        "{path}: {report:?}"
    );
}

/// A hook built against 0.3.0 loads on today's host (which links 0.3.0 imports to its
/// 0.3.1 `metrics` by semver) and its `metrics::query` is answered as a run answers it:
/// by CloudWatch (moto) through the run's metrics source, within the plugin's
/// `metrics-namespaces` grant and refused outside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_0_3_0_metrics_hook_still_queries_cloudwatch() {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    use deployer::cli::metrics::RunMetrics;
    use deployer_tests::support::Moto;

    let moto = Moto::start(&[]);
    let clients = moto.clients().await;
    clients
        .cloudwatch
        .put_metric_data()
        .namespace("Shop")
        .metric_data(
            MetricDatum::builder()
                .metric_name("CheckoutErrors")
                .dimensions(Dimension::builder().name("Service").value("web").build())
                .value(42.0)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let (host, _cache) = deployer_tests::host();
    let grants = Grants {
        metrics_namespaces: vec!["Shop".into()],
        ..Grants::default()
    };
    let hook = HookPlugin::load(
        &host,
        &source("metrics", &metrics_hook_0_3_0()),
        Limits::hook(),
        grants,
    )
    .unwrap();
    assert_eq!(hook.contract(), Contract::V0_3);
    assert_eq!(hook.info().await.unwrap().name, "metrics-probe");
    let services = HostServices {
        metrics: Some(std::sync::Arc::new(RunMetrics::new(clients, None))),
        ..hook.services()
    };
    let run = |namespace: &str| HookContext {
        point: LifecyclePoint::PreTraffic,
        deployment_id: "d-3".into(),
        service: "web".into(),
        new_release: "web:2".into(),
        stable_release: Some("web:1".into()),
        new_traffic_percent: 0,
        params: format!(
            r#"{{"namespace":"{namespace}","metric":"CheckoutErrors","dimensions":{{"Service":"web"}}}}"#
        ),
    };

    let granted = hook.run_with(&run("Shop"), services.clone()).await.unwrap();
    assert_eq!(granted.status, GateStatus::Pass, "{}", granted.detail);
    assert_eq!(granted.detail, "1 points, total 42");

    let refused = hook
        .run_with(&run("AWS/ApplicationELB"), services)
        .await
        .unwrap();
    assert_eq!(refused.status, GateStatus::Fail, "{}", refused.detail);
    assert!(
        refused
            .detail
            .starts_with("metrics: CapabilityError::Denied(")
            && refused
                .detail
                .contains("not in this plugin's metrics-namespaces"),
        "{}",
        refused.detail
    );
}
