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
/// characters. deployer writes `<service>-<YYYYMMDD>-<HHMMSS>-<suffix>` (see
/// [`deployment_id`]); journals of earlier versions keep `d<ms>-<pid>-<n>`, read as ever.
pub fn valid_id(id: &str) -> bool {
    valid(id, 128)
}

/// The alphabet of an id's suffix: Crockford's base 32 in lower case, without the
/// letters people misread (`i`, `l`, `o`, `u`), so an id read aloud or retyped is the id.
const SUFFIX: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new deployment id for `service`: `web-20261201-041230-7kq3`, the UTC date and time
/// and four random characters. A person can read when it ran and type it; ids of one
/// service sort by time to the second; two runs in the same second (two CI jobs, two
/// machines) are told apart by the suffix (20 random bits), and never within one process.
/// A valid id (`valid_id`) for every valid service name.
pub fn deployment_id(service: &str) -> String {
    use std::sync::Mutex;
    /// The second of the last ids made here, and their suffixes.
    static ISSUED: Mutex<(i64, Vec<u32>)> = Mutex::new((0, Vec::new()));
    let now = jiff::Timestamp::now();
    let mut issued = ISSUED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if issued.0 != now.as_second() {
        *issued = (now.as_second(), Vec::new());
    }
    loop {
        let mut random = [0u8; 4];
        // Without the OS's randomness (never seen on Linux), the clock's nanoseconds
        // and the process id still make two processes unlikely to agree.
        if getrandom::fill(&mut random).is_err() {
            random =
                (now.subsec_nanosecond() as u32 ^ std::process::id().rotate_left(20)).to_le_bytes();
        }
        let suffix = u32::from_le_bytes(random) & 0xf_ffff;
        if !issued.1.contains(&suffix) {
            issued.1.push(suffix);
            return format_id(service, now, suffix);
        }
    }
}

/// The id of `service` at `at` with the suffix from the low 20 bits of `random`.
fn format_id(service: &str, at: jiff::Timestamp, random: u32) -> String {
    let suffix: String = (0..4)
        .map(|i| SUFFIX[(random >> (5 * i)) as usize & 31] as char)
        .collect();
    format!("{service}-{}-{suffix}", at.strftime("%Y%m%d-%H%M%S"))
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

    #[test]
    fn a_deployment_id_reads_as_service_date_time_and_suffix() {
        let at: jiff::Timestamp = "2026-12-01T04:12:30.999Z".parse().unwrap();
        assert_eq!(format_id("web", at, 0), "web-20261201-041230-0000");
        // Five bits a character, the first from the lowest.
        assert_eq!(
            format_id("web", at, 7 | (20 << 5) | (23 << 10) | (3 << 15)),
            "web-20261201-041230-7mq3"
        );
        assert_eq!(format_id("web", at, u32::MAX), "web-20261201-041230-zzzz");
    }

    /// Valid in the state store for the longest service name with every character a
    /// name may hold; S3 keys and DynamoDB values take these characters as they are.
    #[test]
    fn new_ids_are_valid_ids_sorting_by_time_and_distinct() {
        let longest = format!("A{}", "z.-_9".repeat(13))
            .chars()
            .take(MAX_NAME)
            .collect::<String>();
        for service in ["web", "api-v2", "Web_1.blue", "0", &longest] {
            assert!(valid_service(service), "{service}");
            let id = deployment_id(service);
            assert!(valid_id(&id), "{id}");
            assert!(id.starts_with(&format!("{service}-20")), "{id}");
        }
        let early: jiff::Timestamp = "2026-12-01T23:59:59Z".parse().unwrap();
        let later: jiff::Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
        assert!(format_id("web", early, u32::MAX) < format_id("web", later, 0));
        // Many in one second: no two alike.
        let ids: std::collections::HashSet<String> =
            (0..200).map(|_| deployment_id("web")).collect();
        assert_eq!(ids.len(), 200);
    }
}
