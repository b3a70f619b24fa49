//! Durations as config and plugin parameters write them: `"90s"`, `"5m"`, `"1h30m"`,
//! `"250ms"`, or a plain number of seconds. One syntax for `deployer.toml`, strategy
//! parameters and everything deployer prints.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// A duration written as `"90s"`, `"5m"`, `"1h30m"`, `"250ms"` or a plain number of
/// seconds. Stored in milliseconds, the unit of the WIT contract.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration {
    pub millis: u64,
}

impl Duration {
    pub const ZERO: Duration = Duration { millis: 0 };

    pub const fn from_secs(secs: u64) -> Self {
        Duration {
            // Saturating: u64::MAX ms is 584 million years, and a wrapped product
            // would be a short duration nobody asked for.
            millis: secs.saturating_mul(1000),
        }
    }

    pub const fn is_zero(self) -> bool {
        self.millis == 0
    }

    /// Parse `"1h30m"`-style text.
    ///
    /// # Errors
    /// Describes the expected form when `text` is not a duration.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not a duration: write e.g. \"30s\", \"5m\", \"1h30m\" or \"250ms\""
            )
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(bad());
        }
        let (mut total, mut rest) = (0u64, text);
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let per_unit = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            total = value
                .checked_mul(per_unit)
                .and_then(|ms| total.checked_add(ms))
                .ok_or_else(bad)?;
        }
        Ok(Duration { millis: total })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.millis;
        if ms == 0 {
            return f.write_str("0s");
        }
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\" or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
                secs.checked_mul(1000)
                    .map(|millis| Duration { millis })
                    .ok_or_else(|| E::custom("duration too large"))
            }
            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
                u64::try_from(secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
                    .and_then(|s| self.visit_u64(s))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
                Duration::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(Duration::parse("1h30m").unwrap().millis, 5_400_000);
        assert_eq!(Duration::parse("250ms").unwrap().millis, 250);
        assert_eq!(Duration::parse("2m5s").unwrap().millis, 125_000);
        assert_eq!(Duration::parse("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in ["", "5", "m5", "5x", "5 m", "-1s", "99999999999999999999h"] {
            assert!(Duration::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn displays_round_trip() {
        for text in ["0s", "250ms", "5m", "1h30m", "2m5s"] {
            assert_eq!(Duration::parse(text).unwrap().to_string(), text);
        }
    }
}
