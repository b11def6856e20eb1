//! The records the z-score join reads and writes, with borrowed (zero-copy) parsing.

use std::{borrow::Cow, fmt, marker::PhantomData};

use serde::{
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
    Deserialize, Deserializer,
};

use framework::event_time::{parse_millis as parse_timestamp, timestamp::write_millis};
pub use framework::json::write_string as write_json_string;

/// Why an input record was refused: a stable metric label and details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: &'static str,
    pub detail: String,
}

impl Invalid {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Invalid {
            reason,
            detail: detail.into(),
        }
    }
}

/// Any JSON value, classified without failing the parse, so that a wrong type in one
/// field is reported under that field's reason instead of as a generic parse error.
#[derive(Debug)]
enum Scalar<'a> {
    Number(f64),
    Str(Cow<'a, str>),
    Other(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor<'a>(PhantomData<Scalar<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Number(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Other("a boolean"))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Other("null"))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Other("null"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an object"))
            }
        }
        deserializer.deserialize_any(ScalarVisitor(PhantomData))
    }
}

impl Scalar<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Number(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Other(kind) => kind,
        }
    }
}

/// Classifies a parse error; `shape_reason` is the reason for well-formed JSON of the
/// wrong shape (serde reports missing fields only through the message text).
fn parse_error(e: serde_json::Error, what: &str, shape_reason: &'static str) -> Invalid {
    if e.is_syntax() || e.is_eof() {
        return Invalid::new("malformed_json", format!("{what} is not valid JSON: {e}"));
    }
    let message = e.to_string();
    let reason = if message.starts_with("missing field") {
        "missing_field"
    } else {
        shape_reason
    };
    Invalid::new(reason, format!("{what}: {message}"))
}

/// serde's derived visitors also accept a JSON array (fields by position): refuse it.
fn expect_object(payload: &[u8], what: &str) -> Result<(), Invalid> {
    if payload.trim_ascii_start().first() == Some(&b'{') {
        Ok(())
    } else {
        Err(Invalid::new(
            "malformed_json",
            format!("{what} is not a JSON object"),
        ))
    }
}

fn required<'a>(field: Option<Scalar<'a>>, name: &str) -> Result<Scalar<'a>, Invalid> {
    field.ok_or_else(|| Invalid::new("missing_field", format!("missing field `{name}`")))
}

fn symbol_of(field: Option<Scalar<'_>>) -> Result<Cow<'_, str>, Invalid> {
    match required(field, "symbol")? {
        Scalar::Str(s) if !s.is_empty() => Ok(s),
        Scalar::Str(_) => Err(Invalid::new("invalid_symbol", "`symbol` is empty")),
        other => Err(Invalid::new(
            "invalid_symbol",
            format!("`symbol` must be a string, got {}", other.kind()),
        )),
    }
}

fn time_of(field: Option<Scalar<'_>>) -> Result<i64, Invalid> {
    match required(field, "timestamp")? {
        Scalar::Str(s) => {
            parse_timestamp(&s).map_err(|e| Invalid::new("invalid_timestamp", e.to_string()))
        }
        other => Err(Invalid::new(
            "invalid_timestamp",
            format!(
                "`timestamp` must be an ISO 8601 string, got {}",
                other.kind()
            ),
        )),
    }
}

#[derive(Deserialize)]
struct RawPrice<'a> {
    #[serde(borrow, default)]
    symbol: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    price: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<Scalar<'a>>,
}

/// A `btc-price` record: `{"symbol", "price", "timestamp"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Price<'a> {
    pub symbol: Cow<'a, str>,
    pub price: f64,
    pub time_ms: i64,
}

pub fn parse_price(payload: &[u8]) -> Result<Price<'_>, Invalid> {
    expect_object(payload, "price record")?;
    let raw: RawPrice<'_> = serde_json::from_slice(payload)
        .map_err(|e| parse_error(e, "price record", "malformed_json"))?;
    let symbol = symbol_of(raw.symbol)?;
    let price = match required(raw.price, "price")? {
        Scalar::Number(p) if p.is_finite() && p > 0.0 => p,
        Scalar::Number(p) => {
            return Err(Invalid::new(
                "invalid_price",
                format!("`price` must be finite and positive, got {p}"),
            ))
        }
        other => {
            return Err(Invalid::new(
                "invalid_price",
                format!("`price` must be a JSON number, got {}", other.kind()),
            ))
        }
    };
    let time_ms = time_of(raw.timestamp)?;
    Ok(Price {
        symbol,
        price,
        time_ms,
    })
}

#[derive(Deserialize)]
struct RawStats<'a> {
    #[serde(borrow, default)]
    symbol: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    stats: Option<Vec<RawWindow<'a>>>,
}

/// Only what the join needs; `window_start` and `count` are not checked.
#[derive(Deserialize)]
struct RawWindow<'a> {
    #[serde(borrow)]
    window: Cow<'a, str>,
    avg_price: f64,
    std_price: f64,
}

/// A `btc-price-moving` record, prepared for writing z-scores: per window, the constant
/// JSON text `{"window":"30s","zscore_price":` and the statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Concatenated per-window JSON prefixes.
    fragments: Vec<u8>,
    /// (end of the window's prefix in `fragments`, avg_price, std_price), in record order.
    windows: Vec<(usize, f64, f64)>,
}

/// A parsed `btc-price-moving` record.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsRecord<'a> {
    pub symbol: Cow<'a, str>,
    pub time_ms: i64,
    pub stats: Stats,
}

pub fn parse_stats(payload: &[u8]) -> Result<StatsRecord<'_>, Invalid> {
    expect_object(payload, "statistics record")?;
    let raw: RawStats<'_> = serde_json::from_slice(payload)
        .map_err(|e| parse_error(e, "statistics record", "invalid_stats"))?;
    let symbol = symbol_of(raw.symbol)?;
    let time_ms = time_of(raw.timestamp)?;
    let windows = raw
        .stats
        .ok_or_else(|| Invalid::new("missing_field", "missing field `stats`"))?;
    let mut stats = Stats {
        fragments: Vec::with_capacity(windows.len() * 40),
        windows: Vec::with_capacity(windows.len()),
    };
    for w in windows {
        if !w.avg_price.is_finite() || !w.std_price.is_finite() || w.std_price < 0.0 {
            return Err(Invalid::new(
                "invalid_stats",
                format!(
                    "window {:?}: avg_price {} and std_price {} must be finite, std_price >= 0",
                    w.window, w.avg_price, w.std_price
                ),
            ));
        }
        stats.fragments.extend_from_slice(b"{\"window\":");
        write_json_string(&mut stats.fragments, &w.window);
        stats.fragments.extend_from_slice(b",\"zscore_price\":");
        stats
            .windows
            .push((stats.fragments.len(), w.avg_price, w.std_price));
    }
    Ok(StatsRecord {
        symbol,
        time_ms,
        stats,
    })
}

impl Stats {
    /// An upper bound of the size of a z-score record written with these statistics, so
    /// that its buffer is allocated once.
    pub fn record_size_hint(&self, symbol_json_len: usize) -> usize {
        // Fixed text and timestamp ~70 bytes, price and each z-score at most 24 digits.
        100 + symbol_json_len + self.fragments.len() + self.windows.len() * 26
    }
}

/// `(price - avg) / std`, and 0 when every price of the window was equal.
pub fn zscore(price: f64, avg: f64, std: f64) -> f64 {
    if std == 0.0 {
        0.0
    } else {
        (price - avg) / std
    }
}

/// Appends a JSON number the way serde_json prints an `f64` (`null` if not finite).
fn write_f64(v: f64, out: &mut Vec<u8>) {
    if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Writes a `btc-price-zscore` record:
/// `{"timestamp","symbol","price","zscores":[{"window","zscore_price"}...]}`.
/// `symbol_json` is the symbol as a JSON string literal.
pub fn write_zscore_record(
    time_ms: i64,
    symbol_json: &[u8],
    price: f64,
    stats: &Stats,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    write_millis(out, time_ms);
    out.extend_from_slice(b"\",\"symbol\":");
    out.extend_from_slice(symbol_json);
    out.extend_from_slice(b",\"price\":");
    write_f64(price, out);
    out.extend_from_slice(b",\"zscores\":[");
    let mut start = 0;
    for (i, &(end, avg, std)) in stats.windows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&stats.fragments[start..end]);
        write_f64(zscore(price, avg, std), out);
        out.push(b'}');
        start = end;
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_price_record_borrowing_the_symbol() {
        let payload = br#"{"symbol":"BTCUSDT","price":97009.02,"timestamp":"2025-05-07T15:30:31.891Z","extra":[1,{"a":2}]}"#;
        let p = parse_price(payload).unwrap();
        assert!(matches!(p.symbol, Cow::Borrowed("BTCUSDT")));
        assert_eq!(p.price, 97009.02);
        assert_eq!(p.time_ms, 1_746_631_831_891);
    }

    #[test]
    fn bad_price_records_get_a_reason_per_problem() {
        let cases: [(&[u8], &str); 10] = [
            (b"{\"symbol\":", "malformed_json"),
            (b"[1,2]", "malformed_json"),
            (
                br#"{"price":1,"timestamp":"2025-05-07T15:30:31.891Z"}"#,
                "missing_field",
            ),
            (
                br#"{"symbol":"X","timestamp":"2025-05-07T15:30:31.891Z"}"#,
                "missing_field",
            ),
            (br#"{"symbol":"X","price":1}"#, "missing_field"),
            (
                br#"{"symbol":"X","price":"1.5","timestamp":"2025-05-07T15:30:31.891Z"}"#,
                "invalid_price",
            ),
            (
                br#"{"symbol":"X","price":-1,"timestamp":"2025-05-07T15:30:31.891Z"}"#,
                "invalid_price",
            ),
            (
                br#"{"symbol":"X","price":0,"timestamp":"2025-05-07T15:30:31.891Z"}"#,
                "invalid_price",
            ),
            (
                br#"{"symbol":"X","price":1,"timestamp":"yesterday"}"#,
                "invalid_timestamp",
            ),
            (
                br#"{"symbol":7,"price":1,"timestamp":"2025-05-07T15:30:31.891Z"}"#,
                "invalid_symbol",
            ),
        ];
        for (payload, reason) in cases {
            let err = parse_price(payload).unwrap_err();
            assert_eq!(
                err.reason,
                reason,
                "{}: {}",
                String::from_utf8_lossy(payload),
                err.detail
            );
        }
    }

    #[test]
    fn bad_stats_records_get_a_reason_per_problem() {
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
                format!(r#"{{"symbol":"X","timestamp":"{ts}","stats":{{}}}}"#),
                "invalid_stats",
            ),
            (
                r#"{"symbol":"X","timestamp":"soon","stats":[]}"#.to_string(),
                "invalid_timestamp",
            ),
            ("{".to_string(), "malformed_json"),
        ];
        for (payload, reason) in cases {
            let err = parse_stats(payload.as_bytes()).unwrap_err();
            assert_eq!(err.reason, reason, "{payload}: {}", err.detail);
        }
    }

    #[test]
    fn writes_the_zscore_record_shape_and_escapes_strings() {
        let payload = br#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"BTC\"X","stats":[
            {"window":"30s","window_start":"2025-05-07T15:30:30.000Z","count":3,"avg_price":100.0,"std_price":2.0},
            {"window":"1m","window_start":"2025-05-07T15:30:00.000Z","count":1,"avg_price":99.0,"std_price":0.0}]}"#;
        let s = parse_stats(payload).unwrap();
        let mut symbol = Vec::new();
        write_json_string(&mut symbol, &s.symbol);
        let mut out = Vec::new();
        write_zscore_record(1_746_631_860_123, &symbol, 103.0, &s.stats, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"timestamp":"2025-05-07T15:31:00.123Z","symbol":"BTC\"X","price":103.0,"zscores":[{"window":"30s","zscore_price":1.5},{"window":"1m","zscore_price":0.0}]}"#
        );
    }

    #[test]
    fn size_hint_bounds_the_written_record_even_for_the_longest_numbers() {
        let payload = br#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"BTCUSDT","stats":[
            {"window":"30s","avg_price":1.7976931348623157e308,"std_price":2.2250738585072014e-308},
            {"window":"1m","avg_price":-1.2345678901234567e-300,"std_price":3.0000000000000004}]}"#;
        let s = parse_stats(payload).unwrap();
        let mut out = Vec::new();
        write_zscore_record(
            -62_135_596_800_000,
            b"\"BTCUSDT\"",
            1.2345678901234567e-300,
            &s.stats,
            &mut out,
        );
        assert!(
            out.len() <= s.stats.record_size_hint(9),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn json_strings_match_serde_json_escaping() {
        for s in [
            "plain",
            "q\"b\\s",
            "ctl\u{1}\u{1f}\n\t\r\u{8}\u{c}",
            "ünïcødé ☃",
        ] {
            let mut out = Vec::new();
            write_json_string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
}
