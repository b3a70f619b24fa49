//! The team/CI backend: journals in S3, the service lock as a lease in DynamoDB.
//!
//! ```text
//! s3://BUCKET/PREFIX services/<service>/deployments/<id>/<n>.json   record n of a journal
//! s3://BUCKET/PREFIX services/<service>/active                      id of the unfinished deployment
//! s3://BUCKET/PREFIX services/<service>/history/<id>                one marker per finished deployment
//! dynamodb TABLE  pk = PREFIX<service>                              the lock: holder, owner, expires
//! ```
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
use deployer_engine::state::local::{LockHolder, hostname, now_ms};
use deployer_engine::state::names;
use deployer_engine::state::{Journal, Record, Signal, SignalKind, StateError};

#[derive(Clone, Debug)]
pub struct AwsStore {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub bucket: String,
    pub table: String,
    pub prefix: String,
    /// How long a lock lives without renewal.
    pub lease: Duration,
}

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
    fn service_key(&self, service: &str) -> String {
        format!("{}services/{service}", self.prefix)
    }

    /// Where the service's signal of `kind` waits (one object per kind).
    fn signal_key(&self, service: &str, kind: SignalKind) -> String {
        format!("{}/signals/{}.json", self.service_key(service), kind.slot())
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
        let marker = format!("{}/history/{id}", self.service_key(service));
        self.put(&marker, Vec::new(), false).await?;
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

    /// # Errors
    /// AWS errors or a damaged record.
    pub async fn history(&self, service: &str) -> Result<Vec<Journal>, StateError> {
        let prefix = format!("{}/history/", self.service_key(service));
        let mut journals = Vec::new();
        for key in self.list(&prefix).await? {
            let id = key.rsplit('/').next().unwrap_or_default().to_string();
            if !names::valid_id(&id) {
                return Err(remote(
                    &format!("s3://{}/{key}", self.bucket),
                    format!(
                        "`{}` is not a deployment id: the key is not deployer's",
                        printable(&id)
                    ),
                ));
            }
            let journal = self.read(service, &id).await?;
            if journal.finished().is_none() {
                return Err(StateError::Corrupt {
                    path: format!("s3://{}/{key}", self.bucket).into(),
                    line: 1,
                    reason: "it marks a deployment finished whose journal has no end record".into(),
                });
            }
            journals.push(journal);
        }
        // Oldest first, by when each began: keys sort by id, and ids of two forms (this
        // version's `web-20261201-…`, earlier versions' `d1796048620720-…`) do not sort
        // by time against each other.
        journals.sort_by_key(|j| match j.started() {
            Some(Record::Started { at_ms, .. }) => *at_ms,
            _ => 0,
        });
        Ok(journals)
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

    async fn history(&self, service: &str) -> Result<Vec<Journal>, StateError> {
        AwsStore::history(self, service).await
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
