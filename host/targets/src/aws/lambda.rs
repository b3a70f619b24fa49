//! Lambda functions behind an alias. A release is a published version (`42`); the stable
//! side is the version the alias points at, the new side the version its routing config
//! adds with a weight. API Gateway, function URLs and event sources invoke the alias,
//! so moving its weights moves production traffic, as an ALB's weights do.
//!
//! Every operation is absolute and idempotent, as the driver contract asks: a share of
//! `p`% is written as the whole alias — `(stable, {new: p/100})`, `(stable, {})` at 0%,
//! `(new, {})` at 100% — never as a change to what was there, and read back.
//!
//! Units. Lambda has no instances to scale: it starts execution environments as
//! requests come. What a team can hold warm is *provisioned concurrency*, and that is
//! what a unit is here: one provisioned concurrent execution of a version. A service
//! is sized from the alias's provisioned concurrency when a deployment begins, so the
//! host's capacity rules hold as for other targets: before the new version gets `p`% of
//! traffic it has its share of that concurrency, provisioned on the version and READY.
//! After promotion the alias's own configuration covers the new version, and the
//! version's is removed; after a rollback the new version's is removed. An alias
//! without provisioned concurrency sizes the service at 0 units: every share needs
//! none, scale steps provision nothing, and Lambda scales the function itself.
//!
//! Provisioned concurrency is put on the version, not on the alias, because Lambda
//! refuses to change an alias's provisioned concurrency while the alias has weights;
//! the alias's own configuration is never changed.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, ProvisionedConcurrencyStatusEnum, State};
use deployer_contract::{RollingUpdate, Side};
use deployer_engine::driver::{Backoff, Driver, DriverError, Shape};

use super::{Clients, classify};

/// `a` and `b` name the same version: `42`, or a version ARN ending in `:42`.
pub fn same_version(a: &str, b: &str) -> bool {
    version_of(a) == version_of(b)
}

/// The version number a release names: `42` of `42` or `arn:…:function:NAME:42`.
fn version_of(release: &str) -> &str {
    release.rsplit(':').next().unwrap_or(release)
}

/// A function's name: the last part of its ARN, or the name as given.
fn function_name(function: &str) -> &str {
    match function.split_once(":function:") {
        Some((_, name)) => name,
        None => function,
    }
}

/// Whether `version` is a published version's number (digits), not `$LATEST` or an alias.
fn is_version(version: &str) -> bool {
    !version.is_empty() && version.len() <= 10 && version.bytes().all(|b| b.is_ascii_digit())
}

/// The version number `release` names of the function whose unqualified ARN is
/// `function_arn`: `42`, `NAME:42` with this function's name, or `FUNCTION_ARN:42`.
/// Anything else — another function, region, account or partition, another kind of
/// resource, `$LATEST`, an alias — is refused, saying why: reading only the number after
/// the last colon would deploy this function's version of another's number.
fn version_for<'a>(release: &'a str, function_arn: &str) -> Result<&'a str, String> {
    let name = function_name(function_arn);
    let not_a_version = || {
        format!(
            "`{release}` is not a published version of Lambda function {name}: a release is a \
             version number such as 42, {name}:42 or {function_arn}:42; `$LATEST` and aliases \
             are not fixed code"
        )
    };
    let (owner, version) = match release.rsplit_once(':') {
        None => {
            return if is_version(release) {
                Ok(release)
            } else {
                Err(not_a_version())
            };
        }
        Some(parts) => parts,
    };
    if owner != name && owner != function_arn {
        return Err(format!(
            "`{release}` is not a version of this service's function: it deploys Lambda function \
             {function_arn} (a release is 42, {name}:42 or {function_arn}:42)"
        ));
    }
    if is_version(version) {
        Ok(version)
    } else {
        Err(not_a_version())
    }
}

/// An alias as Lambda reports it: the version it points at, and the weights its routing
/// config gives other versions.
#[derive(Clone, Debug, PartialEq)]
pub struct Alias {
    pub version: String,
    pub weights: Vec<(String, f64)>,
}

impl Alias {
    fn from_parts(version: Option<&str>, routing: Option<&AliasRoutingConfiguration>) -> Alias {
        let none = HashMap::new();
        let weights = routing
            .and_then(|r| r.additional_version_weights())
            .unwrap_or(&none);
        Alias::new(version.unwrap_or_default(), weights)
    }

    /// The alias pointing at `version` with `weights` for others, in version order (so
    /// two reads of one alias compare equal).
    fn new(version: &str, weights: &HashMap<String, f64>) -> Alias {
        let mut weights: Vec<(String, f64)> =
            weights.iter().map(|(v, w)| (v.clone(), *w)).collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        Alias {
            version: version.to_string(),
            weights,
        }
    }

    /// The share of traffic (whole percent) on version `new`, with `stable` the version
    /// the run started from; `None` when the alias points neither at `stable` (with or
    /// without weight on `new`) nor wholly at `new`: something else changed it.
    fn share_of(&self, stable: &str, new: &str) -> Option<u8> {
        let others = self.weights.iter().filter(|(v, _)| v != new).count();
        if others > 0 {
            return None;
        }
        if self.version == new {
            return self.weights.is_empty().then_some(100);
        }
        if self.version != stable {
            return None;
        }
        let weight = self
            .weights
            .iter()
            .find(|(v, _)| v == new)
            .map_or(0.0, |(_, w)| *w);
        // A weight is a fraction; shares are whole percents. Rounded, and clamped so a
        // damaged weight cannot wrap.
        Some((weight * 100.0).round().clamp(0.0, 100.0) as u8)
    }
}

/// A mark no other write carries: the time in nanoseconds, the process and a count
/// within it.
fn write_id() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("write {nanos:x}-{}-{count}", std::process::id())
}

/// An alias's weights in words: "no weights", "20% to version 3".
fn weights_in_words(alias: &Alias) -> String {
    match alias.weights.as_slice() {
        [] => "no weights".to_string(),
        weights => weights
            .iter()
            .map(|(v, w)| format!("{:.0}% to version {v}", w * 100.0))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// An alias as read, with what a conditional write needs.
struct Read {
    alias: Alias,
    revision: Option<String>,
    arn: String,
    description: Option<String>,
}

/// Why a write of the alias did not happen.
enum Write {
    /// The alias is no longer at the revision the write named: someone wrote it since.
    Stale,
    Error(DriverError),
}

/// What a driver knows of its own writes of the alias.
#[derive(Debug, Default)]
struct Written {
    /// The revision the alias was at after this driver's last write (or, before its
    /// first, when it was read as the deployment found it). A write names it, so Lambda
    /// refuses it if anyone changed the alias since.
    revision: Option<String>,
    /// Writes whose answer never came (timeout, dropped connection, a run cancelled
    /// mid-call), as what each asked and the mark it wrote in the alias's description:
    /// each may have been carried out, so a refusal of a later write as stale is checked
    /// against them. The mark tells this run's write from another job's identical one.
    in_doubt: Vec<(Alias, String)>,
}

/// The function and alias a service deploys through.
#[derive(Clone, Debug)]
pub struct FunctionAlias {
    pub clients: Clients,
    pub function: String,
    pub alias: String,
}

impl FunctionAlias {
    fn describe(&self) -> String {
        format!("Lambda function {} alias {}", self.function, self.alias)
    }

    /// The alias as Lambda reports it now.
    ///
    /// # Errors
    /// No such function or alias; AWS errors.
    pub async fn read(&self) -> Result<Alias, DriverError> {
        Ok(self.get().await?.alias)
    }

    /// The alias's ARN, as Lambda names it (partition, region, account).
    ///
    /// # Errors
    /// No such function or alias; AWS errors.
    pub async fn alias_arn(&self) -> Result<String, DriverError> {
        Ok(self.get().await?.arn)
    }

    /// The alias with its revision (which a conditional write names), ARN and
    /// description (where writes leave their mark).
    async fn get(&self) -> Result<Read, DriverError> {
        let out = self
            .clients
            .lambda
            .get_alias()
            .function_name(&self.function)
            .name(&self.alias)
            .send()
            .await
            .map_err(|err| {
                if is_not_found(&err) {
                    DriverError::Failed(format!(
                        "{} does not exist ({}): check `function` and `alias` under the \
                         service's [target] in deployer.toml, and the region; create the alias \
                         with `aws lambda create-alias` on a published version",
                        self.describe(),
                        err.message().unwrap_or("not found")
                    ))
                } else {
                    classify(&format!("reading {}", self.describe()), err)
                }
            })?;
        Ok(Read {
            alias: Alias::from_parts(out.function_version(), out.routing_config()),
            revision: out.revision_id().map(str::to_string),
            arn: out.alias_arn().unwrap_or_default().to_string(),
            description: out.description().map(str::to_string),
        })
    }

    /// Point the alias wholly at `version` with `weights` for others, only if it is
    /// still at `revision`: Lambda's answer and the alias's new revision.
    async fn write(
        &self,
        version: &str,
        weights: HashMap<String, f64>,
        revision: Option<String>,
        mark: &str,
    ) -> Result<(Alias, Option<String>), Write> {
        let out = self
            .clients
            .lambda
            .update_alias()
            .function_name(&self.function)
            .name(&self.alias)
            .function_version(version)
            .set_revision_id(revision)
            .description(mark)
            // An empty map clears the weights; leaving the field out would keep them.
            .routing_config(
                AliasRoutingConfiguration::builder()
                    .set_additional_version_weights(Some(weights))
                    .build(),
            )
            // Not retried by the SDK: a retry of a write that landed but lost its answer
            // names a revision that write has replaced, and Lambda refuses it — the
            // driver must see the lost answer to know the refusal may be its own doing.
            // The engine retries the step instead.
            .customize()
            .config_override(
                aws_sdk_lambda::config::Builder::default()
                    .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|err| {
                if err.code() == Some("PreconditionFailedException") {
                    Write::Stale
                } else {
                    Write::Error(classify(&format!("updating {}", self.describe()), err))
                }
            })?;
        Ok((
            Alias::from_parts(out.function_version(), out.routing_config()),
            out.revision_id().map(str::to_string),
        ))
    }

    /// Provisioned concurrency configured on `qualifier` (a version or the alias): what
    /// was asked, and its status. `None`: there is none.
    async fn provisioned(
        &self,
        qualifier: &str,
    ) -> Result<Option<(u32, Provisioning)>, DriverError> {
        let out = self
            .clients
            .lambda
            .get_provisioned_concurrency_config()
            .function_name(&self.function)
            .qualifier(qualifier)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => {
                return Err(classify(
                    &format!(
                        "reading the provisioned concurrency of {}:{qualifier}",
                        self.function
                    ),
                    err,
                ));
            }
        };
        let requested = out
            .requested_provisioned_concurrent_executions()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let status = match out.status() {
            Some(ProvisionedConcurrencyStatusEnum::Ready) => Provisioning::Ready,
            Some(ProvisionedConcurrencyStatusEnum::Failed) => Provisioning::Failed(
                out.status_reason()
                    .unwrap_or("Lambda gave no reason")
                    .to_string(),
            ),
            _ => Provisioning::InProgress(
                out.allocated_provisioned_concurrent_executions()
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
            ),
        };
        Ok(Some((requested, status)))
    }

    /// Remove the provisioned concurrency of version `version`; nothing when it has none.
    async fn unprovision(&self, version: &str) -> Result<(), DriverError> {
        let out = self
            .clients
            .lambda
            .delete_provisioned_concurrency_config()
            .function_name(&self.function)
            .qualifier(version)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(classify(
                &format!(
                    "removing the provisioned concurrency of {}:{version}",
                    self.function
                ),
                err,
            )),
        }
    }

    /// Version `version` as Lambda reports it: waits while it is `Pending` (Lambda
    /// prepares a new version before it can run), up to `timeout`.
    async fn wait_active(
        &self,
        version: &str,
        timeout: Duration,
        poll: Duration,
    ) -> Result<(), DriverError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Backoff::new(poll);
        loop {
            let out = self
                .clients
                .lambda
                .get_function_configuration()
                .function_name(&self.function)
                .qualifier(version)
                .send()
                .await
                .map_err(|e| {
                    classify(
                        &format!(
                            "reading version {version} of Lambda function {}",
                            self.function
                        ),
                        e,
                    )
                })?;
            match out.state() {
                // Inactive (idle long enough for Lambda to reclaim its resources) becomes
                // Pending on its first invocation and then Active: nothing to wait for here.
                Some(State::Failed) => {
                    return Err(DriverError::Failed(format!(
                        "version {version} of Lambda function {} is Failed: {}",
                        self.function,
                        out.state_reason().unwrap_or("Lambda gave no reason")
                    )));
                }
                Some(State::Pending) => {}
                // Active, or a Lambda that reports no state (older API shapes).
                _ => return Ok(()),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Failed(format!(
                    "version {version} of Lambda function {} was still Pending after {timeout:?}",
                    self.function
                )));
            }
            backoff.sleep().await;
        }
    }
}

/// Where a provisioned concurrency configuration stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Provisioning {
    Ready,
    /// Allocated so far.
    InProgress(u32),
    Failed(String),
}

fn is_not_found<E: ProvideErrorMetadata>(err: &E) -> bool {
    matches!(
        err.code(),
        Some("ProvisionedConcurrencyConfigNotFoundException" | "ResourceNotFoundException")
    )
}

/// Read what the alias serves, and its provisioned concurrency (the service's units).
///
/// # Errors
/// No such function or alias; an alias on `$LATEST` (which cannot be weighted); AWS
/// errors.
pub async fn inspect(target: &FunctionAlias) -> Result<Shape, DriverError> {
    let alias = target.read().await?;
    if !is_version(&alias.version) {
        return Err(DriverError::Failed(format!(
            "{} points at `{}`, not a published version: Lambda can only weight traffic \
             between published versions. Publish one (`aws lambda publish-version`) and point \
             the alias at it, then deploy",
            target.describe(),
            alias.version
        )));
    }
    let units = match target.provisioned(&target.alias).await? {
        Some((requested, _)) => requested,
        None => 0,
    };
    let blocked = (!alias.weights.is_empty()).then(|| {
        format!(
            "{} sends {} besides version {}: a deployment is unfinished, or another tool split \
             it. Run `deployer rollback` for a deployment of deployer's, or clear the alias's \
             routing config",
            target.describe(),
            weights_in_words(&alias),
            alias.version
        )
    });
    Ok(Shape {
        primary_release: alias.version,
        side_by_side: true,
        live_units: Some(units),
        scaling: None,
        blocked,
        serves_on_demand: true,
    })
}

/// `release` as the version number it names, once Lambda has confirmed the function has
/// it. `$LATEST` and aliases are refused: they are not fixed code, and an alias can
/// only weight published versions.
///
/// # Errors
/// Not a version, or the function has no such version; AWS errors.
pub async fn pin(target: &FunctionAlias, release: &str) -> Result<String, DriverError> {
    // The function's own ARN, as Lambda names it (partition, region, account): the one
    // thing a version ARN may start with.
    let alias_arn = target.alias_arn().await?;
    let function_arn = alias_arn
        .rsplit_once(':')
        .map_or(alias_arn.as_str(), |(arn, _)| arn);
    let version = version_for(release, function_arn).map_err(|why| {
        DriverError::Failed(format!(
            "{why}\n  fix: name a published version (see `aws lambda \
             list-versions-by-function`), or deploy with --publish"
        ))
    })?;
    target
        .clients
        .lambda
        .get_function_configuration()
        .function_name(&target.function)
        .qualifier(version)
        .send()
        .await
        .map_err(|err| {
            if is_not_found(&err) {
                // AWS says which is missing: the function (`Function not found: …:api:3`
                // either way), so say both.
                DriverError::Failed(format!(
                    "Lambda function {} has no version {version}, or no such function exists \
                     in this region (check `function` under the service's [target] in \
                     deployer.toml)",
                    target.function
                ))
            } else {
                classify(
                    &format!(
                        "finding version {version} of Lambda function {}",
                        target.function
                    ),
                    err,
                )
            }
        })?;
    Ok(version.to_string())
}

/// Publish the function's current code and configuration (`$LATEST`) as a version: the
/// one it returns. Lambda returns the newest version instead when nothing changed since
/// it was published, so publishing twice deploys once.
///
/// # Errors
/// No such function; AWS errors.
pub async fn publish(target: &FunctionAlias) -> Result<String, DriverError> {
    let out = target
        .clients
        .lambda
        .publish_version()
        .function_name(&target.function)
        .description("published by deployer")
        .send()
        .await
        .map_err(|e| {
            classify(
                &format!(
                    "publishing a version of Lambda function {}",
                    target.function
                ),
                e,
            )
        })?;
    out.version()
        .filter(|v| is_version(v))
        .map(str::to_string)
        .ok_or_else(|| {
            DriverError::Failed(format!(
                "Lambda did not say which version of {} it published",
                target.function
            ))
        })
}

/// The driver between two versions of a function behind its alias.
pub struct LambdaVersions {
    pub target: FunctionAlias,
    pub stable: String,
    pub new: String,
    pub health_timeout: Duration,
    pub poll: Duration,
    written: std::sync::Mutex<Written>,
    /// The new version's provisioned concurrency as this run last scaled it.
    units: std::sync::Mutex<u32>,
}

impl LambdaVersions {
    pub fn new(
        target: FunctionAlias,
        stable: &str,
        new: &str,
        health_timeout: Duration,
        poll: Duration,
    ) -> Self {
        LambdaVersions {
            target,
            stable: stable.to_string(),
            new: new.to_string(),
            health_timeout,
            poll,
            written: std::sync::Mutex::new(Written::default()),
            units: std::sync::Mutex::new(0),
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, Written> {
        // A panic while holding it cannot leave it half-written: each field is set whole.
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write the alias for `percent`% on the new version and read it back: Lambda's
    /// answer first, then reads (its API is eventually consistent), a few times.
    async fn route(&self, percent: u8) -> Result<u8, DriverError> {
        if percent > 100 {
            return Err(DriverError::Failed(format!(
                "{percent}% is not a traffic share"
            )));
        }
        let (stable, new) = (version_of(&self.stable), version_of(&self.new));
        let (version, weights) = match percent {
            0 => (stable, HashMap::new()),
            100 => (new, HashMap::new()),
            p => (
                stable,
                HashMap::from([(new.to_string(), f64::from(p) / 100.0)]),
            ),
        };
        let asked = Alias::new(version, &weights);
        // Written before by this run: the write names the revision its own last write left,
        // so Lambda refuses it if anyone (a person, another deployment) changed the alias
        // since. Not yet (a run resumed or rolling back after a kill): only from a state
        // this deployment could have left — the stable version weighting at most the new
        // one, or the new one alone — and conditional on the revision read.
        let remembered = self.written().revision.clone();
        let revision = match remembered {
            Some(revision) => Some(revision),
            None => {
                let now = self.target.get().await?;
                match now.alias.share_of(stable, new) {
                    Some(_) => now.revision,
                    None => return Err(self.changed(&now.alias)),
                }
            }
        };
        let read = match self.write_once(version, &weights, revision, &asked).await {
            Err(Write::Stale) => {
                // Refused as stale: an earlier write of this run whose answer was lost
                // may be what changed the alias. If so, go on from its revision.
                let revision = self.adopt_lost_write().await?;
                match self.write_once(version, &weights, revision, &asked).await {
                    Err(Write::Stale) => return Err(self.stale().await),
                    other => other,
                }
            }
            other => other,
        };
        let mut read = match read {
            Ok(answer) => answer,
            Err(Write::Error(err)) => return Err(err),
            Err(Write::Stale) => return Err(self.stale().await),
        };
        for attempt in 0..5u64 {
            match read.share_of(stable, new) {
                Some(share) if share == percent => return Ok(share),
                _ if attempt == 4 => break,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
            read = self.target.read().await?;
        }
        read.share_of(stable, new)
            .ok_or_else(|| self.changed(&read))
    }

    /// The new version's provisioned concurrency at `count`, READY; 0 removes it.
    async fn provision(&self, count: u32) -> Result<(), DriverError> {
        let new = version_of(&self.new);
        if count == 0 {
            return self.target.unprovision(new).await;
        }
        let asked = match self.target.provisioned(new).await? {
            Some((requested, _)) => requested,
            None => 0,
        };
        if asked != count {
            self.target
                .clients
                .lambda
                .put_provisioned_concurrency_config()
                .function_name(&self.target.function)
                .qualifier(new)
                .provisioned_concurrent_executions(i32::try_from(count).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| {
                    classify(
                        &format!(
                            "provisioning {count} concurrent executions of {} version {new}",
                            self.target.function
                        ),
                        e,
                    )
                })?;
        }
        self.wait_provisioned(new, count).await
    }

    /// One conditional write of the alias, as `asked`. It is marked in doubt before it is
    /// sent and cleared once Lambda has answered either way: a write whose answer never
    /// came — a timeout, a dropped connection, or a run cancelled mid-call (SIGTERM drops
    /// the call's future) — stays in doubt, since it may have been carried out.
    async fn write_once(
        &self,
        version: &str,
        weights: &HashMap<String, f64>,
        revision: Option<String>,
        asked: &Alias,
    ) -> Result<Alias, Write> {
        // Each write marks the alias's description uniquely, so that a lost one is told
        // from another job's identical write (same state, another mark).
        let mark = format!(
            "deployer: {} ({})",
            if asked.weights.is_empty() {
                format!("all on version {}", asked.version)
            } else {
                format!("version {} with {}", asked.version, weights_in_words(asked))
            },
            write_id()
        );
        self.written().in_doubt.push((asked.clone(), mark.clone()));
        let result = self
            .target
            .write(version, weights.clone(), revision, &mark)
            .await;
        let mut written = self.written();
        match result {
            Ok((answer, revision)) => {
                *written = Written {
                    revision,
                    in_doubt: Vec::new(),
                };
                Ok(answer)
            }
            // No answer, or a 5xx: it may have landed. Stays in doubt.
            Err(Write::Error(err @ DriverError::Transient(_))) => Err(Write::Error(err)),
            // Refused or failed: this one did not land (an earlier lost one may have).
            Err(refused) => {
                written.in_doubt.retain(|(_, m)| *m != mark);
                Err(refused)
            }
        }
    }

    /// After a refusal as stale: the revision to write from if this run's own write in
    /// doubt is what changed the alias (it is exactly as that write asked), so the run
    /// goes on; otherwise someone else changed it.
    async fn adopt_lost_write(&self) -> Result<Option<String>, DriverError> {
        let lost = self.written().in_doubt.clone();
        if lost.is_empty() {
            return Err(self.stale().await);
        }
        // Reads are eventually consistent: give the lost write's effect time to show.
        for attempt in 0..5u64 {
            let read = self.target.get().await?;
            let ours = lost.iter().any(|(asked, mark)| {
                *asked == read.alias && read.description.as_deref() == Some(mark.as_str())
            });
            if ours {
                *self.written() = Written {
                    revision: read.revision.clone(),
                    in_doubt: Vec::new(),
                };
                return Ok(read.revision);
            }
            tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
        }
        Err(self.stale().await)
    }

    /// Lambda refused a write as stale, and it was not this run's own lost write: the
    /// alias changed since this run last wrote it, and it is whoever changed it's.
    async fn stale(&self) -> DriverError {
        let now = match self.target.read().await {
            Ok(now) => format!(
                "it now points at version {} with {}",
                now.version,
                weights_in_words(&now)
            ),
            Err(err) => format!("reading it again failed: {err}"),
        };
        DriverError::Failed(format!(
            "{} was changed by someone else since this deployment last set it ({now}); \
             deployer leaves it as it is (set it as it should be, then run `deployer rollback` \
             or deploy again)",
            self.target.describe(),
        ))
    }

    /// The alias is in a state this deployment did not leave it in.
    fn changed(&self, alias: &Alias) -> DriverError {
        let (stable, new) = (version_of(&self.stable), version_of(&self.new));
        let weights = weights_in_words(alias);
        DriverError::Failed(format!(
            "{} points at version {} with {weights}: not a state this deployment (version \
             {stable} to {new}) left it in. Another deployment or a person changed it; deployer \
             leaves it as it is (set it as it should be, then run `deployer rollback` or deploy \
             again)",
            self.target.describe(),
            alias.version
        ))
    }

    /// Wait until version `version` has `count` provisioned concurrency READY.
    async fn wait_provisioned(&self, version: &str, count: u32) -> Result<(), DriverError> {
        let deadline = tokio::time::Instant::now() + self.health_timeout;
        let mut backoff = Backoff::new(self.poll);
        loop {
            let allocated = match self.target.provisioned(version).await? {
                Some((requested, Provisioning::Ready)) if requested >= count => return Ok(()),
                Some((_, Provisioning::Failed(reason))) => {
                    return Err(DriverError::Failed(format!(
                        "provisioned concurrency of {} for version {version} failed: {reason}",
                        self.target.function
                    )));
                }
                Some((_, Provisioning::InProgress(allocated))) => allocated,
                Some((_, Provisioning::Ready)) | None => 0,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Failed(format!(
                    "only {allocated} of {count} provisioned concurrent executions of {} version \
                     {version} were ready within {:?}",
                    self.target.function, self.health_timeout
                )));
            }
            backoff.sleep().await;
        }
    }
}

impl Driver for LambdaVersions {
    fn describe(&self) -> String {
        self.target.describe()
    }

    /// Nothing to create: the version exists (pinned before the run). Waits until Lambda
    /// has it Active, so no traffic goes to a version still being prepared.
    async fn prepare(&self, release: &str) -> Result<(), DriverError> {
        self.target
            .wait_active(version_of(release), self.health_timeout, self.poll)
            .await?;
        // The alias as the deployment found it (all on the stable version) is where its
        // writes start from: its first write names this revision, so a change made
        // between here and there (a second job, a person) is refused, not overwritten.
        let now = self.target.get().await?;
        if now
            .alias
            .share_of(version_of(&self.stable), version_of(&self.new))
            == Some(0)
            && now.alias.weights.is_empty()
        {
            let mut written = self.written();
            if written.revision.is_none() {
                written.revision = now.revision;
            }
        }
        Ok(())
    }

    /// The new version's provisioned concurrency, READY before this returns; 0 removes
    /// it. The stable version's is the alias's own, which Lambda keeps: nothing to do.
    async fn scale(&self, side: Side, count: u32) -> Result<(), DriverError> {
        if side == Side::Stable {
            return Ok(());
        }
        *self.units.lock().unwrap_or_else(|e| e.into_inner()) = count;
        self.provision(count).await
    }

    async fn shift_traffic(&self, new_percent: u8) -> Result<u8, DriverError> {
        // The units the run gave the new version must still be there when it gets more
        // traffic: a person or a script may have removed them since (found by an outside
        // tester). Put back and READY first; one read when they are.
        let units = *self.units.lock().unwrap_or_else(|e| e.into_inner());
        if new_percent > 0 && units > 0 {
            self.provision(units).await?;
        }
        self.route(new_percent).await
    }

    async fn traffic_share(&self) -> Result<Option<u8>, DriverError> {
        let alias = self.target.read().await?;
        let (stable, new) = (version_of(&self.stable), version_of(&self.new));
        alias
            .share_of(stable, new)
            .map(Some)
            .ok_or_else(|| self.changed(&alias))
    }

    async fn route_test_traffic(&self) -> Result<(), DriverError> {
        Err(DriverError::Failed(format!(
            "{} has no test route: test the new version by invoking it by its qualifier \
             ({}:{{new-release}}) in a pre-traffic gate or hook",
            self.target.describe(),
            self.target.function
        )))
    }

    async fn rolling_update(
        &self,
        _release: &str,
        _update: &RollingUpdate,
    ) -> Result<(), DriverError> {
        Err(DriverError::Failed(format!(
            "{} has no units to replace in place: deploy it with canary (or its linear steps) \
             or blue-green (all at once)",
            self.target.describe()
        )))
    }

    /// The alias wholly on the new version, no weights.
    async fn promote(&self) -> Result<(), DriverError> {
        match self.route(100).await? {
            100 => Ok(()),
            share => Err(DriverError::Failed(format!(
                "{} reads {share}% on version {} after promotion",
                self.target.describe(),
                self.new
            ))),
        }
    }

    /// The alias's own provisioned concurrency now serves the new version: once Lambda
    /// has it READY there, the version's own is removed.
    async fn finalize(&self) -> Result<(), DriverError> {
        let new = version_of(&self.new);
        if self.target.provisioned(new).await?.is_none() {
            return Ok(());
        }
        if let Some((count, _)) = self.target.provisioned(&self.target.alias).await? {
            self.wait_provisioned(&self.target.alias, count).await?;
        }
        self.target.unprovision(new).await
    }

    /// The version stays (versions are Lambda's history, and cost nothing idle); its
    /// provisioned concurrency, which does cost, goes.
    async fn discard_new(&self) -> Result<(), DriverError> {
        self.target.unprovision(version_of(&self.new)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(version: &str, weights: &[(&str, f64)]) -> Alias {
        Alias {
            version: version.into(),
            weights: weights.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
        }
    }

    #[test]
    fn a_share_is_read_from_the_alias_as_lambda_reports_it() {
        assert_eq!(alias("1", &[]).share_of("1", "2"), Some(0));
        assert_eq!(alias("1", &[("2", 0.1)]).share_of("1", "2"), Some(10));
        assert_eq!(alias("1", &[("2", 0.335)]).share_of("1", "2"), Some(34));
        assert_eq!(alias("2", &[]).share_of("1", "2"), Some(100));
        // Someone else's hand: the alias on a third version, or weights on one.
        assert_eq!(alias("3", &[]).share_of("1", "2"), None);
        assert_eq!(alias("1", &[("3", 0.1)]).share_of("1", "2"), None);
        assert_eq!(alias("2", &[("1", 0.5)]).share_of("1", "2"), None);
        // A damaged weight does not wrap.
        assert_eq!(alias("1", &[("2", 7.0)]).share_of("1", "2"), Some(100));
        assert_eq!(alias("1", &[("2", -1.0)]).share_of("1", "2"), Some(0));
    }

    #[test]
    fn every_whole_percent_survives_the_round_trip_through_a_weight() {
        for p in 0..=100u8 {
            let weight = f64::from(p) / 100.0;
            assert_eq!((weight * 100.0).round() as u8, p);
        }
    }

    #[test]
    fn a_function_is_named_by_its_name_or_its_arn() {
        assert_eq!(function_name("api"), "api");
        assert_eq!(
            function_name("arn:aws:lambda:eu-west-1:123456789012:function:api"),
            "api"
        );
    }

    #[test]
    fn a_release_is_this_functions_version_and_nothing_else() {
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:api";
        for (release, version) in [
            ("42", "42"),
            ("api:42", "42"),
            (
                "arn:aws:lambda:us-east-1:123456789012:function:api:42",
                "42",
            ),
        ] {
            assert_eq!(version_for(release, arn), Ok(version), "{release}");
        }
        // Found by an outside tester: each of these was read as "version N" of `api`.
        for release in [
            "other:3",
            "api2:3",
            "API:3",
            "arn:aws:lambda:us-west-2:123456789012:function:api:2",
            "arn:aws:lambda:us-east-1:999999999999:function:api:3",
            "arn:aws-cn:lambda:us-east-1:123456789012:function:api:3",
            "arn:aws:lambda:us-east-1:123456789012:layer:api:2",
            "arn:aws:sqs:us-east-1:123456789012:function:api:2",
            "arn:aws:lambda:us-east-1:123456789012:function:other:2",
            "x:y:z:2",
            ":2",
            "api::2",
            "$LATEST",
            "live",
            "api:live",
            "api:$LATEST",
            "arn:aws:lambda:us-east-1:123456789012:function:api",
            "arn:aws:lambda:us-east-1:123456789012:function:api:live",
            "",
            "12345678901",
            "+3",
            " 3",
            "3.0",
        ] {
            assert!(version_for(release, arn).is_err(), "{release}");
        }
        assert!(
            version_for("other:3", arn)
                .unwrap_err()
                .contains("not a version of this service's function")
        );
        assert!(same_version(
            "42",
            "arn:aws:lambda:eu-west-1:123456789012:function:api:42"
        ));
        assert!(!same_version("42", "4"));
    }
}
