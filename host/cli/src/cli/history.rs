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
}

fn or_dash(text: Option<&str>) -> &str {
    text.unwrap_or("-")
}

/// Past deployments, newest first.
pub async fn history(
    reporter: &std::sync::Arc<Reporter>,
    config_path: &Path,
    service: Option<&str>,
) -> anyhow::Result<Outcome> {
    let config = Config::load(config_path)?;
    let (service_name, _) = config.service(service).map_err(|e| ConfigErrors(vec![e]))?;
    let clients = setup::clients(&config).await?;
    let store = setup::store(&config, &clients, reporter);
    use deployer_engine::state::Store as _;
    let mut history = setup::read_state_first(&store, service_name).await?;
    // A promoted deployment whose old side is still warm is unfinished until that side
    // is scaled down, but it is what is live: it heads the list.
    if let Some(journal) = store.active(service_name).await?
        && journal.warm_side().is_some()
    {
        history.push(journal);
    }
    let mut rows = Vec::new();
    for journal in history.iter().rev() {
        let Some(Record::Started {
            id,
            strategy,
            new_release,
            stable_release,
            at_ms,
            ..
        }) = journal.started()
        else {
            continue;
        };
        let warm = journal.warm_side().map(|(release, until_ms)| {
            format!(
                "{} is live; {} stays warm until {}",
                short_release(new_release),
                short_release(release),
                deployer_engine::describe::utc(until_ms)
            )
        });
        let (result, detail) = match &warm {
            Some(detail) => (DeployResult::Promoted, detail.as_str()),
            None => journal
                .finished()
                .unwrap_or((DeployResult::RollbackFailed, "unfinished")),
        };
        rows.push(HistoryRow {
            deployment: id.clone(),
            result,
            strategy: strategy.clone(),
            stable_release: stable_release
                .as_deref()
                .map(|r| short_release(r).to_string()),
            new_release: short_release(new_release).to_string(),
            started_ms: *at_ms,
            detail: reporter.secrets.scrub(detail),
        });
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
