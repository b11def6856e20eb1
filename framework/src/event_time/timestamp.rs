//! ISO 8601 UTC timestamps with millisecond precision (`2025-05-07T15:30:31.891Z`), the
//! format of every `timestamp` field in the pipeline's records.

use chrono::{DateTime, SecondsFormat, Utc};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {text:?}: expected ISO 8601 UTC like \"2025-05-07T15:30:31.891Z\"")]
pub struct TimestampError {
    pub text: String,
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_millis(millis: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(millis) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        // Out of chrono's range (±262,000 years): not a real event time; keep it visible.
        None => format!("invalid-epoch-ms:{millis}"),
    }
}

/// Parses an RFC 3339 / ISO 8601 timestamp with an offset into epoch milliseconds
/// (sub-millisecond digits are truncated).
pub fn parse_millis(text: &str) -> Result<i64, TimestampError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| TimestampError {
            text: text.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_z_suffix() {
        assert_eq!(format_millis(1_746_631_831_891), "2025-05-07T15:30:31.891Z");
        assert_eq!(format_millis(1_746_631_860_000), "2025-05-07T15:31:00.000Z");
    }

    #[test]
    fn parse_round_trips_and_accepts_offsets() {
        assert_eq!(parse_millis("2025-05-07T15:30:31.891Z"), Ok(1_746_631_831_891));
        assert_eq!(parse_millis("2025-05-07T17:30:31.891+02:00"), Ok(1_746_631_831_891));
        assert!(parse_millis("2025-05-07 15:30").is_err());
        assert!(parse_millis("").is_err());
    }
}
