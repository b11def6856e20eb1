//! Progress markers (docs/semantics.md §8): a promise that no record before `T` follows
//! closes windows early, and never changes what is emitted.

mod common;

use common::{config, payloads, Msg, T0};
use connector_moving_stats::MovingStats;
use framework::{Emitter, Transform};

fn process(t: &mut MovingStats, m: &Msg, offset: i64, out: &mut Emitter) {
    t.process(&m.record(offset), out);
}

/// Two symbols, ~10 prices/s each with jitter, some out of order within the lateness.
fn prices() -> Vec<Msg> {
    let mut msgs = Vec::new();
    for n in 0..400i64 {
        for (i, symbol) in ["AAA", "BBB"].iter().enumerate() {
            let jitter = (n * 37 + i as i64 * 11) % 90;
            let back = if n % 17 == 0 { 700 } else { 0 };
            let p = 100.0 + ((n * 7 + i as i64) % 13) as f64 * 0.25;
            msgs.push(Msg::price(symbol, p, T0 + n * 100 + jitter - back));
        }
    }
    msgs
}

#[test]
fn a_progress_marker_closes_the_windows_a_record_at_that_time_would_close() {
    let cfg = config(&["2s"], "1s", "1s");
    let mut t = MovingStats::new(&cfg).unwrap();
    let mut out = Emitter::new();
    process(&mut t, &Msg::price("AAA", 100.0, T0 + 100), 0, &mut out);
    assert!(out.is_empty());
    // No record before T0 + 2000 will follow: W = T0 + 1000 closes the window ending there.
    t.advance(0, T0 + 2_000, &mut out);
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.records[0].timestamp_ms, T0 + 1_000);
    // A marker that does not move the watermark closes nothing more.
    t.advance(0, T0 + 1_500, &mut out);
    assert_eq!(out.records.len(), 1);
    // A record at the promised time is not late.
    process(&mut t, &Msg::price("AAA", 101.0, T0 + 2_000), 1, &mut out);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
}

#[test]
fn markers_interleaved_with_records_change_nothing_that_is_emitted() {
    let cfg = config(&["2s", "5s"], "1s", "1s");
    let msgs = prices();

    let mut plain = MovingStats::new(&cfg).unwrap();
    let mut plain_out = Emitter::new();
    for (i, m) in msgs.iter().enumerate() {
        process(&mut plain, m, i as i64, &mut plain_out);
    }
    plain.end_of_input(&mut plain_out);

    // The live source's promise: after a record stamped `r`, no record before `r - 900`
    // (the largest step back in `prices`) follows.
    let mut marked = MovingStats::new(&cfg).unwrap();
    let mut marked_out = Emitter::new();
    let mut emitted_early = 0;
    for (i, m) in msgs.iter().enumerate() {
        process(&mut marked, m, i as i64, &mut marked_out);
        let before = marked_out.records.len();
        let promise = msgs[i..].iter().map(|m| m.timestamp_ms).min().unwrap();
        marked.advance(0, promise, &mut marked_out);
        emitted_early += marked_out.records.len() - before;
    }
    marked.end_of_input(&mut marked_out);

    assert!(emitted_early > 0, "markers closed no window early");
    // Per symbol, the same records in the same order (symbols may interleave differently).
    let by_symbol = |e: &Emitter| {
        let mut records = e.records.clone();
        records.sort_by(|a, b| a.key.cmp(&b.key));
        payloads(&records)
    };
    assert_eq!(by_symbol(&marked_out), by_symbol(&plain_out));
    assert_eq!(marked_out.rejected.len(), plain_out.rejected.len());
}
