//! `deployer history`: past deployments, newest first.

use std::path::Path;

use deployer_engine::events::short_release;
use deployer_engine::redact::printable;
use deployer_engine::state::{DeployResult, Record};

use super::report::Reporter;
use super::setup;
use crate::config::{Config, ConfigErrors};
use crate::exit::Outcome;

/// One deployment as `history` shows it (and `--output json` prints it).
#[derive(Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HistoryRow {
    pub deployment: String,
    pub result: DeployResult,
    pub strategy: String,
    pub stable_release: Option<String>,
    pub new_release: String,
    pub started_ms: u64,
    pub detail: String,
    /// Its place in the service's history (1 for the first to finish): the next page is
    /// `--before` the last row's number. None for a promoted deployment whose old side
    /// is still kept warm (it is numbered when it ends).
    pub number: Option<u64>,
}

fn or_dash(text: Option<&str>) -> &str {
    text.unwrap_or("-")
}

/// Which deployments `history` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    /// At most this many rows; `None`: every deployment (`--all`).
    pub limit: Option<usize>,
    /// Only those numbered below this (`--before`).
    pub before: Option<u64>,
}

/// The rows a page of the history asks for at a time with `--all`: as many S3 reads
/// as a page has, however long the history.
const ALL_PAGE: usize = 200;

/// Past deployments, newest first, a page at a time.
pub async fn history(
    reporter: &std::sync::Arc<Reporter>,
    config_path: &Path,
    service: Option<&str>,
    paging: Paging,
) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let (service_name, _) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    let clients = setup::clients(&config).await?;
    let store = setup::store(&config, &clients, reporter);
    use deployer_engine::state::Store as _;
    setup::check_state_files(&store, service_name)?;
    let mut rows = Vec::new();
    // A promoted deployment whose old side is still warm is unfinished until that side
    // is scaled down, but it is what is live: it heads the first page.
    if paging.before.is_none()
        && let Some(journal) = store.active(service_name).await?
        && let Some((release, until_ms)) = journal.warm_side()
        && let Some(Record::Started {
            id,
            strategy,
            new_release,
            stable_release,
            at_ms,
            ..
        }) = journal.started()
    {
        let detail = format!(
            "{} is live; {} stays warm until {}",
            short_release(new_release),
            short_release(release),
            deployer_engine::describe::utc(until_ms)
        );
        rows.push(HistoryRow {
            deployment: id.clone(),
            result: DeployResult::Promoted,
            strategy: strategy.clone(),
            stable_release: stable_release
                .as_deref()
                .map(|r| short_release(r).to_string()),
            new_release: short_release(new_release).to_string(),
            started_ms: *at_ms,
            detail: reporter.secrets.scrub(&detail),
            number: None,
        });
    }
    let mut before = paging.before;
    let more = loop {
        let want = paging
            .limit
            .map_or(ALL_PAGE, |limit| limit.saturating_sub(rows.len()));
        if want == 0 {
            break false;
        }
        let page = store.recent(service_name, want, before).await?;
        before = page.entries.last().map(|s| s.number);
        rows.extend(page.entries.into_iter().map(|s| {
            HistoryRow {
                deployment: s.id,
                result: s.result,
                strategy: s.strategy,
                stable_release: s
                    .stable_release
                    .as_deref()
                    .map(|r| short_release(r).to_string()),
                new_release: short_release(&s.new_release).to_string(),
                started_ms: s.started_ms,
                detail: reporter.secrets.scrub(&s.detail),
                number: Some(s.number),
            }
        }));
        if !page.more || paging.limit.is_some() {
            break page.more;
        }
    };
    // Older deployments: said on stderr, so that stdout stays the rows (a JSON array).
    if more && let Some(last) = before {
        reporter.line(&format!(
            "older deployments: `deployer history --service {} --before {last}`",
            printable(service_name)
        ));
    }
    if reporter.json() {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Outcome::Success);
    }
    if rows.is_empty() {
        outln!("no deployments of `{}` yet", printable(service_name));
    }
    for row in rows {
        let result = serde_json::to_value(row.result)?;
        // Every field came from a journal: escaped onto the row's line.
        let p = |text: &str| printable(text).into_owned();
        outln!(
            "{}  {:<15} {:<10} {} -> {}  {}",
            p(&row.deployment),
            result.as_str().unwrap_or("-"),
            p(&row.strategy),
            p(or_dash(row.stable_release.as_deref())),
            p(&row.new_release),
            p(&row.detail)
        );
    }
    Ok(Outcome::Success)
}
