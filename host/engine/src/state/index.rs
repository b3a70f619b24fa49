//! What the bounded history queries answer: one line per finished deployment
//! ([`Summary`]), a page of them ([`Page`]), and the two a rollback or `status` needs
//! ([`Latest`]).
//!
//! A store answers these without reading every past deployment: the S3 backend keeps
//! one small object per finished deployment, numbered 1, 2, 3… in the order they
//! finished (under the service lock), and a `latest` object naming the newest finished
//! and the newest promoted one. Numbers are contiguous, so a page is a known set of
//! keys and a missing one is noticed instead of silently shortening the history.

use serde::{Deserialize, Serialize};

use super::{DeployResult, Journal, Record, StateError, Store, names};
use crate::redact::printable;

/// A finished deployment, as the history lists it. Written once it has finished, from
/// its journal's first and last record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    /// Its place in the service's history: 1 for the first deployment that finished.
    pub number: u64,
    pub id: String,
    pub result: DeployResult,
    pub strategy: String,
    pub new_release: String,
    #[serde(default)]
    pub stable_release: Option<String>,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub detail: String,
    /// The deployment this one undid (`deployer rollback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoes: Option<String>,
}

impl Summary {
    /// The summary of a finished journal as deployment `number`; `None` when it has no
    /// start or no end.
    pub fn of(journal: &Journal, number: u64) -> Option<Summary> {
        let finished_ms = journal.records.iter().rev().find_map(|r| match r {
            Record::Finished { at_ms, .. } => Some(*at_ms),
            _ => None,
        })?;
        let (result, detail) = journal.finished()?;
        Summary::begun(journal.started()?, number, result, detail, finished_ms)
    }

    /// The summary of the deployment `started` begins, ending as `result`.
    pub fn begun(
        started: &Record,
        number: u64,
        result: DeployResult,
        detail: &str,
        finished_ms: u64,
    ) -> Option<Summary> {
        let Record::Started {
            id,
            strategy,
            new_release,
            stable_release,
            at_ms,
            undoes,
            ..
        } = started
        else {
            return None;
        };
        Some(Summary {
            number,
            id: id.clone(),
            result,
            strategy: strategy.clone(),
            new_release: new_release.clone(),
            stable_release: stable_release.clone(),
            started_ms: *at_ms,
            finished_ms,
            detail: detail.to_string(),
            undoes: undoes.clone(),
        })
    }

    /// What makes this summary one deployer cannot have written, if anything: read from
    /// a store anyone with write access could have edited, it is checked before use.
    pub fn damage(&self) -> Option<String> {
        if !names::valid_id(&self.id) {
            return Some(format!("`{}` is not a deployment id", printable(&self.id)));
        }
        if let Some(undone) = &self.undoes
            && !names::valid_id(undone)
        {
            return Some(format!(
                "it undoes `{}`, which is not a deployment id",
                printable(undone)
            ));
        }
        (self.number == 0).then(|| "it is numbered 0; deployments are numbered from 1".into())
    }
}

/// Finished deployments, newest first, and whether older ones remain.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    pub entries: Vec<Summary>,
    /// Deployments older than the last entry exist: ask again with `before` its number.
    pub more: bool,
}

/// The newest finished deployment and the newest promoted one (the same when the newest
/// was promoted): what `status` shows as live and `rollback` starts from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    pub finished: Option<Summary>,
    pub promoted: Option<Summary>,
}

impl Latest {
    /// `latest` after `summary` finished: it is the newest; the newest promoted one
    /// changes only if it was promoted.
    #[must_use]
    pub fn after(self, summary: Summary) -> Latest {
        let promoted = if summary.result == DeployResult::Promoted {
            Some(summary.clone())
        } else {
            // Finished again (its paperwork redone) with another ending: it is no longer
            // the newest promoted one.
            self.promoted.filter(|p| p.id != summary.id)
        };
        Latest {
            finished: Some(summary),
            promoted,
        }
    }

    /// The number the deployment `id` gets when it finishes now: its own when it is the
    /// newest already (its paperwork is being redone), else the next.
    pub fn number_for(&self, id: &str) -> u64 {
        match &self.finished {
            Some(newest) if newest.id == id => newest.number,
            Some(newest) => newest.number + 1,
            None => 1,
        }
    }

    /// What makes this one that deployer cannot have written, if anything.
    pub fn damage(&self) -> Option<String> {
        for (what, summary) in [("newest", &self.finished), ("promoted", &self.promoted)] {
            if let Some(reason) = summary.as_ref().and_then(Summary::damage) {
                return Some(format!("its {what} deployment: {reason}"));
            }
        }
        match (&self.finished, &self.promoted) {
            (_, Some(p)) if p.result != DeployResult::Promoted => Some(format!(
                "it names {} as promoted, but it ended otherwise",
                p.id
            )),
            (None, Some(_)) => {
                Some("it names a promoted deployment but no newest finished one".into())
            }
            (Some(f), Some(p)) if p.number > f.number => Some(format!(
                "the promoted deployment is number {}, after the newest ({})",
                p.number, f.number
            )),
            _ => None,
        }
    }
}

/// The journal of deployment `summary`, which the history index of `service` names,
/// checked to be what the index says: a deployment that ended as the index says.
///
/// # Errors
/// Backend errors, a damaged journal, or [`StateError::Index`] when the journal and the
/// index disagree.
pub async fn journal_of<S: Store>(
    store: &S,
    service: &str,
    summary: &Summary,
) -> Result<Journal, StateError> {
    let journal = store.read(service, &summary.id).await?;
    let found = journal.finished().map(|(result, _)| result);
    if found != Some(summary.result) || journal.id() != Some(summary.id.as_str()) {
        return Err(StateError::Index {
            location: format!("of service `{service}`"),
            head: format!("`services/{service}/latest.json` under the state's S3 prefix"),
            reason: format!(
                "entry {} says deployment {} ended {}, but its journal {}",
                summary.number,
                summary.id,
                result_word(summary.result),
                match found {
                    Some(result) => format!("says it ended {}", result_word(result)),
                    None => "has no end record".into(),
                }
            ),
        });
    }
    Ok(journal)
}

fn result_word(result: DeployResult) -> &'static str {
    match result {
        DeployResult::Promoted => "promoted",
        DeployResult::RolledBack => "rolled back",
        DeployResult::RollbackFailed => "with its rollback failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(number: u64, id: &str, result: DeployResult) -> Summary {
        Summary {
            number,
            id: id.into(),
            result,
            strategy: "canary".into(),
            new_release: format!("web:{number}"),
            stable_release: None,
            started_ms: number,
            finished_ms: number,
            detail: String::new(),
            undoes: None,
        }
    }

    #[test]
    fn the_newest_promoted_survives_later_rollbacks_and_a_redone_ending_keeps_its_number() {
        let promoted = summary(1, "d-1", DeployResult::Promoted);
        let latest = Latest::default().after(promoted.clone());
        assert_eq!(latest.number_for("d-2"), 2);
        let rolled = summary(2, "d-2", DeployResult::RolledBack);
        let latest = latest.after(rolled.clone());
        assert_eq!(latest.finished, Some(rolled));
        assert_eq!(latest.promoted, Some(promoted));
        assert_eq!(latest.number_for("d-2"), 2, "its paperwork redone");
        assert_eq!(latest.damage(), None);
    }

    #[test]
    fn an_edited_latest_is_damaged() {
        let mut latest = Latest {
            finished: Some(summary(1, "d-1", DeployResult::RolledBack)),
            promoted: Some(summary(1, "d-1", DeployResult::RolledBack)),
        };
        assert!(latest.damage().unwrap().contains("ended otherwise"));
        latest.promoted = Some(summary(5, "d-5", DeployResult::Promoted));
        assert!(latest.damage().unwrap().contains("after the newest"));
        latest.promoted = Some(summary(1, "../x", DeployResult::Promoted));
        assert!(latest.damage().unwrap().contains("not a deployment id"));
    }
}
