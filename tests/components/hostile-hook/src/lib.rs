//! A hook that uses the http and kv capabilities as its params say.

use deployer_plugin_sdk::hook::{HookContext, http, kv, result};
use deployer_plugin_sdk::{GateResult, GateStatus, Hook, PluginInfo};
use serde::Deserialize;

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    remember: Option<String>,
    /// Misbehave instead: "loop", "trap", "oom", "huge".
    #[serde(default)]
    mode: Option<String>,
}

struct Probe;

impl Hook for Probe {
    type Params = Params;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "probe".into(),
            version: "0.1.0".into(),
            description: "calls capabilities on request".into(),
        }
    }

    fn run(params: &Params, ctx: &HookContext) -> GateResult {
        match params.mode.as_deref() {
            Some("loop") => loop {
                std::hint::black_box(());
            },
            Some("trap") => panic!("deliberate trap"),
            Some("oom") => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![7u8; 1 << 20]));
                }
            }
            Some("huge") => return result("probe", GateStatus::Pass, "y".repeat(8 << 20)),
            _ => {}
        }
        if let Some(value) = &params.remember {
            let previous = kv::get("remembered").map(|v| String::from_utf8_lossy(&v).into_owned());
            if let Err(e) = kv::set("remembered", value.as_bytes()) {
                return result("probe", GateStatus::Fail, format!("kv: {e:?}"));
            }
            return result("probe", GateStatus::Pass, format!("previous={previous:?}"));
        }
        if let Some(url) = &params.url {
            let request = http::Request {
                method: "GET".into(),
                url: url.clone(),
                headers: vec![],
                body: vec![],
                timeout_ms: 1000,
            };
            return match http::send(&request) {
                Ok(response) => result(
                    "probe",
                    GateStatus::Pass,
                    format!("status {}", response.status),
                ),
                Err(e) => result("probe", GateStatus::Fail, format!("http: {e:?}")),
            };
        }
        result("probe", GateStatus::Pass, format!("ran at {:?}", ctx.point))
    }
}

deployer_plugin_sdk::export_hook!(Probe);
