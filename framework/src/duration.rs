//! Durations as written in pipeline files: `500ms`, `30s`, `1m`, `1h`, `1d`.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration with millisecond resolution, parsed from `30s`-style text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationSpec {
    millis: i64,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: expected a whole number and a unit (ms, s, m, h, d), e.g. \"30s\" or \"1m\"")]
pub struct DurationParseError {
    pub text: String,
}

impl DurationSpec {
    pub const fn from_millis(millis: i64) -> Self {
        DurationSpec { millis }
    }
    pub const fn from_secs(secs: i64) -> Self {
        DurationSpec {
            millis: secs * 1000,
        }
    }
    pub const fn as_millis(self) -> i64 {
        self.millis
    }
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis.max(0) as u64)
    }
}

impl FromStr for DurationSpec {
    type Err = DurationParseError;

    /// Accepts exactly one `<integer><unit>` term: multi-term forms such as `1m30s` are
    /// rejected so that window names stay canonical and easy to compare.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || DurationParseError {
            text: text.to_string(),
        };
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(err)?;
        let (digits, unit) = trimmed.split_at(split);
        if digits.is_empty() {
            return Err(err());
        }
        let value: i64 = digits.parse().map_err(|_| err())?;
        let unit_ms: i64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(err()),
        };
        value
            .checked_mul(unit_ms)
            .map(DurationSpec::from_millis)
            .ok_or_else(err)
    }
}

impl fmt::Display for DurationSpec {
    /// The largest unit that divides the duration exactly: 60000 ms prints as `1m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(i64, &str); 4] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (unit_ms, suffix) in UNITS {
            if self.millis != 0 && self.millis % unit_ms == 0 {
                return write!(f, "{}{}", self.millis / unit_ms, suffix);
            }
        }
        write!(f, "{}ms", self.millis)
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Name of the JSON Schema `format` that the validator checks with [`DurationSpec::from_str`].
pub const DURATION_FORMAT: &str = "duration";

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "type": "string",
            "format": DURATION_FORMAT,
            "description": "A duration: a whole number and a unit (ms, s, m, h, d), e.g. \"30s\"."
        })
    }
    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        for (text, ms) in [
            ("250ms", 250),
            ("30s", 30_000),
            ("1m", 60_000),
            ("15m", 900_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
        ] {
            assert_eq!(
                text.parse::<DurationSpec>().unwrap().as_millis(),
                ms,
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_missing_unit_unknown_unit_and_compound_forms() {
        for text in ["30", "s", "30x", "1m30s", "-1s", "", "1.5s"] {
            assert!(text.parse::<DurationSpec>().is_err(), "{text} should fail");
        }
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(DurationSpec::from_millis(60_000).to_string(), "1m");
        assert_eq!(DurationSpec::from_millis(90_000).to_string(), "90s");
        assert_eq!(DurationSpec::from_millis(3_600_000).to_string(), "1h");
        assert_eq!(DurationSpec::from_millis(1_500).to_string(), "1500ms");
        assert_eq!(DurationSpec::from_millis(0).to_string(), "0ms");
    }
}
