//! `deployer status`: what is live and what is in progress, from the journal.

use std::path::Path;

use deployer_contract::Step;
use deployer_engine::describe;
use deployer_engine::events::short_release;
use deployer_engine::redact::printable;
use deployer_engine::safety::SafetyGuard;
use deployer_engine::state::journal::RollbackAction;
use deployer_engine::state::{Action, DeployResult, Journal, Record, Store};

use super::report::Reporter;
use super::setup;
use crate::config::{Config, ConfigErrors, ServiceConfig};
use crate::exit::Outcome;

/// What `status` shows.
#[derive(Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StatusView {
    pub(super) service: String,
    /// `idle` or `deploying`.
    state: &'static str,
    /// The release deployer last promoted.
    live: Option<String>,
    live_deployment: Option<String>,
    in_progress: Option<InProgress>,
    /// The previous release, kept at full size without traffic after the live one was
    /// promoted (`scale-down-delay`).
    kept_warm: Option<KeptWarm>,
    /// The newest deployment's rollback failed: traffic may still be split.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback_failed: Option<RollbackFailed>,
}

#[derive(Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RollbackFailed {
    deployment: String,
    new_release: String,
    detail: String,
}

#[derive(Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct KeptWarm {
    release: String,
    /// When it is due to be scaled down (UTC).
    until: String,
    until_ms: u64,
}

#[derive(Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct InProgress {
    deployment: String,
    new_release: String,
    stable_release: String,
    traffic_new_percent: u8,
    /// A traffic shift journaled but not recorded done: the weights may already be
    /// this, or still the verified share, or (mid-call) in between.
    traffic_shifting_to: Option<u8>,
    rolling_back: Option<String>,
    last_step: Option<String>,
    /// An action journaled but not recorded done: where a killed run died.
    in_flight: Option<String>,
}

/// The stable and new release a journal records (empty when it does not say).
pub fn releases(journal: &Journal) -> (String, String) {
    match journal.started() {
        Some(Record::Started {
            new_release,
            stable_release,
            ..
        }) => (
            stable_release.clone().unwrap_or_default(),
            new_release.clone(),
        ),
        _ => (String::new(), String::new()),
    }
}

pub(super) async fn status_view(
    store: &impl Store,
    service_name: &str,
    service: &ServiceConfig,
) -> anyhow::Result<StatusView> {
    let active = store.active(service_name).await?;
    let warm = active.as_ref().and_then(|journal| {
        let (release, until_ms) = journal.warm_side()?;
        Some((
            journal.id().unwrap_or("?").to_string(),
            short_release(&releases(journal).1).to_string(),
            KeptWarm {
                release: short_release(release).to_string(),
                until: describe::utc(until_ms),
                until_ms,
            },
        ))
    });
    let active = active.filter(|journal| journal.warm_side().is_none());
    let in_progress = active.map(|journal| {
        let (stable, new) = releases(&journal);
        let guard = SafetyGuard::replay(&journal, &Config::target_info(service));
        InProgress {
            deployment: journal.id().unwrap_or("?").to_string(),
            new_release: short_release(&new).to_string(),
            stable_release: short_release(&stable).to_string(),
            traffic_new_percent: guard.new_percent,
            traffic_shifting_to: shifting_to(&journal, guard.new_percent),
            rolling_back: journal.rollback_reason().map(str::to_string),
            last_step: journal.history().last().map(|r| describe::step(&r.step)),
            in_flight: journal
                .in_flight()
                .map(|(_, action)| describe::action(action)),
        }
    });
    // One object of the history index, not the whole history.
    let latest = store.latest(service_name).await?;
    // "idle" alone would hide that the newest deployment could not put traffic back.
    let rollback_failed = latest
        .finished
        .filter(|s| s.result == DeployResult::RollbackFailed && in_progress.is_none())
        .map(|s| RollbackFailed {
            deployment: s.id,
            new_release: short_release(&s.new_release).to_string(),
            detail: s.detail,
        });
    let live = latest.promoted;
    let (live, live_deployment, kept_warm) = match warm {
        Some((id, release, kept)) => (Some(release), Some(id), Some(kept)),
        None => (
            live.as_ref()
                .map(|s| short_release(&s.new_release).to_string()),
            live.map(|s| s.id),
            None,
        ),
    };
    Ok(StatusView {
        service: service_name.to_string(),
        state: if in_progress.is_some() {
            "deploying"
        } else {
            "idle"
        },
        live,
        live_deployment,
        in_progress,
        kept_warm,
        rollback_failed,
    })
}

/// The share a shift in flight is moving traffic to, when it differs from the verified
/// one: a run that died mid-shift may have left the weights at either, or between.
fn shifting_to(journal: &Journal, verified: u8) -> Option<u8> {
    match journal.in_flight() {
        Some((_, Action::Step(Step::ShiftTraffic(p))))
        | Some((_, Action::Rollback(RollbackAction::ShiftTraffic(p))))
            if *p != verified =>
        {
            Some(*p)
        }
        _ => None,
    }
}

pub(super) fn render_status(view: &StatusView) -> String {
    // Releases, reasons and ids come from the journal, which anyone with write access
    // to the state could have edited: each is escaped onto its line.
    let p = |text: &str| printable(text).into_owned();
    let mut out = format!("service: {}\n", p(&view.service));
    match &view.in_progress {
        Some(progress) => {
            out += &format!(
                "state:   deploying {} over {} (deployment {})\n",
                p(&progress.new_release),
                p(&progress.stable_release),
                p(&progress.deployment)
            );
            out += &format!(
                "traffic: {}% new / {}% stable",
                progress.traffic_new_percent,
                100u8.saturating_sub(progress.traffic_new_percent)
            );
            match progress.traffic_shifting_to {
                Some(to) => {
                    out += &format!(
                        " (verified), moving to {to}% new: the load balancer may already show it\n"
                    );
                }
                None => out += "\n",
            }
            if let Some(reason) = &progress.rolling_back {
                out += &format!("rolling back: {}\n", p(reason));
            }
            out += &format!(
                "last step: {}\n",
                p(progress.last_step.as_deref().unwrap_or("none yet"))
            );
            if let Some(action) = &progress.in_flight {
                out += &format!(
                    "in flight: {} (a run that died here is recovered by the next run or rollback)\n",
                    p(action)
                );
            }
        }
        None => out += "state:   idle\n",
    }
    if let Some(failed) = &view.rollback_failed {
        out += &format!(
            "ROLLBACK FAILED: deployment {} of {}: {}\n  traffic may still reach {}; run `deployer rollback` to finish putting it back\n",
            p(&failed.deployment),
            p(&failed.new_release),
            p(&failed.detail),
            p(&failed.new_release)
        );
    }
    match (&view.live, &view.live_deployment) {
        (Some(release), Some(id)) => {
            out += &format!("live:    {} (deployment {})\n", p(release), p(id));
        }
        _ => out += "live:    not deployed by deployer yet\n",
    }
    if let Some(kept) = &view.kept_warm {
        let due = if kept.until_ms <= deployer_engine::state::local::now_ms() {
            format!("was due to be scaled down at {}", p(&kept.until))
        } else {
            format!("until {}", p(&kept.until))
        };
        out += &format!(
            "warm:    {} at full size without traffic, {due}: while it is up, `deployer \
             rollback` moves traffic back to it without scaling; the next `deployer run` on the \
             service, or `deployer tidy`, scales it down\n",
            p(&kept.release),
        );
    }
    out
}

/// What is live and what is in progress, from the journal; with `watch`, refreshed
/// every `interval` until interrupted (on a terminal the screen is redrawn; otherwise a
/// new block is printed only when something changed).
pub async fn status(
    reporter: &std::sync::Arc<Reporter>,
    config_path: &Path,
    service: Option<&str>,
    watch: Option<std::time::Duration>,
) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let (service_name, service) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    let clients = setup::clients(&config).await?;
    let store = setup::store(&config, &clients, reporter);
    // `status_view` reads the journal and history next, before anything else.
    setup::check_state_files(&store, service_name)?;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last = None;
    loop {
        let view = status_view(&store, service_name, service).await?;
        if last.as_ref() != Some(&view) {
            if reporter.json() {
                outln!("{}", serde_json::to_string(&view)?);
            } else {
                if watch.is_some() && terminal {
                    out!("\x1b[H\x1b[2J");
                } else if last.is_some() {
                    outln!();
                }
                out!("{}", render_status(&view));
            }
            last = Some(view);
        }
        let Some(interval) = watch else {
            return Ok(Outcome::Success);
        };
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Outcome::Success),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deployer_contract::StepOutcome;

    #[test]
    fn a_shift_in_flight_is_shown_with_where_it_is_going_in_words() {
        let journal = Journal {
            records: vec![
                Record::Intent {
                    seq: 0,
                    action: Action::Step(Step::ShiftTraffic(10)),
                },
                Record::Done {
                    seq: 0,
                    outcome: StepOutcome::Done,
                },
                Record::Intent {
                    seq: 1,
                    action: Action::Step(Step::ShiftTraffic(50)),
                },
            ],
        };
        assert_eq!(shifting_to(&journal, 10), Some(50));
        let view = StatusView {
            service: "web".into(),
            state: "deploying",
            live: Some("web:1".into()),
            live_deployment: Some("d0".into()),
            in_progress: Some(InProgress {
                deployment: "d1".into(),
                new_release: "web:2".into(),
                stable_release: "web:1".into(),
                traffic_new_percent: 10,
                traffic_shifting_to: shifting_to(&journal, 10),
                rolling_back: None,
                last_step: None,
                in_flight: journal.in_flight().map(|(_, a)| describe::action(a)),
            }),
            kept_warm: None,
            rollback_failed: None,
        };
        let text = render_status(&view);
        assert!(
            text.contains("traffic: 10% new / 90% stable (verified), moving to 50% new"),
            "{text}"
        );
        assert!(
            text.contains("in flight: shift traffic: 50% new / 50% stable"),
            "{text}"
        );
        assert!(!text.contains("ShiftTraffic"), "no Debug dump: {text}");
        // Done, nothing in flight: nothing to add.
        let settled = Journal {
            records: journal.records[..2].to_vec(),
        };
        assert_eq!(shifting_to(&settled, 10), None);
    }
}
