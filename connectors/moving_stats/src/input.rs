//! Parsing and validating `btc-price` records (semantics.md §1).

use std::borrow::Cow;

use framework::event_time::parse_millis;
use serde::Deserialize;
use serde_json::Value;

/// Largest accepted price. Bounding prices keeps every sum of squares in the statistics
/// finite, so the output never holds a non-JSON `inf`/`NaN`.
pub const MAX_PRICE: f64 = 1e100;

/// A valid price record.
#[derive(Debug, Clone, PartialEq)]
pub struct Price<'a> {
    pub symbol: Cow<'a, str>,
    pub price: f64,
    pub event_ms: i64,
}

/// Why a record was refused: a stable metric label and details for the dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput {
    pub reason: &'static str,
    pub detail: String,
}

impl BadInput {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        BadInput {
            reason,
            detail: detail.into(),
        }
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    price: f64,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

/// Parses one payload. Unknown fields are ignored.
pub fn parse(payload: &[u8]) -> Result<Price<'_>, BadInput> {
    let raw: Raw<'_> = match serde_json::from_slice(payload) {
        Ok(raw) => raw,
        Err(e) => return Err(classify(payload, &e)),
    };
    if raw.symbol.is_empty() {
        return Err(BadInput::new("invalid_symbol", "`symbol` is empty"));
    }
    check_price(raw.price)?;
    let event_ms = parse_millis(&raw.timestamp)
        .map_err(|e| BadInput::new("invalid_timestamp", format!("`timestamp`: {e}")))?;
    Ok(Price {
        symbol: raw.symbol,
        price: raw.price,
        event_ms,
    })
}

fn check_price(price: f64) -> Result<(), BadInput> {
    if price.is_finite() && price > 0.0 && price <= MAX_PRICE {
        Ok(())
    } else {
        Err(BadInput::new(
            "invalid_price",
            format!("`price` must be a finite number in (0, {MAX_PRICE:e}], got {price}"),
        ))
    }
}

/// Names the problem of a payload the typed parse refused (the slow, rare path).
fn classify(payload: &[u8], error: &serde_json::Error) -> BadInput {
    let value: Value = match serde_json::from_slice(payload) {
        Ok(value) => value,
        Err(e) => return BadInput::new("malformed_json", e.to_string()),
    };
    let Some(object) = value.as_object() else {
        return BadInput::new(
            "malformed_json",
            format!(
                "expected a JSON object, got {}",
                framework::json::kind(&value)
            ),
        );
    };
    for field in ["symbol", "price", "timestamp"] {
        if !object.contains_key(field) {
            return BadInput::new("missing_field", format!("missing field `{field}`"));
        }
    }
    if let Some(other) = object.get("symbol").filter(|v| !v.is_string()) {
        return BadInput::new(
            "invalid_symbol",
            format!(
                "`symbol` must be a string, got {}",
                framework::json::kind(other)
            ),
        );
    }
    match object.get("price") {
        Some(Value::Number(n)) => {
            if let Err(bad) = check_price(n.as_f64().unwrap_or(f64::NAN)) {
                return bad;
            }
        }
        Some(other) => {
            return BadInput::new(
                "invalid_price",
                format!(
                    "`price` must be a JSON number, got {}",
                    framework::json::kind(other)
                ),
            )
        }
        None => {}
    }
    if let Some(other) = object.get("timestamp").filter(|v| !v.is_string()) {
        return BadInput::new(
            "invalid_timestamp",
            format!(
                "`timestamp` must be an ISO 8601 string, got {}",
                framework::json::kind(other)
            ),
        );
    }
    // Valid as a `Value` but not as a record (e.g. a duplicated field).
    BadInput::new("malformed_json", error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_canonical_record_and_ignores_unknown_fields() {
        let p = parse(
            br#"{"symbol":"BTCUSDT","price":97009.02,"timestamp":"2025-05-07T15:30:31.891Z","x":1}"#,
        )
        .unwrap();
        assert_eq!(p.symbol, "BTCUSDT");
        assert_eq!(p.price, 97009.02);
        assert_eq!(p.event_ms, 1_746_631_831_891);
        assert!(matches!(p.symbol, Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_symbols_are_unescaped() {
        let p = parse(br#"{"symbol":"A\"B","price":1,"timestamp":"1970-01-01T00:00:00.000Z"}"#)
            .unwrap();
        assert_eq!(p.symbol, "A\"B");
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
                format!(r#"{{"symbol":"A","price":"1.5",{ts}}}"#),
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
                format!(r#"{{"symbol":"A","price":null,{ts}}}"#),
                "invalid_price",
            ),
            (
                r#"{"symbol":"A","price":1,"timestamp":"yesterday"}"#.to_string(),
                "invalid_timestamp",
            ),
            (
                r#"{"symbol":"A","price":1,"timestamp":17}"#.to_string(),
                "invalid_timestamp",
            ),
        ];
        for (payload, reason) in cases {
            let err = parse(payload.as_bytes()).unwrap_err();
            assert_eq!(err.reason, reason, "{payload}: {}", err.detail);
            assert!(!err.detail.is_empty());
        }
    }
}
