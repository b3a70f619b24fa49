//! Journal records and what they tell about a deployment.

use serde::{Deserialize, Serialize};

use deployer_contract::{LifecyclePoint, ScaleRequest, Step, StepOutcome, StepRecord, TargetInfo};

/// One line of a deployment's journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Record {
    /// A deployment began. Everything needed to resume it is here.
    Started {
        id: String,
        service: String,
        strategy: String,
        strategy_digest: String,
        params: String,
        target: TargetInfo,
        new_release: String,
        stable_release: Option<String>,
        at_ms: u64,
        /// Set when this deployment is `deployer rollback` undoing deployment `undoes`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undoes: Option<String>,
        /// The target's own scaling as it was before this deployment suspended it
        /// (`Shape::scaling`): what every ending of the deployment, a recovery after a
        /// kill included, puts back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scaling: Option<serde_json::Value>,
        /// Healthy units the new side already had when the deployment began: a rollback
        /// onto a release kept warm after its deployment (`scale-down-delay`). The
        /// safety rules count them as the new side's, so traffic can move back without
        /// scaling anything.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warm_units: Option<u32>,
    },
    /// About to carry out an action (written and synced before acting).
    Intent { seq: u32, action: Action },
    /// The action was carried out and verified.
    Done { seq: u32, outcome: StepOutcome },
    /// What gate `gate` keeps between its runs (a hook's key/value store) changed to
    /// `state`; the last one per gate is given back to it when the run resumes.
    GateState {
        gate: String,
        state: serde_json::Value,
    },
    /// Step `seq`, an approval pause, waits until `until_ms` at the latest: written when
    /// the wait begins, so a resumed run waits for what is left, not afresh.
    Waiting { seq: u32, until_ms: u64 },
    /// A person's signal (`deployer abort`, `deployer promote`) this run acted on,
    /// written before acting: a resumed run does not act on it again.
    Signal { signal: super::Signal },
    /// Written before completing: the stable release's side (`release`) stays at full
    /// size, without traffic, until `until_ms` (`scale-down-delay`), so a rollback is a
    /// traffic flip. The deployment is promoted but stays unfinished (active) until that
    /// side is scaled down: by the next command on the service, by `deployer tidy`, or
    /// by a rollback that moves traffic back onto it.
    KeptWarm { release: String, until_ms: u64 },
    /// The rollout is being rolled back.
    RollbackStarted { reason: String, at_ms: u64 },
    /// The deployment ended.
    Finished {
        result: DeployResult,
        detail: String,
        at_ms: u64,
    },
}

/// An action the host takes: a strategy step, or one of its own rollback actions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Create the new side for a release.
    Prepare {
        release: String,
    },
    Step(Step),
    /// Gates of a point the strategy owed and did not ask for, run by the host (see
    /// `SafetyGuard::owed`). Not part of the strategy's history.
    HostGates(LifecyclePoint),
    Rollback(RollbackAction),
    /// Scale down the side a promoted deployment kept warm (see `Record::KeptWarm`).
    RetireWarm,
}

/// The host's rollback is fixed, not up to the strategy: stable back to full size,
/// traffic back to stable, then the new side down.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RollbackAction {
    Scale(ScaleRequest),
    ShiftTraffic(u8),
    /// Undo an in-place rolling update by rolling the stable release back out.
    RollingUndo,
    /// Remove what the rollout created for the new side.
    Discard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployResult {
    Promoted,
    RolledBack,
    RollbackFailed,
}

/// A deployment's journal, read back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Journal {
    pub records: Vec<Record>,
}

/// The most units a journal may name for one side: far above any target deployer
/// drives (the config allows 10,000), so only a damaged or forged journal exceeds it.
const MAX_JOURNAL_UNITS: u32 = 1_000_000;

impl Journal {
    /// Where and how the records fail to form a deployment deployer could have
    /// written, if they do: `(line, reason)`, lines counted from 1. A journal read from
    /// a store is checked with this before anything is concluded from it, so a cut or
    /// edited file is reported as damaged instead of read as a confident wrong answer.
    pub fn damage(&self, id: &str) -> Option<(usize, String)> {
        let mut intents = std::collections::BTreeSet::new();
        let mut done = std::collections::BTreeSet::new();
        let mut last_intent: Option<u32> = None;
        let mut promoted = false;
        let mut rolling_back = false;
        let mut finished = false;
        if self.records.is_empty() {
            return Some((1, "the journal has no records".into()));
        }
        for (i, record) in self.records.iter().enumerate() {
            let line = i + 1;
            // A run that finished but died before its history entry writes the end
            // record again when the next run finishes its paperwork: only that may
            // follow the end.
            if finished && !matches!(record, Record::Finished { .. }) {
                return Some((line, "a record after the deployment's end".into()));
            }
            let percent =
                |p: u8| (p > 100).then(|| format!("a traffic share of {p}%, outside 0–100%"));
            let units = |count: u32| {
                (count > MAX_JOURNAL_UNITS).then(|| {
                    format!("{count} units, more than the {MAX_JOURNAL_UNITS} any target takes")
                })
            };
            let problem = match record {
                Record::Started { id: started, .. } if i == 0 => (started != id).then(|| {
                    format!("it starts deployment `{started}` but is the journal of `{id}`")
                }),
                Record::Started { .. } => Some("a second start record".into()),
                _ if i == 0 => Some("the first record is not the deployment's start".into()),
                // Intents are numbered 0, 1, 2… as they are written (`next_seq`): a
                // gap, a repeat or a step back is an edit.
                Record::Intent { seq, .. } if *seq != last_intent.map_or(0, |s| s + 1) => {
                    Some(format!(
                        "step {seq} begins where step {} was next",
                        last_intent.map_or(0, |s| s + 1)
                    ))
                }
                // Before a rollback or a promotion, a step is begun only once the one
                // before it is done (a resumed run carries the open one out again, no
                // new intent). A rollback's actions, and the cleanup a promoted run
                // left (`complete_promoted`), are absolute and idempotent: one left
                // open by a kill or a failure is followed by the next.
                Record::Intent { .. }
                    if last_intent.is_some_and(|s| !done.contains(&s))
                        && !rolling_back
                        && !promoted =>
                {
                    Some(format!(
                        "a step begins while step {} is neither done nor rolled back",
                        last_intent.unwrap_or_default()
                    ))
                }
                Record::Intent { seq, action } => {
                    intents.insert(*seq);
                    last_intent = Some(*seq);
                    match action {
                        Action::Step(Step::ShiftTraffic(p))
                        | Action::Rollback(RollbackAction::ShiftTraffic(p)) => percent(*p),
                        Action::Step(Step::Scale(scale))
                        | Action::Rollback(RollbackAction::Scale(scale)) => units(scale.count),
                        _ => None,
                    }
                }
                Record::Done { seq, .. } if !intents.contains(seq) => {
                    Some(format!("step {seq} is done but was never begun"))
                }
                // Steps are carried out one at a time: only the newest can be finished.
                Record::Done { seq, .. } if Some(*seq) != last_intent => Some(format!(
                    "step {seq} is done after step {} began",
                    last_intent.unwrap_or_default()
                )),
                Record::Done { seq, .. } if !done.insert(*seq) => {
                    Some(format!("step {seq} is done twice"))
                }
                Record::Done { seq, .. } => {
                    let promote = Action::Step(Step::Promote);
                    promoted |= self.records[..i].iter().any(|r| {
                        matches!(r, Record::Intent { seq: s, action } if s == seq && *action == promote)
                    });
                    None
                }
                // The end must be one the records lead to: promoted only after a promotion
                // was carried out, rolled back only after a rollback began.
                Record::Finished { result, .. } => {
                    finished = true;
                    match result {
                        DeployResult::Promoted if !promoted => {
                            Some("it ends promoted, but no promotion was carried out".to_string())
                        }
                        DeployResult::RolledBack | DeployResult::RollbackFailed
                            if !rolling_back =>
                        {
                            Some("it ends rolled back, but no rollback began".to_string())
                        }
                        _ => None,
                    }
                }
                Record::RollbackStarted { .. } => {
                    rolling_back = true;
                    None
                }
                Record::GateState { .. } | Record::Signal { .. } | Record::Waiting { .. } => None,
                Record::KeptWarm { .. } if !promoted => {
                    Some("it keeps the old side warm, but no promotion was carried out".into())
                }
                Record::KeptWarm { .. } => None,
            };
            if let Some(reason) = problem {
                return Some((line, reason));
            }
        }
        None
    }

    pub fn started(&self) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| matches!(r, Record::Started { .. }))
    }

    /// The target's scaling as the deployment found it (see `Record::Started`).
    pub fn scaling(&self) -> Option<&serde_json::Value> {
        match self.started()? {
            Record::Started { scaling, .. } => scaling.as_ref(),
            _ => None,
        }
    }

    /// The release kept warm and until when, if the deployment keeps one
    /// (`Record::KeptWarm`).
    pub fn kept_warm(&self) -> Option<(&str, u64)> {
        self.records.iter().find_map(|r| match r {
            Record::KeptWarm { release, until_ms } => Some((release.as_str(), *until_ms)),
            _ => None,
        })
    }

    /// The side still kept warm, and until when: a promoted deployment that kept its old
    /// side (`Record::KeptWarm`) and has not ended, so that side is still up.
    pub fn warm_side(&self) -> Option<(&str, u64)> {
        if self.rollback_reason().is_some() || self.finished().is_some() {
            return None;
        }
        self.kept_warm()
    }

    /// The units the new side had when the deployment began (`Record::Started`).
    pub fn warm_units(&self) -> Option<u32> {
        match self.started()? {
            Record::Started { warm_units, .. } => *warm_units,
            _ => None,
        }
    }

    /// When approval pause `seq` gives up, if it began waiting.
    pub fn waiting_until(&self, seq: u32) -> Option<u64> {
        self.records.iter().find_map(|r| match r {
            Record::Waiting { seq: s, until_ms } if *s == seq => Some(*until_ms),
            _ => None,
        })
    }

    /// The signals this run acted on.
    pub fn signals(&self) -> impl Iterator<Item = &super::Signal> {
        self.records.iter().filter_map(|r| match r {
            Record::Signal { signal } => Some(signal),
            _ => None,
        })
    }

    pub fn id(&self) -> Option<&str> {
        match self.started()? {
            Record::Started { id, .. } => Some(id),
            _ => None,
        }
    }

    pub fn finished(&self) -> Option<(DeployResult, &str)> {
        self.records.iter().rev().find_map(|r| match r {
            Record::Finished { result, detail, .. } => Some((*result, detail.as_str())),
            _ => None,
        })
    }

    /// The reason, when a rollback began.
    pub fn rollback_reason(&self) -> Option<&str> {
        self.records.iter().find_map(|r| match r {
            Record::RollbackStarted { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
    }

    pub fn next_seq(&self) -> u32 {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Intent { seq, .. } => Some(seq + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The action whose intent was journaled but whose completion was not: the run
    /// died while carrying it out.
    pub fn in_flight(&self) -> Option<(u32, &Action)> {
        let (seq, action) = self.records.iter().rev().find_map(|r| match r {
            Record::Intent { seq, action } => Some((*seq, action)),
            _ => None,
        })?;
        let done = self
            .records
            .iter()
            .any(|r| matches!(r, Record::Done { seq: s, .. } if *s == seq));
        (!done).then_some((seq, action))
    }

    /// The last state journaled for each gate, by gate name.
    pub fn gate_states(&self) -> std::collections::BTreeMap<&str, &serde_json::Value> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::GateState { gate, state } => Some((gate.as_str(), state)),
                _ => None,
            })
            .collect()
    }

    /// Whether `action` was carried out to completion.
    pub fn is_done(&self, action: &Action) -> bool {
        self.completed().any(|(done, _)| done == action)
    }

    /// Completed strategy steps with their outcomes: the strategy's history.
    pub fn history(&self) -> Vec<StepRecord> {
        self.completed()
            .filter_map(|(action, outcome)| match action {
                Action::Step(step) => Some(StepRecord {
                    step: step.clone(),
                    outcome: outcome.clone(),
                }),
                Action::Prepare { .. }
                | Action::HostGates(_)
                | Action::Rollback(_)
                | Action::RetireWarm => None,
            })
            .collect()
    }

    /// Completed actions with their outcomes, in the order they were carried out.
    pub fn completed(&self) -> impl Iterator<Item = (&Action, &StepOutcome)> {
        self.records.iter().filter_map(move |r| match r {
            Record::Done { seq, outcome } => {
                let action = self.records.iter().find_map(|i| match i {
                    Record::Intent { seq: s, action } if s == seq => Some(action),
                    _ => None,
                })?;
                Some((action, outcome))
            }
            _ => None,
        })
    }
}
