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
