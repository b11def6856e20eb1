//! Decoding `btc-price-zscore` records (semantics.md §1) into the documents to write.

use framework::event_time::parse_millis;
use serde_json::{Map, Value};

use crate::config::collection_name_problem;

/// One z-score of one record: becomes one document in the window's collection.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowScore {
    pub window: String,
    pub zscore_price: f64,
}

/// A decoded `btc-price-zscore` record.
#[derive(Debug, Clone, PartialEq)]
pub struct ZscoreRecord {
    pub symbol: String,
    pub timestamp_ms: i64,
    pub price: f64,
    pub zscores: Vec<WindowScore>,
}

/// Why a record cannot be written; `reason` is a stable metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub reason: &'static str,
    pub detail: String,
}

impl DecodeError {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        DecodeError {
            reason,
            detail: detail.into(),
        }
    }
}

fn field<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<&'a Value, DecodeError> {
    object
        .get(name)
        .ok_or_else(|| DecodeError::new("missing_field", format!("missing field `{at}{name}`")))
}

fn string_field<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<&'a str, DecodeError> {
    field(object, name, at)?.as_str().ok_or_else(|| {
        DecodeError::new("wrong_type", format!("field `{at}{name}` must be a string"))
    })
}

fn number_field(object: &Map<String, Value>, name: &str, at: &str) -> Result<f64, DecodeError> {
    let value = field(object, name, at)?;
    let number = value.as_f64().ok_or_else(|| {
        DecodeError::new(
            "wrong_type",
            format!("field `{at}{name}` must be a number, got {value}"),
        )
    })?;
    if number.is_finite() {
        Ok(number)
    } else {
        Err(DecodeError::new(
            "non_finite",
            format!("field `{at}{name}` is not finite"),
        ))
    }
}

/// Decodes one record, checking every field the documents need.
pub fn decode(payload: &[u8]) -> Result<ZscoreRecord, DecodeError> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| DecodeError::new("malformed_json", format!("not valid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| DecodeError::new("wrong_type", "record must be a JSON object"))?;

    let symbol = string_field(object, "symbol", "")?;
    if symbol.is_empty() {
        return Err(DecodeError::new("bad_symbol", "field `symbol` is empty"));
    }
    let timestamp = string_field(object, "timestamp", "")?;
    let timestamp_ms =
        parse_millis(timestamp).map_err(|e| DecodeError::new("bad_timestamp", e.to_string()))?;
    let price = number_field(object, "price", "")?;
    if price <= 0.0 {
        return Err(DecodeError::new(
            "non_positive_price",
            format!("price {price} is not > 0"),
        ));
    }
    let entries = field(object, "zscores", "")?
        .as_array()
        .ok_or_else(|| DecodeError::new("wrong_type", "field `zscores` must be an array"))?;

    let mut zscores = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("zscores[{i}].");
        let entry = entry.as_object().ok_or_else(|| {
            DecodeError::new("wrong_type", format!("`zscores[{i}]` must be an object"))
        })?;
        let window = string_field(entry, "window", &at)?;
        if window.is_empty() {
            return Err(DecodeError::new(
                "bad_window",
                format!("`{at}window` is empty"),
            ));
        }
        if let Some(problem) = collection_name_problem(window) {
            return Err(DecodeError::new(
                "bad_window",
                format!("`{at}window` {window:?} cannot be part of a collection name: {problem}"),
            ));
        }
        let zscore_price = number_field(entry, "zscore_price", &at)?;
        zscores.push(WindowScore {
            window: window.to_string(),
            zscore_price,
        });
    }
    Ok(ZscoreRecord {
        symbol: symbol.to_string(),
        timestamp_ms,
        price,
        zscores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"timestamp":"2025-05-07T15:31:00.123Z","symbol":"BTCUSDT","price":97009.05,
        "zscores":[{"window":"30s","zscore_price":1.52},{"window":"1m","zscore_price":-0.97}]}"#;

    #[test]
    fn decodes_a_valid_record_with_every_window() {
        let record = decode(GOOD.as_bytes()).unwrap();
        assert_eq!(record.symbol, "BTCUSDT");
        assert_eq!(record.timestamp_ms, 1_746_631_860_123);
        assert_eq!(record.price, 97009.05);
        assert_eq!(
            record.zscores,
            vec![
                WindowScore {
                    window: "30s".into(),
                    zscore_price: 1.52
                },
                WindowScore {
                    window: "1m".into(),
                    zscore_price: -0.97
                },
            ]
        );
    }

    #[test]
    fn integer_zscores_are_accepted_as_doubles() {
        let record = decode(
            br#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"X","price":2,"zscores":[{"window":"1m","zscore_price":0}]}"#,
        )
        .unwrap();
        assert_eq!(record.price, 2.0);
        assert_eq!(record.zscores[0].zscore_price, 0.0);
    }

    #[test]
    fn each_kind_of_bad_record_gets_its_reason() {
        let cases: &[(&str, &str)] = &[
            ("{not json", "malformed_json"),
            ("[1,2]", "wrong_type"),
            (r#"{"symbol":"X","price":1,"zscores":[]}"#, "missing_field"),
            (
                r#"{"timestamp":"yesterday","symbol":"X","price":1,"zscores":[]}"#,
                "bad_timestamp",
            ),
            (
                r#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"X","price":"1","zscores":[]}"#,
                "wrong_type",
            ),
            (
                r#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"X","price":-1,"zscores":[]}"#,
                "non_positive_price",
            ),
            (
                r#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"","price":1,"zscores":[]}"#,
                "bad_symbol",
            ),
            (
                r#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"X","price":1,"zscores":{}}"#,
                "wrong_type",
            ),
            (
                r#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"X","price":1,"zscores":[{"window":"1m"}]}"#,
                "missing_field",
            ),
            (
                r#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"X","price":1,"zscores":[{"window":"1$m","zscore_price":1}]}"#,
                "bad_window",
            ),
            (
                r#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"X","price":1,"zscores":[{"window":"1m","zscore_price":null}]}"#,
                "wrong_type",
            ),
            (
                r#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"X","price":1e999,"zscores":[]}"#,
                "malformed_json",
            ),
        ];
        for (payload, reason) in cases {
            let err = decode(payload.as_bytes()).unwrap_err();
            assert_eq!(err.reason, *reason, "{payload}: {}", err.detail);
        }
    }
}
