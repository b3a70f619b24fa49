//! Service names and deployment ids: what they may be, checked before either becomes
//! part of a path (a local state directory, an S3 key) or a line of output.
//!
//! A service name comes from `deployer.toml`; a deployment id from a state file
//! (`active`, `history.jsonl`, an S3 key) that anyone with write access to the state
//! could have edited. Unchecked, `..`, `a/b` or `/etc/passwd` would walk out of the
//! state directory, and an id in one service's history could point `status` at another
//! service's deployments.

/// The longest service name (ECS allows 255 for its own names; a deployer service
/// names a config table and a state directory, and 64 keeps paths and lines short).
pub const MAX_NAME: usize = 64;

/// What a service name may be, in words for error messages.
pub const NAME_RULE: &str = "1 to 64 characters: ASCII letters, digits, `-`, `_` and `.`, \
                             starting with a letter or digit";

/// Whether `name` is a valid service name (see [`NAME_RULE`]). Such a name is one path
/// component that is neither `.` nor `..`, and prints as itself.
pub fn valid_service(name: &str) -> bool {
    valid(name, MAX_NAME)
}

/// Whether `id` is a valid deployment id: the same character set as names, up to 128
/// characters (deployer writes `d<ms>-<pid>-<n>`).
pub fn valid_id(id: &str) -> bool {
    valid(id, 128)
}

fn valid(text: &str, max: usize) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && text.len() <= max
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_leave_their_directory_or_their_line_are_invalid() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            "a\0b",
            "a\nb",
            "-flag",
            ".hidden",
            "a b",
            "web\u{2028}",
            "wéb",
            &"a".repeat(65),
        ] {
            assert!(!valid_service(bad), "{bad:?}");
        }
        for good in ["web", "api-v2", "Web_1.blue", &"a".repeat(64)] {
            assert!(valid_service(good), "{good:?}");
        }
        assert!(valid_id("d1764540000000-4242-0"));
        assert!(!valid_id("../other/deployments/d1"));
    }
}
