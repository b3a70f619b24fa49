//! A database-migration gate for `pre-deploy`: asks the migration service whether the
//! schema the new release needs is in place, and holds the deployment until it is.
//!
//! The status endpoint answers JSON like `{"version": "2024_11_20_add_odds", "pending": 0}`.
//! `pending > 0` is inconclusive (the strategy's `gates` policy retries and then gives
//! up), a version different from `expect-version` fails. The last version seen is kept
//! in the deployment's key/value store so the post-deploy check can compare.
//!
//! ```toml
//! [plugins.migrations]
//! kind = "hook"
//! path = "plugins/db-migration.wasm"
//! sha256 = "..."
//! http-allow = ["migrations.internal.example.com"]
//! kv = true
//!
//! [[services.api.hooks]]
//! plugin = "migrations"
//! at = ["pre-deploy"]
//! params = { status-url = "https://migrations.internal.example.com/status", expect-version = "2024_11_20_add_odds" }
//! ```

use deployer_plugin_sdk::hook::{HookContext, http, kv, result};
use deployer_plugin_sdk::{GateResult, GateStatus, Hook, PluginInfo};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Params {
    pub status_url: String,
    #[serde(default)]
    pub expect_version: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub pending: u32,
}

pub struct Migrations;

/// The verdict on a status report.
pub fn judge(params: &Params, status: &Status) -> (GateStatus, String) {
    if status.pending > 0 {
        return (
            GateStatus::Inconclusive,
            format!("{} migration(s) still pending", status.pending),
        );
    }
    match &params.expect_version {
        Some(want) if *want != status.version => (
            GateStatus::Fail,
            format!("schema is at {}, the release needs {want}", status.version),
        ),
        _ => (GateStatus::Pass, format!("schema at {}", status.version)),
    }
}

impl Hook for Migrations {
    type Params = Params;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "db-migration".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Holds a deployment until its database migrations are applied".into(),
        }
    }

    fn run(params: &Params, _ctx: &HookContext) -> GateResult {
        let request = http::Request {
            method: "GET".into(),
            url: params.status_url.clone(),
            headers: vec![("accept".into(), "application/json".into())],
            body: Vec::new(),
            timeout_ms: 5_000,
        };
        let response = match http::send(&request) {
            Ok(response) if response.status == 200 => response,
            Ok(response) => {
                return result(
                    "db-migration",
                    GateStatus::Inconclusive,
                    format!("status endpoint answered {}", response.status),
                );
            }
            Err(error) => return result("db-migration", GateStatus::NoData, format!("{error:?}")),
        };
        let status: Status = match serde_json::from_slice(&response.body) {
            Ok(status) => status,
            Err(error) => {
                return result(
                    "db-migration",
                    GateStatus::Fail,
                    format!("unreadable status: {error}"),
                );
            }
        };
        let _ = kv::set("schema-version", status.version.as_bytes());
        let (verdict, detail) = judge(params, &status);
        result("db-migration", verdict, detail)
    }
}

deployer_plugin_sdk::export_hook!(Migrations);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_migrations_hold_and_a_wrong_version_fails() {
        let params = Params {
            status_url: "https://m/status".into(),
            expect_version: Some("v2".into()),
        };
        let status = |version: &str, pending| Status {
            version: version.into(),
            pending,
        };
        assert_eq!(judge(&params, &status("v1", 3)).0, GateStatus::Inconclusive);
        assert_eq!(judge(&params, &status("v1", 0)).0, GateStatus::Fail);
        assert_eq!(judge(&params, &status("v2", 0)).0, GateStatus::Pass);
    }
}
