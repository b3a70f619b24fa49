//! Plain text for people: an event's line in the stderr log, and the final report of an
//! engine run on stdout. Pure: the reporter prints what these return.

use std::fmt::Write as _;
use std::time::Duration;

use deployer_engine::events::{Event, outcome};
use deployer_engine::redact::printable;
use deployer_engine::rollout::Report;
use deployer_engine::state::DeployResult;

use super::summary::Summary;

/// A line of the stderr log, prefixed so it stands apart from the tools CI runs around it.
pub fn log_line(text: &str) -> String {
    // One line whatever the text holds: a release, a reason or an AWS message with a
    // newline or an escape sequence cannot start a line of its own or move the cursor.
    format!("deployer: {}\n", printable(text))
}

/// An event's text in the log, redacted; `None` for events the log leaves out.
pub fn event_text(event: &Event<'_>, scrub: &dyn Fn(&str) -> String) -> Option<String> {
    (!event.is_quiet()).then(|| scrub(&event.to_string()))
}

/// A deployment's result on one line: `deployment ID: rolled back to web:2: …`.
pub fn result_line(report: &Report, scrub: &dyn Fn(&str) -> String) -> String {
    let text = format!(
        "deployment {}: {}",
        report.id,
        outcome(report.result, &report.detail)
    );
    printable(&scrub(&text)).into_owned()
}

/// The final report of an engine run. `summary` is the fold of the run's events and
/// `took` the time since the invocation started.
pub fn final_report(
    report: &Report,
    summary: &Summary,
    took: Duration,
    scrub: &dyn Fn(&str) -> String,
) -> String {
    // Every value here came from outside (releases, strategy names, reasons): each is
    // escaped onto its line.
    let p = |text: &str| printable(text).into_owned();
    let scrub = |text: &str| p(&scrub(text));
    let mut out = String::new();
    if let Some(old) = &report.recovered {
        let _ = writeln!(out, "recovered unfinished deployment {}", p(old));
    }
    let _ = writeln!(out, "{}", result_line(report, &scrub));
    if let Some(new) = &summary.new_release {
        let _ = writeln!(
            out,
            "  release:  {} → {}{}",
            p(summary.stable_release.as_deref().unwrap_or("(nothing)")),
            p(new),
            // A recovered deployment's strategy is not reported again.
            summary
                .strategy
                .as_deref()
                .map_or(String::new(), |s| format!(" with {}", p(s)))
        );
    }
    if let Some(made) = &summary.image_release
        && let Some(how) = made.made.verb()
    {
        let _ = writeln!(
            out,
            "  image:    {how} {} from {} with image {}",
            p(&made.release),
            p(&made.from),
            scrub(&made.images)
        );
    }
    let on = |release: &Option<String>| {
        release
            .as_deref()
            .map_or_else(|| "the release it was deploying".into(), p)
    };
    let _ = match report.result {
        DeployResult::Promoted => writeln!(out, "  traffic:  100% on {}", on(&summary.new_release)),
        // Say where the claim comes from: a recovery may have found every action
        // journaled done and changed nothing, and only a read says what is live.
        DeployResult::RolledBack => match report.traffic_read_back {
            Some(new) => writeln!(
                out,
                "  traffic:  {}% on {} (stable), read back from the load balancer",
                100 - new,
                on(&summary.stable_release)
            ),
            None => writeln!(
                out,
                "  traffic:  on {} (stable), as the journal records it (not read back from the load balancer)",
                on(&summary.stable_release)
            ),
        },
        DeployResult::RollbackFailed => writeln!(
            out,
            "  traffic:  NOT SAFE: {}% may still reach {}; see `deployer status`",
            summary.traffic_new_percent.unwrap_or(100),
            on(&summary.new_release)
        ),
    };
    let _ = writeln!(
        out,
        "  took:     {} steps in {:.1}s",
        summary.steps.len(),
        took.as_secs_f64()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use deployer_contract::{Step, StepOutcome};

    #[test]
    fn quiet_events_have_no_log_line() {
        let scrub = |text: &str| text.replace("hunter2", "***");
        let done = StepOutcome::Done;
        let quiet = Event::StepDone {
            seq: 2,
            step: &Step::Promote,
            outcome: &done,
            new_percent: 100,
        };
        assert_eq!(event_text(&quiet, &scrub), None);
        let loud = Event::RollingBack {
            reason: "token hunter2 rejected",
        };
        assert_eq!(
            event_text(&loud, &scrub).as_deref(),
            Some("rolling back: token *** rejected")
        );
        assert_eq!(log_line("step 1: done"), "deployer: step 1: done\n");
    }

    #[test]
    fn a_failed_rollback_says_traffic_is_not_safe() {
        let report = Report {
            id: "d1".into(),
            result: DeployResult::RollbackFailed,
            detail: "could not shift traffic back".into(),
            recovered: Some("d0".into()),
            traffic_read_back: None,
        };
        let summary = Summary {
            new_release: Some("web:3".into()),
            stable_release: Some("web:2".into()),
            strategy: Some("canary".into()),
            traffic_new_percent: Some(25),
            ..Summary::default()
        };
        let text = final_report(
            &report,
            &summary,
            Duration::from_millis(1_300),
            &str::to_string,
        );
        assert_eq!(
            text,
            "recovered unfinished deployment d0\n\
             deployment d1: ROLLBACK FAILED: could not shift traffic back\n  \
             release:  web:2 → web:3 with canary\n  \
             traffic:  NOT SAFE: 25% may still reach web:3; see `deployer status`\n  \
             took:     0 steps in 1.3s\n"
        );
    }
}
