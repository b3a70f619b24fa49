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

/// `text` fit to print on one line of a terminal or a CI log: control characters
/// (newlines, escape sequences, carriage returns) and Unicode line separators are shown
/// escaped, so text from outside cannot start a line of its own, forge a GitHub
/// workflow command (`::error::…`) or move the cursor.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_stays_on_its_line() {
        assert_eq!(printable("ok: 3/3"), "ok: 3/3");
        assert_eq!(
            printable("done\n::error::forged\r\x1b[2Kx\u{2028}y"),
            "done\\n::error::forged\\r\\u{1b}[2Kx\\u{2028}y"
        );
    }
}
