//! Moving-statistics records (`btc-price-moving`): per key and window end, the count,
//! average and population standard deviation of the values of each window:
//!
//! ```json
//! {"timestamp":"2025-05-07T15:31:00.000Z","symbol":"BTCUSDT","stats":[
//!   {"window":"30s","window_start":"2025-05-07T15:30:30.000Z","count":300,
//!    "avg_price":97009.021,"std_price":0.0049}]}
//! ```
//!
//! Field contract: `timestamp` (the window end, ISO 8601), the key under the key field's
//! name (the last segment of its path: `data.s` writes `"s"`), and per window `window`,
//! `window_start`, `count`, `avg_<value>` and `std_<value>` (`<value>`: the last segment of
//! the value field's path).

use std::borrow::Cow;

use serde_json::Value;

use super::{field_head, write_f64, Refusal};
use crate::contract::{JsonType, WrittenField};
use crate::event_time::{parse_millis, ClosedWindows, DecimalMoments, MillisWriter};

/// `avg_<value>`.
pub fn avg_name(value: &str) -> String {
    format!("avg_{value}")
}

/// `std_<value>`.
pub fn std_name(value: &str) -> String {
    format!("std_{value}")
}

/// The field contract of the records [`StatsWriter`] writes with names `key` and `value`.
pub fn written_fields(key: &str, value: &str) -> Vec<WrittenField> {
    use JsonType::{Array, Number, String};
    vec![
        WrittenField::new("timestamp", String),
        WrittenField::new(key, String),
        WrittenField::new("stats", Array),
        WrittenField::new("stats[].window", String),
        WrittenField::new("stats[].window_start", String),
        WrittenField::new("stats[].count", Number),
        WrittenField::new(format!("stats[].{}", avg_name(value)), Number),
        WrittenField::new(format!("stats[].{}", std_name(value)), Number),
    ]
}

/// Writes moving-statistics records straight into bytes, with every constant part
/// rendered once.
#[derive(Debug, Clone)]
pub struct StatsWriter {
    /// `,"symbol":`.
    key_head: Vec<u8>,
    /// `{"window":"30s","window_start":"` for each configured window.
    window_heads: Vec<Vec<u8>>,
    /// `,"avg_price":` and `,"std_price":`.
    avg_head: Vec<u8>,
    std_head: Vec<u8>,
}

impl StatsWriter {
    /// `key` and `value`: the names the key and the statistics are written under.
    pub fn new(window_names: &[String], key: &str, value: &str) -> Self {
        let window_heads = window_names
            .iter()
            .map(|name| {
                let mut head = b"{\"window\":".to_vec();
                crate::json::write_string(&mut head, name);
                head.extend_from_slice(b",\"window_start\":\"");
                head
            })
            .collect();
        StatsWriter {
            key_head: field_head(key),
            window_heads,
            avg_head: field_head(&avg_name(value)),
            std_head: field_head(&std_name(value)),
        }
    }

    /// `{"timestamp":e,"<key>":...,"stats":[...]}` with one entry per non-empty window in
    /// configured order. Floats are printed shortest-round-trip (ryu, as serde_json does).
    pub fn write(&self, out: &mut Vec<u8>, key: &str, closed: &ClosedWindows<'_, DecimalMoments>) {
        // The window bounds of a record mostly share a day: its date is rendered once.
        let mut times = MillisWriter::default();
        out.extend_from_slice(b"{\"timestamp\":\"");
        times.write(out, closed.end_ms);
        out.push(b'"');
        out.extend_from_slice(&self.key_head);
        crate::json::write_string(out, key);
        out.extend_from_slice(b",\"stats\":[");
        let mut ints = itoa::Buffer::new();
        for (n, (i, start_ms, stats)) in closed.non_empty().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            if let Some(head) = self.window_heads.get(i) {
                out.extend_from_slice(head);
            }
            times.write(out, start_ms);
            out.extend_from_slice(b"\",\"count\":");
            out.extend_from_slice(ints.format(stats.count()).as_bytes());
            out.extend_from_slice(&self.avg_head);
            // Values are bounded (price::MAX_VALUE), so both stay finite.
            write_f64(out, stats.mean().unwrap_or(0.0));
            out.extend_from_slice(&self.std_head);
            write_f64(out, stats.population_std().unwrap_or(0.0));
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    }
}

/// The statistics of one window, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    pub window: String,
    pub avg: f64,
    pub std: f64,
}

/// A parsed moving-statistics record.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsRecord<'a> {
    pub key: Cow<'a, str>,
    pub time_ms: i64,
    pub windows: Vec<WindowStats>,
}

/// The one parser of moving-statistics records. Only what a reader needs is checked:
/// `window_start` and `count` are not. Reasons: `malformed_json`, `missing_field`,
/// `invalid_symbol` (key), `invalid_timestamp`, `invalid_stats`.
#[derive(Debug, Clone)]
pub struct StatsReader {
    key: String,
    avg: String,
    std: String,
}

impl StatsReader {
    /// `key` and `value`: the names the writer used (see [`StatsWriter::new`]).
    pub fn new(key: &str, value: &str) -> Self {
        StatsReader {
            key: key.to_string(),
            avg: avg_name(value),
            std: std_name(value),
        }
    }

    pub fn parse<'a>(&self, payload: &'a [u8]) -> Result<StatsRecord<'a>, Refusal> {
        let what = "statistics record";
        let value: Value = serde_json::from_slice(payload).map_err(|e| {
            Refusal::new("malformed_json", format!("{what} is not valid JSON: {e}"))
        })?;
        let Value::Object(mut object) = value else {
            return Err(Refusal::new(
                "malformed_json",
                format!("{what} is not a JSON object"),
            ));
        };
        let missing = |name: &str| Refusal::new("missing_field", format!("missing field `{name}`"));
        let key = match object.remove(&self.key) {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::String(_)) => {
                return Err(Refusal::new(
                    "invalid_symbol",
                    format!("`{}` is empty", self.key),
                ))
            }
            Some(other) => {
                return Err(Refusal::new(
                    "invalid_symbol",
                    format!(
                        "`{}` must be a string, got {}",
                        self.key,
                        crate::json::kind(&other)
                    ),
                ))
            }
            None => return Err(missing(&self.key)),
        };
        let time_ms = match object.get("timestamp") {
            Some(Value::String(s)) => {
                parse_millis(s).map_err(|e| Refusal::new("invalid_timestamp", e.to_string()))?
            }
            Some(other) => {
                return Err(Refusal::new(
                    "invalid_timestamp",
                    format!(
                        "`timestamp` must be an ISO 8601 string, got {}",
                        crate::json::kind(other)
                    ),
                ))
            }
            None => return Err(missing("timestamp")),
        };
        let entries = match object.get("stats") {
            Some(Value::Array(entries)) => entries,
            Some(other) => {
                return Err(Refusal::new(
                    "invalid_stats",
                    format!("`stats` must be an array, got {}", crate::json::kind(other)),
                ))
            }
            None => return Err(missing("stats")),
        };
        let mut windows = Vec::with_capacity(entries.len());
        for entry in entries {
            windows.push(self.window(entry)?);
        }
        Ok(StatsRecord {
            key: Cow::Owned(key),
            time_ms,
            windows,
        })
    }

    fn window(&self, entry: &Value) -> Result<WindowStats, Refusal> {
        let Value::Object(entry) = entry else {
            return Err(Refusal::new(
                "invalid_stats",
                format!(
                    "a `stats` entry must be an object, got {}",
                    crate::json::kind(entry)
                ),
            ));
        };
        let field = |name: &str| {
            entry
                .get(name)
                .ok_or_else(|| Refusal::new("missing_field", format!("missing field `{name}`")))
        };
        let window = match field("window")? {
            Value::String(s) => s.clone(),
            other => {
                return Err(Refusal::new(
                    "invalid_stats",
                    format!(
                        "`window` must be a string, got {}",
                        crate::json::kind(other)
                    ),
                ))
            }
        };
        let number = |name: &str| -> Result<f64, Refusal> {
            let value = field(name)?;
            value.as_f64().filter(|v| v.is_finite()).ok_or_else(|| {
                Refusal::new(
                    "invalid_stats",
                    format!(
                        "window {window:?}: `{name}` must be a finite number, got {}",
                        crate::json::kind(value)
                    ),
                )
            })
        };
        let (avg, std) = (number(&self.avg)?, number(&self.std)?);
        if std < 0.0 {
            return Err(Refusal::new(
                "invalid_stats",
                format!("window {window:?}: {} {std} must be >= 0", self.std),
            ));
        }
        Ok(WindowStats { window, avg, std })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_stats_records_get_a_reason_per_problem() {
        let reader = StatsReader::new("symbol", "price");
        let ts = "2025-05-07T15:31:00.000Z";
        let cases = [
            (
                format!(r#"{{"symbol":"X","timestamp":"{ts}"}}"#),
                "missing_field",
            ),
            (
                format!(
                    r#"{{"symbol":"X","timestamp":"{ts}","stats":[{{"window":"30s","avg_price":1}}]}}"#
                ),
                "missing_field",
            ),
            (
                format!(
                    r#"{{"symbol":"X","timestamp":"{ts}","stats":[{{"window":"30s","avg_price":1,"std_price":-1}}]}}"#
                ),
                "invalid_stats",
            ),
            (
                format!(
                    r#"{{"symbol":"X","timestamp":"{ts}","stats":[{{"window":"30s","avg_price":"1","std_price":1}}]}}"#
                ),
                "invalid_stats",
            ),
            (
                format!(r#"{{"symbol":"X","timestamp":"{ts}","stats":{{}}}}"#),
                "invalid_stats",
            ),
            (
                r#"{"symbol":"X","timestamp":"soon","stats":[]}"#.to_string(),
                "invalid_timestamp",
            ),
            (
                format!(r#"{{"symbol":1,"timestamp":"{ts}","stats":[]}}"#),
                "invalid_symbol",
            ),
            ("{".to_string(), "malformed_json"),
            ("[]".to_string(), "malformed_json"),
        ];
        for (payload, reason) in cases {
            let err = reader.parse(payload.as_bytes()).unwrap_err();
            assert_eq!(err.reason, reason, "{payload}: {}", err.detail);
        }
    }

    #[test]
    fn reads_the_names_a_writer_derived_from_its_fields() {
        let reader = StatsReader::new("sensor", "temp_c");
        let record = reader
            .parse(br#"{"timestamp":"2025-05-07T15:31:00.000Z","sensor":"s1","stats":[{"window":"1m","window_start":"2025-05-07T15:30:00.000Z","count":2,"avg_temp_c":21.5,"std_temp_c":0.5}]}"#)
            .unwrap();
        assert_eq!(record.key, "s1");
        assert_eq!(
            record.windows,
            [WindowStats {
                window: "1m".into(),
                avg: 21.5,
                std: 0.5
            }]
        );
    }
}
