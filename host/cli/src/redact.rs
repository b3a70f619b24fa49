//! Secrets never reach output: URLs lose their credentials and query values where they
//! are shown, and every line the CLI prints is scrubbed of the secret values it knows
//! (AWS secrets from the environment, credentials and tokens found in the config).

use std::sync::RwLock;

use deployer_targets::gates::CheckSpec;

use crate::config::Config;

const MASK: &str = "***";

pub use deployer_engine::redact::url;
use deployer_engine::redact::url_secrets;

/// Parameter names whose values are treated as secrets.
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "credential",
        "auth",
        "api-key",
        "api_key",
        "apikey",
        "webhook",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// Secret-looking values of a parameter object (as plugins receive it, in JSON).
fn params_secrets(params: &serde_json::Value, found: &mut Vec<String>) {
    let serde_json::Value::Object(table) = params else {
        return;
    };
    for (key, value) in table {
        match value {
            serde_json::Value::String(text) => {
                if secret_key(key) {
                    found.push(text.clone());
                }
                found.extend(url_secrets(text));
            }
            serde_json::Value::Object(_) => params_secrets(value, found),
            _ => {}
        }
    }
}

/// The secret values known to this process, scrubbed from everything printed.
#[derive(Debug, Default)]
pub struct Secrets {
    values: RwLock<Vec<String>>,
}

impl Secrets {
    /// AWS secrets from the environment.
    pub fn from_env() -> Secrets {
        let secrets = Secrets::default();
        secrets.add(
            ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
                .iter()
                .filter_map(|name| std::env::var(name).ok()),
        );
        secrets
    }

    /// Credentials in gate URLs and secret-looking hook and strategy parameters.
    pub fn add_config(&self, config: &Config) {
        let mut found = Vec::new();
        let mut params = |json: &str| {
            if let Ok(value) = serde_json::from_str(json) {
                params_secrets(&value, &mut found);
            }
        };
        for service in config.services.values() {
            for hook in &service.hooks {
                params(&hook.params);
            }
            for json in service.strategies.values() {
                params(json);
            }
        }
        // The Prometheus bearer token, from the variable config names.
        if let Some(deployer_targets::prometheus::PrometheusSpec {
            auth: deployer_targets::prometheus::PrometheusAuth::Bearer { env },
            ..
        }) = &config.prometheus
            && let Ok(token) = std::env::var(env)
        {
            found.push(token.trim().to_string());
        }
        for service in config.services.values() {
            for gate in &service.gates {
                if let CheckSpec::Http(http) = &gate.check {
                    found.extend(url_secrets(&http.url));
                }
            }
        }
        self.add(found);
    }

    fn add(&self, values: impl IntoIterator<Item = String>) {
        let mut known = self.values.write().unwrap_or_else(|e| e.into_inner());
        // Very short values would mask ordinary words; they are not credentials anyway.
        known.extend(values.into_iter().filter(|v| v.len() >= 6));
        known.sort_by_key(|v| std::cmp::Reverse(v.len()));
        known.dedup();
    }

    /// `text` with every known secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let known = self.values.read().unwrap_or_else(|e| e.into_inner());
        let mut text = text.to_string();
        for secret in known.iter() {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), MASK);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_query_values() {
        assert_eq!(
            url("https://ci:hunter22@example.com/health?token=abc123&x=1"),
            "https://***@example.com/health?token=***&x=***"
        );
        assert_eq!(
            url("http://127.0.0.1:8080/health"),
            "http://127.0.0.1:8080/health"
        );
        assert_eq!(url("not a url"), "not a url");
    }

    #[test]
    fn known_secrets_are_scrubbed_and_short_values_ignored() {
        let secrets = Secrets::default();
        secrets.add(["wJalrXUtnFEMI/K7MDENG".to_string(), "abc".to_string()]);
        assert_eq!(
            secrets.scrub("key wJalrXUtnFEMI/K7MDENG, abc"),
            "key ***, abc"
        );
    }

    #[test]
    fn secret_looking_parameters_are_collected() {
        let table: toml::Table = toml::from_str(
            r#"
            channel = "deploys"
            webhook-url = "https://hooks.example.com/services/T000/B000/XXXXXXXX"
            [auth]
            api-token = "tok_live_123456"
            "#,
        )
        .unwrap();
        let mut found = Vec::new();
        params_secrets(&serde_json::to_value(&table).unwrap(), &mut found);
        assert!(
            found.contains(&"https://hooks.example.com/services/T000/B000/XXXXXXXX".to_string())
        );
        assert!(found.contains(&"tok_live_123456".to_string()));
        assert!(!found.contains(&"deploys".to_string()));
    }
}
