//! `deployer abort` and `deployer promote`: a person acting on a running deployment from
//! another shell, another CI job or another machine that reaches the same state. The
//! command leaves a signal in the state backend (local files, or S3 for the `aws`
//! backend); the run looks for it at every step and every watch interval, journals it,
//! then acts. The command waits until the journal shows the run acted, so it can say so.

use std::path::Path;
use std::time::Duration;

use deployer_engine::describe;
use deployer_engine::events::short_release;
use deployer_engine::redact::printable;
use deployer_engine::state::{Lease, Signal, SignalKind, StateError, Store as _};

use super::report::Reporter;
use super::setup;
use super::status::releases;
use crate::config::{Config, ConfigErrors};
use crate::exit::Outcome;

/// How often the command reads the journal while it waits for the run to act.
const POLL: Duration = Duration::from_millis(500);

/// Send `kind` to the running deployment of `service` and wait (up to two watch
/// intervals and ten seconds) for the run to act on it.
pub async fn signal(
    reporter: &std::sync::Arc<Reporter>,
    config_path: &Path,
    service: Option<&str>,
    kind: SignalKind,
    reason: Option<String>,
) -> anyhow::Result<Outcome> {
    let verb = kind.slot();
    reporter.begin(verb, service);
    let config = Config::load(config_path)?;
    let (service_name, service) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    reporter.begin(verb, Some(service_name));
    let clients = setup::clients(&config).await?;
    let store = setup::store(&config, &clients, reporter);
    setup::check_state_files(&store, service_name)?;
    let name = printable(service_name);
    let nothing = |why: String| {
        reporter.say(&format!("nothing to {verb}: {why}"));
        Ok(Outcome::Success)
    };
    let Some(journal) = store.active(service_name).await? else {
        return nothing(format!("no deployment of `{name}` is running"));
    };
    let id = journal.id().unwrap_or("?").to_string();
    let (_, new) = releases(&journal);
    if let Some((release, until_ms)) = journal.warm_side() {
        return nothing(format!(
            "deployment {id} promoted {} ({} stays warm until {}); to undo it: \
             `deployer rollback --service {name}`",
            short_release(&new),
            short_release(release),
            describe::utc(until_ms)
        ));
    }
    if journal.finished().is_some() {
        return nothing(format!("deployment {id} has ended"));
    }
    // A run carrying it on holds the service's lock. If the lock is free, the run died:
    // no signal would be read.
    match store.lock(service_name, &format!("{verb}-check")).await {
        Ok(lock) => {
            lock.release().await;
            reporter.say(&format!(
                "deployment {id} of `{name}` is unfinished but no deployer is running it (it \
                 was killed or lost its machine); `deployer rollback --service {name}` rolls \
                 it back now, and the next `deployer run` recovers it"
            ));
            return Ok(Outcome::Error);
        }
        Err(StateError::Locked { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    let signal = Signal::new(&id, kind, reason);
    store.send(service_name, &signal).await?;
    let wait = service.watch_interval * 2 + Duration::from_secs(10);
    reporter.say(&format!(
        "asked deployment {id} of `{name}` to {verb} ({}); waiting up to {} for it to act",
        signal.by,
        describe::duration(wait)
    ));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let journal = store.read(service_name, &id).await?;
        if journal.signals().any(|s| s.id == signal.id) {
            reporter.say(&match kind {
                SignalKind::Abort => format!(
                    "deployment {id} is rolling back: {}; follow it with `deployer status \
                     --service {name} --watch`",
                    signal.describe()
                ),
                SignalKind::Promote { .. } => {
                    format!("deployment {id} goes on: {}", signal.describe())
                }
            });
            return Ok(Outcome::Success);
        }
        if let Some((result, detail)) = journal.finished() {
            reporter.say(&format!(
                "deployment {id} ended before it read the {verb}: {}: {}",
                deployer_engine::events::result_word(result),
                printable(detail)
            ));
            return Ok(match kind {
                SignalKind::Abort if result == deployer_engine::state::DeployResult::Promoted => {
                    Outcome::Error
                }
                _ => Outcome::Success,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    match kind {
        // A run acts on a promote only while it waits (a bake, an approval pause).
        SignalKind::Promote { .. } => {
            reporter.say(&format!(
                "deployment {id} is not waiting now; it ends its next bake or approval pause \
                 at once"
            ));
            Ok(Outcome::Success)
        }
        SignalKind::Abort => {
            reporter.say(&format!(
                "deployment {id} did not act on the abort within {}: the run may be stopped \
                 or cut off from the state backend. The abort stays: the run acts on it when \
                 it looks again",
                describe::duration(wait)
            ));
            Ok(Outcome::Error)
        }
    }
}
