//! The `deployer` command line.

mod control;
mod history;
mod inspect;
pub mod metrics;
mod plan;
mod plugin;
pub mod release;
pub mod report;
mod rollback;
mod run;
mod setup;
mod status;
mod tidy;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use deployer_engine::state::SignalKind;
use deployer_plugin_host::{PluginError, PluginHost};

use crate::config::ConfigErrors;
use crate::exit::{BadInput, Outcome};

/// `0.1.0 (6ea3cbf1a2b3 2026-12-01)`: the release and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("DEPLOYER_BUILD_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "deployer",
    version = VERSION,
    about = "Progressive deployments (rolling, blue-green, canary) for ECS, EKS and EC2 Auto Scaling, \
             with strategies and hooks as sandboxed WebAssembly components.",
    after_help = "Examples:\n  \
                  deployer run canary --release web:42 --service web\n  \
                  deployer run canary --image app=repo/web:sha-3f2a1c --service web\n  \
                  deployer rollback --service web\n  \
                  deployer status --service web\n  \
                  deployer plan canary --config examples/ecs-canary/deployer.toml\n  \
                  deployer plugin inspect builtin:canary\n\n\
                  Exit codes: 0 success, 1 rolled back, 2 rollback failed, 3 bad input, 4 other error."
)]
pub struct Cli {
    /// Project config file.
    #[arg(long, short, global = true, default_value = "deployer.toml")]
    pub config: PathBuf,

    /// What stdout carries: text, or one JSON document (`run`, `rollback`, `status`, `history`).
    #[arg(long, global = true, value_enum, default_value_t)]
    pub output: report::OutputFormat,

    /// Progress log on stderr: plain lines, or `tracing` JSON lines (filter with DEPLOYER_LOG).
    #[arg(long, global = true, value_enum, default_value_t)]
    pub log_format: report::LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy a new release with a strategy (canary, blue-green, rolling or a plugin), or
    /// several services as one release
    ///
    /// `deployer run release NAME --image api=… --image web=…` deploys `[releases.NAME]`
    /// wave by wave and takes all of it back if any service fails.
    #[command(group(
        clap::ArgGroup::new("what")
            .args(["release", "image", "manifest", "publish"])
            .required(true)
            .multiple(true)
    ))]
    Run {
        strategy: String,
        /// With `release`: the `[releases.NAME]` to deploy.
        #[arg(value_name = "NAME")]
        name: Option<String>,
        /// The release to deploy: an ECS task definition (`web:42` or its ARN), a launch
        /// template version (`web:3`), on EKS an image, on Lambda a published version
        /// (`42`). For a release of several services, SERVICE=RELEASE, once per service.
        #[arg(long, value_name = "[SERVICE=]RELEASE")]
        release: Vec<String>,
        /// Deploy an image instead: the live release with only this image changed (ECS: a
        /// new task definition revision; Auto Scaling: a launch template version with
        /// this AMI). Repeat as CONTAINER=IMAGE for several containers; for a release of
        /// several services, SERVICE=[CONTAINER=]IMAGE.
        #[arg(long, value_name = "[CONTAINER=]IMAGE")]
        image: Vec<String>,
        /// For a release of several services: a JSON file of what each service gets,
        /// `{"services": {"api": {"image": "…"}, "web": {"release": "web:42"}}}`.
        #[arg(long, value_name = "FILE")]
        manifest: Option<std::path::PathBuf>,
        /// Lambda: publish the function's current code and configuration as a version
        /// and deploy that version (the newest one, when nothing changed since).
        #[arg(long, conflicts_with_all = ["release", "image", "manifest", "name"])]
        publish: bool,
        #[arg(long, conflicts_with = "name")]
        service: Option<String>,
    },
    /// Go back to the last good release: at once, or in steps with the service's gates.
    Rollback {
        #[arg(long)]
        service: Option<String>,
        /// Take a whole `[releases.NAME]` back: its unfinished run, or its last promoted
        /// one, every service it changed, last wave first.
        #[arg(long = "release", value_name = "NAME", conflicts_with_all = ["service", "steps"])]
        release_name: Option<String>,
        /// Walk traffic back in steps: the share left on the current release after each,
        /// ending with 0 (e.g. "50,0"). The service's gates run between the steps; a
        /// release that fails them stops the walk.
        #[arg(long, value_delimiter = ',', value_name = "PERCENT,...")]
        steps: Option<Vec<u8>>,
        /// How long each step but the last bakes, gates watching (with --steps), e.g. "2m".
        #[arg(long, value_parser = parse_bake, requires = "steps")]
        bake: Option<std::time::Duration>,
    },
    /// Roll the running deployment of a service back now, from any machine that reaches
    /// its state. It acts within one watch interval.
    Abort {
        #[arg(long)]
        service: Option<String>,
        /// Why, for the run's report and its journal.
        #[arg(long)]
        reason: Option<String>,
    },
    /// End the running deployment's bake or approval pause now.
    Promote {
        #[arg(long)]
        service: Option<String>,
        /// Go straight to 100% on the new release and promote it; the gates it still
        /// owes run.
        #[arg(long)]
        full: bool,
        /// Why, for the run's report and its journal.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Scale down the previous release kept warm once its scale-down-delay has passed,
    /// and roll back deployments whose run died: for a scheduled job.
    Tidy {
        /// One service (default: every service in the config).
        #[arg(long)]
        service: Option<String>,
        /// Scale down a release kept warm now, without waiting for its delay.
        #[arg(long, conflicts_with = "wait")]
        now: bool,
        /// Wait until a release kept warm is due, then scale it down.
        #[arg(long)]
        wait: bool,
    },
    /// Show what is running and any deployment in progress.
    Status {
        #[arg(long)]
        service: Option<String>,
        /// A `[releases.NAME]`: its run under way, its last run and each of its services.
        #[arg(long = "release", value_name = "NAME", conflicts_with_all = ["service", "watch"])]
        release_name: Option<String>,
        /// Keep watching, refreshed every `--interval`, until interrupted.
        #[arg(long)]
        watch: bool,
        /// How often `--watch` refreshes, e.g. "2s".
        #[arg(long, default_value = "2s", value_parser = parse_interval)]
        interval: std::time::Duration,
    },
    /// Show past deployments.
    ///
    /// Newest first, a page at a time: `--before` the last number shown for the next.
    History {
        #[arg(long)]
        service: Option<String>,
        /// A `[releases.NAME]`: its runs, newest first, each service's result.
        #[arg(long = "release", value_name = "NAME", conflicts_with_all = ["service", "before"])]
        release_name: Option<String>,
        /// How many deployments to show.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Only deployments numbered below this: the next page is `--before` the number
        /// of the last one shown (the `number` of `--output json`).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        before: Option<u64>,
        /// Every deployment, however many (reads the whole history).
        #[arg(long, conflicts_with_all = ["limit", "before"])]
        all: bool,
    },
    /// Print the steps a strategy would take, computed by its component. Touches no cloud.
    Plan {
        strategy: String,
        #[arg(long)]
        service: Option<String>,
        /// Simulate this many units instead of the service's desired count.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::config::check::MAX_DESIRED)))]
        desired: Option<u32>,
    },
    /// Check the config, every plugin and every strategy's parameters.
    Validate {
        /// Also read the AWS account (and clusters) each service names, changing nothing:
        /// the services, groups or Deployments exist and sit behind their target groups,
        /// a live side carries the traffic, and a pair's scaling is set up alike.
        #[arg(long)]
        account: bool,
    },
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
    /// Print a JSON Schema: of `deployer.toml` (for editors), or of the `--output json` summary.
    Schema {
        #[arg(value_parser = ["config", "summary"])]
        which: String,
    },
}

impl Command {
    /// Every subcommand's name, as typed.
    const NAMES: [&'static str; 14] = [
        "run",
        "rollback",
        "abort",
        "promote",
        "tidy",
        "status",
        "history",
        "plan",
        "validate",
        "plugin",
        "completions",
        "man",
        "schema",
        "help",
    ];

    /// The service named on the command line, if any.
    fn service(&self) -> Option<&str> {
        match self {
            Command::Run { service, .. }
            | Command::Rollback { service, .. }
            | Command::Abort { service, .. }
            | Command::Promote { service, .. }
            | Command::Tidy { service, .. }
            | Command::Status { service, .. }
            | Command::History { service, .. }
            | Command::Plan { service, .. } => service.as_deref(),
            _ => None,
        }
    }

    /// The subcommand's name, as typed.
    fn name(&self) -> &'static str {
        match self {
            Command::Run { .. } => "run",
            Command::Rollback { .. } => "rollback",
            Command::Abort { .. } => "abort",
            Command::Promote { .. } => "promote",
            Command::Tidy { .. } => "tidy",
            Command::Status { .. } => "status",
            Command::History { .. } => "history",
            Command::Plan { .. } => "plan",
            Command::Validate { .. } => "validate",
            Command::Plugin { .. } => "plugin",
            Command::Completions { .. } => "completions",
            Command::Man => "man",
            Command::Schema { .. } => "schema",
        }
    }
}

/// clap's message for `err`, on one line and without its `error: ` prefix.
fn clap_message(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// A refresh interval: a duration above zero (zero would reread the state in a busy loop).
/// A bake between rollback steps: at most a day, as a strategy's bakes.
fn parse_bake(text: &str) -> Result<std::time::Duration, String> {
    let bake = crate::config::parse_duration(text)?;
    if bake.as_millis() > u128::from(deployer_engine::safety::MAX_BAKE_MS) {
        return Err(
            "is longer than a day, the longest bake deployer takes; use e.g. \"2m\"".into(),
        );
    }
    Ok(bake)
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    match crate::config::parse_duration(text)? {
        interval if interval.is_zero() => {
            Err("is zero, which would reread the state without a pause; use e.g. \"2s\"".into())
        }
        interval => Ok(interval),
    }
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print a component's WIT world, digest, imports and exports.
    Inspect {
        /// A `.wasm` component file, or `builtin:NAME`.
        component: String,
    },
    /// Scaffold a plugin crate (Rust) with example code, a test and a scenario.
    New {
        name: String,
        #[arg(long, value_parser = ["hook", "strategy"])]
        kind: String,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Use the plugin SDK at this directory (its `plugins/sdk` in a deployer
        /// checkout) instead of deployer-plugin-sdk from crates.io at this deployer's
        /// version. Inside a deployer checkout the checkout's SDK is used by default.
        /// Written relative to the new crate unless PATH is absolute.
        #[arg(long, value_name = "PATH", alias = "sdk")]
        sdk_path: Option<PathBuf>,
    },
    /// Build a plugin crate into a component and print its sha256.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run a built plugin in the real host against a scripted scenario.
    #[command(
        long_about = "Run a built plugin in the real host against a scripted scenario (TOML): \
                      a hook's runs at lifecycle points with their grants and parameters, or \
                      a strategy's whole rollouts under the host's safety rules with scripted \
                      gate results. Prints what the plugin decided and checks each `expect`.",
        after_help = plugin::SCENARIO_HELP
    )]
    Test {
        /// The built component (`.wasm`), e.g. target/NAME.wasm from `deployer plugin build`.
        component: PathBuf,
        /// The scenario file (the format is below).
        #[arg(long)]
        scenario: PathBuf,
    },
    /// Print the plugin contract's WIT package (`deployer:plugin`) this deployer
    /// implements, or write its files into a directory, e.g. `wit/deps/deployer-plugin`
    /// for componentize-py or componentize-js.
    Wit {
        /// Write the package's files into this directory (created if missing) instead.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Parse arguments, run, and map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return argument_error(&err).into(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            errln!("error: cannot start the async runtime: {err}");
            return Outcome::Error.into();
        }
    };
    let reporter = report::Reporter::new(cli.output, cli.log_format);
    if cli.log_format == report::LogFormat::Json {
        let filter = tracing_subscriber::EnvFilter::try_from_env("DEPLOYER_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("deployer=info"));
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    }
    reporter.begin_command(cli.command.name(), cli.command.service());
    let outcome = match runtime.block_on(run(&reporter, cli)) {
        Ok(outcome) => {
            reporter.finish(outcome, None);
            outcome
        }
        Err(err) => {
            let outcome = classify(&err);
            reporter.finish(outcome, Some(&err));
            outcome
        }
    };
    // Background tasks (signal watchers, the status ticker) must not hold up the exit.
    runtime.shutdown_background();
    match crate::output::stdout_failure() {
        // CI reads stdout (the JSON summary, the annotations): losing it is a failure of
        // the command, whatever the deployment did, and the line on stderr says both.
        Some(err) => {
            errln!(
                "error: cannot write to standard output: {err} (the command itself ended: {})",
                outcome.describe()
            );
            Outcome::Error.into()
        }
        None => outcome.into(),
    }
}

/// Arguments clap refused (or `--help` / `--version`, which are not errors). With
/// `--output json` anywhere on the line, the refusal is a JSON document on stdout like
/// every other failure, so CI parsing stdout always gets one.
fn argument_error(err: &clap::Error) -> Outcome {
    if !err.use_stderr() {
        let _ = err.print();
        return Outcome::Success;
    }
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let json = args
        .windows(2)
        .any(|pair| pair[0] == "--output" && pair[1] == "json")
        || args.iter().any(|a| a == "--output=json");
    let rendered = escape_echoed_arguments(&err.render().to_string(), &args);
    if json {
        let command = args
            .iter()
            .find(|a| Command::NAMES.contains(&a.as_str()))
            .map_or("", String::as_str);
        report::Reporter::new(report::OutputFormat::Json, report::LogFormat::Plain)
            .refused_arguments(
                command,
                &escape_echoed_arguments(&clap_message(err), &args),
                &rendered,
            );
    } else if rendered != err.render().to_string() {
        // An argument was escaped: the plain text, without clap's colours.
        errln!("{}", rendered.trim_end());
    } else {
        let _ = err.print();
    }
    Outcome::BadInput
}

/// `text` (clap's refusal) with every argument it echoes that holds a control character
/// escaped (`\n`, `\u{2028}`): a newline inside an argument must not start a line of
/// its own, where a CI runner would read `::error::…` as a command. clap echoes a whole
/// argument, or the part of an option before or after its `=`.
fn escape_echoed_arguments(text: &str, args: &[String]) -> String {
    let controlled = |s: &str| {
        s.chars()
            .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    };
    let mut echoed: Vec<&str> = Vec::new();
    for arg in args.iter().filter(|a| controlled(a)) {
        echoed.push(arg);
        if let Some((name, value)) = arg.split_once('=') {
            echoed.extend([name, value]);
        }
    }
    echoed.retain(|part| controlled(part));
    // Longest first, so a part never breaks up a whole argument it is inside of.
    echoed.sort_by_key(|part| std::cmp::Reverse(part.len()));
    echoed.into_iter().fold(text.to_string(), |text, part| {
        text.replace(part, &part.escape_debug().to_string())
    })
}

/// Bad input is anything the user can fix in their files or arguments.
fn classify(err: &anyhow::Error) -> Outcome {
    for cause in err.chain() {
        if cause.is::<ConfigErrors>() || cause.is::<crate::exit::BadInput>() {
            return Outcome::BadInput;
        }
        // A damaged state file or a name that cannot be a path is local input the user
        // can mend (the message says how), and nothing was changed.
        if let Some(
            deployer_engine::state::StateError::Corrupt { .. }
            | deployer_engine::state::StateError::Index { .. }
            | deployer_engine::state::StateError::Unreadable { .. }
            | deployer_engine::state::StateError::BadName { .. },
        ) = cause.downcast_ref::<deployer_engine::state::StateError>()
        {
            return Outcome::BadInput;
        }
        if let Some(plugin) = cause.downcast_ref::<PluginError>() {
            return if plugin.is_load_error() {
                Outcome::BadInput
            } else {
                Outcome::Error
            };
        }
    }
    Outcome::Error
}

/// Run a parsed command.
///
/// # Errors
/// Whatever stopped the command; [`main`] maps it to an exit code.
pub async fn run(reporter: &std::sync::Arc<report::Reporter>, cli: Cli) -> anyhow::Result<Outcome> {
    let host = || -> anyhow::Result<PluginHost> {
        let services = deployer_plugin_host::HostServices {
            log: std::sync::Arc::new(PluginLog(reporter.clone())),
            http: Some(std::sync::Arc::new(
                deployer_plugin_host::capabilities::ReqwestTransport::new()?,
            )),
            ..Default::default()
        };
        PluginHost::with_services(PluginHost::default_cache_dir(), services)
    };
    match cli.command {
        Command::Plan {
            strategy,
            service,
            desired,
        } => {
            plan::run(
                &host()?,
                &cli.config,
                &strategy,
                service.as_deref(),
                desired,
            )
            .await
        }
        Command::Validate { account } => validate::run(&host()?, &cli.config, account).await,
        Command::Plugin { command } => match command {
            PluginCommand::Inspect { component } => inspect::run(&component),
            PluginCommand::New {
                name,
                kind,
                dir,
                sdk_path,
            } => plugin::new(&name, &kind, &dir, sdk_path.as_deref()),
            PluginCommand::Build { dir } => plugin::build(&dir),
            PluginCommand::Test {
                component,
                scenario,
            } => plugin::test(&host()?, &component, &scenario).await,
            PluginCommand::Wit { out } => plugin::wit(out.as_deref()),
        },
        Command::Run {
            strategy,
            name,
            release,
            image,
            manifest,
            publish,
            service,
        } => {
            if strategy == "release" && publish {
                return Err(BadInput(
                    "--publish deploys one Lambda function; a release of several services names \
                     each function's version\n  fix: deployer run release NAME --release FUNCTION=VERSION"
                        .into(),
                )
                .into());
            }
            if strategy == "release" {
                let Some(name) = name else {
                    return Err(BadInput(
                        "`deployer run release` needs the release's name\n  fix: deployer run \
                         release NAME --image SERVICE=IMAGE (NAME is a [releases.NAME] table)"
                            .into(),
                    )
                    .into());
                };
                return release::run(
                    reporter,
                    &host()?,
                    &cli.config,
                    release::Args {
                        name: &name,
                        releases: &release,
                        images: &image,
                        manifest: manifest.as_deref(),
                    },
                )
                .await;
            }
            if let Some(name) = name {
                return Err(BadInput(format!(
                    "unexpected argument `{}` after the strategy\n  fix: a release of several \
                     services is `deployer run release NAME`; one service is `deployer run \
                     STRATEGY --service NAME`",
                    deployer_engine::redact::printable(&name)
                ))
                .into());
            }
            let wanted = match (release.as_slice(), image.is_empty(), manifest) {
                ([], true, None) if publish => run::Wanted::Publish,
                ([release], true, None) => run::Wanted::Release(release.clone()),
                ([], false, None) => run::Wanted::Images(image),
                (_, _, Some(_)) => {
                    return Err(BadInput(
                        "--manifest is for a release of several services\n  fix: deployer run \
                         release NAME --manifest FILE"
                            .into(),
                    )
                    .into());
                }
                _ => {
                    return Err(BadInput(
                        "give one --release, or --image (repeated per container), not both\n  \
                         fix: deployer run STRATEGY --release web:42, or --image repo/web:1.2"
                            .into(),
                    )
                    .into());
                }
            };
            run::run(
                reporter,
                &host()?,
                &cli.config,
                &strategy,
                service.as_deref(),
                &wanted,
            )
            .await
        }
        Command::Rollback {
            release_name: Some(name),
            ..
        } => release::rollback(reporter, &host()?, &cli.config, &name).await,
        Command::Rollback {
            service,
            steps,
            bake,
            release_name: None,
        } => {
            let walk = steps.map(|steps| rollback::Walk {
                steps,
                bake: bake.unwrap_or_default(),
            });
            rollback::rollback(reporter, &host()?, &cli.config, service.as_deref(), walk).await
        }
        Command::Abort { service, reason } => {
            control::signal(
                reporter,
                &cli.config,
                service.as_deref(),
                SignalKind::Abort,
                reason,
            )
            .await
        }
        Command::Promote {
            service,
            full,
            reason,
        } => {
            control::signal(
                reporter,
                &cli.config,
                service.as_deref(),
                SignalKind::Promote { full },
                reason,
            )
            .await
        }
        Command::Tidy { service, now, wait } => {
            tidy::tidy(reporter, &cli.config, service.as_deref(), now, wait).await
        }
        Command::Status {
            release_name: Some(name),
            ..
        } => release::status(reporter, &cli.config, &name).await,
        Command::History {
            release_name: Some(name),
            limit,
            all,
            ..
        } => {
            release::history(
                reporter,
                &cli.config,
                &name,
                if all { usize::MAX } else { limit as usize },
            )
            .await
        }
        Command::Status {
            service,
            watch,
            interval,
            release_name: None,
        } => {
            status::status(
                reporter,
                &cli.config,
                service.as_deref(),
                watch.then_some(interval),
            )
            .await
        }
        Command::History {
            service,
            limit,
            before,
            all,
            release_name: None,
        } => {
            let paging = history::Paging {
                limit: (!all).then_some(limit as usize),
                before,
            };
            history::history(reporter, &cli.config, service.as_deref(), paging).await
        }
        // Both render into memory first: `clap_complete` panics on a failed write.
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "deployer", &mut script);
            crate::output::stdout_bytes(&script);
            Ok(Outcome::Success)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            crate::output::stdout_bytes(&page);
            Ok(Outcome::Success)
        }
        Command::Schema { which } => {
            let schema = if which == "config" {
                crate::config::schema()
            } else {
                report::summary_schema()
            };
            outln!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(Outcome::Success)
        }
    }
}

/// Plugin log lines through the reporter: scrubbed, escaped, and in the log format asked
/// for.
struct PluginLog(std::sync::Arc<report::Reporter>);

impl deployer_plugin_host::capabilities::LogSink for PluginLog {
    fn log(&self, plugin: &str, level: deployer_plugin_host::bindings::log::Level, message: &str) {
        let level = deployer_plugin_host::capabilities::level_name(level);
        self.0.plugin_log(plugin, level, message);
    }
}
