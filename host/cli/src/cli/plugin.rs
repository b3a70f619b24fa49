//! `deployer plugin new | build | test`: write a plugin in minutes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use deployer_engine::files::{self, Kind};
use serde::Deserialize;

use crate::config::source::Source;
use crate::config::{ConfigError, ConfigErrors};
use crate::exit::Outcome;
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
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        bail!(
            "`{name}` is not a plugin name: use lower-case letters, digits and dashes, e.g. `notify-slack`"
        );
    }
    if let Some(path) = sdk_path
        && !is_sdk(path)
    {
        bail!(
            "--sdk-path {}: no {SDK_CRATE} there (its Cargo.toml should name package `{SDK_CRATE}`); \
             pass the SDK's directory, `plugins/sdk` in a deployer checkout, or leave the option out \
             to use the SDK from crates.io",
            path.display()
        );
    }
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} already exists; choose another name or directory",
            root.display()
        );
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
        other => bail!("--kind must be `hook` or `strategy`, not `{other}`"),
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
    let text = files::read_text(&manifest_path, Kind::Scenario).with_context(|| {
        format!(
            "reading {}: is this a plugin crate?",
            manifest_path.display()
        )
    })?;
    let manifest: Manifest = toml::from_str(&text)
        .with_context(|| format!("{} has no [package] name", manifest_path.display()))?;
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

/// Read and check the scenario at `path`: every problem is bad input (exit 3) naming the
/// file, the line and the field, found before the plugin is loaded. Returns the
/// scenario and, per strategy case, the scripted gate statuses by run number.
fn read_scenario(
    path: &Path,
) -> Result<(Scenario, Vec<BTreeMap<usize, GateStatus>>), ConfigErrors> {
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
    if !matches!(scenario.kind.as_str(), "hook" | "strategy") {
        errors.push(source.error_at_field(
            "kind",
            format!(
                "must be \"hook\" or \"strategy\", not \"{}\"",
                scenario.kind
            ),
        ));
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
        scripted.push(statuses);
    }
    if errors.is_empty() {
        Ok((scenario, scripted))
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Run a built plugin in the real host against a scripted scenario and print what it
/// decided; exit 1 when an `expect` is not met.
pub async fn test(host: &PluginHost, wasm: &Path, scenario_path: &Path) -> anyhow::Result<Outcome> {
    let (scenario, scripted) = read_scenario(scenario_path)?;
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
    let source = PluginSource::File {
        name: name.clone(),
        path: wasm.to_path_buf(),
        sha256: sha256_hex(&bytes),
    };
    outln!("plugin {name}, sha256 {}", sha256_hex(&bytes));
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
            let plugin = HookPlugin::load(host, &source, Limits::hook(), grants)?;
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
            let plugin = StrategyPlugin::load(host, &source, Limits::strategy())?;
            let params = serde_json::to_string(&scenario.params)?;
            if let Err(errors) = plugin.validate(&params).await? {
                for e in errors {
                    outln!("parameter {}: {}", e.field, e.message);
                }
                return Ok(Outcome::BadInput);
            }
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
                let plan = simulate_with(&plugin, &params, target, |n| {
                    vec![GateResult {
                        name: "scenario".into(),
                        status: scripted.get(&n).copied().unwrap_or(GateStatus::Pass),
                        detail: format!("scripted result of gate run {n}"),
                        observed: None,
                    }]
                })
                .await?;
                outln!("case: {}", case.name);
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
