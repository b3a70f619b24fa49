//! The `deployer` binary as CI calls it: output and exit codes.

use deployer_tests::support::cli::{plain, repo, run, validate};
use deployer_tests::support::config::ConfigBuilder;

#[test]
fn plan_canary_prints_the_steps_of_the_example() {
    let config = repo("examples/ecs-canary/deployer.toml");
    let (code, out, err) = run(&["plan", "canary", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Plan: `canary` for service `web` (ECS service, 4 units, test listener)"),
        "{out}"
    );
    assert!(out.contains("shift traffic: 10% new / 90% stable"), "{out}");
    assert!(out.contains("shift traffic: 100% new / 0% stable"), "{out}");
    assert!(out.contains("bake 10m"), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    let builtin = deployer_plugin_host::builtin::get("canary").unwrap();
    assert!(
        out.contains(&deployer_plugin_host::sha256_hex(builtin)),
        "the plan names the component that computed it"
    );
}

#[test]
fn the_eks_and_auto_scaling_examples_are_valid_and_plan_for_their_shape() {
    for example in [
        "eks-blue-green",
        "eks-canary-prometheus",
        "asg-canary",
        "ecs-service-pair",
        "release",
        "lambda",
    ] {
        let config = repo(&format!("examples/{example}/deployer.toml"));
        let (code, out, err) = run(&["validate", "--config", config.to_str().unwrap()]);
        assert_eq!(code, 0, "{example}: {out}{err}");
    }
    // Sized from the live side at run time: the plan says so and shows 10 units.
    let pair = repo("examples/ecs-service-pair/deployer.toml");
    let (code, out, err) = run(&["plan", "canary", "--config", pair.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("(ECS service, 10 units as an example: a run sizes it from the live side"),
        "{out}"
    );
    // Lambda: linear steps of 10%, and what a unit is there.
    let lambda = repo("examples/lambda/deployer.toml");
    let (code, out, err) = run(&["plan", "canary", "--config", lambda.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Lambda function portfolio-api alias live"),
        "{out}"
    );
    assert!(out.contains("provisioned concurrent execution"), "{out}");
    for share in (10..=90).step_by(10) {
        assert!(out.contains(&format!("{share}% new")), "{share}%: {out}");
    }
    let config = repo("examples/asg-canary/deployer.toml");
    let config = config.to_str().unwrap();
    let (code, out, err) = run(&["plan", "rolling", "--service", "worker", "--config", config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(Auto Scaling group, 4 units"), "{out}");
    assert!(
        out.contains("rolling update in place (min healthy 75%"),
        "one group is updated in place: {out}"
    );
    // Two groups: rolling moves capacity and traffic between them in batches.
    let (code, out, err) = run(&["plan", "rolling", "--service", "web", "--config", config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("scale new side to 1 unit"), "{out}");
    assert!(!out.contains("in place"), "{out}");
}

#[test]
fn plan_refuses_side_by_side_strategies_on_a_target_updated_in_place() {
    // One Auto Scaling group is updated in place: a canary's traffic shifts could never
    // happen there. `plan` refuses as `run` would, naming why, before listing a step.
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new()
        .service("worker", |s| {
            s.asg("workers", 4)
                .canary_steps(r#"[ { weight = 10, bake = "5m" } ]"#)
        })
        .write(dir.path());
    let config = config.to_str().unwrap();
    for strategy in ["canary", "blue-green"] {
        let (code, out, err) = run(&["plan", strategy, "--config", config]);
        assert_eq!(code, 3, "{strategy}: {out}{err}");
        assert!(!out.contains("shift traffic"), "{strategy}: {out}");
        assert!(
            err.contains(&format!(
                "services.worker.target: `{strategy}` runs two releases side by side, but the \
                 target is a single Auto Scaling group (group = \"NAME\"), updated in place; use \
                 `rolling`"
            )),
            "{strategy}: {err}"
        );
    }
    let (code, out, err) = run(&["plan", "rolling", "--config", config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rolling update in place"), "{out}");
}

#[test]
fn a_rolling_update_of_too_many_batches_is_bad_input_before_any_change() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new().service("web", |s| {
        s.asg_pair(["blue", "green"], 4_000)
            .unreachable_listener()
            .strategy("rolling", |t| t.int("batch-size", 1))
    });
    let why = "batch-size gives 4000 batches of 1 unit(s) for 4000 units, more than the 1000 a \
               rolling update may take: set batch-size to at least 4 units";
    let (code, _, err) = validate(dir.path(), &config);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "services.web.strategies.rolling: with every gate passing, the strategy would abort: {why}"
        )),
        "{err}"
    );
    let path = config.write(dir.path());
    let (code, out, _) = run(&["plan", "rolling", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(&format!("The strategy would abort: {why}")),
        "{out}"
    );
}

#[test]
fn plan_refuses_a_plan_longer_than_the_services_max_steps() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new()
        .service("web", |s| {
            s.asg_pair(["blue", "green"], 4)
                .unreachable_listener()
                .settings(|t| t.int("max-steps", 5))
                .canary_steps(r#"[ { weight = 10 } ]"#)
        })
        .write(dir.path());
    let (code, out, err) = run(&["plan", "canary", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("shift traffic: 10% new"),
        "the plan is still shown: {out}"
    );
    assert!(
        err.contains("the plan takes 12 steps, more than the service's max-steps (5)"),
        "{err}"
    );
}

#[test]
fn bad_strategy_parameters_are_bad_input_with_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    // The error's line and column are those of the second weight as written here.
    let config = ConfigBuilder::new()
        .service("web", |s| {
            s.ecs("c", "web", 2)
                .canary_steps("[ { weight = 50 }, { weight = 20 } ]")
        })
        .write(dir.path());
    let config = config.to_str().unwrap();
    let (code, _, err) = run(&["plan", "canary", "--config", config]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("deployer.toml:8:39: services.web.strategies.canary.steps[1].weight: is 20 after 50; weights must increase"),
        "{err}"
    );
    let (code, _, err) = run(&["validate", "--config", config]);
    assert_eq!(code, 3);
    assert!(err.contains("steps[1].weight"), "{err}");
}

#[test]
fn a_plan_the_host_would_refuse_fails_validation_as_bad_input() {
    // A 48 h bake, which the safety rules would refuse mid-run: the canary refuses it in
    // its parameters, at the field, so `validate` and `run` stop before any change.
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new().service("web", |s| {
        s.ecs("c", "web", 2)
            .unreachable_listener()
            .canary_steps(r#"[ { weight = 25, bake = "2s" }, { weight = 50, bake = "48h" } ]"#)
    });
    let (code, _, err) = validate(dir.path(), &config);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("services.web.strategies.canary.steps[1].bake: is 48h; a bake is at most 24h"),
        "{err}"
    );
    // Without a traffic table the service rolls in place: the canary has no second side.
    let in_place = ConfigBuilder::new().service("web", |s| {
        s.ecs("c", "web", 2)
            .canary_steps(r#"[ { weight = 25, bake = "2s" } ]"#)
    });
    let (code, _, err) = validate(dir.path(), &in_place);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("services.web.strategies.canary") && err.contains("updated in place"),
        "{err}"
    );
}

#[test]
fn a_config_with_a_typo_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new().service("web", |s| {
        s.target(|t| t.str("kind", "ecs").str("clustr", "c"))
    });
    let (code, _, err) = validate(dir.path(), &config);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("deployer.toml:"), "{err}");
}

#[test]
fn a_missing_config_says_how_to_fix_it() {
    let (code, _, err) = run(&["plan", "canary", "--config", "/nonexistent/deployer.toml"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("fix: pass --config PATH"), "{err}");
}

#[test]
fn a_plugin_with_a_wrong_digest_fails_validation() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("probe.wasm");
    std::fs::copy(deployer_tests::components::HOSTILE_HOOK, &wasm).unwrap();
    let config = ConfigBuilder::new()
        .service("web", |s| s.ecs("c", "web", 2))
        .hook_plugin("probe", "probe.wasm", &"ab".repeat(32), |p| {
            p.bool("kv", true)
                .strs("http-allow", &["hooks.example.com"])
        });
    let (code, _, err) = validate(dir.path(), &config);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("refusing to run it"), "{err}");
}

/// Contract 0.2.0 removed `actions`: a config that still grants it is refused at its
/// line with the fix, not silently ignored.
#[test]
fn a_config_granting_the_removed_actions_capability_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("probe.wasm");
    std::fs::copy(deployer_tests::components::HOSTILE_HOOK, &wasm).unwrap();
    let digest = deployer_plugin_host::sha256_hex(&std::fs::read(&wasm).unwrap());
    let config = ConfigBuilder::new()
        .service("web", |s| s.ecs("c", "web", 2))
        .hook_plugin("probe", "probe.wasm", &digest, |p| {
            p.bool("kv", true)
                .strs("http-allow", &["hooks.example.com"])
                .bool("actions", true)
        });
    let (code, _, err) = validate(dir.path(), &config);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("plugins.probe.actions"), "{err}");
    assert!(err.contains("removed in plugin contract 0.2.0"), "{err}");
    assert!(err.contains("remove the line"), "{err}");
}

/// A plugin's memory limit outside what a wasm32 plugin can use, and a time limit of
/// zero or over an hour, are refused by `validate` at the field; the bounds themselves
/// are accepted.
#[test]
fn plugin_memory_and_time_limits_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("probe.wasm");
    std::fs::copy(deployer_tests::components::HOSTILE_HOOK, &wasm).unwrap();
    let digest = deployer_plugin_host::sha256_hex(&std::fs::read(&wasm).unwrap());
    for (mib, ok) in [
        (0, false),
        (1, true),
        (4096, true),
        (4097, false),
        (i64::MAX, false),
    ] {
        let config = ConfigBuilder::new()
            .service("web", |s| s.ecs("c", "web", 2))
            .hook_plugin("probe", "probe.wasm", &digest, |p| {
                p.bool("kv", true)
                    .strs("http-allow", &["hooks.example.com"])
                    .int("memory-mib", mib)
            });
        let (code, _, err) = validate(dir.path(), &config);
        if ok {
            assert_eq!(code, 0, "{mib}: {err}");
        } else {
            assert_eq!(code, 3, "{mib}: {err}");
            assert!(err.contains("plugins.probe.memory-mib"), "{mib}: {err}");
        }
    }
    for (timeout, ok) in [
        ("0s", false),
        ("1ms", true),
        ("1h", true),
        ("61m", false),
        ("100000h", false),
    ] {
        let config = ConfigBuilder::new()
            .service("web", |s| s.ecs("c", "web", 2))
            .hook_plugin("probe", "probe.wasm", &digest, |p| {
                p.bool("kv", true)
                    .strs("http-allow", &["hooks.example.com"])
                    .str("timeout", timeout)
            });
        let (code, _, err) = validate(dir.path(), &config);
        if ok {
            assert_eq!(code, 0, "{timeout}: {err}");
        } else {
            assert_eq!(code, 3, "{timeout}: {err}");
            assert!(err.contains("plugins.probe.timeout"), "{timeout}: {err}");
        }
    }
}

#[test]
fn inspect_prints_world_digest_and_imports() {
    let (code, out, err) = run(&[
        "plugin",
        "inspect",
        deployer_tests::components::HOSTILE_HOOK,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("kind:      hook (deployer:plugin@0.3.1"),
        "{out}"
    );
    assert!(out.contains("deployer:plugin/http@0.3.1"), "{out}");
    assert!(out.contains("export deployer:plugin/hook@0.3.1;"), "{out}");
    let digest = deployer_plugin_host::sha256_hex(
        &std::fs::read(deployer_tests::components::HOSTILE_HOOK).unwrap(),
    );
    assert!(out.contains(&digest), "{out}");
}

/// `plugin inspect` says which `[plugins.NAME]` grant each of a hook's imports needs, in
/// the keys deployer.toml takes; for `metrics`, by the functions the component calls.
#[test]
fn inspect_says_which_grants_a_hooks_imports_need() {
    let line = |out: &str, import: &str| -> String {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{import}:")))
            .unwrap_or_else(|| panic!("no grant line for {import} in {out}"))
            .to_string()
    };
    let (code, out, err) = run(&[
        "plugin",
        "inspect",
        deployer_tests::components::HOSTILE_HOOK,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("grants it needs, under [plugins.NAME] in deployer.toml:"),
        "{out}"
    );
    assert!(
        line(&out, "deployer:plugin/http@0.3.1")
            .ends_with("http-allow = [\"HOST\", …]: the hosts it may call"),
        "{out}"
    );
    assert!(
        line(&out, "deployer:plugin/kv@0.3.1").ends_with(": kv = true"),
        "{out}"
    );
    assert!(
        line(&out, "deployer:plugin/log@0.3.1").ends_with(": nothing: always granted"),
        "{out}"
    );

    // The metrics hook calls both queries; the one built against 0.3.0 only `query`.
    let (code, out, err) = run(&[
        "plugin",
        "inspect",
        deployer_tests::components::METRICS_HOOK,
    ]);
    assert_eq!(code, 0, "{err}");
    let metrics = line(&out, "deployer:plugin/metrics@0.3.1");
    assert!(
        metrics.contains("metrics-namespaces = [\"NAMESPACE\", …] for CloudWatch `query`")
            && metrics.contains("prometheus-metrics = [\"METRIC\", …] for `query-prometheus`"),
        "{out}"
    );
    let old = repo("tests/fixtures/contract-0.3.0/metrics-hook.wasm");
    let (code, out, err) = run(&["plugin", "inspect", old.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let metrics = line(&out, "deployer:plugin/metrics@0.3.0");
    assert!(
        metrics.contains("metrics-namespaces") && !metrics.contains("prometheus-metrics"),
        "{out}"
    );

    // A strategy is granted nothing.
    let (code, out, err) = run(&["plugin", "inspect", "builtin:canary"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("grants it needs: none"), "{out}");
}

#[test]
fn inspect_names_a_core_module_and_how_to_make_it_a_component() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest core module: magic bytes and version 1. wit-component decodes it
    // as an empty world, which `inspect` used to show as a component (exit 0).
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let (code, out, err) = run(&["plugin", "inspect", core.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("core.wasm` is not a WebAssembly component: it is a core WebAssembly module")
            && err.contains("wasm-tools component new"),
        "{err}"
    );
    assert!(!out.contains("kind:"), "{out}");

    // Other files that are not components, or not there, are bad input too.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"hello").unwrap();
    let missing = dir.path().join("missing.wasm");
    for (file, says) in [
        (
            junk.to_str().unwrap(),
            "does not start with the WebAssembly magic bytes",
        ),
        (missing.to_str().unwrap(), "cannot read"),
        ("builtin:nope", "no built-in plugin `nope`"),
    ] {
        let (code, _, err) = run(&["plugin", "inspect", file]);
        assert_eq!(code, 3, "{file}: {err}");
        assert!(err.contains(says), "{file}: {err}");
    }
}

/// A scenario file in a temp dir, for `deployer plugin test WASM --scenario FILE`.
struct Scenario {
    _dir: tempfile::TempDir,
    path: String,
}

impl Scenario {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join("scenario.toml")
            .to_str()
            .unwrap()
            .to_string();
        Scenario { _dir: dir, path }
    }

    /// `deployer plugin test WASM` on the file as it is.
    fn run(&self, wasm: &str) -> (i32, String, String) {
        run(&["plugin", "test", wasm, "--scenario", &self.path])
    }

    /// The same after writing `text` to the file.
    fn test(&self, wasm: &str, text: &str) -> (i32, String, String) {
        std::fs::write(&self.path, text).unwrap();
        self.run(wasm)
    }
}

#[test]
fn plugin_test_with_a_bad_scenario_is_bad_input_naming_file_and_field() {
    let scenario = Scenario::new();
    let hook = deployer_tests::components::HOSTILE_HOOK;
    let (code, _, err) = scenario.run(hook);
    assert_eq!(code, 3, "missing: {err}");
    assert!(
        err.contains("scenario.toml: cannot read the scenario"),
        "{err}"
    );
    for (text, says) in [
        (
            r#"{"kind": "hook"}"#,
            "scenario.toml:1:1: invalid key-value pair, expected key\n  fix: a scenario is TOML",
        ),
        (
            "kind = \"hook\"\n[[runs]]\npoint = \"pre-traffic\"\nexpec = \"pass\"\n",
            "scenario.toml:4:1: runs[0].expec: unknown field `expec`",
        ),
        (
            "kind = \"gate\"\n",
            "scenario.toml:1:8: kind: must be \"hook\" or \"strategy\", not \"gate\"",
        ),
        (
            "kind = \"hook\"\n[[runs]]\npoint = \"pre-traffic\"\nnew-traffic-percent = 150\n",
            "scenario.toml:4:23: runs[0].new-traffic-percent: is 150; a share of traffic is a percentage from 0 to 100",
        ),
        (
            "kind = \"strategy\"\n[[cases]]\nname = \"x\"\ngates = { first = \"fail\" }\n",
            "scenario.toml:4:19: cases[0].gates.first: `first` is not a gate run number",
        ),
        (
            "kind = \"strategy\"\n[[cases]]\nname = \"x\"\ngates = { 2 = \"maybe\" }\n",
            "scenario.toml:4:15: cases[0].gates.2: `maybe` is not a gate status",
        ),
        (
            "kind = \"hook\"\n[[runs]]\npoint = \"pre-traffic\"\nexpect = \"passed\"\n",
            "scenario.toml:4:10: runs[0].expect: `passed` is not something a hook scenario can expect: pass, fail, inconclusive or no-data",
        ),
        (
            "kind = \"strategy\"\n[[cases]]\nname = \"x\"\nexpect = \"pass\"\n",
            "scenario.toml:4:10: cases[0].expect: `pass` is not something a strategy scenario can expect: complete, abort or rolled-back",
        ),
        (
            "kind = \"hook\"\n[[cases]]\nname = \"x\"\n",
            "scenario.toml:2:1: cases: is not read in a hook scenario (it takes grants, runs)",
        ),
        (
            "kind = \"strategy\"\ngrants = { kv = true }\n",
            "scenario.toml:2:10: grants: is not read in a strategy scenario",
        ),
    ] {
        let (code, out, err) = scenario.test(hook, text);
        assert_eq!(code, 3, "{text}: {out}{err}");
        assert!(err.contains(says), "{text}: {err}");
        assert!(
            !out.contains("plugin "),
            "refused before loading the plugin: {out}"
        );
    }
    // A good scenario with a plugin file that is not there.
    let missing = scenario._dir.path().join("missing.wasm");
    let (code, _, err) = scenario.test(missing.to_str().unwrap(), "kind = \"hook\"\n");
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("plugin `missing`: cannot read"), "{err}");
}

/// What `plugin test` refuses of a scenario it has read is said of the scenario, at the
/// field to change, as bad input (exit 3): a grant the hook needs, a kind the component
/// is not, strategy parameters its `validate` refuses.
#[test]
fn plugin_test_points_its_errors_at_the_scenario_not_at_deployer_toml() {
    let scenario = Scenario::new();
    let scenario_path = &scenario.path;
    let plugin_test = |wasm: &str, text: &str| scenario.test(wasm, text);
    let hook = deployer_tests::components::HOSTILE_HOOK;
    let strategy = deployer_tests::components::EXAMPLE_STEPPED_STRATEGY;

    // The probe hook imports `http` and `kv`; the scenario grants only kv.
    let (code, out, err) = plugin_test(
        hook,
        "kind = \"hook\"\ngrants = { kv = true }\n[[runs]]\npoint = \"pre-traffic\"\n",
    );
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains(&format!(
            "{scenario_path}:2:10: grants: plugin `hostile_hook` imports `http`, which this scenario does not grant\n  \
             fix: grant it in {scenario_path}: grants = {{ http-allow = [\"127.0.0.1\"] }}"
        )),
        "{err}"
    );
    assert!(
        !err.contains("deployer.toml") && !err.contains("[plugins."),
        "{err}"
    );
    // Without any grants the error is at the file, and says the same.
    let (code, _, err) = plugin_test(hook, "kind = \"hook\"\n");
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "{scenario_path}: grants: plugin `hostile_hook` imports `"
        )) && err.contains(&format!("fix: grant it in {scenario_path}: grants = {{ ")),
        "{err}"
    );

    for (wasm, text, says) in [
        (
            strategy,
            "kind = \"hook\"\n",
            format!(
                "{scenario_path}:1:8: kind: is \"hook\", but {strategy} is a strategy plugin\n  \
                 fix: set kind = \"strategy\" and describe [[cases]]"
            ),
        ),
        (
            hook,
            "kind = \"strategy\"\n",
            format!("{scenario_path}:1:8: kind: is \"strategy\", but {hook} is a hook plugin"),
        ),
        (
            strategy,
            "kind = \"strategy\"\nparams = { start = 70 }\n",
            format!("{scenario_path}:2:20: params.start: is 70; start between 1 and 50 percent"),
        ),
    ] {
        let (code, out, err) = plugin_test(wasm, text);
        assert_eq!(code, 3, "{text}: {out}{err}");
        assert!(err.contains(&says), "{text}: expected `{says}` in {err}");
        assert!(!out.contains("plugin "), "{text}: nothing ran: {out}");
    }
}

/// Gate runs are numbered from 1 in a scenario's `gates`, the order the strategy asks
/// for them, and the report says which run got the scripted result.
#[test]
fn plugin_test_scripts_gate_runs_counted_from_one() {
    let scenario = Scenario::new();
    // The stepped strategy's first run-gates step is pre-deploy, before any change.
    let (code, out, err) = scenario.test(
        deployer_tests::components::EXAMPLE_STEPPED_STRATEGY,
        r#"kind = "strategy"
params = { start = 25 }

[[cases]]
name = "all pass"
expect = "complete"

[[cases]]
name = "the first gate run fails"
gates = { 1 = "fail" }
expect = "rolled-back"
"#,
    );
    assert_eq!(code, 0, "{out}{err}");
    let second = out.split("case: the first gate run fails").nth(1).unwrap();
    let steps: Vec<&str> = second.lines().skip(1).collect();
    assert!(steps[0].ends_with("1. run pre-deploy gates"), "{second}");
    assert!(
        steps[1].contains("ends: rolled-back")
            && steps[1].contains("scripted result of gate run 1"),
        "{second}"
    );
    assert_eq!(out.matches("(as expected)").count(), 2, "{out}");
}

/// `plugin build` of a directory that is no plugin crate is bad input, as in the other
/// `plugin` subcommands.
#[test]
fn plugin_build_of_something_that_is_no_crate_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&["plugin", "build", dir.path().to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("Cargo.toml") && err.contains("fix: pass the plugin crate's directory"),
        "{err}"
    );
    std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\n").unwrap();
    let (code, _, err) = run(&["plugin", "build", dir.path().to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("has no [package] name"), "{err}");
}

/// A hook's log lines in `plugin test` read `[plugin NAME] info: …`, the level in words
/// (the host's default sink printed the bindings' `Level::Info`).
#[test]
fn plugin_test_prints_a_hooks_log_lines_with_the_level_in_words() {
    let scenario = Scenario::new();
    let (code, out, err) = scenario.test(
        deployer_tests::components::HOSTILE_HOOK,
        r#"kind = "hook"
grants = { http-allow = ["127.0.0.1"], kv = true }
[[runs]]
point = "pre-traffic"
params = { mode = "log", message = "checked 3 targets\nok" }
expect = "pass"
"#,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("[plugin "))
            .collect::<Vec<_>>(),
        ["deployer: [plugin hostile_hook] info: checked 3 targets\\nok"],
        "{err}"
    );
}

/// `deployer plugin test --help` documents the scenario format.
#[test]
fn plugin_test_help_describes_the_scenario_format() {
    let (code, out, err) = run(&["plugin", "test", "--help"]);
    assert_eq!(code, 0, "{err}");
    for text in [
        "[[runs]]",
        "[[cases]]",
        "grants = { http-allow",
        "pass, fail, inconclusive or no-data",
        "complete, abort or rolled-back",
        "counted from 1",
        "new-traffic-percent",
        "desired-count",
    ] {
        assert!(out.contains(text), "{text} in {out}");
    }
}

#[test]
fn usage_errors_are_bad_input_and_help_succeeds() {
    assert_eq!(run(&["plan"]).0, 3);
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("deployer run canary --release"), "{out}");
    assert!(out.contains("3 bad input"), "{out}");
}

#[test]
fn a_reader_that_goes_away_is_not_a_crash() {
    use std::io::{BufRead, BufReader};
    let config = repo("examples/ecs-canary/deployer.toml");
    let mut child = plain()
        .args(["plan", "canary", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap(); // then drop the pipe
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with("Plan:"), "{first}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The run's caps are checked where they are written: out of range, or below what the
/// service's own strategy plans, `validate` refuses them at the field.
#[test]
fn max_steps_and_max_duration_are_checked_against_their_ranges_and_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let traffic =
        |s: deployer_tests::support::config::Service| s.ecs("c", "web", 2).unreachable_listener();
    for (key, value, ok, says) in [
        ("max-steps", "0", false, "max-steps"),
        ("max-steps", "100001", false, "max-steps"),
        (
            "max-steps",
            "5",
            false,
            "more than the service's max-steps (5)",
        ),
        ("max-steps", "50", true, ""),
        ("max-duration", "\"30s\"", false, "max-duration"),
        ("max-duration", "\"169h\"", false, "max-duration"),
        ("max-duration", "\"6h\"", true, ""),
    ] {
        let config = ConfigBuilder::new().service("web", |s| {
            traffic(s)
                .canary_steps(r#"[ { weight = 25 }, { weight = 50 } ]"#)
                .settings(|t| t.raw(key, value))
        });
        let (code, _, err) = validate(dir.path(), &config);
        if ok {
            assert_eq!(code, 0, "{key} = {value}: {err}");
        } else {
            assert_eq!(code, 3, "{key} = {value}: {err}");
            assert!(err.contains(says), "{key} = {value}: {err}");
        }
    }
    // Bakes that add up past max-duration: the run would be cut off partway.
    let long = ConfigBuilder::new().service("web", |s| {
        traffic(s)
            .canary_steps(r#"[ { weight = 25, bake = "40m" }, { weight = 50, bake = "40m" } ]"#)
            .settings(|t| t.raw("max-duration", "\"1h\""))
    });
    let (code, _, err) = validate(dir.path(), &long);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("longer than the service's max-duration"),
        "{err}"
    );
}

/// A hook's parameters are checked by the hook itself (its `validate`) in `deployer
/// validate` and before `run` changes anything, as a strategy's are: an error at the
/// parameter's line (exit 3), not a gate that fails once traffic has moved.
#[test]
fn a_hooks_bad_parameters_are_refused_by_validate_and_run_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("probe.wasm");
    std::fs::copy(deployer_tests::components::HOSTILE_HOOK, &wasm).unwrap();
    let digest = deployer_plugin_host::sha256_hex(&std::fs::read(&wasm).unwrap());
    let config = ConfigBuilder::new()
        .aws("http://127.0.0.1:9")
        .service("web", |s| {
            s.ecs("c", "web", 2).canary_steps("[{ weight = 50 }]").hook(
                "probe",
                &["pre-traffic"],
                r#"{ headers = "many" }"#,
            )
        })
        .hook_plugin("probe", "probe.wasm", &digest, |p| {
            p.bool("kv", true)
                .strs("http-allow", &["hooks.example.com"])
        });
    let (code, _, err) = validate(dir.path(), &config);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("services.web.hooks[0].params"), "{err}");
    assert!(
        err.contains("deployer.toml:"),
        "names the file and line: {err}"
    );
    let path = dir.path().join("deployer.toml");
    let path = path.to_str().unwrap();
    let (code, _, err) = run(&["run", "canary", "--release", "web:2", "--config", path]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("services.web.hooks[0].params"), "{err}");
}

/// The webhook-notify example as a new author configured it (issue #21): a webhook
/// without scheme or host, or a parameter it does not have, is refused by the hook's own
/// `validate` in `deployer validate` and before `run` changes anything, at the parameter's
/// line, with what a valid value looks like.
#[test]
fn the_webhook_examples_bad_url_is_refused_by_validate_and_run_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("notify.wasm");
    std::fs::copy(deployer_tests::components::EXAMPLE_WEBHOOK_NOTIFY, &wasm).unwrap();
    let digest = deployer_plugin_host::sha256_hex(&std::fs::read(&wasm).unwrap());
    let path = dir.path().join("deployer.toml");
    let path = path.to_str().unwrap();
    for (params, field, says) in [
        (
            r#"{ webhook = "example.com" }"#,
            "services.web.hooks[0].params.webhook",
            "is not a URL: it has no `https://` scheme; write the webhook's full URL, e.g. \"https://hooks.slack.com/services/T000/B000/XXXX\"",
        ),
        (
            r#"{ webhook = "https:///services/T000" }"#,
            "services.web.hooks[0].params.webhook",
            "has no host after the scheme; write the webhook's full URL, e.g.",
        ),
        (
            r#"{ url = "example.com" }"#,
            "services.web.hooks[0].params.url",
            "unknown field `url`, expected `webhook` or `channel`",
        ),
    ] {
        // The AWS endpoint answers nothing: a run that got past its pre-flight would
        // stop there with exit 4, not 3.
        let config = ConfigBuilder::new()
            .aws("http://127.0.0.1:9")
            .service("web", |s| {
                s.ecs("c", "web", 2)
                    .unreachable_listener()
                    .canary_steps("[{ weight = 50 }]")
                    .hook("notify", &["post-deploy", "post-rollback"], params)
            })
            .hook_plugin("notify", "notify.wasm", &digest, |p| {
                p.strs("http-allow", &["hooks.slack.com"])
            });
        let (code, _, err) = validate(dir.path(), &config);
        assert_eq!(code, 3, "{params}: {err}");
        let written = std::fs::read_to_string(path).unwrap();
        let line = 1 + written
            .lines()
            .position(|l| l.starts_with("params = "))
            .unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{params}: one error: {err}");
        assert!(
            err.starts_with(&format!("error: {path}:{line}:")),
            "{params}: names the file and the parameter's line ({line}): {err}"
        );
        assert!(err.contains(&format!("{field}: {says}")), "{params}: {err}");
        let (code, out, err) = run(&["run", "canary", "--release", "web:2", "--config", path]);
        assert_eq!(code, 3, "{params}: {out}{err}");
        assert!(err.contains(&format!("{field}: {says}")), "{params}: {err}");
        assert!(
            !dir.path().join(".deployer").exists(),
            "{params}: nothing journaled or locked"
        );
    }
}

/// A plugin's relative `path` is read from the folder `deployer.toml` is in, whatever
/// directory deployer runs in: a file of the same name under the working directory (here
/// a different component, whose digest would be refused) is never the one loaded.
#[test]
fn relative_plugin_paths_are_from_the_configs_folder_not_the_working_directory() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("project");
    std::fs::create_dir_all(project.join("plugins")).unwrap();
    let wasm = project.join("plugins/notify.wasm");
    std::fs::copy(deployer_tests::components::EXAMPLE_WEBHOOK_NOTIFY, &wasm).unwrap();
    let digest = deployer_plugin_host::sha256_hex(&std::fs::read(&wasm).unwrap());
    // Elsewhere, the same relative path holds another component.
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("plugins")).unwrap();
    std::fs::copy(
        deployer_tests::components::HOSTILE_HOOK,
        elsewhere.join("plugins/notify.wasm"),
    )
    .unwrap();
    let config = ConfigBuilder::new()
        .service("web", |s| {
            s.ecs("c", "web", 2)
                .unreachable_listener()
                .canary_steps("[{ weight = 50 }]")
                .hook(
                    "notify",
                    &["post-deploy"],
                    r#"{ webhook = "https://hooks.slack.com/services/T000/B000/XXXX" }"#,
                )
        })
        .hook_plugin("notify", "plugins/notify.wasm", &digest, |p| {
            p.strs("http-allow", &["hooks.slack.com"])
        });
    config.write(&project);
    for (cwd, config) in [
        (root.path(), "project/deployer.toml"),
        (elsewhere.as_path(), "../project/deployer.toml"),
        (project.as_path(), "deployer.toml"),
        (
            std::path::Path::new("/"),
            project.join("deployer.toml").to_str().unwrap(),
        ),
    ] {
        let out = plain()
            .args(["validate", "--config", config])
            .current_dir(cwd)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "from {} with --config {config}: {err}",
            cwd.display()
        );
    }
    // A missing file is said with the path it was looked for at.
    std::fs::remove_file(&wasm).unwrap();
    let out = plain()
        .args(["validate", "--config", "../project/deployer.toml"])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("../project/plugins/notify.wasm"),
        "names where it looked: {err}"
    );
}

/// A canary step that waits for approval: `plan` lists the pause where it waits and
/// counts its timeout beside the bakes; `validate` counts that timeout against
/// `max-duration` and refuses a bad `pause` or timeout at its field.
#[test]
fn an_approval_pause_is_planned_counted_and_checked_at_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let service = |s: deployer_tests::support::config::Service| {
        s.ecs("c", "web", 4).unreachable_listener().canary_steps(
            r#"[ { weight = 25, bake = "10m", pause = "approval" }, { weight = 50 } ]"#,
        )
    };
    let config = ConfigBuilder::new().service("web", service);
    let path = config.write(dir.path());
    let (code, out, err) = run(&["plan", "canary", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let pause = lines
        .iter()
        .position(|l| l.ends_with(". wait for approval (up to 1h, then roll back)"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(lines[pause - 1].ends_with(". bake 10m"), "{out}");
    assert!(
        out.contains("10m of bake time, up to 1h waiting for approval (given at once here)"),
        "{out}"
    );

    // 10m of bake and a 1h pause do not fit in 1h.
    let tight = ConfigBuilder::new().service("web", |s| {
        service(s).settings(|t| t.raw("max-duration", "\"1h\""))
    });
    let (code, _, err) = validate(dir.path(), &tight);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("the plan bakes and waits for approval (each up to its timeout) for 1h10m in all, longer than the service's max-duration (1h)"),
        "{err}"
    );
    for (edit, field, says) in [
        (
            r#"[ { weight = 25, pause = "manual" } ]"#,
            "steps[0].pause",
            "expected `approval`",
        ),
        (
            r#"[ { weight = 25, pause = "approval" } ]"#,
            "approval-timeout",
            "is 48h",
        ),
    ] {
        let config = ConfigBuilder::new().service("web", |s| {
            service(s)
                .canary_steps(edit)
                .strategy("canary", |p| p.str("approval-timeout", "48h"))
        });
        let (code, _, err) = validate(dir.path(), &config);
        assert_eq!(code, 3, "{edit}: {err}");
        assert!(err.contains(field), "{edit}: {err}");
        assert!(err.contains(says), "{edit}: {err}");
    }
}

/// An argument deployer refuses is echoed escaped: a newline (or CR, or U+2028) inside it
/// never starts a line of its own, where a CI runner would read `::error::…` as a
/// workflow command. (A PR title in a hand-written `run: deployer …` step.)
#[test]
fn a_refused_argument_is_echoed_without_its_line_breaks() {
    for args in [
        vec!["bogus\n::error::INJECTED"],
        vec!["validate", "--x\r::warning::INJECTED"],
        vec!["validate", "--config", "a.toml", "--y=v\n::error::INJECTED"],
        vec![
            "run",
            "canary",
            "--output",
            "json",
            "--z\u{2028}::error::INJECTED",
        ],
    ] {
        let out = plain().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("INJECTED") || text.contains("'--y'"),
            "the argument is still named: {text}"
        );
        for line in text.split(['\n', '\r', '\u{2028}']) {
            assert!(
                !line.trim_start().starts_with("::"),
                "{args:?} put a workflow command on a line: {text:?}"
            );
        }
    }
}
