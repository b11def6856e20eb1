//! Value records: a key, a value and an event time at configurable field paths
//! (`{"symbol":"BTCUSDT","price":97009.02,"timestamp":"2025-05-07T15:30:31.891Z"}` by
//! default). One parser serves every stage that reads them, so a record is valid or
//! refused the same way everywhere.
//!
//! * The key must be a non-empty string.
//! * The value a JSON number or a decimal string (`"97000.01"`), finite, with magnitude at
//!   most [`MAX_VALUE`] (sums of squares stay finite), and positive unless the stage
//!   allows otherwise. Up to 8 fractional digits it is parsed exactly (see
//!   [`crate::event_time::exact`]).
//! * The event time an ISO 8601 string, or a JSON integer of milliseconds since the Unix
//!   epoch (0 to [`MAX_EPOCH_MS`], the end of year 9999).
//!
//! Refusal reasons name the role, whatever the field is called: `malformed_json`,
//! `missing_field`, `invalid_symbol` (key), `invalid_price` (value), `invalid_timestamp`.

use std::borrow::Cow;

use super::{
    decimal,
    fields::{FieldPath, FieldReader, Scalar},
    Refusal,
};
use crate::{
    event_time::{exact::Decimal, parse_millis},
    ConfigIssue,
};

/// Default `key_field`.
pub const DEFAULT_KEY_FIELD: &str = "symbol";
/// Default `value_field`.
pub const DEFAULT_VALUE_FIELD: &str = "price";
/// Default `timestamp_field`.
pub const DEFAULT_TIMESTAMP_FIELD: &str = "timestamp";
/// Largest accepted magnitude of a value.
pub const MAX_VALUE: f64 = 1e100;
/// Largest accepted epoch-millisecond timestamp: 9999-12-31T23:59:59.999Z.
pub const MAX_EPOCH_MS: i64 = 253_402_300_799_999;

/// The field contract of the default value record (`binance` writes it):
/// `{"symbol": string, "price": number, "timestamp": string}`.
pub fn written_fields() -> Vec<crate::contract::WrittenField> {
    use crate::contract::{JsonType, WrittenField};
    vec![
        WrittenField::new(DEFAULT_KEY_FIELD, JsonType::String),
        WrittenField::new(DEFAULT_VALUE_FIELD, JsonType::Number),
        WrittenField::new(DEFAULT_TIMESTAMP_FIELD, JsonType::String),
    ]
}

/// Where a stage finds the key, value and event time of its input records.
#[derive(Debug, Clone)]
pub struct PriceFields {
    pub key: FieldPath,
    pub value: FieldPath,
    pub timestamp: FieldPath,
}

impl PriceFields {
    /// The issues of a config's three field settings (`key_field`, `value_field`,
    /// `timestamp_field`): syntax, and paths that overlap.
    pub fn check(key: &str, value: &str, timestamp: &str) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut parsed = Vec::new();
        for (setting, text) in [
            ("key_field", key),
            ("value_field", value),
            ("timestamp_field", timestamp),
        ] {
            match FieldPath::parse(text) {
                Ok(path) => parsed.push((setting, path)),
                Err(message) => issues.push(ConfigIssue::new(setting, message)),
            }
        }
        for (i, (setting, a)) in parsed.iter().enumerate() {
            if let Some((other, b)) = parsed[i + 1..].iter().find(|(_, b)| a.overlaps(b)) {
                issues.push(ConfigIssue::new(
                    *other,
                    format!(
                        "{other} `{b}` overlaps {setting} `{a}`: the key, value and timestamp \
                         must be three different fields, none inside another"
                    ),
                ));
            }
        }
        issues
    }

    pub fn new(key: &str, value: &str, timestamp: &str) -> Result<Self, String> {
        Ok(PriceFields {
            key: FieldPath::parse(key)?,
            value: FieldPath::parse(value)?,
            timestamp: FieldPath::parse(timestamp)?,
        })
    }
}

impl Default for PriceFields {
    fn default() -> Self {
        let path = |text| FieldPath::parse(text).unwrap_or_else(|_| unreachable!("valid default"));
        PriceFields {
            key: path(DEFAULT_KEY_FIELD),
            value: path(DEFAULT_VALUE_FIELD),
            timestamp: path(DEFAULT_TIMESTAMP_FIELD),
        }
    }
}

/// A valid value record.
#[derive(Debug, Clone, PartialEq)]
pub struct Price<'a> {
    pub key: Cow<'a, str>,
    pub value: Decimal,
    pub event_ms: i64,
}

/// The one parser of value records.
#[derive(Debug, Clone)]
pub struct PriceParser {
    fields: PriceFields,
    reader: FieldReader<3>,
    require_positive: bool,
}

impl PriceParser {
    /// `require_positive`: refuse values `<= 0` (prices; not temperatures).
    pub fn new(fields: PriceFields, require_positive: bool) -> Result<Self, String> {
        let reader = FieldReader::new([&fields.key, &fields.value, &fields.timestamp])?;
        Ok(PriceParser {
            fields,
            reader,
            require_positive,
        })
    }

    pub fn fields(&self) -> &PriceFields {
        &self.fields
    }

    /// Parses one payload. Unknown fields are ignored.
    pub fn parse<'a>(&self, payload: &'a [u8]) -> Result<Price<'a>, Refusal> {
        let [key, value, time] = self
            .reader
            .read_scalars(payload)
            .map_err(|e| Refusal::new("malformed_json", e.to_string()))?;
        let f = &self.fields;
        let missing =
            |path: &FieldPath| Refusal::new("missing_field", format!("missing field `{path}`"));
        let (key, value, time) = (
            key.ok_or_else(|| missing(&f.key))?,
            value.ok_or_else(|| missing(&f.value))?,
            time.ok_or_else(|| missing(&f.timestamp))?,
        );
        let key = match key {
            Scalar::Str(s) if !s.is_empty() => s,
            Scalar::Str(_) => {
                return Err(Refusal::new(
                    "invalid_symbol",
                    format!("`{}` is empty", f.key),
                ))
            }
            other => {
                return Err(Refusal::new(
                    "invalid_symbol",
                    format!("`{}` must be a string, got {}", f.key, other.kind()),
                ))
            }
        };
        let value = self.value_of(value)?;
        let event_ms = time_of(&f.timestamp, time)?;
        Ok(Price {
            key,
            value,
            event_ms,
        })
    }

    fn value_of(&self, scalar: Scalar<'_>) -> Result<Decimal, Refusal> {
        let path = &self.fields.value;
        let parsed = match &scalar {
            Scalar::Number(text) => decimal::parse(text),
            Scalar::Str(text) => decimal::parse(text),
            Scalar::Other(_) => None,
        };
        let Some(value) = parsed else {
            let got = match &scalar {
                Scalar::Str(text) => format!("the string {:?}", truncate(text)),
                other => other.kind().to_string(),
            };
            return Err(Refusal::new(
                "invalid_price",
                format!("`{path}` must be a JSON number or a decimal string, got {got}"),
            ));
        };
        let v = value.value;
        let in_range = v.is_finite() && v.abs() <= MAX_VALUE && (!self.require_positive || v > 0.0);
        if in_range {
            return Ok(value);
        }
        let range = if self.require_positive {
            format!("(0, {MAX_VALUE:e}]")
        } else {
            format!("[-{MAX_VALUE:e}, {MAX_VALUE:e}]")
        };
        Err(Refusal::new(
            "invalid_price",
            format!("`{path}` must be a finite number in {range}, got {v}"),
        ))
    }
}

/// An event time: an ISO 8601 string or an integer of epoch milliseconds.
pub fn time_of(path: &FieldPath, scalar: Scalar<'_>) -> Result<i64, Refusal> {
    match scalar {
        Scalar::Str(text) => parse_millis(&text)
            .map_err(|e| Refusal::new("invalid_timestamp", format!("`{path}`: {e}"))),
        Scalar::Number(text) => match text.parse::<i64>() {
            Ok(ms) if (0..=MAX_EPOCH_MS).contains(&ms) => Ok(ms),
            _ => Err(Refusal::new(
                "invalid_timestamp",
                format!(
                    "`{path}` as a number must be an integer of milliseconds since the Unix \
                     epoch, 0 to {MAX_EPOCH_MS}, got {}",
                    truncate(text)
                ),
            )),
        },
        Scalar::Other(kind) => Err(Refusal::new(
            "invalid_timestamp",
            format!("`{path}` must be an ISO 8601 string or epoch milliseconds, got {kind}"),
        )),
    }
}

/// Bounds hostile text quoted in a refusal.
fn truncate(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> PriceParser {
        PriceParser::new(PriceFields::default(), true).unwrap()
    }

    #[test]
    fn parses_the_canonical_record_exactly_and_borrows_the_key() {
        let p = parser()
            .parse(br#"{"symbol":"BTCUSDT","price":97009.02,"timestamp":"2025-05-07T15:30:31.891Z","x":1}"#)
            .unwrap();
        assert!(matches!(p.key, Cow::Borrowed("BTCUSDT")));
        assert_eq!(p.value.value, 97009.02);
        assert_eq!(p.value.scaled, Some(9_700_902_000_000));
        assert_eq!(p.event_ms, 1_746_631_831_891);
    }

    #[test]
    fn nested_paths_decimal_strings_and_epoch_milliseconds_are_read() {
        let fields = PriceFields::new("data.s", "data.p", "data.T").unwrap();
        let parser = PriceParser::new(fields, true).unwrap();
        let p = parser
            .parse(br#"{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","p":"97000.01000000","T":1746631831891}}"#)
            .unwrap();
        assert_eq!(p.key, "BTCUSDT");
        assert_eq!(p.value.scaled, Some(9_700_001_000_000));
        assert_eq!(p.event_ms, 1_746_631_831_891);
    }

    #[test]
    fn negative_values_are_refused_only_when_positive_values_are_required() {
        let payload = br#"{"symbol":"s1","price":-21.5,"timestamp":17}"#;
        assert_eq!(parser().parse(payload).unwrap_err().reason, "invalid_price");
        let any = PriceParser::new(PriceFields::default(), false).unwrap();
        assert_eq!(any.parse(payload).unwrap().value.value, -21.5);
    }

    #[test]
    fn each_kind_of_bad_input_gets_its_reason() {
        let ts = r#""timestamp":"2025-05-07T15:30:31.891Z""#;
        let cases = [
            ("{not json".to_string(), "malformed_json"),
            ("[1,2]".to_string(), "malformed_json"),
            (
                format!(r#"{{"symbol":"A","price":1,{ts}}} x"#),
                "malformed_json",
            ),
            (
                format!(r#"{{"symbol":"A","symbol":"B","price":1,{ts}}}"#),
                "malformed_json",
            ),
            (format!(r#"{{"price":1,{ts}}}"#), "missing_field"),
            (r#"{"symbol":"A","price":1}"#.to_string(), "missing_field"),
            (format!(r#"{{"symbol":"A",{ts}}}"#), "missing_field"),
            (
                format!(r#"{{"symbol":7,"price":1,{ts}}}"#),
                "invalid_symbol",
            ),
            (
                format!(r#"{{"symbol":"","price":1,{ts}}}"#),
                "invalid_symbol",
            ),
            (
                format!(r#"{{"symbol":"A","price":"1.5x",{ts}}}"#),
                "invalid_price",
            ),
            (
                format!(r#"{{"symbol":"A","price":0,{ts}}}"#),
                "invalid_price",
            ),
            (
                format!(r#"{{"symbol":"A","price":-3.5,{ts}}}"#),
                "invalid_price",
            ),
            (
                format!(r#"{{"symbol":"A","price":1e200,{ts}}}"#),
                "invalid_price",
            ),
            (
                format!(r#"{{"symbol":"A","price":"1e200",{ts}}}"#),
                "invalid_price",
            ),
            (
                format!(r#"{{"symbol":"A","price":1e400,{ts}}}"#),
                "invalid_price",
            ),
            (
                format!(r#"{{"symbol":"A","price":null,{ts}}}"#),
                "invalid_price",
            ),
            (
                r#"{"symbol":"A","price":1,"timestamp":"yesterday"}"#.to_string(),
                "invalid_timestamp",
            ),
            (
                r#"{"symbol":"A","price":1,"timestamp":1.5}"#.to_string(),
                "invalid_timestamp",
            ),
            (
                r#"{"symbol":"A","price":1,"timestamp":-1}"#.to_string(),
                "invalid_timestamp",
            ),
            (
                r#"{"symbol":"A","price":1,"timestamp":253402300800000}"#.to_string(),
                "invalid_timestamp",
            ),
            (
                r#"{"symbol":"A","price":1,"timestamp":true}"#.to_string(),
                "invalid_timestamp",
            ),
        ];
        for (payload, reason) in cases {
            let err = parser().parse(payload.as_bytes()).unwrap_err();
            assert_eq!(err.reason, reason, "{payload}: {}", err.detail);
            assert!(!err.detail.is_empty());
        }
    }

    #[test]
    fn field_settings_are_checked_with_their_setting_names() {
        assert!(PriceFields::check("symbol", "price", "timestamp").is_empty());
        let issues = PriceFields::check("", "data.p", "data");
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["key_field", "timestamp_field"]);
    }
}
