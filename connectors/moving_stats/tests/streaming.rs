//! Streamed output (issue 15): driven as the runtime drives it, with an emitter that is
//! full at a few records, the transform never holds more than that, and its output is the
//! same, byte for byte, as everything collected at once; and it is what an independent
//! computation says for one price per symbol.

mod common;

use common::{config, Msg, T0};
use connector_moving_stats::MovingStats;
use framework::{event_time::format_millis, Emitter, InputRecord, OutputRecord, Transform};

/// One price per symbol, each a different symbol, a few ms apart (the replay).
fn one_price_per_symbol(keys: usize) -> Vec<Msg> {
    (0..keys)
        .map(|i| {
            Msg::price(
                &format!("S{i:05}"),
                100.0 + i as f64 / 8.0,
                T0 + 123 + i as i64,
            )
        })
        .collect()
}

fn record(m: &Msg, offset: usize) -> InputRecord<'_> {
    InputRecord {
        port: 0,
        key: Some(&m.key),
        payload: &m.payload,
        timestamp_ms: Some(m.timestamp_ms),
        partition: 0,
        offset: offset as i64,
    }
}

/// The runtime's loop: after each call that left the emitter full, produce (here: move
/// to `all`) and ask for more. Returns the output and the most the emitter ever held.
fn streamed(msgs: &[Msg], limit: usize) -> (Vec<OutputRecord>, usize) {
    let mut t = MovingStats::new(&config(&["30s", "1h"], "1s", "10s")).unwrap();
    let mut out = Emitter::with_limit(limit);
    let (mut all, mut most) = (Vec::new(), 0);
    let mut drain = |t: &mut MovingStats, out: &mut Emitter| loop {
        most = most.max(out.len());
        let full = out.is_full();
        all.append(&mut out.records);
        assert!(out.rejected.is_empty());
        if !full {
            break;
        }
        t.emit_pending(out);
    };
    for (i, m) in msgs.iter().enumerate() {
        t.process(&record(m, i), &mut out);
        drain(&mut t, &mut out);
    }
    t.end_of_input(&mut out);
    drain(&mut t, &mut out);
    (all, most)
}

fn collected_at_once(msgs: &[Msg]) -> Vec<OutputRecord> {
    let mut t = MovingStats::new(&config(&["30s", "1h"], "1s", "10s")).unwrap();
    let mut out = Emitter::new();
    for (i, m) in msgs.iter().enumerate() {
        t.process(&record(m, i), &mut out);
    }
    t.end_of_input(&mut out);
    out.records
}

#[test]
fn end_of_input_for_many_symbols_is_streamed_in_chunks_with_the_same_bytes() {
    let msgs = one_price_per_symbol(40);
    let want = collected_at_once(&msgs);
    assert_eq!(want.len(), 40 * 3_600, "the 1 h window slides 3,600 times");
    for limit in [1, 100, 1_024] {
        let (got, most) = streamed(&msgs, limit);
        assert!(got == want, "limit {limit}: same records in the same order");
        assert_eq!(most, limit, "limit {limit}: the emitter never held more");
    }
}

#[test]
fn a_watermark_jump_is_streamed_in_chunks_with_the_same_bytes() {
    // Two symbols, then each jumps 2 h ahead: each jump closes 3,600 ends at once.
    let mut msgs = Vec::new();
    for (i, s) in ["A", "B"].iter().enumerate() {
        msgs.push(Msg::price(s, 10.0 + i as f64, T0));
        msgs.push(Msg::price(s, 11.0, T0 + 500));
    }
    for s in ["A", "B"] {
        msgs.push(Msg::price(s, 12.0, T0 + 7_200_000));
    }
    let want = collected_at_once(&msgs);
    let (got, most) = streamed(&msgs, 64);
    assert!(got == want);
    assert_eq!(most, 64);
}

#[test]
fn one_price_per_symbol_gives_exactly_the_windows_an_independent_computation_gives() {
    let msgs = one_price_per_symbol(25);
    let (got, _) = streamed(&msgs, 1_024);
    let mut want: Vec<(String, String, serde_json::Value)> = Vec::new();
    let mut keys: Vec<&Msg> = msgs.iter().collect();
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    for m in keys {
        let symbol = String::from_utf8(m.key.clone()).unwrap();
        let input: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let price = input["price"].as_f64().unwrap();
        // The windows [e - L, e) holding t: e = the next multiples of 1 s after t, for 30 s
        // then for 1 h; each holds just this price (count 1, std 0).
        let first_end = (m.timestamp_ms / 1_000 + 1) * 1_000;
        for e in (first_end..first_end + 3_600_000).step_by(1_000) {
            let mut stats = Vec::new();
            for (name, length) in [("30s", 30_000), ("1h", 3_600_000)] {
                if e - length <= m.timestamp_ms {
                    stats.push(serde_json::json!({
                        "window": name, "window_start": format_millis(e - length),
                        "count": 1, "avg_price": price, "std_price": 0.0,
                    }));
                }
            }
            want.push((
                symbol.clone(),
                format_millis(e),
                serde_json::Value::Array(stats),
            ));
        }
    }
    let got: Vec<(String, String, serde_json::Value)> = got
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            assert_eq!(r.key.as_deref(), v["symbol"].as_str().map(str::as_bytes));
            (
                v["symbol"].as_str().unwrap().to_string(),
                v["timestamp"].as_str().unwrap().to_string(),
                v["stats"].clone(),
            )
        })
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "first difference: {:?}", {
        let i = got.iter().zip(&want).position(|(a, b)| a != b);
        i.map(|i| (&got[i], &want[i]))
    });
}
