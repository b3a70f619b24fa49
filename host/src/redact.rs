//! Secrets never reach output: URLs lose their credentials and query values where they
//! are shown, and every line the CLI prints is scrubbed of the secret values it knows
//! (AWS secrets from the environment, credentials and tokens found in the config).

use std::sync::RwLock;

use crate::config::{Config, GateConfig};

const MASK: &str = "***";

/// A URL fit to print: user info and query values masked. Text that is not a URL is
/// returned unchanged.
pub fn url(raw: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(raw) else {
        return raw.to_string();
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        let _ = parsed.set_username(MASK);
        let _ = parsed.set_password(None);
    }
    if parsed.query().is_some() {
        let masked: Vec<String> = parsed
            .query_pairs()
            .map(|(key, _)| format!("{key}={MASK}"))
            .collect();
        parsed.set_query(Some(&masked.join("&")));
    }
    parsed.to_string()
}

/// The secret parts of a URL: its password and query values.
fn url_secrets(raw: &str) -> Vec<String> {
    let Ok(parsed) = reqwest::Url::parse(raw) else {
        return Vec::new();
    };
    let mut found: Vec<String> = parsed.password().map(str::to_string).into_iter().collect();
    found.extend(parsed.query_pairs().map(|(_, value)| value.into_owned()));
    found
}

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

fn table_secrets(table: &toml::Table, found: &mut Vec<String>) {
    for (key, value) in table {
        match value {
            toml::Value::String(text) => {
                if secret_key(key) {
                    found.push(text.clone());
                }
                found.extend(url_secrets(text));
            }
            toml::Value::Table(inner) => table_secrets(inner, found),
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
        for service in config.services.values() {
            let service = service.get_ref();
            for gate in &service.gates {
                if let GateConfig::Http { url, .. } = gate.get_ref() {
                    found.extend(url_secrets(url));
                }
            }
            for hook in &service.hooks {
                table_secrets(&hook.get_ref().params, &mut found);
            }
            for params in service.strategies.values() {
                table_secrets(params.get_ref(), &mut found);
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
        table_secrets(&table, &mut found);
        assert!(
            found.contains(&"https://hooks.example.com/services/T000/B000/XXXXXXXX".to_string())
        );
        assert!(found.contains(&"tok_live_123456".to_string()));
        assert!(!found.contains(&"deploys".to_string()));
    }
}
