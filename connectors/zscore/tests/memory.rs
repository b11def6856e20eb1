//! Issue 15: the join's statistics table is bounded by configuration, never by input.
//! Once the price input of a partition ended no statistics record is kept; while live a
//! symbol holds at most `max_stats_per_key`; the prices of evicted symbols go out in
//! chunks.

mod common;

use common::*;
use connector_zscore::{ZScoreConfig, ZScoreTransform, PRICES, STATS};
use framework::{event_time::KeyGuards, DurationSpec, Emitter, Transform};

const SYMBOLS: usize = 40;
const STATS_PER_SYMBOL: i64 = 900;

fn symbol(i: usize) -> String {
    format!("S{i:04}")
}

/// The whole-pipeline benchmark's shape: one price per symbol, then (as `moving_stats`
/// writes them at end of input) many statistics records per symbol, some of which match
/// the prices. `ended` tells the transform when the price input ended, as the runtime
/// does. Returns output payloads, rejection reasons and the most statistics held at once.
fn run(ended: bool) -> (Vec<Vec<u8>>, Vec<&'static str>, usize) {
    let mut t = ZScoreTransform::new(&ZScoreConfig::default(), "test").unwrap();
    let mut out = Emitter::new();
    for i in 0..SYMBOLS {
        // Half the prices find their statistics, the other half fall between two records.
        let at = T0 + 2_000 * i as i64 + 250;
        let p = price_json(&symbol(i), at, 100.0 + i as f64);
        t.process(&input(PRICES, &symbol(i), &p, i as i64), &mut out);
    }
    if ended {
        t.input_ended(PRICES, &mut out);
    }
    let mut most = 0;
    let mut offset = 0;
    for i in 0..SYMBOLS {
        let name = symbol(i);
        for n in 0..STATS_PER_SYMBOL {
            let e = T0 + n * 1_000;
            if i % 2 == 1 && e == T0 + 2_000 * i as i64 {
                continue; // this symbol's price is unmatched
            }
            let s = stats_json(&name, e, &[("30s", 100.0, 2.0), ("1h", 101.0, 4.0)]);
            t.process(&input(STATS, &name, &s, offset), &mut out);
            offset += 1;
            most = most.max(t.buffered().table_records);
        }
    }
    t.end_of_input(&mut out);
    let records = out.records.into_iter().map(|r| r.payload).collect();
    let reasons = out.rejected.iter().map(|r| r.reason).collect();
    (records, reasons, most)
}

#[test]
fn statistics_after_the_prices_ended_are_not_kept_and_outputs_equal_the_unbounded_run() {
    let (want_records, want_reasons, most_unbounded) = run(false);
    let (records, reasons, most) = run(true);
    assert_eq!(want_records.len(), SYMBOLS / 2);
    assert_eq!(want_reasons, vec!["unmatched"; SYMBOLS / 2]);
    assert!(records == want_records, "the same z-scores, byte for byte");
    assert_eq!(reasons, want_reasons);
    // Without the signal nothing passes the statistics: all of them are held.
    assert!(
        most_unbounded > SYMBOLS * (STATS_PER_SYMBOL as usize - 100),
        "{most_unbounded}"
    );
    assert_eq!(most, 0, "no statistics record kept once the prices ended");
}

#[test]
fn statistics_beyond_max_stats_per_key_are_refused_as_too_many_stats() {
    let config = ZScoreConfig {
        max_stats_per_key: 3,
        ..ZScoreConfig::default()
    };
    let mut d = Driver::new(ZScoreTransform::new(&config, "test").unwrap());
    for n in 0..5 {
        d.stats("BTCUSDT", T0 + n * 1_000, &[("30s", 100.0, 2.0)]);
    }
    assert_eq!(d.reasons(), ["too_many_stats", "too_many_stats"]);
    assert!(d.rejected[0].detail.contains("max_stats_per_key"));
    assert_eq!(d.transform.buffered().table_records, 3);
    // Another symbol has its own room.
    d.stats("ETHUSDT", T0, &[("30s", 10.0, 1.0)]);
    assert_eq!(d.transform.buffered().table_records, 4);
}

/// Prices of 3 symbols wait for statistics that never come; then a price an hour later
/// evicts them (idle timeout 1 minute). Returns what came out and the most held at once.
fn evicted(limit: usize) -> (Vec<Vec<u8>>, Vec<String>, usize) {
    let config = ZScoreConfig {
        guards: KeyGuards {
            key_idle_timeout: Some(DurationSpec::from_secs(60)),
            ..KeyGuards::default()
        },
        ..ZScoreConfig::default()
    };
    let mut t = ZScoreTransform::new(&config, "test").unwrap();
    let mut out = Emitter::with_limit(limit);
    let mut taken = Chunked::default();
    let mut drain = |t: &mut ZScoreTransform, out: &mut Emitter| taken.drain(t, out);
    let mut offset = 0;
    for s in ["AAA", "BBB", "CCC"] {
        for i in 0..1_500 {
            let p = price_json(s, T0 + 20 * i, 100.0);
            t.process(&input(PRICES, s, &p, offset), &mut out);
            offset += 1;
            drain(&mut t, &mut out);
        }
    }
    let later = T0 + 3_600_000;
    let s = stats_json("ZZZ", later, &[("30s", 100.0, 2.0)]);
    t.process(&input(STATS, "ZZZ", &s, 0), &mut out);
    drain(&mut t, &mut out);
    let p = price_json("ZZZ", later + 10, 104.0);
    t.process(&input(PRICES, "ZZZ", &p, offset), &mut out);
    drain(&mut t, &mut out);
    let rejected = taken
        .rejected
        .into_iter()
        .map(|r| String::from_utf8(r.payload).unwrap())
        .collect();
    (taken.records, rejected, taken.most)
}

#[test]
fn waiting_prices_of_evicted_symbols_go_out_in_chunks_with_the_same_output() {
    let (want_records, want_rejected, _) = evicted(usize::MAX);
    assert_eq!(want_rejected.len(), 4_500, "every waiting price unmatched");
    assert_eq!(want_records.len(), 1, "the later price is matched");
    for limit in [1, 100] {
        let (records, rejected, most) = evicted(limit);
        assert_eq!(records, want_records, "limit {limit}");
        assert!(rejected == want_rejected, "limit {limit}: same order");
        assert!(most <= limit, "limit {limit}: {most} held at once");
    }
}
