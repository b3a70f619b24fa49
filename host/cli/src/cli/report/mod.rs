//! How a run looks to people and to CI.
//!
//! The engine emits [`Event`]s; this turns them into plain log lines on stderr (a live
//! status line below them when stderr is a terminal), `tracing` JSON lines with
//! `--log-format json`, a machine-readable [`Summary`] on stdout with `--output json`,
//! and, inside GitHub Actions, annotations and a step summary. Everything printed passes
//! through the redactor first.
//!
//! [`Reporter`] owns the I/O and the one lock. The submodules hold no state of their own
//! and do no I/O except `tracing`: `summary` folds events into the summary, `terminal`
//! keeps the live line, `plain` words things for people, `trace` emits `tracing` records
//! and `github` writes for Actions.

mod github;
mod plain;
mod summary;
mod terminal;
mod trace;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::ConfigErrors;
use crate::exit::Outcome;
use crate::redact::Secrets;
use deployer_engine::events::Event;
use deployer_engine::redact::printable;
use deployer_engine::rollout::Report;
use deployer_targets::aws::CallCounter;
use deployer_targets::aws::images::{ImageRelease, Made};

pub use summary::{
    ApiCalls, GateSummary, GateWord, ReleaseServiceSummary, ReleaseSummary, StepSummary, Summary,
    SummaryResult, summary_schema,
};

use summary::SummaryFold;
use terminal::Live;

/// A multi-line error as printed: our own line breaks kept (`\n  fix: …`), but no line
/// can carry control characters or read as a GitHub workflow command (the runner
/// takes any line that starts with `::` after leading spaces as one), whatever values
/// from outside the message quotes.
fn own_lines(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = printable(line);
            if line.trim_start().starts_with("::") {
                format!("  > {}", line.trim_start())
            } else {
                line.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `a` and `b` are one stream: the same terminal, or the same pipe or file (as
/// after `2>&1`). Then whoever reads one reads the other, and a line printed on both is
/// read twice; a CI log that keeps only one of them gets everything it needs when they
/// differ.
fn same_stream(a: &impl std::os::fd::AsFd, b: &impl std::os::fd::AsFd) -> bool {
    use std::os::unix::fs::MetadataExt;
    let identity = |fd: std::os::fd::BorrowedFd<'_>| {
        let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
        let meta = file.metadata().ok()?;
        Some((meta.dev(), meta.ino()))
    };
    match (identity(a.as_fd()), identity(b.as_fd())) {
        (Some(a), Some(b)) => a == b,
        // Closed or unreadable: say everything on the one that works.
        _ => false,
    }
}

/// Commands that end with the JSON summary under `--output json`.
const DEPLOYMENT_COMMANDS: [&str; 2] = ["run", "rollback"];

/// Commands whose stdout carries JSON under `--output json`: their failures are JSON too.
const JSON_COMMANDS: [&str; 4] = ["run", "rollback", "status", "history"];

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

/// Everything the reporter changes as a run goes, behind one lock so the status line is
/// always drawn from the summary it sits next to.
#[derive(Default)]
struct State {
    fold: SummaryFold,
    live: Live,
    calls: Option<CallCounter>,
    /// A deployment's result line held back from the log while stdout, the same stream,
    /// may be about to print it at the head of the final report: `(id, line)`.
    held: Option<(String, String)>,
    /// Deployments whose result line went to the log.
    logged: Vec<String>,
}

/// Turns events into output. One per invocation.
pub struct Reporter {
    output: OutputFormat,
    log_format: LogFormat,
    /// stderr is a terminal: keep a status line under the log.
    live: bool,
    /// Running inside GitHub Actions.
    github: bool,
    /// stdout and stderr are one stream (the same terminal, `2>&1`): a result line the
    /// final report prints on stdout is not also logged on stderr.
    one_stream: bool,
    step_summary: Option<PathBuf>,
    pub secrets: Arc<Secrets>,
    state: Mutex<State>,
    started: Instant,
    /// A service of a release: its lines are logged as `[service] …`, and its results go
    /// into the release's report instead of stdout.
    scope: Option<String>,
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
            one_stream: output == OutputFormat::Text
                && log_format == LogFormat::Plain
                && same_stream(&std::io::stdout(), &std::io::stderr()),
            step_summary: std::env::var_os("GITHUB_STEP_SUMMARY")
                .filter(|_| github)
                .map(PathBuf::from),
            secrets: Arc::new(Secrets::from_env()),
            state: Mutex::new(State::default()),
            started: Instant::now(),
            scope: None,
        })
    }

    /// The reporter of one service of a release: the same log, each line marked with
    /// the service; no live line, annotations or stdout of its own (the release's
    /// report says how each service ended). Its summary is [`Reporter::service_summary`].
    pub fn scoped(&self, service: &str) -> Arc<Reporter> {
        let child = Reporter {
            output: OutputFormat::Text,
            log_format: self.log_format,
            live: false,
            github: false,
            one_stream: false,
            step_summary: None,
            secrets: self.secrets.clone(),
            state: Mutex::new(State::default()),
            started: Instant::now(),
            scope: Some(service.to_string()),
        };
        child.lock().fold.begin("run", Some(service));
        Arc::new(child)
    }

    /// What a release's service reporter saw, as a summary that ended with `outcome`.
    pub fn service_summary(&self, outcome: Outcome, error: Option<&str>) -> Summary {
        let mut state = self.lock();
        let calls = state.calls.as_ref().map(CallCounter::snapshot);
        state
            .fold
            .close(outcome, error, calls, self.started.elapsed())
    }

    /// The release this run deploys, for the summary.
    pub fn release(&self, release: ReleaseSummary, result: SummaryResult, detail: String) {
        self.lock().fold.release(release, result, detail);
    }

    /// The release's report, for people (stdout, text output only).
    pub fn release_report(&self, text: &str) {
        if self.json() {
            return;
        }
        self.flush_held();
        self.clear_status();
        out!("{text}");
    }

    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    /// Which command and service the summary describes.
    pub fn begin(&self, command: &str, service: Option<&str>) {
        self.lock().fold.begin(command, service);
    }

    /// The command being run, before anything else is known: a failure of a command
    /// whose stdout can carry JSON is reported as a JSON document even when it fails
    /// before the command gets going (a missing config, a bad service name).
    pub fn begin_command(&self, command: &str, service: Option<&str>) {
        if JSON_COMMANDS.contains(&command) {
            self.lock().fold.begin(command, service);
        }
    }

    /// Arguments the parser refused, under `--output json`: the failure as the JSON
    /// document every other failure gives, and the parser's words on stderr.
    pub fn refused_arguments(&self, command: &str, error: &str, rendered: &str) {
        errln!("{}", rendered.trim_end());
        self.lock().fold.begin(command, None);
        self.finish_quietly(Outcome::BadInput, error);
    }

    /// Report the calls these clients make in the summary.
    pub fn count_calls(&self, calls: CallCounter) {
        self.lock().calls = Some(calls);
    }

    /// Keep the status line's countdown moving while a run is under way.
    pub fn start_ticker(self: &Arc<Self>) {
        if !self.live {
            return;
        }
        // Weak, so the ticker ends with the invocation instead of keeping it alive.
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
        let text = match &self.scope {
            Some(scope) => format!("[{scope}] {text}"),
            None => text,
        };
        match self.log_format {
            LogFormat::Json => trace::line(&text),
            LogFormat::Plain => self.print_line(&text),
        }
    }

    /// A warning from the CLI or a part it drives (a repaired journal).
    pub fn warn(&self, text: &str) {
        let text = self.secrets.scrub(text);
        let text = match &self.scope {
            Some(scope) => format!("[{scope}] {text}"),
            None => text,
        };
        match self.log_format {
            LogFormat::Json => trace::warning(&text),
            LogFormat::Plain => self.print_line(&format!("warning: {text}")),
        }
    }

    /// A plugin's log line: scrubbed of known secrets and escaped onto one line, so a
    /// plugin can neither leak what the host knows nor forge a line of deployer's own
    /// (or a CI workflow command).
    pub fn plugin_log(&self, plugin: &str, level: &str, message: &str) {
        let (plugin, message) = (printable(plugin), printable(message));
        self.line(&format!("[plugin {plugin}] {level}: {message}"));
    }

    /// Take in one engine event.
    pub fn event(&self, event: &Event<'_>) {
        let scrub = |text: &str| self.secrets.scrub(text);
        {
            let mut state = self.lock();
            let calls_now = state.calls.as_ref().map(CallCounter::total);
            let now = Instant::now();
            state.fold.apply(event, calls_now, now, &scrub);
            if self.live {
                state.live.apply(event, now);
            }
        }
        if let Event::AwaitingApproval {
            service,
            until_ms,
            continues,
        } = event
        {
            self.awaiting_approval(&scrub(&event.to_string()), service, *until_ms, *continues);
        }
        match self.log_format {
            LogFormat::Json => trace::event(event, &scrub),
            LogFormat::Plain => {
                let Some(text) = plain::event_text(event, &scrub) else {
                    return;
                };
                let text = match &self.scope {
                    Some(scope) => format!("[{scope}] {text}"),
                    None => text,
                };
                match event {
                    // Held until the report says it or anything else is logged.
                    Event::Finished { id, .. } if self.one_stream => {
                        let mut state = self.lock();
                        let earlier = state.held.replace((id.to_string(), text));
                        drop(state);
                        if let Some((id, line)) = earlier {
                            self.log_result(&id, &line);
                        }
                    }
                    Event::Finished { id, .. } => self.log_result(id, &text),
                    _ => self.print_line(&text),
                }
            }
        }
    }

    /// In GitHub Actions, a run waiting for approval says so where people look while the
    /// job runs: a notice in the log, and a note in the step summary (shown with the
    /// job's other summaries).
    fn awaiting_approval(&self, text: &str, service: &str, until_ms: u64, continues: bool) {
        if !self.github {
            return;
        }
        // On stdout as the runner expects, unless stdout carries the JSON summary.
        if self.json() {
            errln!("{}", github::approval_notice(text));
        } else {
            outln!("{}", github::approval_notice(text));
        }
        if let Some(path) = &self.step_summary {
            let note = github::approval_summary(service, until_ms, continues);
            let _ = append_regular(path, note.as_bytes());
        }
    }

    /// An earlier deployment's result (one rolled back before this run began), on
    /// stdout unless the log, on the same stream, said it already.
    pub fn earlier(&self, report: &Report) {
        if self.scope.is_some() {
            let scrub = |text: &str| self.secrets.scrub(text);
            return self.line(&plain::result_line(report, &scrub));
        }
        if self.one_stream && self.lock().logged.contains(&report.id) {
            return;
        }
        let scrub = |text: &str| self.secrets.scrub(text);
        self.say(&plain::result_line(report, &scrub));
    }

    /// The final report of an engine run, for people (stdout, text output only).
    pub fn report(&self, report: &Report) {
        if self.json() || self.scope.is_some() {
            return;
        }
        // The report's first line is the held result line: said once, here.
        {
            let mut state = self.lock();
            if state.held.as_ref().is_some_and(|(id, _)| *id == report.id) {
                state.held = None;
            }
        }
        self.flush_held();
        self.clear_status();
        let scrub = |text: &str| self.secrets.scrub(text);
        let text = plain::final_report(
            report,
            self.lock().fold.summary(),
            self.started.elapsed(),
            &scrub,
        );
        out!("{text}");
    }

    /// The release `--image` made, for the summary.
    pub fn image_release(&self, made: &ImageRelease) {
        let scrub = |text: &str| self.secrets.scrub(text);
        self.lock()
            .fold
            .image_release(summary::ImageReleaseSummary {
                made: match made.made {
                    Made::Registered => summary::ImageMade::Registered,
                    Made::Reused => summary::ImageMade::Reused,
                    Made::Live => summary::ImageMade::Live,
                    Made::Image => summary::ImageMade::Image,
                },
                release: scrub(&made.release),
                from: scrub(&made.from),
                images: scrub(&made.images),
            });
    }

    /// A plain message on stdout (text output only).
    pub fn say(&self, text: &str) {
        if self.scope.is_some() {
            return self.line(text);
        }
        if !self.json() {
            self.clear_status();
            outln!("{}", self.secrets.scrub(text));
        }
    }

    /// The end of the invocation: the JSON summary, CI annotations and step summary.
    pub fn finish(&self, outcome: Outcome, error: Option<&anyhow::Error>) {
        self.flush_held();
        self.clear_status();
        // Each cause once: many errors quote their cause, which `{:#}` repeats.
        let error_text = error.map(|e| {
            self.secrets
                .scrub(&deployer_engine::describe::error_chain(e.as_ref()))
        });
        if let Some(text) = &error_text {
            errln!("error: {}", own_lines(text));
        }
        let summary = {
            let mut state = self.lock();
            let calls = state.calls.as_ref().map(CallCounter::snapshot);
            state.fold.close(
                outcome,
                error_text.as_deref(),
                calls,
                self.started.elapsed(),
            )
        };
        let deployment = DEPLOYMENT_COMMANDS.contains(&summary.command.as_str());
        if !deployment && error.is_none() {
            // Not a deployment command, and it printed its own output: nothing to add.
            return;
        }
        if self.json() {
            match serde_json::to_string_pretty(&summary) {
                Ok(json) => outln!("{json}"),
                Err(err) => errln!("error: cannot write the summary: {err}"),
            }
        }
        if self.github {
            let config_errors =
                error.and_then(|e| e.chain().find_map(|c| c.downcast_ref::<ConfigErrors>()));
            let scrub = |text: &str| self.secrets.scrub(text);
            for line in github::annotations(&summary, config_errors, &scrub) {
                // On stdout as the runner expects, unless stdout carries the JSON summary.
                if self.json() {
                    errln!("{line}");
                } else {
                    outln!("{line}");
                }
            }
            if let Some(path) = &self.step_summary {
                // Without blocking, and only into a regular file: a FIFO there would
                // hold the process forever after the deployment has ended.
                let written = append_regular(path, github::step_summary(&summary).as_bytes());
                if let Err(err) = written {
                    errln!(
                        "deployer: cannot write the step summary {}: {err}",
                        path.display()
                    );
                }
            }
        }
    }

    /// The JSON document for a failure, with no stderr line or CI annotations (the
    /// caller printed the error itself).
    fn finish_quietly(&self, outcome: Outcome, error: &str) {
        let summary = self
            .lock()
            .fold
            .close(outcome, Some(error), None, self.started.elapsed());
        if let Ok(json) = serde_json::to_string_pretty(&summary) {
            outln!("{json}");
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not also silence the report of what the run did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Log a deployment's result line, and remember it was logged.
    fn log_result(&self, id: &str, line: &str) {
        self.print_line(line);
        self.lock().logged.push(id.to_string());
    }

    /// Log the held result line, if any: something else is being said first, so the
    /// report will not open with it.
    fn flush_held(&self) {
        let held = self.lock().held.take();
        if let Some((id, line)) = held {
            self.log_result(&id, &line);
        }
    }

    fn print_line(&self, text: &str) {
        self.flush_held();
        // State before stderr, everywhere, so the ticker and a log line cannot deadlock.
        let mut state = self.lock();
        let mut stderr = std::io::stderr().lock();
        if self.live
            && let Some(wipe) = state.live.wipe()
        {
            let _ = stderr.write_all(wipe.as_bytes());
        }
        let _ = stderr.write_all(plain::log_line(text).as_bytes());
        self.draw(&mut state, &mut stderr);
    }

    fn redraw(&self) {
        if !self.live {
            return;
        }
        let mut state = self.lock();
        self.draw(&mut state, &mut std::io::stderr().lock());
    }

    fn draw(&self, state: &mut State, stderr: &mut impl Write) {
        if !self.live {
            return;
        }
        let traffic = state.fold.summary().traffic_new_percent;
        if let Some(line) = state.live.redraw(traffic, Instant::now()) {
            let _ = stderr.write_all(line.as_bytes());
            let _ = stderr.flush();
        }
    }

    fn clear_status(&self) {
        if !self.live {
            return;
        }
        if let Some(wipe) = self.lock().live.clear() {
            let _ = std::io::stderr().write_all(wipe.as_bytes());
        }
    }
}

/// Append `bytes` to `path` without blocking, and only into a regular file: a FIFO there
/// would hold the process forever after the deployment has ended.
fn append_regular(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::same_stream;

    /// `2>&1`, or the same terminal twice, is one stream; two files are two.
    #[test]
    fn one_stream_is_told_from_two() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let dup = log.try_clone().unwrap();
        let reopened = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("log"))
            .unwrap();
        let other = std::fs::File::create(dir.path().join("other")).unwrap();
        assert!(same_stream(&log, &dup));
        assert!(same_stream(&log, &reopened));
        assert!(!same_stream(&log, &other));
    }
}
