//! Parameter parsing: JSON from the host into typed Rust, with field paths in errors.

use serde::de::DeserializeOwned;

pub use deployer_contract::{Duration, MAX_BAKE};

use crate::ParamError;

/// The error for a bake (or any wait a strategy turns into a `bake` step) longer than
/// the host accepts, naming `field`; `None` when it fits.
pub fn check_bake(field: impl Into<String>, bake: Duration) -> Option<ParamError> {
    (bake > MAX_BAKE).then(|| {
        crate::param_error(
            field,
            format!("is {bake}; a bake is at most {MAX_BAKE} (the host refuses longer ones)"),
        )
    })
}

/// The error for an approval timeout (the longest an `await-approval` step waits),
/// naming `field`: longer than the host accepts (the longest bake), or zero, which gives
/// nobody time to answer. `None` when it fits.
pub fn check_approval_timeout(field: impl Into<String>, timeout: Duration) -> Option<ParamError> {
    if timeout.is_zero() {
        return Some(crate::param_error(
            field,
            "is 0s; give a person time to answer with `deployer promote`, e.g. \"1h\"",
        ));
    }
    (timeout > MAX_BAKE).then(|| {
        crate::param_error(
            field,
            format!(
                "is {timeout}; an approval waits at most {MAX_BAKE}, like a bake (the host \
                 refuses longer waits)"
            ),
        )
    })
}

/// Parse a plugin's parameters (a JSON object) into `T`.
///
/// # Errors
/// Returns one [`ParamError`] naming the offending field (`steps[1].weight`) when the
/// JSON does not fit `T`.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, Vec<ParamError>> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { String::new() } else { path };
        vec![crate::param_error(
            field,
            strip_position(&err.inner().to_string()),
        )]
    })
}

/// serde_json appends "at line 1 column 57" of the *JSON* text, which means nothing to a
/// user who wrote TOML.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bakes_longer_than_the_host_accepts_are_refused_by_name() {
        assert_eq!(check_bake("bake", MAX_BAKE), None);
        let error = check_bake("steps[0].bake", Duration::from_secs(24 * 3600 + 1)).unwrap();
        assert_eq!(error.field, "steps[0].bake");
        assert_eq!(
            error.message,
            "is 24h1s; a bake is at most 24h (the host refuses longer ones)"
        );
    }

    #[test]
    fn approval_timeouts_are_held_to_the_longest_bake_and_above_zero() {
        assert_eq!(check_approval_timeout("t", MAX_BAKE), None);
        assert_eq!(check_approval_timeout("t", Duration::from_secs(1)), None);
        let long = check_approval_timeout("approval-timeout", Duration::from_secs(25 * 3600));
        let long = long.unwrap();
        assert_eq!(long.field, "approval-timeout");
        assert!(
            long.message
                .starts_with("is 25h; an approval waits at most 24h"),
            "{long:?}"
        );
        let zero = check_approval_timeout("approval-timeout", Duration::ZERO).unwrap();
        assert!(
            zero.message.contains("is 0s; give a person time"),
            "{zero:?}"
        );
    }

    #[test]
    fn parse_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct P {
            steps: Vec<S>,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct S {
            bake: Duration,
        }
        let errors = parse::<P>(r#"{"steps":[{"bake":"5m"},{"bake":"soon"}]}"#).unwrap_err();
        assert_eq!(errors[0].field, "steps[1].bake");
        assert!(
            errors[0].message.contains("`soon` is not a duration"),
            "{}",
            errors[0].message
        );
    }
}
