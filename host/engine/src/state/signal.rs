//! Signals: what a person asks of a running deployment from another process (`deployer
//! abort`, `deployer promote`), left in the state backend for the run to read.
//!
//! Each kind has its own slot, so a promote sent after an abort cannot hide it; a
//! signal names the deployment it is meant for (one left for a run that has ended is
//! ignored) and has an id, which the run journals when it acts on it, so a resumed run
//! does not act on it twice.

use serde::{Deserialize, Serialize};

/// A request to one running deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// Unique per request: the run acts on each once.
    pub id: String,
    /// The deployment it is meant for.
    pub deployment: String,
    #[serde(flatten)]
    pub kind: SignalKind,
    /// Who sent it, as the sender's environment says (`alice@build-7`,
    /// `octocat (GitHub Actions, org/repo run 123)`).
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SignalKind {
    /// Roll the deployment back now.
    Abort,
    /// End the bake or the approval pause in progress (or the next one) early;
    /// `full`: go straight to 100% and promotion, the remaining gates still running.
    Promote { full: bool },
}

impl SignalKind {
    /// The slot the signal is kept in: one per kind.
    pub fn slot(self) -> &'static str {
        match self {
            SignalKind::Abort => "abort",
            SignalKind::Promote { .. } => "promote",
        }
    }
}

impl Signal {
    /// A new signal for `deployment`, sent by whoever this process runs as.
    pub fn new(deployment: &str, kind: SignalKind, reason: Option<String>) -> Self {
        let at_ms = super::local::now_ms();
        Signal {
            id: format!("{at_ms:x}-{:08x}", random_u32()),
            deployment: deployment.to_string(),
            kind,
            by: sender(),
            reason,
            at_ms,
        }
    }

    /// "aborted by alice@build-7: bad latency" — what the run's report says.
    pub fn describe(&self) -> String {
        let verb = match self.kind {
            SignalKind::Abort => "aborted",
            SignalKind::Promote { full: false } => "promoted",
            SignalKind::Promote { full: true } => "promoted to 100%",
        };
        match &self.reason {
            Some(reason) => format!("{verb} by {}: {reason}", self.by),
            None => format!("{verb} by {}", self.by),
        }
    }
}

/// 32 random bits from the OS; without them (never seen on Linux) the clock's
/// nanoseconds and the process id still keep two senders apart.
fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        return nanos ^ std::process::id().rotate_left(16);
    }
    u32::from_le_bytes(bytes)
}

/// Who is sending: in GitHub Actions the actor and the run, elsewhere user@host.
pub fn sender() -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if var("GITHUB_ACTIONS").is_some() {
        let actor = var("GITHUB_ACTOR").unwrap_or_else(|| "someone".into());
        let run = match (var("GITHUB_REPOSITORY"), var("GITHUB_RUN_ID")) {
            (Some(repo), Some(run)) => format!(", {repo} run {run}"),
            _ => String::new(),
        };
        return format!("{actor} (GitHub Actions{run})");
    }
    let user = var("USER")
        .or_else(|| var("LOGNAME"))
        .unwrap_or_else(|| "someone".into());
    format!("{user}@{}", super::local::hostname())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip_and_differ() {
        let a = Signal::new(
            "web-1",
            SignalKind::Promote { full: true },
            Some("ok".into()),
        );
        let b = Signal::new(
            "web-1",
            SignalKind::Promote { full: true },
            Some("ok".into()),
        );
        assert_ne!(a.id, b.id);
        let text = serde_json::to_string(&a).unwrap();
        assert!(text.contains(r#""kind":"promote""#), "{text}");
        assert_eq!(serde_json::from_str::<Signal>(&text).unwrap(), a);
        assert!(
            a.describe().starts_with("promoted to 100% by "),
            "{}",
            a.describe()
        );
        assert!(a.describe().ends_with(": ok"));
    }
}
