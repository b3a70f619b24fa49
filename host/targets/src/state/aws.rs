//! The team/CI backend: journals in S3, the service lock as a lease in DynamoDB.
//!
//! ```text
//! s3://BUCKET/PREFIX services/<service>/deployments/<id>/<n>.json   record n of a journal
//! s3://BUCKET/PREFIX services/<service>/active                      id of the unfinished deployment
//! s3://BUCKET/PREFIX services/<service>/history/<id>                one marker per finished deployment
//! s3://BUCKET/PREFIX services/<service>/index/<number>.json         its summary, numbered 1, 2, 3…
//! s3://BUCKET/PREFIX services/<service>/latest.json                 the newest finished and promoted
//! dynamodb TABLE  pk = PREFIX<service>                              the lock: holder, owner, expires
//! ```
//!
//! `history`, `status` and `rollback` read `latest.json` and the index entries they
//! need, never every past deployment, so their cost does not grow with the history
//! (BENCHMARKS.md). Entries are numbered in the order deployments finish, under the
//! lock, and contiguously: a page is a known set of keys, and an entry that is missing
//! is reported, not skipped. The markers are still written (deployers of earlier
//! versions read them); they are what the index is built from when `latest.json` is
//! missing, as in state an earlier version wrote: once, under the lock, said in a
//! warning. Without the lock (`history`, `status`) the markers are read as before and
//! nothing is written. The index is derived data: deleting `latest.json` rebuilds it.
//! Once a service has an index, deployers older than this one must not deploy it (their
//! deployments would be missing from the index).
//!
//! Records are written with `If-None-Match: *`, so two writers can never both write
//! record n of one journal. The lock is a lease, judged by its expiry alone (never by
//! host name and PID, which containers share): the holder renews it every quarter of
//! its time to live; a holder that was killed loses it when the lease expires, and the
//! next run waits that long at most. The holder checks before every journal write and
//! every change that its lease is surely still live (its fence): a run paused past its
//! lease, or whose renewals fail, stops before changing anything more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;

use deployer_engine::redact::printable;
use deployer_engine::state::Fence;
use deployer_engine::state::local::{LockHolder, Warn, hostname, now_ms};
use deployer_engine::state::names;
use deployer_engine::state::{
    DeployResult, Journal, Latest, Page, Record, Signal, SignalKind, StateError, Summary,
};

#[derive(Clone)]
pub struct AwsStore {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub bucket: String,
    pub table: String,
    pub prefix: String,
    /// How long a lock lives without renewal.
    pub lease: Duration,
    /// Where the store's warnings go (an index built, or missing).
    warn: Warn,
    /// Summaries of journals read from an earlier version's markers, by service and id:
    /// a command that reads them before taking the lock (`read_state_first`) and then
    /// builds the index under it reads each journal once.
    legacy: Arc<Mutex<HashMap<(String, String), Summary>>>,
    /// Whether this process has said that a history has no index yet (once is enough:
    /// `history --all` reads it a page at a time).
    warned: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for AwsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsStore")
            .field("bucket", &self.bucket)
            .field("table", &self.table)
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// The state of a service's history as stored: indexed, written by an earlier version
/// (markers only: every summary, oldest first), or no history at all.
enum Head {
    Indexed(Box<Latest>),
    Legacy(Vec<Summary>),
    Empty,
}

/// How many S3 requests the store makes at once when it reads or writes many objects
/// (a page of the history, an index being built).
const CONCURRENT: usize = 16;

fn remote(what: &str, err: impl std::fmt::Display) -> StateError {
    StateError::Remote {
        what: what.to_string(),
        message: err.to_string(),
    }
}

/// A held lease; renewed in the background until released.
#[derive(Debug)]
pub struct AwsLock {
    store: AwsStore,
    key: String,
    owner: String,
    heartbeat: tokio::task::JoinHandle<()>,
    held: Arc<Mutex<Held>>,
}

/// What this run knows about its lease: until when it is surely still ours (by this
/// machine's monotonic clock, a quarter of the lease short of the expiry DynamoDB
/// holds, for clock drift), and whether another run has been seen holding it.
#[derive(Debug)]
struct Held {
    until: Instant,
    lost: Option<String>,
    last_error: Option<String>,
}

impl AwsLock {
    /// Give the lock back.
    pub async fn release(self) {
        self.heartbeat.abort();
        let _ = self
            .store
            .dynamodb
            .delete_item()
            .table_name(&self.store.table)
            .key("pk", AttributeValue::S(self.key.clone()))
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
            .send()
            .await;
    }
}

impl Drop for AwsLock {
    fn drop(&mut self) {
        // Without an explicit release the lease simply expires.
        self.heartbeat.abort();
    }
}

/// The largest object the store reads: a journal record is at most ~128 KiB (a hook's
/// whole key-value store, hex-encoded), the other objects a few bytes.
const MAX_OBJECT_BYTES: i64 = 4 * 1024 * 1024;

impl AwsStore {
    /// The store in `bucket` (keys under `prefix`) and `table`; warnings go to stderr
    /// until [`AwsStore::with_warnings`] sends them elsewhere.
    pub fn new(
        s3: aws_sdk_s3::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        bucket: impl Into<String>,
        table: impl Into<String>,
        prefix: impl Into<String>,
        lease: Duration,
    ) -> Self {
        AwsStore {
            s3,
            dynamodb,
            bucket: bucket.into(),
            table: table.into(),
            prefix: prefix.into(),
            lease,
            warn: Arc::new(|message| eprintln!("deployer: warning: {message}")),
            legacy: Arc::default(),
            warned: Arc::default(),
        }
    }

    /// Send warnings (a history index built or missing) to `warn`.
    #[must_use]
    pub fn with_warnings(mut self, warn: Warn) -> Self {
        self.warn = warn;
        self
    }

    fn service_key(&self, service: &str) -> String {
        format!("{}services/{service}", self.prefix)
    }

    /// Where the service's signal of `kind` waits (one object per kind).
    fn signal_key(&self, service: &str, kind: SignalKind) -> String {
        format!("{}/signals/{}.json", self.service_key(service), kind.slot())
    }

    fn latest_key(&self, service: &str) -> String {
        format!("{}/latest.json", self.service_key(service))
    }

    /// The index entry of deployment `number`: zero-padded, so keys sort by number.
    fn entry_key(&self, service: &str, number: u64) -> String {
        format!("{}/index/{number:012}.json", self.service_key(service))
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// An index object that is not what deployer writes there.
    fn damaged_index(&self, service: &str, key: &str, reason: String) -> StateError {
        StateError::Index {
            location: self.url(key),
            reason,
            head: self.url(&self.latest_key(service)),
        }
    }

    fn record_key(&self, service: &str, id: &str, index: usize) -> String {
        format!(
            "{}/deployments/{id}/{index:08}.json",
            self.service_key(service)
        )
    }

    async fn put(&self, key: &str, body: Vec<u8>, exclusive: bool) -> Result<(), StateError> {
        let expected = exclusive.then(|| body.clone());
        let mut put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body));
        if exclusive {
            put = put.if_none_match("*");
        }
        let Err(err) = put.send().await else {
            return Ok(());
        };
        // The code is found in the full context (its `Debug` part included); only the
        // words are printed.
        let context = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
        if !context.contains("PreconditionFailed") {
            return Err(remote(
                &format!("writing s3://{}/{key}", self.bucket),
                crate::aws::sdk_error(&err),
            ));
        }
        // The key exists. If it holds exactly what we write, it is our own earlier
        // attempt whose answer was lost (a timeout, a dropped connection, the SDK's
        // retry): the write succeeded. Anything else was written by another run.
        match (expected, self.get(key).await?) {
            (Some(ours), Some(found)) if found == ours => Ok(()),
            _ => Err(StateError::Superseded {
                what: format!("s3://{}/{key}", self.bucket),
                detail: "another run already wrote this journal record".into(),
            }),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                // Anyone who can write the bucket can put a huge object where a record
                // belongs; it is refused by its announced length, not read into memory.
                if out
                    .content_length()
                    .is_some_and(|len| len > MAX_OBJECT_BYTES)
                {
                    return Err(remote(
                        &format!("reading s3://{}/{key}", self.bucket),
                        format!(
                            "the object is larger than the {MAX_OBJECT_BYTES} bytes of any \
                             record deployer writes: it was not written by deployer"
                        ),
                    ));
                }
                let bytes = out.body.collect().await.map_err(|e| remote(key, e))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(err) => Err(remote(
                &format!("reading s3://{}/{key}", self.bucket),
                crate::aws::sdk_error(&err),
            )),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                remote(
                    &format!("listing s3://{}/{prefix}", self.bucket),
                    crate::aws::sdk_error(&e),
                )
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    fn release_key(&self, release: &str, name: &str) -> Result<String, StateError> {
        if !names::valid_service(release) {
            return Err(StateError::BadName {
                what: "release name",
                value: printable(release).into_owned(),
            });
        }
        Ok(format!("{}releases/{release}/{name}", self.prefix))
    }

    /// Release `release`'s document `name` (`active.json`, `history/…`), if there is one.
    ///
    /// # Errors
    /// AWS errors.
    pub async fn release_document(
        &self,
        release: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.get(&self.release_key(release, name)?).await
    }

    /// Write release `release`'s document `name` (S3 writes are whole or not at all).
    ///
    /// # Errors
    /// AWS errors.
    pub async fn put_release_document(
        &self,
        release: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), StateError> {
        self.put(&self.release_key(release, name)?, bytes, false)
            .await
    }

    /// Remove release `release`'s document `name`; gone already is fine.
    ///
    /// # Errors
    /// AWS errors.
    pub async fn remove_release_document(
        &self,
        release: &str,
        name: &str,
    ) -> Result<(), StateError> {
        let key = self.release_key(release, name)?;
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| remote(&key, crate::aws::sdk_error(&e)))?;
        Ok(())
    }

    /// The names of at most `max` of release `release`'s documents under `folder/`, in
    /// key order: one request, however many there are.
    ///
    /// # Errors
    /// AWS errors.
    pub async fn first_release_documents(
        &self,
        release: &str,
        folder: &str,
        max: i32,
    ) -> Result<Vec<String>, StateError> {
        let prefix = self.release_key(release, &format!("{folder}/"))?;
        let page = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .max_keys(max)
            .send()
            .await
            .map_err(|e| {
                remote(
                    &format!("listing s3://{}/{prefix}", self.bucket),
                    crate::aws::sdk_error(&e),
                )
            })?;
        Ok(page
            .contents()
            .iter()
            .filter_map(|o| {
                o.key()?
                    .strip_prefix(&prefix)
                    .map(|k| format!("{folder}/{k}"))
            })
            .collect())
    }

    /// Take the service's lease, or fail at once naming its holder.
    ///
    /// # Errors
    /// [`StateError::Locked`] while another run's lease is live; AWS errors.
    pub async fn lock(&self, service: &str, deployment: &str) -> Result<AwsLock, StateError> {
        let key = format!("{}{service}", self.prefix);
        let holder = LockHolder {
            deployment: deployment.to_string(),
            pid: std::process::id(),
            host: hostname(),
            since_ms: now_ms(),
        };
        let owner = format!("{deployment}/{}/{}", holder.host, holder.pid);
        let holder_json = serde_json::to_string(&holder).expect("holders serialize");
        // The lease we are waiting out, exactly as first seen: its owner and expiry.
        let mut waiting: Option<(String, u64)> = None;
        let taken_at = loop {
            let sent = Instant::now();
            let now = now_ms() / 1000;
            let expires = now + self.lease.as_secs();
            let mut put = self
                .dynamodb
                .put_item()
                .table_name(&self.table)
                .item("pk", AttributeValue::S(key.clone()))
                .item("owner", AttributeValue::S(owner.clone()))
                .item("holder", AttributeValue::S(holder_json.clone()))
                .item("expires", AttributeValue::N(expires.to_string()))
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()));
            put = match &waiting {
                None => put.condition_expression("attribute_not_exists(pk) OR expires < :now"),
                // Only the very lease we waited out, once expired: one its holder renewed
                // or gave back means that run was alive.
                Some((seen_owner, seen_expires)) => put
                    .condition_expression(
                        "#owner = :seen AND expires = :seen_expires AND expires < :now",
                    )
                    .expression_attribute_names("#owner", "owner")
                    .expression_attribute_values(":seen", AttributeValue::S(seen_owner.clone()))
                    .expression_attribute_values(
                        ":seen_expires",
                        AttributeValue::N(seen_expires.to_string()),
                    ),
            };
            let Err(err) = put.send().await else {
                break sent;
            };
            if !err
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception())
            {
                return Err(remote(
                    &format!("taking the lock in DynamoDB table {}", self.table),
                    crate::aws::sdk_error(&err),
                ));
            }
            let (current, current_owner, current_expires) = self.read_lease(&key).await;
            let name = current.map_or_else(|| "another run".to_string(), |h| h.to_string());
            let locked = || StateError::Locked {
                service: service.to_string(),
                holder: name.clone(),
            };
            match (&waiting, current_owner, current_expires) {
                (None, Some(owner_now), Some(expires_now)) => {
                    eprintln!(
                        "deployer: the lock of {service} is held by {name}; waiting up to {}s \
                         for its lease to expire, in case that run died",
                        expires_now.saturating_sub(now) + 1
                    );
                    waiting = Some((owner_now, expires_now));
                }
                (None, ..) => {} // gone meanwhile: try again at once
                (Some(seen), Some(owner_now), Some(expires_now))
                    if *seen == (owner_now.clone(), expires_now) => {}
                // Renewed, given back or taken by another: its holder is alive.
                (Some(_), ..) => return Err(locked()),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let held = Arc::new(Mutex::new(Held {
            until: taken_at + self.lease * 3 / 4,
            lost: None,
            last_error: None,
        }));
        let heartbeat = {
            let (store, key, owner, held) =
                (self.clone(), key.clone(), owner.clone(), held.clone());
            tokio::spawn(async move {
                // Often, so that a run waiting for the lock sees within seconds that
                // this one is alive; the lease itself is much longer.
                let every = (store.lease / 4).min(Duration::from_secs(2));
                let mut pause = every;
                loop {
                    tokio::time::sleep(pause).await;
                    let sent = Instant::now();
                    let expires = now_ms() / 1000 + store.lease.as_secs();
                    let renewed = store
                        .dynamodb
                        .update_item()
                        .table_name(&store.table)
                        .key("pk", AttributeValue::S(key.clone()))
                        .update_expression("SET expires = :e")
                        .condition_expression("attribute_exists(pk) AND #owner = :me")
                        .expression_attribute_names("#owner", "owner")
                        .expression_attribute_values(":e", AttributeValue::N(expires.to_string()))
                        .expression_attribute_values(":me", AttributeValue::S(owner.clone()))
                        .send()
                        .await;
                    match renewed {
                        Ok(_) => {
                            let mut held = held
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            // Sent after the lease had already lapsed (the process was
                            // paused): another run may have held it meanwhile. Lapsed
                            // is lost for good, whatever this renewal found.
                            if sent >= held.until {
                                held.lost.get_or_insert_with(|| {
                                    "this run's lease lapsed before it was renewed (the process was paused or starved)".to_string()
                                });
                                return;
                            }
                            held.until = sent + store.lease * 3 / 4;
                            held.last_error = None;
                            pause = every;
                        }
                        Err(err)
                            if err
                                .as_service_error()
                                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                        {
                            // Someone else owns the lease now: it is gone for good.
                            let (current, _, _) = store.read_lease(&key).await;
                            let name = current
                                .map_or_else(|| "another run".to_string(), |h| h.to_string());
                            held.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .lost = Some(format!("{name} holds it"));
                            return;
                        }
                        Err(err) => {
                            // Keep trying, sooner: the lease is ours until `until`.
                            held.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .last_error = Some(crate::aws::sdk_error(&err).to_string());
                            pause = Duration::from_secs(1).min(every);
                        }
                    }
                }
            })
        };
        Ok(AwsLock {
            store: self.clone(),
            key,
            owner,
            heartbeat,
            held,
        })
    }

    /// The lease item of `key`: its holder, owner and expiry (seconds), where readable.
    async fn read_lease(&self, key: &str) -> (Option<LockHolder>, Option<String>, Option<u64>) {
        let item: Option<HashMap<String, AttributeValue>> = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .ok()
            .and_then(|out| out.item);
        let field = |name: &str| {
            item.as_ref()
                .and_then(|i| i.get(name).and_then(|v| v.as_s().ok()).cloned())
        };
        let expires = item
            .as_ref()
            .and_then(|i| i.get("expires").and_then(|v| v.as_n().ok()))
            .and_then(|n| n.parse().ok());
        (
            field("holder").and_then(|h| serde_json::from_str(&h).ok()),
            field("owner"),
            expires,
        )
    }

    /// # Errors
    /// AWS errors.
    pub async fn append(
        &self,
        service: &str,
        id: &str,
        index: usize,
        record: &Record,
    ) -> Result<(), StateError> {
        let body = serde_json::to_vec(record).expect("records serialize");
        self.put(&self.record_key(service, id, index), body, true)
            .await
    }

    /// # Errors
    /// AWS errors.
    pub async fn begin(&self, service: &str, id: &str, started: &Record) -> Result<(), StateError> {
        self.append(service, id, 0, started).await?;
        let key = format!("{}/active", self.service_key(service));
        self.put(&key, id.as_bytes().to_vec(), false).await
    }

    /// # Errors
    /// AWS errors.
    pub async fn finish(
        &self,
        service: &str,
        id: &str,
        index: usize,
        finished: &Record,
    ) -> Result<(), StateError> {
        self.append(service, id, index, finished).await?;
        // Before this deployment's marker is written: a first index built from the
        // markers of an earlier version is of the deployments before it.
        let latest = self.indexed_latest(service).await?;
        let marker = format!("{}/history/{id}", self.service_key(service));
        self.put(&marker, Vec::new(), false).await?;
        let Record::Finished {
            result,
            detail,
            at_ms,
        } = finished
        else {
            return Err(remote(
                &format!("finishing deployment {id}"),
                "the record to finish with is not an end record",
            ));
        };
        let first = self.record_key(service, id, 0);
        let started = self
            .get(&first)
            .await?
            .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok());
        let summary = started
            .as_ref()
            .and_then(|s| Summary::begun(s, latest.number_for(id), *result, detail, *at_ms))
            .ok_or_else(|| StateError::Corrupt {
                path: self.url(&first).into(),
                line: 1,
                reason: "the deployment being finished has no readable start record".into(),
            })?;
        // The entry, then the head that counts it: a run killed in between left the
        // deployment active, and the next run writes both again, with the same number.
        let entry_key = self.entry_key(service, summary.number);
        let body = serde_json::to_vec(&summary).expect("summaries serialize");
        self.put(&entry_key, body, false).await?;
        let latest = latest.after(summary);
        let body = serde_json::to_vec(&latest).expect("summaries serialize");
        self.put(&self.latest_key(service), body, false).await?;
        let active = format!("{}/active", self.service_key(service));
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(&active)
            .send()
            .await
            .map_err(|e| remote(&active, crate::aws::sdk_error(&e)))?;
        Ok(())
    }

    /// # Errors
    /// AWS errors or a damaged record.
    pub async fn read(&self, service: &str, id: &str) -> Result<Journal, StateError> {
        let prefix = format!("{}/deployments/{id}/", self.service_key(service));
        let mut records = Vec::new();
        for key in self.list(&prefix).await? {
            let Some(bytes) = self.get(&key).await? else {
                continue;
            };
            let record = serde_json::from_slice(&bytes).map_err(|e| remote(&key, e))?;
            records.push(record);
        }
        let journal = Journal { records };
        if let Some((line, reason)) = journal.damage(id) {
            return Err(StateError::Corrupt {
                path: format!("s3://{}/{prefix}", self.bucket).into(),
                line,
                reason: format!("record {line}: {reason}"),
            });
        }
        Ok(journal)
    }

    /// # Errors
    /// AWS errors or a damaged record.
    pub async fn active(&self, service: &str) -> Result<Option<Journal>, StateError> {
        let key = format!("{}/active", self.service_key(service));
        match self.get(&key).await? {
            Some(id) => {
                let id = String::from_utf8_lossy(&id).trim().to_string();
                if !names::valid_id(&id) {
                    return Err(remote(
                        &format!("s3://{}/{key}", self.bucket),
                        format!(
                            "`{}` is not a deployment id: the object is damaged",
                            printable(&id)
                        ),
                    ));
                }
                self.read(service, &id).await.map(Some)
            }
            None => Ok(None),
        }
    }

    /// `latest.json` of `service`, checked, if there is one.
    async fn read_latest(&self, service: &str) -> Result<Option<Latest>, StateError> {
        let key = self.latest_key(service);
        let Some(bytes) = self.get(&key).await? else {
            return Ok(None);
        };
        let latest: Latest = serde_json::from_slice(&bytes).map_err(|e| {
            self.damaged_index(service, &key, format!("it is not an index head: {e}"))
        })?;
        if let Some(reason) = latest.damage() {
            return Err(self.damaged_index(service, &key, reason));
        }
        Ok(Some(latest))
    }

    /// The service's history as stored: its index head, or (none yet) every summary
    /// from an earlier version's markers, or nothing.
    async fn head(&self, service: &str) -> Result<Head, StateError> {
        if let Some(latest) = self.read_latest(service).await? {
            return Ok(Head::Indexed(Box::new(latest)));
        }
        let prefix = format!("{}/history/", self.service_key(service));
        let any = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| {
                remote(
                    &format!("listing {}", self.url(&prefix)),
                    crate::aws::sdk_error(&e),
                )
            })?;
        if any.contents().is_empty() {
            return Ok(Head::Empty);
        }
        Ok(Head::Legacy(self.legacy_summaries(service).await?))
    }

    /// Every finished deployment from the markers (`history/<id>`) alone, as versions
    /// before the index kept them: each journal read and checked, oldest first (by when
    /// each began: ids of this version's form and of earlier ones do not sort by time
    /// against each other), numbered from 1.
    async fn legacy_summaries(&self, service: &str) -> Result<Vec<Summary>, StateError> {
        let prefix = format!("{}/history/", self.service_key(service));
        let mut ids = Vec::new();
        for key in self.list(&prefix).await? {
            let id = key.rsplit('/').next().unwrap_or_default().to_string();
            if !names::valid_id(&id) {
                return Err(remote(
                    &self.url(&key),
                    format!(
                        "`{}` is not a deployment id: the key is not deployer's",
                        printable(&id)
                    ),
                ));
            }
            ids.push((key, id));
        }
        let memo = |id: &str| {
            self.legacy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&(service.to_string(), id.to_string()))
                .cloned()
        };
        let mut summaries = Vec::with_capacity(ids.len());
        let mut unread = Vec::new();
        for (key, id) in ids {
            match memo(&id) {
                Some(summary) => summaries.push(summary),
                None => unread.push((key, id)),
            }
        }
        let mut reads = tokio::task::JoinSet::new();
        let mut pending = unread.into_iter();
        loop {
            while reads.len() < CONCURRENT
                && let Some((key, id)) = pending.next()
            {
                let (store, service) = (self.clone(), service.to_string());
                reads.spawn(async move {
                    let journal = store.read(&service, &id).await?;
                    Summary::of(&journal, 0).ok_or_else(|| StateError::Corrupt {
                        path: store.url(&key).into(),
                        line: 1,
                        reason: "it marks a deployment finished whose journal has no end record"
                            .into(),
                    })
                });
            }
            let Some(read) = reads.join_next().await else {
                break;
            };
            let summary = read.map_err(|e| remote("reading the history", e))??;
            self.legacy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert((service.to_string(), summary.id.clone()), summary.clone());
            summaries.push(summary);
        }
        summaries.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
        for (n, summary) in summaries.iter_mut().enumerate() {
            summary.number = n as u64 + 1;
        }
        Ok(summaries)
    }

    /// The newest finished and promoted of summaries oldest first.
    fn latest_of(summaries: &[Summary]) -> Latest {
        Latest {
            finished: summaries.last().cloned(),
            promoted: summaries
                .iter()
                .rev()
                .find(|s| s.result == DeployResult::Promoted)
                .cloned(),
        }
    }

    /// Say that `service`'s history has no index yet, so it was read whole.
    fn warn_unindexed(&self, service: &str, count: usize) {
        if self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        (self.warn)(&format!(
            "the history of `{service}` in {} has no index yet (it was written by an earlier \
             deployer), so all {count} past deployments were read; the next `deployer run`, \
             `deployer rollback` or `deployer tidy` of `{service}` builds the index, after which \
             this reads a bounded amount",
            self.url(&self.service_key(service))
        ));
    }

    /// The index head, building the index first from an earlier version's markers when
    /// there is none. Only under the service's lock: it writes.
    async fn indexed_latest(&self, service: &str) -> Result<Latest, StateError> {
        let summaries = match self.head(service).await? {
            Head::Indexed(latest) => return Ok(*latest),
            Head::Empty => return Ok(Latest::default()),
            Head::Legacy(summaries) => summaries,
        };
        let mut writes = tokio::task::JoinSet::new();
        let mut pending = summaries.iter().cloned();
        loop {
            while writes.len() < CONCURRENT
                && let Some(summary) = pending.next()
            {
                let store = self.clone();
                let key = self.entry_key(service, summary.number);
                writes.spawn(async move {
                    let body = serde_json::to_vec(&summary).expect("summaries serialize");
                    store.put(&key, body, false).await
                });
            }
            let Some(written) = writes.join_next().await else {
                break;
            };
            written.map_err(|e| remote("building the history index", e))??;
        }
        // The head last: until it is written the index counts as missing, so a build
        // cut short is done again.
        let latest = Self::latest_of(&summaries);
        let body = serde_json::to_vec(&latest).expect("summaries serialize");
        self.put(&self.latest_key(service), body, false).await?;
        (self.warn)(&format!(
            "built the history index of `{service}` in {} from its {} past deployments \
             (written by an earlier deployer): `history`, `status` and `rollback` now read a \
             bounded amount; deployers older than this one must no longer deploy `{service}`",
            self.url(&self.service_key(service)),
            summaries.len()
        ));
        Ok(latest)
    }

    /// # Errors
    /// AWS errors or a damaged journal.
    pub async fn prepare(&self, service: &str) -> Result<(), StateError> {
        self.indexed_latest(service).await.map(drop)
    }

    /// # Errors
    /// AWS errors, a damaged or missing index entry.
    pub async fn latest(&self, service: &str) -> Result<Latest, StateError> {
        match self.head(service).await? {
            Head::Indexed(latest) => Ok(*latest),
            Head::Empty => Ok(Latest::default()),
            Head::Legacy(summaries) => {
                self.warn_unindexed(service, summaries.len());
                Ok(Self::latest_of(&summaries))
            }
        }
    }

    /// # Errors
    /// AWS errors, a damaged or missing index entry.
    pub async fn recent(
        &self,
        service: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page, StateError> {
        let latest = match self.head(service).await? {
            Head::Indexed(latest) => *latest,
            Head::Empty => return Ok(Page::default()),
            Head::Legacy(summaries) => {
                self.warn_unindexed(service, summaries.len());
                let top = before.map_or(summaries.len(), |b| {
                    (b.saturating_sub(1) as usize).min(summaries.len())
                });
                let from = top.saturating_sub(limit);
                return Ok(Page {
                    entries: summaries[from..top].iter().rev().cloned().collect(),
                    more: from > 0,
                });
            }
        };
        let newest = latest.finished.as_ref().map_or(0, |s| s.number);
        let top = before.map_or(newest, |b| b.saturating_sub(1).min(newest));
        let bottom = top.saturating_sub(limit as u64);
        let mut reads = tokio::task::JoinSet::new();
        let mut pending = (bottom + 1..=top).rev();
        let mut entries = Vec::new();
        loop {
            while reads.len() < CONCURRENT
                && let Some(number) = pending.next()
            {
                let (store, service) = (self.clone(), service.to_string());
                reads.spawn(async move { store.entry(&service, number, newest).await });
            }
            let Some(read) = reads.join_next().await else {
                break;
            };
            entries.push(read.map_err(|e| remote("reading the history index", e))??);
        }
        entries.sort_by_key(|s| std::cmp::Reverse(s.number));
        Ok(Page {
            entries,
            more: bottom > 0,
        })
    }

    /// Index entry `number` of `service`, whose newest is `newest`: it must be there
    /// (numbers are contiguous) and hold a summary of that number.
    async fn entry(&self, service: &str, number: u64, newest: u64) -> Result<Summary, StateError> {
        let key = self.entry_key(service, number);
        let Some(bytes) = self.get(&key).await? else {
            return Err(self.damaged_index(
                service,
                &key,
                format!(
                    "entry {number} is missing, though {} counts {newest} finished deployments",
                    self.url(&self.latest_key(service))
                ),
            ));
        };
        let summary: Summary = serde_json::from_slice(&bytes).map_err(|e| {
            self.damaged_index(service, &key, format!("it is not a history entry: {e}"))
        })?;
        if let Some(reason) = summary.damage() {
            return Err(self.damaged_index(service, &key, reason));
        }
        if summary.number != number {
            return Err(self.damaged_index(
                service,
                &key,
                format!(
                    "it holds entry {} where entry {number} belongs",
                    summary.number
                ),
            ));
        }
        Ok(summary)
    }
}

impl deployer_engine::state::Lease for AwsLock {
    async fn release(self) {
        AwsLock::release(self).await;
    }

    fn fence(&self) -> Fence {
        let (held, table, key) = (
            self.held.clone(),
            self.store.table.clone(),
            self.key.clone(),
        );
        Arc::new(move || {
            let held = held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let what = format!("the lock {key} in DynamoDB table {table}");
            if let Some(holder) = &held.lost {
                return Err(StateError::Superseded {
                    what,
                    detail: holder.clone(),
                });
            }
            if Instant::now() >= held.until {
                return Err(StateError::Superseded {
                    what,
                    detail: match &held.last_error {
                        Some(err) => {
                            format!("this run's lease ran out while renewing it failed: {err}")
                        }
                        None => "this run's lease ran out (the process was paused or starved)"
                            .to_string(),
                    },
                });
            }
            Ok(())
        })
    }
}

impl deployer_engine::state::Store for AwsStore {
    type Lock = AwsLock;

    async fn lock(&self, service: &str, deployment: &str) -> Result<AwsLock, StateError> {
        AwsStore::lock(self, service, deployment).await
    }

    async fn begin(&self, service: &str, id: &str, started: &Record) -> Result<(), StateError> {
        AwsStore::begin(self, service, id, started).await
    }

    async fn append(
        &self,
        service: &str,
        id: &str,
        index: usize,
        record: &Record,
    ) -> Result<(), StateError> {
        AwsStore::append(self, service, id, index, record).await
    }

    async fn finish(
        &self,
        service: &str,
        id: &str,
        index: usize,
        finished: &Record,
    ) -> Result<(), StateError> {
        AwsStore::finish(self, service, id, index, finished).await
    }

    async fn active(&self, service: &str) -> Result<Option<Journal>, StateError> {
        AwsStore::active(self, service).await
    }

    async fn read(&self, service: &str, id: &str) -> Result<Journal, StateError> {
        AwsStore::read(self, service, id).await
    }

    async fn prepare(&self, service: &str) -> Result<(), StateError> {
        AwsStore::prepare(self, service).await
    }

    async fn recent(
        &self,
        service: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Page, StateError> {
        AwsStore::recent(self, service, limit, before).await
    }

    async fn latest(&self, service: &str) -> Result<Latest, StateError> {
        AwsStore::latest(self, service).await
    }

    async fn send(&self, service: &str, signal: &Signal) -> Result<(), StateError> {
        let key = self.signal_key(service, signal.kind);
        let body = serde_json::to_vec(signal).expect("signals serialize");
        // S3 writes are atomic and reads after them consistent: the run sees the whole
        // signal at its next look, or the one before.
        self.put(&key, body, false).await
    }

    async fn signals(&self, service: &str) -> Result<Vec<Signal>, StateError> {
        let mut found = Vec::new();
        for kind in [SignalKind::Abort, SignalKind::Promote { full: false }] {
            let key = self.signal_key(service, kind);
            // One slot that cannot be read, or holds anything but a signal (a huge or
            // garbled object), must not hide the other slot's: it is passed over, and
            // the next signal of its kind replaces it. The run looks again at its next
            // interval, so a slot the backend could not answer for is read then.
            if let Ok(Some(bytes)) = self.get(&key).await
                && let Ok(signal) = serde_json::from_slice::<Signal>(&bytes)
                && signal.kind.slot() == kind.slot()
            {
                found.push(signal);
            }
        }
        Ok(found)
    }
}
