//! Writing `btc-price-moving` records (semantics.md §1) straight into bytes.

use framework::event_time::{write_millis, ClosedWindows, MomentStats};

/// Pre-rendered, per-window parts of the output.
#[derive(Debug, Clone)]
pub struct OutputFormat {
    /// `{"window":"30s","window_start":"` for each configured window.
    window_heads: Vec<Vec<u8>>,
}

impl OutputFormat {
    pub fn new(window_names: &[String]) -> Self {
        let window_heads = window_names
            .iter()
            .map(|name| {
                let mut head = b"{\"window\":".to_vec();
                write_json_string(&mut head, name);
                head.extend_from_slice(b",\"window_start\":\"");
                head
            })
            .collect();
        OutputFormat { window_heads }
    }

    /// `{"timestamp":e,"symbol":...,"stats":[...]}` with one entry per non-empty window in
    /// configured order. Floats are printed shortest-round-trip (ryu, as serde_json does).
    pub fn write(&self, out: &mut Vec<u8>, symbol: &str, closed: &ClosedWindows<'_, MomentStats>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        write_millis(out, closed.end_ms);
        out.extend_from_slice(b"\",\"symbol\":");
        write_json_string(out, symbol);
        out.extend_from_slice(b",\"stats\":[");
        let mut ints = itoa::Buffer::new();
        let mut floats = ryu::Buffer::new();
        for (n, (i, start_ms, stats)) in closed.non_empty().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            if let Some(head) = self.window_heads.get(i) {
                out.extend_from_slice(head);
            }
            write_millis(out, start_ms);
            out.extend_from_slice(b"\",\"count\":");
            out.extend_from_slice(ints.format(stats.count()).as_bytes());
            out.extend_from_slice(b",\"avg_price\":");
            write_f64(out, &mut floats, stats.mean().unwrap_or(0.0));
            out.extend_from_slice(b",\"std_price\":");
            write_f64(out, &mut floats, stats.population_std().unwrap_or(0.0));
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    }
}

fn write_f64(out: &mut Vec<u8>, buffer: &mut ryu::Buffer, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(buffer.format_finite(value).as_bytes());
    } else {
        // Unreachable: prices are bounded (input::MAX_PRICE), so the statistics stay
        // finite; `null` keeps the record valid JSON should that ever change.
        out.extend_from_slice(b"null");
    }
}

pub use framework::json::write_string as write_json_string;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_round_trip_through_serde_json() {
        for text in ["BTCUSDT", "a\"b\\c", "tab\there\nnl\u{1}\u{1f}", "ünï€"] {
            let mut out = Vec::new();
            write_json_string(&mut out, text);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, text);
        }
    }
}
