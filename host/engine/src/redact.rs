//! URLs fit to print: user info and query values masked wherever a URL is shown (gate
//! names, transport errors, plugin requests).

const MASK: &str = "***";

/// A URL fit to print: user info and query values masked. Text that is not a URL is
/// returned unchanged.
pub fn url(raw: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(raw) else {
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
pub fn url_secrets(raw: &str) -> Vec<String> {
    let Ok(parsed) = url::Url::parse(raw) else {
        return Vec::new();
    };
    let mut found: Vec<String> = parsed.password().map(str::to_string).into_iter().collect();
    found.extend(parsed.query_pairs().map(|(_, value)| value.into_owned()));
    found
}
