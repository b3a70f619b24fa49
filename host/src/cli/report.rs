//! How a run looks to people and to CI.
//!
//! The engine emits [`Event`]s; this turns them into plain log lines on stderr (a live
//! status line below them when stderr is a terminal), `tracing` JSON lines with
//! `--log-format json`, a machine-readable [`Summary`] on stdout with `--output json`,
//! and, inside GitHub Actions, annotations and a step summary. Everything printed passes
//! through the redactor first.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Serialize;

use crate::config::ConfigErrors;
use crate::exit::Outcome;
use crate::plugin::bindings::types::{GateResult, GateStatus, Step, StepOutcome};
use crate::redact::Secrets;
use crate::rollout::describe;
use crate::rollout::engine::Report;
use crate::rollout::events::{Event, result_word, short_release};
use crate::state::DeployResult;

/// What stdout carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Words for people.
    #[default]
    Text,
    /// One JSON document (see `deployer schema summary`).
    Json,
}

/// What stderr's progress log looks like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain lines (with a live status line on a terminal).
    #[default]
    Plain,
    /// `tracing` events as JSON lines; `DEPLOYER_LOG` filters them (e.g. `deployer=debug,aws=info`).
    Json,
}

/// The machine-readable end of a `run` or `rollback` (`--output json`).
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    /// Version of this document's shape; bumped only for incompatible changes.
    pub schema_version: u32,
    /// `run` or `rollback`.
    pub command: String,
    pub service: Option<String>,
    pub result: SummaryResult,
    /// The process's exit code: 0 success, 1 rolled back, 2 rollback failed, 3 bad input, 4 other.
    pub exit_code: u8,
    /// What happened, in a sentence (the error, for bad input and errors).
    pub detail: String,
    pub deployment: Option<String>,
    pub strategy: Option<String>,
    pub stable_release: Option<String>,
    pub new_release: Option<String>,
    /// An unfinished earlier deployment that was recovered first.
    pub recovered: Option<String>,
    pub rollback_reason: Option<String>,
    /// The last verified share of traffic on the new release.
    pub traffic_new_percent: Option<u8>,
    pub duration_ms: u64,
    /// From the failing observation (gate result) to the first rollback action.
    pub rollback_latency_ms: Option<u64>,
    /// AWS API calls made (every attempt, retries included).
    pub aws_api_calls: Option<ApiCalls>,
    pub steps: Vec<StepSummary>,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ApiCalls {
    pub total: u32,
    /// Calls by `Service.Operation`.
    pub by_operation: std::collections::BTreeMap<String, u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SummaryResult {
    /// The new release is live on all traffic (for `rollback`: the previous release is).
    Promoted,
    /// The deployment failed and traffic is back on the stable release.
    RolledBack,
    /// The rollback did not finish: a person must look.
    RollbackFailed,
    /// Nothing needed doing (the release was already live).
    Unchanged,
    /// Arguments, config or plugin files were wrong; nothing was changed.
    BadInput,
    #[default]
    Error,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct StepSummary {
    pub seq: u32,
    /// The step in words, as `plan` prints it.
    pub step: String,
    /// Verified share of traffic on the new release after the step.
    pub traffic_new_percent: u8,
    /// AWS API calls the step made (absent when not counted).
    pub aws_api_calls: Option<u32>,
    pub gates: Vec<GateSummary>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct GateSummary {
    pub name: String,
    pub status: GateWord,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GateWord {
    Pass,
    Fail,
    Inconclusive,
    NoData,
}

impl From<GateStatus> for GateWord {
    fn from(status: GateStatus) -> Self {
        match status {
            GateStatus::Pass => GateWord::Pass,
            GateStatus::Fail => GateWord::Fail,
            GateStatus::Inconclusive => GateWord::Inconclusive,
            GateStatus::NoData => GateWord::NoData,
        }
    }
}

/// The JSON Schema of [`Summary`].
pub fn summary_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Summary);
    schema.insert("title".into(), "deployer run summary".into());
    schema.to_value()
}

/// What the live status line shows.
#[derive(Debug, Default)]
struct Live {
    step: Option<(u32, String)>,
    bake_end: Option<Instant>,
    drawn: bool,
}

/// Turns events into output. One per invocation.
pub struct Reporter {
    output: OutputFormat,
    log_format: LogFormat,
    /// stderr is a terminal: keep a status line under the log.
    live: bool,
    /// Running inside GitHub Actions.
    github: bool,
    step_summary: Option<PathBuf>,
    pub secrets: Secrets,
    summary: Mutex<Summary>,
    status: Mutex<Live>,
    calls: Mutex<Option<crate::aws::CallCounter>>,
    /// When a gate last reported a failure (start of the rollback-latency clock).
    failed_at: Mutex<Option<Instant>>,
    /// API calls made before the current step began.
    calls_at_step: Mutex<Option<u32>>,
    started: Instant,
}

impl Reporter {
    pub fn new(output: OutputFormat, log_format: LogFormat) -> Arc<Reporter> {
        let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
        let live = log_format == LogFormat::Plain
            && std::io::stderr().is_terminal()
            && std::env::var("TERM").map_or(true, |t| t != "dumb")
            && !github;
        Arc::new(Reporter {
            output,
            log_format,
            live,
            github,
            step_summary: std::env::var_os("GITHUB_STEP_SUMMARY")
                .filter(|_| github)
                .map(PathBuf::from),
            secrets: Secrets::from_env(),
            summary: Mutex::new(Summary {
                schema_version: 1,
                ..Summary::default()
            }),
            status: Mutex::new(Live::default()),
            calls: Mutex::new(None),
            failed_at: Mutex::new(None),
            calls_at_step: Mutex::new(None),
            started: Instant::now(),
        })
    }

    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    /// Which command and service the summary describes.
    pub fn begin(&self, command: &str, service: Option<&str>) {
        let mut summary = self.lock_summary();
        summary.command = command.to_string();
        summary.service = service.map(str::to_string);
    }

    /// Report the calls these clients make in the summary.
    pub fn count_calls(&self, calls: crate::aws::CallCounter) {
        *self.calls.lock().unwrap_or_else(PoisonError::into_inner) = Some(calls);
    }

    fn lock_summary(&self) -> std::sync::MutexGuard<'_, Summary> {
        self.summary.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keep the status line's countdown moving while a run is under way.
    pub fn start_ticker(self: &Arc<Self>) {
        if !self.live {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                match me.upgrade() {
                    Some(reporter) => reporter.redraw(),
                    None => return,
                }
            }
        });
    }

    /// A progress line from the CLI itself.
    pub fn line(&self, text: &str) {
        let text = self.secrets.scrub(text);
        match self.log_format {
            LogFormat::Json => tracing::info!(target: "deployer", "{text}"),
            LogFormat::Plain => self.print_line(&text),
        }
    }

    fn print_line(&self, text: &str) {
        let mut stderr = std::io::stderr().lock();
        if self.live {
            let mut live = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            if live.drawn {
                let _ = write!(stderr, "\r\x1b[2K");
                live.drawn = false;
            }
        }
        let _ = writeln!(stderr, "deployer: {text}");
        drop(stderr);
        self.redraw();
    }

    /// Take in one engine event.
    pub fn event(&self, event: &Event<'_>) {
        self.record(event);
        if self.live {
            let mut live = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            match event {
                Event::Step { seq, step } => {
                    live.step = Some((*seq, describe::step(step)));
                    live.bake_end = match step {
                        Step::Bake(ms) => Some(Instant::now() + Duration::from_millis(*ms)),
                        _ => None,
                    };
                }
                Event::RollingBack { .. } | Event::Finished { .. } => {
                    live.step = None;
                    live.bake_end = None;
                }
                _ => {}
            }
        }
        match self.log_format {
            LogFormat::Json => trace(event, &self.secrets),
            LogFormat::Plain if !event.is_quiet() => {
                self.print_line(&self.secrets.scrub(&event.to_string()));
            }
            LogFormat::Plain => {}
        }
    }

    fn record(&self, event: &Event<'_>) {
        let failing = |results: &[GateResult]| results.iter().any(|r| r.status == GateStatus::Fail);
        let observed = match event {
            Event::StepDone {
                outcome: StepOutcome::Gates(results),
                ..
            } => results.as_slice(),
            Event::Watched { results } => results,
            _ => &[],
        };
        let calls_now = self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(crate::aws::CallCounter::total);
        let mut step_calls = None;
        match event {
            Event::Step { .. } => {
                *self
                    .calls_at_step
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = calls_now;
            }
            Event::StepDone { .. } => {
                let before = self
                    .calls_at_step
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                step_calls = calls_now.zip(before).map(|(now, before)| now - before);
            }
            _ => {}
        }
        if failing(observed) {
            *self
                .failed_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
        if let Event::Undo { .. } = event {
            let failed_at = self
                .failed_at
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(at) = failed_at {
                self.lock_summary().rollback_latency_ms = Some(at.elapsed().as_millis() as u64);
            }
        }
        let mut summary = self.lock_summary();
        let scrub = |text: &str| self.secrets.scrub(text);
        match event {
            Event::Started {
                id,
                stable,
                new,
                strategy,
                ..
            } => {
                summary.deployment = Some(id.to_string());
                summary.strategy = Some(strategy.to_string());
                summary.stable_release = stable.map(|s| short_release(s).to_string());
                summary.new_release = Some(short_release(new).to_string());
                summary.steps.clear();
                summary.rollback_reason = None;
                summary.traffic_new_percent = Some(0);
            }
            Event::Recovering { id, .. } | Event::Resuming { id } => {
                summary.recovered = Some(id.to_string());
                summary.deployment = Some(id.to_string());
            }
            Event::StepDone {
                seq,
                step,
                outcome,
                new_percent,
            } => {
                let gates = match outcome {
                    StepOutcome::Gates(results) => {
                        results.iter().map(|r| gate_summary(r, &scrub)).collect()
                    }
                    StepOutcome::Done => Vec::new(),
                };
                summary.traffic_new_percent = Some(*new_percent);
                summary.steps.push(StepSummary {
                    seq: *seq,
                    step: scrub(&describe::step(step)),
                    traffic_new_percent: *new_percent,
                    aws_api_calls: step_calls,
                    gates,
                });
            }
            Event::Watched { results } => {
                if let Some(last) = summary.steps.last_mut() {
                    last.gates
                        .extend(results.iter().map(|r| gate_summary(r, &scrub)));
                }
            }
            Event::RollingBack { reason } => {
                summary.rollback_reason = Some(scrub(reason));
            }
            Event::Finished { id, result, detail } => {
                summary.deployment = Some(id.to_string());
                summary.result = match result {
                    DeployResult::Promoted => SummaryResult::Promoted,
                    DeployResult::RolledBack => SummaryResult::RolledBack,
                    DeployResult::RollbackFailed => SummaryResult::RollbackFailed,
                };
                if *result == DeployResult::RolledBack {
                    summary.traffic_new_percent = Some(0);
                }
                summary.detail = scrub(detail);
            }
            Event::Retrying { .. }
            | Event::AfterRollback { .. }
            | Event::Step { .. }
            | Event::Undo { .. } => {}
        }
    }

    fn redraw(&self) {
        if !self.live {
            return;
        }
        let mut live = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let traffic = self.lock_summary().traffic_new_percent;
        let Some(line) = status_line(&live, traffic, Instant::now()) else {
            return;
        };
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K{line}");
        let _ = stderr.flush();
        live.drawn = true;
    }

    fn clear_status(&self) {
        if !self.live {
            return;
        }
        let mut live = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        live.step = None;
        if live.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            live.drawn = false;
        }
    }

    /// The final report of an engine run, for people (stdout, text output only).
    pub fn report(&self, report: &Report) {
        if self.json() {
            return;
        }
        self.clear_status();
        if let Some(old) = &report.recovered {
            println!("recovered unfinished deployment {old}");
        }
        println!(
            "deployment {}: {}: {}",
            report.id,
            result_word(report.result),
            self.secrets.scrub(&report.detail)
        );
        let summary = self.lock_summary();
        if let Some(new) = &summary.new_release {
            println!(
                "  release:  {} → {new} with {}",
                summary.stable_release.as_deref().unwrap_or("(nothing)"),
                summary.strategy.as_deref().unwrap_or("?")
            );
        }
        let on = |release: &Option<String>| {
            release
                .clone()
                .unwrap_or_else(|| "the release it was deploying".into())
        };
        match report.result {
            DeployResult::Promoted => println!("  traffic:  100% on {}", on(&summary.new_release)),
            DeployResult::RolledBack => {
                println!(
                    "  traffic:  100% on {} (stable)",
                    on(&summary.stable_release)
                )
            }
            DeployResult::RollbackFailed => println!(
                "  traffic:  NOT SAFE: {}% may still reach {}; see `deployer status`",
                summary.traffic_new_percent.unwrap_or(100),
                on(&summary.new_release)
            ),
        }
        println!(
            "  took:     {} steps in {:.1}s",
            summary.steps.len(),
            self.started.elapsed().as_secs_f64()
        );
    }

    /// A plain message on stdout (text output only).
    pub fn say(&self, text: &str) {
        if !self.json() {
            self.clear_status();
            println!("{}", self.secrets.scrub(text));
        }
    }

    /// The end of the invocation: the JSON summary, CI annotations and step summary.
    pub fn finish(&self, outcome: Outcome, error: Option<&anyhow::Error>) {
        self.clear_status();
        let error_text = error.map(|e| self.secrets.scrub(&format!("{e:#}")));
        if let Some(text) = &error_text {
            eprintln!("error: {text}");
        }
        let summary = {
            let mut summary = self.lock_summary();
            summary.exit_code = outcome as u8;
            if let Some(calls) = &*self.calls.lock().unwrap_or_else(PoisonError::into_inner) {
                let by_operation = calls.snapshot();
                summary.aws_api_calls = Some(ApiCalls {
                    total: by_operation.values().sum(),
                    by_operation,
                });
            }
            summary.duration_ms = self.started.elapsed().as_millis() as u64;
            match (outcome, &error_text) {
                (Outcome::BadInput, Some(text)) => {
                    summary.result = SummaryResult::BadInput;
                    summary.detail = text.clone();
                }
                (_, Some(text)) => {
                    summary.result = SummaryResult::Error;
                    summary.detail = text.clone();
                }
                (Outcome::Success, None) if summary.deployment.is_none() => {
                    summary.result = SummaryResult::Unchanged;
                }
                _ => {}
            }
            summary.clone()
        };
        if summary.command.is_empty() {
            // Not a deployment command: nothing more to report.
            return;
        }
        if self.json() {
            match serde_json::to_string_pretty(&summary) {
                Ok(json) => println!("{json}"),
                Err(err) => eprintln!("error: cannot write the summary: {err}"),
            }
        }
        if self.github {
            self.annotate(&summary, error);
            if let Some(path) = &self.step_summary {
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(step_summary(&summary).as_bytes()));
                if let Err(err) = written {
                    eprintln!(
                        "deployer: cannot write the step summary {}: {err}",
                        path.display()
                    );
                }
            }
        }
    }

    /// GitHub Actions annotations: on stdout as the runner expects, or on stderr when
    /// stdout carries the JSON summary.
    fn annotate(&self, summary: &Summary, error: Option<&anyhow::Error>) {
        let mut lines = Vec::new();
        let service = summary.service.as_deref().unwrap_or("?");
        if let Some(errors) =
            error.and_then(|e| e.chain().find_map(|c| c.downcast_ref::<ConfigErrors>()))
        {
            for problem in &errors.0 {
                let mut props = format!(
                    "file={}",
                    escape_property(&problem.file.display().to_string())
                );
                if let Some((line, col)) = problem.position {
                    props += &format!(",line={line},col={col}");
                }
                props += ",title=deployer: bad config";
                let message = if problem.field.is_empty() {
                    problem.message.clone()
                } else {
                    format!("{}: {}", problem.field, problem.message)
                };
                lines.push(format!(
                    "::error {props}::{}",
                    escape_data(&self.secrets.scrub(&message))
                ));
            }
        } else {
            let (level, title) = match summary.result {
                SummaryResult::Promoted => ("notice", format!("deployer: {service} promoted")),
                SummaryResult::Unchanged => ("notice", format!("deployer: {service} unchanged")),
                SummaryResult::RolledBack => ("error", format!("deployer: {service} rolled back")),
                SummaryResult::RollbackFailed => {
                    ("error", format!("deployer: {service} ROLLBACK FAILED"))
                }
                SummaryResult::BadInput => ("error", "deployer: bad input".to_string()),
                SummaryResult::Error => ("error", "deployer: error".to_string()),
            };
            let message = summary
                .rollback_reason
                .as_deref()
                .unwrap_or(&summary.detail);
            lines.push(format!(
                "::{level} title={}::{}",
                escape_property(&title),
                escape_data(message)
            ));
        }
        for line in lines {
            if self.json() {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
}

fn gate_summary(result: &GateResult, scrub: &dyn Fn(&str) -> String) -> GateSummary {
    GateSummary {
        name: scrub(&result.name),
        status: result.status.into(),
        detail: scrub(&result.detail),
    }
}

/// Events as `tracing` records with their fields, for log pipelines.
fn trace(event: &Event<'_>, secrets: &Secrets) {
    let message = secrets.scrub(&event.to_string());
    match event {
        Event::Step { seq, step } => {
            tracing::info!(target: "deployer", event = "step", seq, step = %describe::step(step), "{message}");
        }
        Event::StepDone {
            seq, new_percent, ..
        } => {
            tracing::info!(target: "deployer", event = "step-done", seq, traffic_new_percent = new_percent, "{message}");
        }
        Event::Started { id, .. } => {
            tracing::info!(target: "deployer", event = "started", deployment = id, "{message}");
        }
        Event::Finished { id, result, .. } => {
            tracing::info!(target: "deployer", event = "finished", deployment = id, result = result_word(*result), "{message}");
        }
        Event::RollingBack { .. } => {
            tracing::warn!(target: "deployer", event = "rolling-back", "{message}")
        }
        Event::Retrying { .. } => {
            tracing::warn!(target: "deployer", event = "retrying", "{message}")
        }
        _ => tracing::info!(target: "deployer", "{message}"),
    }
}

/// The status line under the log: current step, traffic, and time to the next step.
fn status_line(live: &Live, traffic: Option<u8>, now: Instant) -> Option<String> {
    let (seq, step) = live.step.as_ref()?;
    let mut line = format!("▸ step {seq}: {step}");
    if let Some(p) = traffic {
        line += &format!(" · traffic {p}% new / {}% stable", 100 - p);
    }
    if let Some(end) = live.bake_end {
        let left = end.saturating_duration_since(now);
        line += &format!(" · next step in {:.0}s", left.as_secs_f64().ceil());
    }
    Some(line)
}

/// Workflow command data: `%`, CR and LF escaped.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Workflow command properties: also `:` and `,`.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The GitHub Actions step summary, in Markdown.
fn step_summary(summary: &Summary) -> String {
    let service = summary.service.as_deref().unwrap_or("?");
    let word = match summary.result {
        SummaryResult::Promoted => "✅ promoted",
        SummaryResult::RolledBack => "↩️ rolled back",
        SummaryResult::RollbackFailed => "🛑 rollback failed",
        SummaryResult::Unchanged => "unchanged",
        SummaryResult::BadInput => "❌ bad input",
        SummaryResult::Error => "❌ error",
    };
    let mut md = format!("### deployer {} `{service}`: {word}\n\n", summary.command);
    md += "| | |\n|---|---|\n";
    if let Some(id) = &summary.deployment {
        md += &format!("| deployment | `{id}` |\n");
    }
    if let Some(new) = &summary.new_release {
        md += &format!(
            "| release | {} → **{}** ({}) |\n",
            summary.stable_release.as_deref().unwrap_or("-"),
            cell(new),
            summary.strategy.as_deref().unwrap_or("?")
        );
    }
    md += &format!("| result | {word} (exit {}) |\n", summary.exit_code);
    if let Some(reason) = &summary.rollback_reason {
        md += &format!("| reason | {} |\n", cell(reason));
    }
    md += &format!("| detail | {} |\n", cell(&summary.detail));
    md += &format!(
        "| duration | {:.1}s |\n",
        summary.duration_ms as f64 / 1000.0
    );
    if !summary.steps.is_empty() {
        md += &format!(
            "\n<details><summary>{} steps</summary>\n\n| # | step | traffic new | gates |\n|---|---|---|---|\n",
            summary.steps.len()
        );
        for step in &summary.steps {
            let gates: Vec<String> = step
                .gates
                .iter()
                .map(|g| format!("{}: {:?}", g.name, g.status).to_lowercase())
                .collect();
            md += &format!(
                "| {} | {} | {}% | {} |\n",
                step.seq,
                cell(&step.step),
                step.traffic_new_percent,
                cell(&gates.join(", "))
            );
        }
        md += "\n</details>\n";
    }
    md + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_counts_down_to_the_next_step() {
        let now = Instant::now();
        let live = Live {
            step: Some((7, "bake 2m".into())),
            bake_end: Some(now + Duration::from_millis(90_500)),
            drawn: false,
        };
        assert_eq!(
            status_line(&live, Some(25), now).unwrap(),
            "▸ step 7: bake 2m · traffic 25% new / 75% stable · next step in 91s"
        );
        assert_eq!(status_line(&Live::default(), Some(25), now), None);
    }

    #[test]
    fn workflow_commands_are_escaped() {
        assert_eq!(escape_data("50% done\nnext"), "50%25 done%0Anext");
        assert_eq!(escape_property("a: b, c"), "a%3A b%2C c");
    }

    #[test]
    fn the_step_summary_names_the_result_and_each_step() {
        let summary = Summary {
            schema_version: 1,
            command: "run".into(),
            service: Some("web".into()),
            result: SummaryResult::RolledBack,
            exit_code: 1,
            detail: "rolled back to web:2: gate smoke failed".into(),
            deployment: Some("d1".into()),
            strategy: Some("canary".into()),
            stable_release: Some("web:2".into()),
            new_release: Some("web:3".into()),
            rollback_reason: Some("gate smoke failed | 0/5".into()),
            steps: vec![StepSummary {
                seq: 4,
                step: "run pre-traffic gates".into(),
                traffic_new_percent: 0,
                aws_api_calls: None,
                gates: vec![GateSummary {
                    name: "smoke".into(),
                    status: GateWord::Fail,
                    detail: String::new(),
                }],
            }],
            ..Summary::default()
        };
        let md = step_summary(&summary);
        assert!(
            md.contains("### deployer run `web`: ↩️ rolled back"),
            "{md}"
        );
        assert!(
            md.contains("| release | web:2 → **web:3** (canary) |"),
            "{md}"
        );
        assert!(
            md.contains("| reason | gate smoke failed \\| 0/5 |"),
            "{md}"
        );
        assert!(
            md.contains("| 4 | run pre-traffic gates | 0% | smoke: fail |"),
            "{md}"
        );
    }
}
