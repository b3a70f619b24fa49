//! A Slack-style webhook notifier: posts a one-line JSON message about the deployment
//! to an incoming-webhook URL. Attach it at `post-deploy` and `post-rollback`.
//!
//! ```toml
//! [plugins.notify]
//! kind = "hook"
//! path = "plugins/notify.wasm"
//! sha256 = "..."
//! http-allow = ["hooks.slack.com"]
//!
//! [[services.web.hooks]]
//! plugin = "notify"
//! at = ["post-deploy", "post-rollback"]
//! params = { webhook = "https://hooks.slack.com/services/T000/B000/XXXX", channel = "#deploys" }
//! ```
//!
//! A notification that cannot be delivered is reported inconclusive, never failed: a
//! chat outage must not roll back a good release.

use deployer_plugin_sdk::hook::{HookContext, http, result};
use deployer_plugin_sdk::{
    GateResult, GateStatus, Hook, LifecyclePoint, ParamError, PluginInfo, param_error,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Params {
    pub webhook: String,
    #[serde(default)]
    pub channel: Option<String>,
}

pub struct Notify;

/// The message for `ctx`, as the webhook's JSON body.
pub fn message(params: &Params, ctx: &HookContext) -> String {
    let what = match ctx.point {
        LifecyclePoint::PostDeploy => format!("{} is live on `{}`", ctx.new_release, ctx.service),
        LifecyclePoint::PostRollback => format!(
            ":warning: `{}` was rolled back to {}",
            ctx.service,
            ctx.stable_release
                .as_deref()
                .unwrap_or("the stable release")
        ),
        LifecyclePoint::PreDeploy => format!("deploying {} to `{}`", ctx.new_release, ctx.service),
        _ => format!(
            "`{}`: {}% of traffic on {}",
            ctx.service, ctx.new_traffic_percent, ctx.new_release
        ),
    };
    let mut body =
        serde_json::json!({ "text": format!("{what} (deployment {})", ctx.deployment_id) });
    if let Some(channel) = &params.channel {
        body["channel"] = serde_json::Value::String(channel.clone());
    }
    body.to_string()
}

impl Hook for Notify {
    type Params = Params;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "webhook-notify".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Posts deployment events to a chat webhook".into(),
        }
    }

    fn check(params: &Params) -> Vec<ParamError> {
        if params.webhook.starts_with("https://") || params.webhook.starts_with("http://") {
            Vec::new()
        } else {
            vec![param_error("webhook", "must be an http(s) URL")]
        }
    }

    fn run(params: &Params, ctx: &HookContext) -> GateResult {
        let request = http::Request {
            method: "POST".into(),
            url: params.webhook.clone(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: message(params, ctx).into_bytes(),
            timeout_ms: 5_000,
        };
        match http::send(&request) {
            Ok(response) if (200..300).contains(&response.status) => {
                result("webhook-notify", GateStatus::Pass, "notified")
            }
            Ok(response) => result(
                "webhook-notify",
                GateStatus::Inconclusive,
                format!("webhook answered {}", response.status),
            ),
            Err(error) => result(
                "webhook-notify",
                GateStatus::Inconclusive,
                format!("{error:?}"),
            ),
        }
    }
}

deployer_plugin_sdk::export_hook!(Notify);

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(point: LifecyclePoint) -> HookContext {
        HookContext {
            point,
            deployment_id: "d-1".into(),
            service: "web".into(),
            new_release: "web:2".into(),
            stable_release: Some("web:1".into()),
            new_traffic_percent: 100,
            params: String::new(),
        }
    }

    #[test]
    fn messages_say_what_happened() {
        let params = Params {
            webhook: "https://hooks.example.com/x".into(),
            channel: Some("#deploys".into()),
        };
        let live: serde_json::Value =
            serde_json::from_str(&message(&params, &ctx(LifecyclePoint::PostDeploy))).unwrap();
        assert_eq!(live["text"], "web:2 is live on `web` (deployment d-1)");
        assert_eq!(live["channel"], "#deploys");
        let back = message(&params, &ctx(LifecyclePoint::PostRollback));
        assert!(back.contains("rolled back to web:1"), "{back}");
    }
}
