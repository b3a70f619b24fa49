//! A long deployment history in S3, written quickly: the objects the S3 + DynamoDB state
//! backend writes for N finished deployments of one service (journals, history markers
//! and, for [`Layout::Indexed`], the history index), put straight into the bucket with
//! the SDK instead of through N real runs. The history tests and the `state_history`
//! benchmark read it with the real binary.
//!
//! The history is a realistic mix: promoted deployments alternating `web:1` and `web:2`,
//! every fifth one rolled back (`web:3`), one whose rollback failed, and the newest a
//! promotion of `web:1` over `web:2` — the live release of the ECS world — so that a
//! `deployer rollback` after it goes back to `web:2`.

use deployer_contract::{Step, StepOutcome, TargetInfo, TargetKind};
use deployer_engine::state::{Action, DeployResult, Journal, Latest, Record, Summary};

/// Which objects the history is stored as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Journals and `history/<id>` markers only: state written by a deployer before the
    /// history index.
    Markers,
    /// Also the index entries and `latest.json`, as this version writes them.
    Indexed,
}

/// What the newest deployment is, beyond the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Newest {
    /// A promotion of `web:1` over `web:2`.
    Promoted,
    /// A `deployer rollback` that already undid the deployment before it: a second
    /// rollback finds nothing to do (it reads the state and changes nothing).
    Undo,
}

/// The deployment id of deployment `number`: the form of earlier versions, valid and
/// unique, sorting by time.
pub fn id(number: u64) -> String {
    format!("d{}-4242-{number}", started_ms(number))
}

fn started_ms(number: u64) -> u64 {
    1_796_000_000_000 + number * 60_000
}

/// How deployment `number` of `count` ends, and its new and stable releases.
pub fn shape(number: u64, count: u64) -> (DeployResult, &'static str, &'static str) {
    // Promotions alternate so that the newest (number == count) puts web:1 over web:2.
    let promoted = |n: u64| {
        if (count - n).is_multiple_of(2) {
            ("web:1", "web:2")
        } else {
            ("web:2", "web:1")
        }
    };
    if number == count {
        let (new, stable) = promoted(number);
        return (DeployResult::Promoted, new, stable);
    }
    let (_, live) = promoted(number);
    match number % 5 {
        0 => (DeployResult::RolledBack, "web:3", live),
        3 if number == 3 => (DeployResult::RollbackFailed, "web:3", live),
        _ => {
            let (new, stable) = promoted(number);
            (DeployResult::Promoted, new, stable)
        }
    }
}

/// The journal of deployment `number` of `count`.
pub fn journal(number: u64, count: u64, newest: Newest) -> Journal {
    let (result, new, stable) = shape(number, count);
    let at = started_ms(number);
    let undo = number == count && newest == Newest::Undo && count > 1;
    let mut records = vec![Record::Started {
        id: id(number),
        service: "web".into(),
        strategy: "canary".into(),
        strategy_digest: "0".into(),
        params: "{}".into(),
        target: TargetInfo {
            kind: TargetKind::EcsService,
            desired_count: 4,
            native_rolling: false,
            test_traffic: true,
        },
        new_release: new.into(),
        stable_release: Some(stable.into()),
        at_ms: at,
        undoes: undo.then(|| id(number - 1)),
        scaling: None,
        warm_units: None,
    }];
    let detail = match result {
        DeployResult::Promoted => {
            records.push(Record::Intent {
                seq: 0,
                action: Action::Step(Step::Promote),
            });
            records.push(Record::Done {
                seq: 0,
                outcome: StepOutcome::Done,
            });
            format!("promoted {new}")
        }
        _ => {
            let reason = "gate `http:http://127.0.0.1/health` failed: 0/5 requests succeeded";
            records.push(Record::RollbackStarted {
                reason: reason.into(),
                at_ms: at + 1_000,
            });
            match result {
                DeployResult::RollbackFailed => format!("rollback failed: {reason}"),
                _ => format!("rolled back to {stable}: {reason}"),
            }
        }
    };
    records.push(Record::Finished {
        result,
        detail,
        at_ms: at + 2_000,
    });
    Journal { records }
}

/// Put `count` finished deployments of service `web` into `bucket` under `prefix`
/// (`shop/` in the test worlds), `CONCURRENT` requests at a time.
pub async fn seed(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    count: u64,
    layout: Layout,
    newest: Newest,
) {
    let service = format!("{prefix}services/web");
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    let mut latest = Latest::default();
    for number in 1..=count {
        let journal = journal(number, count, newest);
        let id = id(number);
        for (index, record) in journal.records.iter().enumerate() {
            objects.push((
                format!("{service}/deployments/{id}/{index:08}.json"),
                serde_json::to_vec(record).unwrap(),
            ));
        }
        objects.push((format!("{service}/history/{id}"), Vec::new()));
        if layout == Layout::Indexed {
            let summary = Summary::of(&journal, number).unwrap();
            objects.push((
                format!("{service}/index/{number:012}.json"),
                serde_json::to_vec(&summary).unwrap(),
            ));
            latest = latest.after(summary);
        }
    }
    if layout == Layout::Indexed {
        objects.push((
            format!("{service}/latest.json"),
            serde_json::to_vec(&latest).unwrap(),
        ));
    }
    put_all(s3, bucket, objects).await;
}

/// How many puts the seeding keeps in flight.
const CONCURRENT: usize = 32;

async fn put_all(s3: &aws_sdk_s3::Client, bucket: &str, objects: Vec<(String, Vec<u8>)>) {
    let mut puts = tokio::task::JoinSet::new();
    let mut pending = objects.into_iter();
    loop {
        while puts.len() < CONCURRENT
            && let Some((key, body)) = pending.next()
        {
            let (s3, bucket) = (s3.clone(), bucket.to_string());
            puts.spawn(async move {
                s3.put_object()
                    .bucket(bucket)
                    .key(&key)
                    .body(body.into())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("seeding {key}: {e:?}"));
            });
        }
        match puts.join_next().await {
            Some(done) => done.unwrap(),
            None => break,
        }
    }
}
