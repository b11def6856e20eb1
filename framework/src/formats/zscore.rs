//! Z-score records (`btc-price-zscore`): a value and its z-score against each window's
//! statistics:
//!
//! ```json
//! {"timestamp":"2025-05-07T15:31:00.123Z","symbol":"BTCUSDT","price":103.0,
//!  "zscores":[{"window":"30s","zscore_price":1.5}]}
//! ```
//!
//! Field contract: `timestamp` (the value's time), the key and the value under their
//! fields' names (last path segments), and per window `window` and `zscore_<value>`.

use super::{field_head, moving_stats::WindowStats, write_f64};
use crate::{
    contract::{JsonType, WrittenField},
    event_time::write_millis,
};

/// `zscore_<value>`.
pub fn zscore_name(value: &str) -> String {
    format!("zscore_{value}")
}

/// The field contract of the records [`ZScoreWriter`] writes with names `key` and `value`.
pub fn written_fields(key: &str, value: &str) -> Vec<WrittenField> {
    use JsonType::{Array, Number, String};
    vec![
        WrittenField::new("timestamp", String),
        WrittenField::new(key, String),
        WrittenField::new(value, Number),
        WrittenField::new("zscores", Array),
        WrittenField::new("zscores[].window", String),
        WrittenField::new(format!("zscores[].{}", zscore_name(value)), Number),
    ]
}

/// `(value - avg) / std`, and 0 when every value of the window was equal.
pub fn zscore(value: f64, avg: f64, std: f64) -> f64 {
    if std == 0.0 {
        0.0
    } else {
        (value - avg) / std
    }
}

/// One statistics record prepared for writing z-scores: per window, the constant JSON
/// text `{"window":"30s","zscore_price":` and the statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Concatenated per-window JSON prefixes.
    fragments: Vec<u8>,
    /// (end of the window's prefix in `fragments`, avg, std), in record order.
    windows: Vec<(usize, f64, f64)>,
}

impl Prepared {
    /// An upper bound of the size of a z-score record written with these statistics, so
    /// that its buffer is allocated once.
    pub fn record_size_hint(&self, key_json_len: usize, heads_len: usize) -> usize {
        // Fixed text and timestamp ~70 bytes, value and each z-score at most 24 digits.
        100 + heads_len + key_json_len + self.fragments.len() + self.windows.len() * 26
    }
}

/// Writes z-score records with every constant part rendered once.
#[derive(Debug, Clone)]
pub struct ZScoreWriter {
    /// `,"symbol":`, `,"price":` and `,"zscore_price":`.
    key_head: Vec<u8>,
    value_head: Vec<u8>,
    zscore_head: Vec<u8>,
}

impl ZScoreWriter {
    /// `key` and `value`: the names the key and value are written under.
    pub fn new(key: &str, value: &str) -> Self {
        ZScoreWriter {
            key_head: field_head(key),
            value_head: field_head(value),
            zscore_head: field_head(&zscore_name(value)),
        }
    }

    pub fn prepare(&self, windows: &[WindowStats]) -> Prepared {
        let mut prepared = Prepared {
            fragments: Vec::with_capacity(windows.len() * (24 + self.zscore_head.len())),
            windows: Vec::with_capacity(windows.len()),
        };
        for w in windows {
            prepared.fragments.extend_from_slice(b"{\"window\":");
            crate::json::write_string(&mut prepared.fragments, &w.window);
            prepared.fragments.extend_from_slice(&self.zscore_head);
            prepared
                .windows
                .push((prepared.fragments.len(), w.avg, w.std));
        }
        prepared
    }

    /// Bytes of the pre-rendered heads (for [`Prepared::record_size_hint`]).
    pub fn heads_len(&self) -> usize {
        self.key_head.len() + self.value_head.len()
    }

    /// `{"timestamp","<key>","<value>","zscores":[{"window","zscore_<value>"}...]}`;
    /// `key_json` is the key as a JSON string literal.
    pub fn write(
        &self,
        time_ms: i64,
        key_json: &[u8],
        value: f64,
        stats: &Prepared,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        write_millis(out, time_ms);
        out.push(b'"');
        out.extend_from_slice(&self.key_head);
        out.extend_from_slice(key_json);
        out.extend_from_slice(&self.value_head);
        write_f64(out, value);
        out.extend_from_slice(b",\"zscores\":[");
        let mut start = 0;
        for (i, &(end, avg, std)) in stats.windows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&stats.fragments[start..end]);
            write_f64(out, zscore(value, avg, std));
            out.push(b'}');
            start = end;
        }
        out.extend_from_slice(b"]}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::moving_stats::StatsReader;

    #[test]
    fn writes_the_zscore_record_shape_and_escapes_strings() {
        let payload = br#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"BTC\"X","stats":[
            {"window":"30s","window_start":"2025-05-07T15:30:30.000Z","count":3,"avg_price":100.0,"std_price":2.0},
            {"window":"1m","window_start":"2025-05-07T15:30:00.000Z","count":1,"avg_price":99.0,"std_price":0.0}]}"#;
        let s = StatsReader::new("symbol", "price").parse(payload).unwrap();
        let writer = ZScoreWriter::new("symbol", "price");
        let prepared = writer.prepare(&s.windows);
        let mut key = Vec::new();
        crate::json::write_string(&mut key, &s.key);
        let mut out = Vec::new();
        writer.write(1_746_631_860_123, &key, 103.0, &prepared, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"timestamp":"2025-05-07T15:31:00.123Z","symbol":"BTC\"X","price":103.0,"zscores":[{"window":"30s","zscore_price":1.5},{"window":"1m","zscore_price":0.0}]}"#
        );
    }

    #[test]
    fn size_hint_bounds_the_written_record_even_for_the_longest_numbers() {
        let windows = [
            WindowStats {
                window: "30s".into(),
                avg: 1.7976931348623157e308,
                std: 2.2250738585072014e-308,
            },
            WindowStats {
                window: "1m".into(),
                avg: -1.2345678901234567e-300,
                std: 3.0000000000000004,
            },
        ];
        let writer = ZScoreWriter::new("symbol", "temperature_celsius");
        let prepared = writer.prepare(&windows);
        let mut out = Vec::new();
        writer.write(
            -62_135_596_800_000,
            b"\"BTCUSDT\"",
            1.2345678901234567e-300,
            &prepared,
            &mut out,
        );
        assert!(
            out.len() <= prepared.record_size_hint(9, writer.heads_len()),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
}
