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
//! record n of one journal. The lock is a lease: the holder renews it every quarter of
//! its time to live; a holder that was killed loses it when the lease expires.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;

use deployer_engine::state::local::{LockHolder, alive, hostname, now_ms};
use deployer_engine::state::{Journal, Record, StateError};

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

impl AwsStore {
    fn service_key(&self, service: &str) -> String {
        format!("{}services/{service}", self.prefix)
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
        let text = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
        if !text.contains("PreconditionFailed") {
            return Err(remote(&format!("writing s3://{}/{key}", self.bucket), text));
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
                let bytes = out.body.collect().await.map_err(|e| remote(key, e))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(err) => Err(remote(
                &format!("reading s3://{}/{key}", self.bucket),
                aws_smithy_types::error::display::DisplayErrorContext(&err),
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
                    aws_smithy_types::error::display::DisplayErrorContext(&e),
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
        let mut takeover: Option<String> = None;
        loop {
            let now = now_ms() / 1000;
            let expires = now + self.lease.as_secs();
            let mut put = self
                .dynamodb
                .put_item()
                .table_name(&self.table)
                .item("pk", AttributeValue::S(key.clone()))
                .item("owner", AttributeValue::S(owner.clone()))
                .item("holder", AttributeValue::S(holder_json.clone()))
                .item("expires", AttributeValue::N(expires.to_string()));
            put = match &takeover {
                // Replace exactly the dead holder's lease, nobody else's.
                Some(dead) => put
                    .condition_expression("#owner = :dead")
                    .expression_attribute_names("#owner", "owner")
                    .expression_attribute_values(":dead", AttributeValue::S(dead.clone())),
                None => put
                    .condition_expression("attribute_not_exists(pk) OR expires < :now")
                    .expression_attribute_values(":now", AttributeValue::N(now.to_string())),
            };
            let Err(err) = put.send().await else { break };
            if !err
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception())
                || takeover.is_some()
            {
                if takeover.is_some() {
                    return Err(StateError::Locked {
                        service: service.to_string(),
                        holder: "another run that took the lock at the same moment".into(),
                    });
                }
                return Err(remote(
                    &format!("taking the lock in DynamoDB table {}", self.table),
                    aws_smithy_types::error::display::DisplayErrorContext(&err),
                ));
            }
            let item = self
                .dynamodb
                .get_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(key.clone()))
                .send()
                .await
                .ok()
                .and_then(|out| out.item);
            let current = item
                .as_ref()
                .and_then(|i| i.get("holder").and_then(|h| h.as_s().ok()))
                .and_then(|h| serde_json::from_str::<LockHolder>(h).ok());
            let current_owner = item
                .as_ref()
                .and_then(|i| i.get("owner").and_then(|o| o.as_s().ok()).cloned());
            match (current, current_owner) {
                // A holder on this machine that no longer runs (killed mid-deploy) need not
                // be waited out: its lease is taken over at once.
                (Some(h), Some(dead)) if !alive(&h) => takeover = Some(dead),
                (current, _) => {
                    return Err(StateError::Locked {
                        service: service.to_string(),
                        holder: current
                            .map_or_else(|| "another run".to_string(), |h| h.to_string()),
                    });
                }
            }
        }
        let heartbeat = {
            let (store, key, owner) = (self.clone(), key.clone(), owner.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(store.lease / 4).await;
                    let expires = now_ms() / 1000 + store.lease.as_secs();
                    let renewed = store
                        .dynamodb
                        .update_item()
                        .table_name(&store.table)
                        .key("pk", AttributeValue::S(key.clone()))
                        .update_expression("SET expires = :e")
                        .condition_expression("#owner = :me")
                        .expression_attribute_names("#owner", "owner")
                        .expression_attribute_values(":e", AttributeValue::N(expires.to_string()))
                        .expression_attribute_values(":me", AttributeValue::S(owner.clone()))
                        .send()
                        .await;
                    if let Err(err) = renewed {
                        eprintln!(
                            "deployer: warning: could not renew the lock: {}",
                            aws_smithy_types::error::display::DisplayErrorContext(&err)
                        );
                    }
                }
            })
        };
        Ok(AwsLock {
            store: self.clone(),
            key,
            owner,
            heartbeat,
        })
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
            .map_err(|e| {
                remote(
                    &active,
                    aws_smithy_types::error::display::DisplayErrorContext(&e),
                )
            })?;
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
        Ok(Journal { records })
    }

    /// # Errors
    /// AWS errors or a damaged record.
    pub async fn active(&self, service: &str) -> Result<Option<Journal>, StateError> {
        let key = format!("{}/active", self.service_key(service));
        match self.get(&key).await? {
            Some(id) => {
                let id = String::from_utf8_lossy(&id).trim().to_string();
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
            journals.push(self.read(service, &id).await?);
        }
        Ok(journals)
    }
}

impl deployer_engine::state::Lease for AwsLock {
    async fn release(self) {
        AwsLock::release(self).await;
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
}
