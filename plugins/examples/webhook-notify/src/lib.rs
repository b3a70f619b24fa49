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

/// What is wrong with `url` as a webhook address, if anything: it needs an `http://` or
/// `https://` scheme and a host, or every notification would fail at run time (after
/// traffic moved) instead of at `deployer validate`. The value itself is never echoed: a
/// webhook URL carries its secret in the path.
pub fn webhook_problem(url: &str) -> Option<&'static str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("is not a URL: it has no `https://` scheme");
    };
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return Some("has a scheme other than `https://` or `http://`");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Some("has user info (`user@`) before its host; put credentials in the path");
    }
    // The host is what comes before an optional `:port` (an IPv6 literal keeps its `[…]`).
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Some("has no host after the scheme");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("contains spaces or control characters");
    }
    None
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
        webhook_problem(&params.webhook)
            .map(|why| {
                param_error(
                    "webhook",
                    format!(
                        "{why}; write the webhook's full URL, e.g. \
                         \"https://hooks.slack.com/services/T000/B000/XXXX\""
                    ),
                )
            })
            .into_iter()
            .collect()
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
    fn a_webhook_needs_a_scheme_and_a_host() {
        for good in [
            "https://hooks.slack.com/services/T000/B000/XXXX",
            "http://127.0.0.1:8080/hook",
            "HTTPS://hooks.example.com",
            "http://[::1]:9/x",
        ] {
            assert_eq!(webhook_problem(good), None, "{good}");
        }
        for (bad, says) in [
            ("example.com", "no `https://` scheme"),
            ("hooks.example.com/x", "no `https://` scheme"),
            ("ftp://example.com", "other than `https://`"),
            ("https://", "no host"),
            ("https:///path", "no host"),
            ("https://:443/x", "no host"),
            ("https://user@example.com/", "user info"),
            ("https://example.com/a b", "spaces"),
        ] {
            let problem = webhook_problem(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(problem.contains(says), "{bad}: {problem}");
        }
        let errors = <Notify as Hook>::check(&Params {
            webhook: "example.com".into(),
            channel: None,
        });
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "webhook");
        assert!(
            errors[0]
                .message
                .contains("e.g. \"https://hooks.slack.com/"),
            "{}",
            errors[0].message
        );
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
