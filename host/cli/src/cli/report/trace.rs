//! `--log-format json`: events and the CLI's own lines as `tracing` records under the
//! `deployer` target, with an event's fields alongside its text, for log pipelines.

use deployer_engine::describe;
use deployer_engine::events::{Event, result_word};

/// An event as a `tracing` record with its fields.
pub fn event(event: &Event<'_>, scrub: &dyn Fn(&str) -> String) {
    let message = scrub(&event.to_string());
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

/// A progress line from the CLI itself, already redacted.
pub fn line(text: &str) {
    tracing::info!(target: "deployer", "{text}");
}

/// A warning from the CLI itself, already redacted.
pub fn warning(text: &str) {
    tracing::warn!(target: "deployer", "{text}");
}
