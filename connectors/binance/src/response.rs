//! Validation of `GET /api/v3/ticker/price` answers and the `btc-price` records built
//! from them. Pure functions: the fetch loop and the benchmark share them.

use std::collections::BTreeSet;

use framework::{event_time::format_millis, OutputRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Stable rejection reasons (metric labels and dead-letter headers).
pub mod reason {
    /// The body is not JSON.
    pub const MALFORMED_JSON: &str = "malformed_json";
    /// JSON, but not `{"symbol": <string>, "price": <string>}` (or an array of those).
    pub const UNEXPECTED_SHAPE: &str = "unexpected_shape";
    /// A symbol that was not requested, or a requested one returned twice.
    pub const WRONG_SYMBOL: &str = "wrong_symbol";
    /// A requested symbol absent from a `symbols=[...]` answer.
    pub const MISSING_SYMBOL: &str = "missing_symbol";
    /// The price is not a finite, positive decimal string.
    pub const INVALID_PRICE: &str = "invalid_price";
    /// A non-retryable HTTP status (a 4xx other than 429/418) after start-up.
    pub const HTTP_STATUS: &str = "http_status";
    /// The answer's body passed `max_body_bytes` (dead-lettered without its content).
    pub const BODY_TOO_LARGE: &str = "body_too_large";

    /// Every reason, in the order the statistics list them.
    pub const ALL: [&str; 7] = [
        MALFORMED_JSON,
        UNEXPECTED_SHAPE,
        WRONG_SYMBOL,
        MISSING_SYMBOL,
        INVALID_PRICE,
        HTTP_STATUS,
        BODY_TOO_LARGE,
    ];
}

/// One validated ticker price.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub symbol: String,
    pub price: f64,
}

/// Part of an answer that was refused, with what to dead-letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub detail: String,
    pub payload: Vec<u8>,
}

/// What one answer yielded: good prices and refused parts. With several symbols each
/// array element is judged on its own, so one bad element loses no good one.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    pub prices: Vec<Price>,
    pub rejections: Vec<Rejection>,
}

/// An error body of the Binance API: `{"code":-1121,"msg":"Invalid symbol."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: i64,
    pub msg: String,
}

impl ApiError {
    /// Parses an error body; `None` when it is not one (an HTML page from a proxy...).
    pub fn parse(body: &[u8]) -> Option<ApiError> {
        serde_json::from_slice(body).ok()
    }
}

/// Parses Binance's decimal price text (`"97009.02000000"`) into a finite, positive number.
///
/// Only plain decimals are accepted: Rust's float parser would also take `NaN`, `inf`,
/// `1e5` or `+1`, none of which Binance sends for a price.
pub fn parse_decimal_price(text: &str) -> Result<f64, String> {
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (text, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(format!("price {text:?} is not a plain decimal"));
    }
    let value: f64 = text
        .parse()
        .map_err(|e| format!("price {text:?} does not parse: {e}"))?;
    if !value.is_finite() {
        return Err(format!("price {text:?} is out of range"));
    }
    if value <= 0.0 {
        return Err(format!("price {text:?} is not positive"));
    }
    Ok(value)
}

fn reject(reason: &'static str, detail: impl Into<String>, payload: &[u8]) -> Rejection {
    Rejection {
        reason,
        detail: detail.into(),
        payload: payload.to_vec(),
    }
}

/// Checks one `{"symbol","price"}` object (extra fields are tolerated so that an API
/// addition does not stop the feed). Returns the symbol and the price.
fn check_item(item: &Value) -> Result<(&str, &str), (&'static str, String)> {
    let Some(object) = item.as_object() else {
        return Err((
            reason::UNEXPECTED_SHAPE,
            format!("expected an object, got {}", framework::json::kind(item)),
        ));
    };
    let symbol = match object.get("symbol") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err((
                reason::UNEXPECTED_SHAPE,
                format!(
                    "\"symbol\" is {}, not a string",
                    framework::json::kind(other)
                ),
            ))
        }
        None => return Err((reason::UNEXPECTED_SHAPE, "no \"symbol\" field".to_string())),
    };
    let price = match object.get("price") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err((
                reason::UNEXPECTED_SHAPE,
                format!(
                    "\"price\" is {}, not a decimal string",
                    framework::json::kind(other)
                ),
            ))
        }
        None => return Err((reason::UNEXPECTED_SHAPE, "no \"price\" field".to_string())),
    };
    Ok((symbol, price))
}

/// Validates the body of a `ticker/price` answer for `requested` symbols. `multi` says
/// whether the request used `symbols=[...]` (an array is then expected, even for one).
pub fn parse_ticker_prices(body: &[u8], requested: &[String], multi: bool) -> Parsed {
    let mut parsed = Parsed::default();
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            parsed.rejections.push(reject(
                reason::MALFORMED_JSON,
                format!("body is not JSON: {e}"),
                body,
            ));
            return parsed;
        }
    };
    if !multi {
        let expected = requested.first().map(String::as_str).unwrap_or_default();
        match check_item(&value) {
            Err((reason, detail)) => parsed.rejections.push(reject(reason, detail, body)),
            Ok((symbol, _)) if symbol != expected => parsed.rejections.push(reject(
                reason::WRONG_SYMBOL,
                format!("asked for {expected:?}, got {symbol:?}"),
                body,
            )),
            Ok((symbol, price)) => match parse_decimal_price(price) {
                Ok(price) => parsed.prices.push(Price {
                    symbol: symbol.to_string(),
                    price,
                }),
                Err(detail) => parsed
                    .rejections
                    .push(reject(reason::INVALID_PRICE, detail, body)),
            },
        }
        return parsed;
    }

    let Value::Array(items) = &value else {
        parsed.rejections.push(reject(
            reason::UNEXPECTED_SHAPE,
            format!("expected an array, got {}", framework::json::kind(&value)),
            body,
        ));
        return parsed;
    };
    if items.is_empty() {
        parsed.rejections.push(reject(
            reason::UNEXPECTED_SHAPE,
            format!("empty array for {} requested symbol(s)", requested.len()),
            body,
        ));
        return parsed;
    }
    let wanted: BTreeSet<&str> = requested.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    for item in items {
        // Rejected elements are dead-lettered on their own, not with the whole array.
        let item_bytes = || serde_json::to_vec(item).unwrap_or_default();
        match check_item(item) {
            Err((reason, detail)) => parsed.rejections.push(Rejection {
                reason,
                detail,
                payload: item_bytes(),
            }),
            Ok((symbol, _)) if !wanted.contains(symbol) => parsed.rejections.push(Rejection {
                reason: reason::WRONG_SYMBOL,
                detail: format!("{symbol:?} was not requested"),
                payload: item_bytes(),
            }),
            Ok((symbol, _)) if !seen.insert(symbol.to_string()) => {
                parsed.rejections.push(Rejection {
                    reason: reason::WRONG_SYMBOL,
                    detail: format!("{symbol:?} appears more than once"),
                    payload: item_bytes(),
                })
            }
            Ok((symbol, price)) => match parse_decimal_price(price) {
                Ok(price) => parsed.prices.push(Price {
                    symbol: symbol.to_string(),
                    price,
                }),
                Err(detail) => parsed.rejections.push(Rejection {
                    reason: reason::INVALID_PRICE,
                    detail: format!("{symbol}: {detail}"),
                    payload: item_bytes(),
                }),
            },
        }
    }
    let missing: Vec<&str> = requested
        .iter()
        .map(String::as_str)
        .filter(|s| !seen.contains(*s))
        .collect();
    if !missing.is_empty() {
        parsed.rejections.push(reject(
            reason::MISSING_SYMBOL,
            format!("no entry for {}", missing.join(", ")),
            body,
        ));
    }
    parsed
}

/// The `btc-price` payload; field order is part of the contract.
#[derive(Serialize)]
struct PricePayload<'a> {
    symbol: &'a str,
    price: f64,
    timestamp: String,
}

/// Builds the output record of a price received at `received_ms` (epoch ms): keyed by
/// symbol, event time = receipt time.
pub fn price_record(price: &Price, received_ms: i64) -> OutputRecord {
    let payload = PricePayload {
        symbol: &price.symbol,
        price: price.price,
        timestamp: format_millis(received_ms),
    };
    OutputRecord {
        key: Some(price.symbol.as_bytes().to_vec()),
        // Serializing a struct of a str, a finite f64 and a String cannot fail.
        payload: serde_json::to_vec(&payload).unwrap_or_default(),
        timestamp_ms: received_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syms(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn reasons(p: &Parsed) -> Vec<&'static str> {
        p.rejections.iter().map(|r| r.reason).collect()
    }

    #[test]
    fn decimal_prices_parse_and_everything_else_is_refused() {
        assert_eq!(parse_decimal_price("97009.02000000"), Ok(97009.02));
        assert_eq!(parse_decimal_price("4.00000200"), Ok(4.000002));
        assert_eq!(parse_decimal_price("12"), Ok(12.0));
        for bad in [
            "",
            "NaN",
            "inf",
            "-1.5",
            "+1.5",
            "1e5",
            "0.00000000",
            "0",
            ".5",
            "5.",
            "1,5",
            " 1.5",
            "abc",
        ] {
            assert!(parse_decimal_price(bad).is_err(), "{bad:?} should fail");
        }
        let huge = format!("1{}", "0".repeat(400));
        assert!(parse_decimal_price(&huge).is_err(), "overflow to inf");
    }

    #[test]
    fn single_symbol_answer_yields_one_price() {
        let p = parse_ticker_prices(
            br#"{"symbol":"BTCUSDT","price":"97009.02000000"}"#,
            &syms(&["BTCUSDT"]),
            false,
        );
        assert_eq!(
            p.prices,
            vec![Price {
                symbol: "BTCUSDT".into(),
                price: 97009.02
            }]
        );
        assert!(p.rejections.is_empty());
    }

    #[test]
    fn single_symbol_bad_answers_get_their_reason_and_the_raw_body() {
        let want = syms(&["BTCUSDT"]);
        let cases: [(&[u8], &str); 8] = [
            (
                br#"{"symbol":"BTCUSDT","price":"970"#,
                reason::MALFORMED_JSON,
            ),
            (br#"[]"#, reason::UNEXPECTED_SHAPE),
            (br#"{"symbol":"BTCUSDT"}"#, reason::UNEXPECTED_SHAPE),
            (
                br#"{"symbol":"BTCUSDT","price":97009.02}"#,
                reason::UNEXPECTED_SHAPE,
            ),
            (
                br#"{"symbol":"ETHUSDT","price":"1.00000000"}"#,
                reason::WRONG_SYMBOL,
            ),
            (
                br#"{"symbol":"BTCUSDT","price":"NaN"}"#,
                reason::INVALID_PRICE,
            ),
            (
                br#"{"symbol":"BTCUSDT","price":"-1.00000000"}"#,
                reason::INVALID_PRICE,
            ),
            (
                br#"{"symbol":"BTCUSDT","price":"0.00000000"}"#,
                reason::INVALID_PRICE,
            ),
        ];
        for (body, expected) in cases {
            let p = parse_ticker_prices(body, &want, false);
            assert!(p.prices.is_empty(), "{}", String::from_utf8_lossy(body));
            assert_eq!(
                reasons(&p),
                vec![expected],
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(p.rejections[0].payload, body);
        }
    }

    #[test]
    fn multi_symbol_answer_keeps_good_elements_and_rejects_bad_ones_individually() {
        let want = syms(&["BTCUSDT", "ETHUSDT", "BNBUSDT"]);
        let body = br#"[{"symbol":"ETHUSDT","price":"3500.10000000"},
                        {"symbol":"BTCUSDT","price":"oops"},
                        {"symbol":"XRPUSDT","price":"1.00000000"}]"#;
        let p = parse_ticker_prices(body, &want, true);
        assert_eq!(
            p.prices,
            vec![Price {
                symbol: "ETHUSDT".into(),
                price: 3500.1
            }]
        );
        assert_eq!(
            reasons(&p),
            vec![
                reason::INVALID_PRICE,
                reason::WRONG_SYMBOL,
                reason::MISSING_SYMBOL
            ]
        );
        // Compared as JSON: key order depends on serde_json's features.
        let element: Value = serde_json::from_slice(&p.rejections[1].payload).unwrap();
        assert_eq!(
            element,
            serde_json::json!({"symbol": "XRPUSDT", "price": "1.00000000"})
        );
        // BTCUSDT was present (and refused for its price): only BNBUSDT is missing.
        assert_eq!(p.rejections[2].detail, "no entry for BNBUSDT");
    }

    #[test]
    fn multi_symbol_answer_in_any_order_is_accepted_but_empty_or_duplicated_is_not() {
        let want = syms(&["BTCUSDT", "ETHUSDT"]);
        let p = parse_ticker_prices(
            br#"[{"symbol":"ETHUSDT","price":"2.0"},{"symbol":"BTCUSDT","price":"1.0"}]"#,
            &want,
            true,
        );
        assert_eq!(p.prices.len(), 2);
        assert!(p.rejections.is_empty());

        let p = parse_ticker_prices(b"[]", &want, true);
        assert_eq!(reasons(&p), vec![reason::UNEXPECTED_SHAPE]);

        let p = parse_ticker_prices(br#"{"symbol":"BTCUSDT","price":"1.0"}"#, &want, true);
        assert_eq!(reasons(&p), vec![reason::UNEXPECTED_SHAPE]);

        let p = parse_ticker_prices(
            br#"[{"symbol":"BTCUSDT","price":"1.0"},{"symbol":"BTCUSDT","price":"1.0"}]"#,
            &want,
            true,
        );
        assert_eq!(p.prices.len(), 1);
        assert_eq!(
            reasons(&p),
            vec![reason::WRONG_SYMBOL, reason::MISSING_SYMBOL]
        );
    }

    #[test]
    fn record_has_symbol_price_timestamp_in_order_keyed_by_symbol() {
        let r = price_record(
            &Price {
                symbol: "BTCUSDT".into(),
                price: 97009.02,
            },
            1_746_631_831_891,
        );
        assert_eq!(
            String::from_utf8(r.payload).unwrap(),
            r#"{"symbol":"BTCUSDT","price":97009.02,"timestamp":"2025-05-07T15:30:31.891Z"}"#
        );
        assert_eq!(r.key.as_deref(), Some(&b"BTCUSDT"[..]));
        assert_eq!(r.timestamp_ms, 1_746_631_831_891);
    }

    #[test]
    fn api_error_bodies_parse() {
        assert_eq!(
            ApiError::parse(br#"{"code":-1121,"msg":"Invalid symbol."}"#),
            Some(ApiError {
                code: -1121,
                msg: "Invalid symbol.".into()
            })
        );
        assert_eq!(ApiError::parse(b"<html>"), None);
    }
}
