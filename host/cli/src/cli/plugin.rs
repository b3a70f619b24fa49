//! `deployer plugin new | build | test`: write a plugin in minutes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use deployer_engine::files::{self, Kind};
use serde::Deserialize;

use crate::config::source::Source;
use crate::config::{ConfigError, ConfigErrors};
use crate::exit::{BadInput, Outcome};
use deployer_contract::{GateResult, GateStatus, LifecyclePoint, TargetInfo, TargetKind};
use deployer_engine::describe;
use deployer_engine::plan::{Ending, simulate_with};
use deployer_plugin_host::hook::HookContext;
use deployer_plugin_host::hook::HookPlugin;
use deployer_plugin_host::strategy::StrategyPlugin;
use deployer_plugin_host::{
    Grants, Limits, PluginError, PluginHost, PluginSource, inspect, sha256_hex,
};

/// The SDK's crate name, as `plugins/sdk/Cargo.toml` and crates.io spell it.
const SDK_CRATE: &str = "deployer-plugin-sdk";

/// The SDK requirement a new plugin gets: this deployer's `MAJOR.MINOR`. The SDK is
/// released with deployer, so its minor follows the contract this binary implements,
/// and cargo's caret takes any later patch.
fn sdk_version() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        _ => version.to_string(),
    }
}

/// Whether `dir/Cargo.toml` is the SDK's manifest.
fn is_sdk(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
        return false;
    };
    let Ok(manifest) = toml::from_str::<toml::Table>(&text) else {
        return false;
    };
    manifest
        .get("package")
        .and_then(|package| package.get("name"))
        .and_then(toml::Value::as_str)
        == Some(SDK_CRATE)
}

/// The SDK of the deployer source checkout `dir` is inside, if any: the nearest ancestor
/// whose Cargo.toml is a workspace and that has the SDK at `plugins/sdk`.
fn checkout_sdk(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find_map(|root| {
        let workspace = std::fs::read_to_string(root.join("Cargo.toml"))
            .ok()
            .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
            .is_some_and(|manifest| manifest.contains_key("workspace"));
        let sdk = root.join("plugins/sdk");
        (workspace && is_sdk(&sdk)).then_some(sdk)
    })
}

/// `to` as seen from `from`, both absolute and canonical, written with `/` so the
/// Cargo.toml reads the same on every system.
fn relative(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    if common == 0 {
        // Another drive (Windows): no relative path reaches it.
        return to
            .iter()
            .collect::<PathBuf>()
            .to_string_lossy()
            .into_owned();
    }
    let ups = std::iter::repeat_n("..".to_string(), from.len() - common);
    let downs = to[common..]
        .iter()
        .map(|part| part.as_os_str().to_string_lossy().into_owned());
    let parts: Vec<String> = ups.chain(downs).collect();
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// How the new crate at `root` (created, canonical) names the SDK, as the fields of its
/// dependency table, and a line saying so. `sdk_path` is `--sdk-path`, already checked.
///
/// By version unless told or inside a checkout: a path into the checkout this binary was
/// built from would not exist on any other machine.
fn sdk_dependency(root: &Path, sdk_path: Option<&Path>) -> (String, String) {
    let quoted = |text: &str| toml::Value::String(text.to_string()).to_string();
    match sdk_path {
        // As given when absolute; a relative one was taken from the current directory,
        // as every path argument is, and cargo reads it from the crate's directory.
        Some(path) if path.is_absolute() => (
            format!("path = {}", quoted(&path.to_string_lossy())),
            format!("the SDK from {} (--sdk-path)", path.display()),
        ),
        Some(path) => {
            let target = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
            let written = relative(root, &target);
            (
                format!("path = {}", quoted(&written)),
                format!("the SDK from {written} (--sdk-path)"),
            )
        }
        None => match checkout_sdk(root) {
            Some(sdk) => {
                // Not canonicalized: the ancestor of a canonical path is one, and a linked
                // `plugins/sdk` is best named through the link, inside the checkout.
                let written = relative(root, &sdk);
                (
                    format!("path = {}", quoted(&written)),
                    format!("the SDK from {written}, this deployer checkout's"),
                )
            }
            None => {
                let version = sdk_version();
                (
                    format!("version = {}", quoted(&version)),
                    format!(
                        "the SDK from crates.io, {SDK_CRATE} {version} (--sdk-path PATH for a local copy)"
                    ),
                )
            }
        },
    }
}

/// Scaffold a plugin crate in `dir/name`. `sdk_path` is `--sdk-path`.
pub fn new(name: &str, kind: &str, dir: &Path, sdk_path: Option<&Path>) -> anyhow::Result<Outcome> {
    // A name `[plugins.NAME]` takes, and dashes only (no `_`), so the crate and the
    // config spell it one way.
    if !crate::config::resolve::is_plugin_name(name) || name.contains('_') {
        return Err(BadInput(format!(
            "`{name}` is not a plugin name: use lower-case letters, digits and dashes, e.g. `notify-slack`"
        ))
        .into());
    }
    if let Some(path) = sdk_path
        && !is_sdk(path)
    {
        return Err(BadInput(format!(
            "--sdk-path {}: no {SDK_CRATE} there (its Cargo.toml should name package `{SDK_CRATE}`); \
             pass the SDK's directory, `plugins/sdk` in a deployer checkout, or leave the option out \
             to use the SDK from crates.io",
            path.display()
        ))
        .into());
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(BadInput(format!(
            "{} already exists; choose another name or directory",
            root.display()
        ))
        .into());
    }
    let (code, scenario) = match kind {
        "hook" => (
            include_str!("templates/hook.rs.tmpl"),
            include_str!("templates/hook-scenario.toml.tmpl"),
        ),
        "strategy" => (
            include_str!("templates/strategy.rs.tmpl"),
            include_str!("templates/strategy-scenario.toml.tmpl"),
        ),
        other => {
            return Err(BadInput(format!(
                "--kind must be `hook` or `strategy`, not `{other}`"
            ))
            .into());
        }
    };
    std::fs::create_dir_all(root.join("src"))
        .with_context(|| format!("creating {}", root.display()))?;
    // Canonical, so the relative path to the SDK goes through no symlink or `..`.
    let canonical = root
        .canonicalize()
        .with_context(|| format!("resolving {}", root.display()))?;
    let (sdk, sdk_note) = sdk_dependency(&canonical, sdk_path);
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{kind}}", kind)
            .replace("{{sdk}}", &sdk)
    };
    std::fs::write(
        root.join("Cargo.toml"),
        fill(include_str!("templates/Cargo.toml.tmpl")),
    )?;
    std::fs::write(root.join("src/lib.rs"), fill(code))?;
    std::fs::write(root.join("scenario.toml"), fill(scenario))?;
    std::fs::write(root.join(".gitignore"), "target/\n")?;
    outln!("created {kind} plugin `{name}` in {}", root.display());
    outln!("  with {sdk_note}");
    outln!("next:");
    outln!(
        "  cd {} && cargo test            # unit tests, natively",
        root.display()
    );
    outln!(
        "  deployer plugin build {}       # build the component, print its sha256",
        root.display()
    );
    outln!(
        "  deployer plugin test {}/target/{name}.wasm --scenario {}/scenario.toml",
        root.display(),
        root.display()
    );
    Ok(Outcome::Success)
}

#[derive(Deserialize)]
struct Manifest {
    package: Package,
}

#[derive(Deserialize)]
struct Package {
    name: String,
}

/// Build the plugin crate in `dir` into `dir/target/NAME.wasm` and print its digest.
/// Print the contract's WIT package as one file, or write its files into `out`.
pub fn wit(out: Option<&Path>) -> anyhow::Result<Outcome> {
    use deployer_plugin_host::wit_source;
    let Some(dir) = out else {
        outln!("{}", wit_source::single_file().trim_end());
        return Ok(Outcome::Success);
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating {} for the WIT package", dir.display()))?;
    for (name, text) in wit_source::FILES {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    outln!(
        "wrote deployer:plugin@{} ({}) to {}",
        deployer_plugin_host::CONTRACT_VERSION,
        wit_source::FILES.map(|(name, _)| name).join(", "),
        dir.display()
    );
    Ok(Outcome::Success)
}

pub fn build(dir: &Path) -> anyhow::Result<Outcome> {
    let manifest_path = dir.join("Cargo.toml");
    // A directory that is no plugin crate is bad input (exit 3), as in the other
    // `plugin` subcommands.
    let text = files::read_text(&manifest_path, Kind::Scenario).map_err(|err| {
        BadInput(format!(
            "reading {}: {err}\n  fix: pass the plugin crate's directory (the one with its \
             Cargo.toml), e.g. `deployer plugin build ready-check`",
            manifest_path.display()
        ))
    })?;
    let manifest: Manifest = toml::from_str(&text).map_err(|err| {
        BadInput(format!(
            "{} has no [package] name: {}",
            manifest_path.display(),
            err.message()
        ))
    })?;
    let name = manifest.package.name;
    let target_dir = dir.join("target");
    let guest =
        deployer_plugin_build::Guest::new(&name, deployer_plugin_build::GuestTarget::Unknown);
    let component =
        deployer_plugin_build::build(&manifest_path, &[guest], &target_dir.join("deployer"))?
            .pop()
            .expect("one guest in, one component out");
    let out = target_dir.join(format!("{name}.wasm"));
    std::fs::write(&out, &component).with_context(|| format!("writing {}", out.display()))?;
    let report = inspect::inspect(&name, &component)?;
    let kind = report.kind.clone().unwrap_or_else(|| "unknown".into());
    let path = out.canonicalize().unwrap_or(out);
    outln!(
        "built {} ({} KiB), a {kind} plugin",
        path.display(),
        component.len() / 1024
    );
    outln!("sha256 {}", report.sha256);
    outln!();
    outln!("[plugins.{name}]");
    outln!("kind = \"{kind}\"");
    outln!("path = \"{}\"", path.display());
    outln!("sha256 = \"{}\"", report.sha256);
    Ok(Outcome::Success)
}

/// The scenario format, for `deployer plugin test --help` (and the same words in
/// docs/plugins.md): every field, the `expect` values, how gate runs are counted.
pub const SCENARIO_HELP: &str = "\
Scenario file (TOML):
  kind = \"hook\"                 or \"strategy\"; required, and must be what the
                                component exports

A hook scenario: each [[runs]] calls the hook's `run` once, in order, in one
deployment (its kv store carries over from run to run).
  grants = { http-allow = [\"127.0.0.1\"], kv = true, clock = true,
             metrics-namespaces = [\"AWS/ApplicationELB\"] }
                                what the hook may use, as under [plugins.NAME] in
                                deployer.toml (default: nothing); metric queries
                                are answered `unavailable` here
  [[runs]]
  point = \"pre-traffic\"         pre-deploy, pre-traffic, post-traffic, post-deploy,
                                post-rollback or bake (run as post-traffic)
  params = { url = \"...\" }      the hook's parameters (default: {})
  new-traffic-percent = 0       the new release's share, 0 to 100 (default: 0)
  expect = \"pass\"               pass, fail, inconclusive or no-data (optional); a
                                call that traps or times out counts as fail

A strategy scenario: each [[cases]] simulates one whole rollout under the host's
safety rules, with scripted gate results.
  params = { step = 25 }        the strategy's parameters (default: {}), checked
                                by its `validate` first
  desired-count = 4             units of the simulated target (default: 4)
  native-rolling = false        the target updates in place (default: false)
  test-traffic = false          the target has a test listener (default: false)
  [[cases]]
  name = \"the second gate run fails\"   required
  gates = { 2 = \"fail\" }        result of the N-th run-gates step, counted from 1
                                in the order the strategy asks for them: pass,
                                fail, inconclusive or no-data; unlisted runs pass
  expect = \"rolled-back\"        complete, abort or rolled-back (optional)
  Without [[cases]], one case runs in which every gate passes.

Exit codes: 0 every expect met, 1 an expect not met (or a case the host refused),
3 a bad scenario or component (nothing run), 4 other error.

Example: deployer plugin test target/my-hook.wasm --scenario scenario.toml";

/// What `expect` may say of a hook run: the gate's status.
const HOOK_EXPECTS: [&str; 4] = ["pass", "fail", "inconclusive", "no-data"];
/// What `expect` may say of a strategy case: how the simulated rollout ended.
const STRATEGY_EXPECTS: [&str; 3] = ["complete", "abort", "rolled-back"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Scenario {
    kind: String,
    #[serde(default)]
    grants: ScenarioGrants,
    #[serde(default)]
    runs: Vec<HookRun>,
    #[serde(default)]
    params: toml::Table,
    #[serde(default = "four")]
    desired_count: u32,
    #[serde(default)]
    native_rolling: bool,
    #[serde(default)]
    test_traffic: bool,
    #[serde(default)]
    cases: Vec<StrategyCase>,
}

fn four() -> u32 {
    4
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ScenarioGrants {
    #[serde(default)]
    http_allow: Vec<String>,
    #[serde(default)]
    kv: bool,
    #[serde(default)]
    clock: bool,
    #[serde(default)]
    metrics_namespaces: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct HookRun {
    point: crate::config::schema::GatePoint,
    #[serde(default)]
    params: toml::Table,
    #[serde(default)]
    new_traffic_percent: u8,
    expect: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct StrategyCase {
    name: String,
    /// Status of the n-th `run-gates` step (from 1); the others pass.
    #[serde(default)]
    gates: BTreeMap<String, String>,
    expect: Option<String>,
}

fn status(text: &str) -> anyhow::Result<GateStatus> {
    Ok(match text {
        "pass" => GateStatus::Pass,
        "fail" => GateStatus::Fail,
        "inconclusive" => GateStatus::Inconclusive,
        "no-data" => GateStatus::NoData,
        other => bail!("`{other}` is not a gate status: pass, fail, inconclusive or no-data"),
    })
}

fn status_name(status: GateStatus) -> &'static str {
    match status {
        GateStatus::Pass => "pass",
        GateStatus::Fail => "fail",
        GateStatus::Inconclusive => "inconclusive",
        GateStatus::NoData => "no-data",
    }
}

fn point(at: crate::config::schema::GatePoint) -> LifecyclePoint {
    use crate::config::schema::GatePoint as P;
    match at {
        P::PreDeploy => LifecyclePoint::PreDeploy,
        P::PreTraffic => LifecyclePoint::PreTraffic,
        P::PostTraffic | P::Bake => LifecyclePoint::PostTraffic,
        P::PostDeploy => LifecyclePoint::PostDeploy,
        P::PostRollback => LifecyclePoint::PostRollback,
    }
}

/// A scenario read and checked: its text (to point errors into), and per strategy case
/// the scripted gate statuses by run number.
struct Checked {
    scenario: Scenario,
    scripted: Vec<BTreeMap<usize, GateStatus>>,
    source: Source,
}

/// "`x` is not one of a, b or c" for an `expect` outside `allowed`.
fn expect_error(
    source: &Source,
    field: &str,
    kind: &str,
    got: &str,
    allowed: &[&str],
) -> ConfigError {
    let (last, rest) = allowed.split_last().expect("a list of values");
    source.error_at_field(
        field,
        format!(
            "`{got}` is not something a {kind} scenario can expect: {} or {last}",
            rest.join(", ")
        ),
    )
}

/// Read and check the scenario at `path`: every problem is bad input (exit 3) naming the
/// file, the line and the field, found before the plugin is loaded.
fn read_scenario(path: &Path) -> Result<Checked, ConfigErrors> {
    let text = files::read_text(path, Kind::Scenario).map_err(|err| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            position: None,
            field: String::new(),
            message: format!(
                "cannot read the scenario: {err}\n  fix: pass --scenario PATH to a TOML file, e.g. the scenario.toml `deployer plugin new` writes"
            ),
        }])
    })?;
    let source = Source::new(path, text);
    let scenario: Scenario = toml::from_str(&source.text).map_err(|err| {
        let mut error = source.parse_error(&err);
        if source.text.trim_start().starts_with('{') {
            error.message += "\n  fix: a scenario is TOML (kind = \"strategy\"), not JSON";
        }
        ConfigErrors(vec![error])
    })?;
    let mut errors = Vec::new();
    // Fields of the other kind would be ignored: say so rather than test something else
    // than the author meant.
    let (own, foreign): (&[&str], &[&str]) = match scenario.kind.as_str() {
        "hook" => (
            &["grants", "runs"],
            &[
                "cases",
                "params",
                "desired-count",
                "native-rolling",
                "test-traffic",
            ],
        ),
        "strategy" => (
            &[
                "params",
                "desired-count",
                "native-rolling",
                "test-traffic",
                "cases",
            ],
            &["grants", "runs"],
        ),
        other => {
            errors.push(source.error_at_field(
                "kind",
                format!("must be \"hook\" or \"strategy\", not \"{other}\""),
            ));
            (&[], &[])
        }
    };
    for field in foreign {
        if source.locate(field).is_some() {
            errors.push(source.error_at_field(
                field,
                format!(
                    "is not read in a {} scenario (it takes {})",
                    scenario.kind,
                    own.join(", ")
                ),
            ));
        }
    }
    for (i, run) in scenario.runs.iter().enumerate() {
        if run.new_traffic_percent > 100 {
            errors.push(source.error_at_field(
                &format!("runs[{i}].new-traffic-percent"),
                format!(
                    "is {}; a share of traffic is a percentage from 0 to 100",
                    run.new_traffic_percent
                ),
            ));
        }
        if let Some(expect) = &run.expect
            && !HOOK_EXPECTS.contains(&expect.as_str())
        {
            let field = format!("runs[{i}].expect");
            errors.push(expect_error(&source, &field, "hook", expect, &HOOK_EXPECTS));
        }
    }
    let mut scripted = Vec::new();
    for (i, case) in scenario.cases.iter().enumerate() {
        let mut statuses = BTreeMap::new();
        for (n, text) in &case.gates {
            let field = format!("cases[{i}].gates.{n}");
            match (n.parse::<usize>(), status(text)) {
                (Ok(n), Ok(status)) if n > 0 => {
                    statuses.insert(n, status);
                }
                (Ok(_), Ok(_)) | (Err(_), _) => errors.push(source.error_at_field(
                    &field,
                    format!("`{n}` is not a gate run number: count the `run-gates` steps from 1, e.g. gates = {{ 2 = \"fail\" }}"),
                )),
                (Ok(_), Err(err)) => errors.push(source.error_at_field(&field, err.to_string())),
            }
        }
        if let Some(expect) = &case.expect
            && !STRATEGY_EXPECTS.contains(&expect.as_str())
        {
            let field = format!("cases[{i}].expect");
            errors.push(expect_error(
                &source,
                &field,
                "strategy",
                expect,
                &STRATEGY_EXPECTS,
            ));
        }
        scripted.push(statuses);
    }
    if errors.is_empty() {
        Ok(Checked {
            scenario,
            scripted,
            source,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The scenario line that grants a hook capability `interface`, when a scenario can.
fn scenario_grant(interface: &str) -> Option<&'static str> {
    Some(match interface {
        "http" => "http-allow = [\"127.0.0.1\"]",
        "kv" => "kv = true",
        "clock" => "clock = true",
        "metrics" => "metrics-namespaces = [\"AWS/ApplicationELB\"]",
        _ => return None,
    })
}

/// A load error of the hook under test, said of the scenario where the scenario is what
/// to change: a capability it does not grant is fixed in its `grants`, not in a
/// deployer.toml the test never reads.
fn load_error(source: &Source, err: PluginError) -> anyhow::Error {
    match &err {
        PluginError::NotGranted {
            name, capability, ..
        } => match scenario_grant(capability) {
            Some(line) => ConfigErrors(vec![source.error_at_field(
                "grants",
                format!(
                    "plugin `{name}` imports `{capability}`, which this scenario does not grant\n  \
                     fix: grant it in {}: grants = {{ {line} }} (beside any grants already there)",
                    source.path.display()
                ),
            )])
            .into(),
            None => err.into(),
        },
        _ => err.into(),
    }
}

/// Refuse a scenario whose `kind` is not what the component exports, before loading it.
fn check_kind(source: &Source, kind: &str, wasm: &Path, bytes: &[u8]) -> Result<(), ConfigErrors> {
    let Ok(report) = inspect::inspect(&wasm.display().to_string(), bytes) else {
        // Loading says what is wrong with the file itself.
        return Ok(());
    };
    match report.kind.as_deref() {
        Some(exported) if exported != kind => Err(ConfigErrors(vec![source.error_at_field(
            "kind",
            format!(
                "is \"{kind}\", but {} is a {exported} plugin\n  fix: set kind = \"{exported}\" \
                 and describe {} (see `deployer plugin test --help`), or test the {kind}'s .wasm",
                wasm.display(),
                if exported == "hook" {
                    "[[runs]]"
                } else {
                    "[[cases]]"
                }
            ),
        )])),
        _ => Ok(()),
    }
}

/// Run a built plugin in the real host against a scripted scenario and print what it
/// decided; exit 1 when an `expect` is not met.
pub async fn test(host: &PluginHost, wasm: &Path, scenario_path: &Path) -> anyhow::Result<Outcome> {
    let Checked {
        scenario,
        scripted,
        source: scenario_source,
    } = read_scenario(scenario_path)?;
    let name = wasm
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    // Unreadable, it is bad input (exit 3), as when a run loads it.
    let bytes = files::read(wasm, Kind::Plugin).map_err(|err| PluginError::Read {
        name: name.clone(),
        path: wasm.to_path_buf(),
        source: err.into_io(),
    })?;
    check_kind(&scenario_source, &scenario.kind, wasm, &bytes)?;
    let source = PluginSource::File {
        name: name.clone(),
        path: wasm.to_path_buf(),
        sha256: sha256_hex(&bytes),
    };
    let mut failures = 0;
    match scenario.kind.as_str() {
        "hook" => {
            let grants = Grants {
                http_allow: scenario.grants.http_allow,
                kv: scenario.grants.kv,
                clock: scenario.grants.clock,
                metrics_namespaces: scenario.grants.metrics_namespaces,
                // `plugin test` has no metrics source to answer them with.
                prometheus_metrics: Vec::new(),
            };
            let plugin = HookPlugin::load(host, &source, Limits::hook(), grants)
                .map_err(|err| load_error(&scenario_source, err))?;
            outln!("plugin {name}, sha256 {}", sha256_hex(&bytes));
            for (i, run) in scenario.runs.iter().enumerate() {
                let ctx = HookContext {
                    point: point(run.point),
                    deployment_id: format!("test-{i}"),
                    service: "test".into(),
                    new_release: "new".into(),
                    stable_release: Some("stable".into()),
                    new_traffic_percent: run.new_traffic_percent,
                    params: serde_json::to_string(&run.params)?,
                };
                let result = match plugin.run(&ctx).await {
                    Ok(result) => result,
                    Err(err) => GateResult {
                        name: name.clone(),
                        status: GateStatus::Fail,
                        detail: err.to_string(),
                        observed: None,
                    },
                };
                let got = status_name(result.status);
                let verdict = check(run.expect.as_deref(), got, &mut failures);
                outln!(
                    "run {} at {}: {got}: {}{verdict}",
                    i + 1,
                    describe::point(ctx.point),
                    result.detail
                );
            }
        }
        "strategy" => {
            // Its load errors are the component's (a strategy is granted nothing).
            let plugin = StrategyPlugin::load(host, &source, Limits::strategy())?;
            let params = serde_json::to_string(&scenario.params)?;
            if let Err(errors) = plugin.validate(&params).await? {
                // The parameters are the scenario's: errors at their lines in it.
                return Err(ConfigErrors(
                    errors
                        .into_iter()
                        .take(crate::config::MAX_PARAM_ERRORS)
                        .map(|e| {
                            let field = match e.field.as_str() {
                                "" => "params".to_string(),
                                field => format!("params.{field}"),
                            };
                            scenario_source.error_at_field(&field, e.message)
                        })
                        .collect(),
                )
                .into());
            }
            outln!("plugin {name}, sha256 {}", sha256_hex(&bytes));
            let target = TargetInfo {
                kind: TargetKind::Simulated,
                desired_count: scenario.desired_count,
                native_rolling: scenario.native_rolling,
                test_traffic: scenario.test_traffic,
            };
            let cases = if scenario.cases.is_empty() {
                vec![(
                    StrategyCase {
                        name: "every gate passes".into(),
                        gates: BTreeMap::new(),
                        expect: None,
                    },
                    BTreeMap::new(),
                )]
            } else {
                scenario.cases.into_iter().zip(scripted).collect()
            };
            for (case, scripted) in cases {
                outln!("case: {}", case.name);
                // Gate runs are numbered from 1 here, in scenarios and in the SDK's
                // `testing::simulate_with` alike.
                let plan = simulate_with(&plugin, &params, target, |n| {
                    vec![GateResult {
                        name: "scenario".into(),
                        status: scripted.get(&n).copied().unwrap_or(GateStatus::Pass),
                        detail: format!("scripted result of gate run {n}"),
                        observed: None,
                    }]
                })
                .await;
                let plan = match plan {
                    Ok(plan) => plan,
                    // A step the host refuses, a plugin failure or a rollout that never
                    // ends is what the test is for: a failed case, not a crash.
                    Err(err) => {
                        failures += 1;
                        outln!("  ends: error: {err}   <-- a deployment would roll back here");
                        continue;
                    }
                };
                for (i, step) in plan.steps.iter().enumerate() {
                    outln!("  {:>2}. {}", i + 1, describe::step(step));
                }
                let (got, detail) = match &plan.ending {
                    Ending::Completed => ("complete", String::new()),
                    Ending::Aborted(reason) => ("abort", reason.clone()),
                    Ending::RolledBack(reason) => ("rolled-back", reason.clone()),
                };
                let verdict = check(case.expect.as_deref(), got, &mut failures);
                outln!("  ends: {got} {detail}{verdict}");
            }
        }
        // `read_scenario` refused any other kind.
        other => bail!("scenario kind `{other}`"),
    }
    Ok(if failures == 0 {
        Outcome::Success
    } else {
        Outcome::RolledBack
    })
}

fn check(expect: Option<&str>, got: &str, failures: &mut usize) -> String {
    match expect {
        Some(want) if want != got => {
            *failures += 1;
            format!("   <-- expected {want}")
        }
        Some(_) => "   (as expected)".into(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The help names every value `expect` takes, so it cannot drift from what is checked.
    #[test]
    fn the_scenario_help_lists_every_expect_value() {
        for value in HOOK_EXPECTS.iter().chain(&STRATEGY_EXPECTS) {
            assert!(SCENARIO_HELP.contains(value), "{value}");
        }
        for field in [
            "kind",
            "grants",
            "http-allow",
            "kv",
            "clock",
            "metrics-namespaces",
            "[[runs]]",
            "point",
            "params",
            "new-traffic-percent",
            "expect",
            "desired-count",
            "native-rolling",
            "test-traffic",
            "[[cases]]",
            "name",
            "gates",
        ] {
            assert!(SCENARIO_HELP.contains(field), "{field}");
        }
    }
}
