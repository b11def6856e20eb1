//! Issue 15: the prices waiting for their statistics pause the price input at
//! `max_pending_prices` (dropped only past twice that),
//! and a statistics record (or end of input) deciding many of them is streamed in chunks.

mod common;

use common::*;
use connector_zscore::{ZScoreConfig, ZScoreTransform, PRICES, STATS};
use framework::{ConnectorConfig, Emitter, Transform};

fn capped(max_pending_prices: usize) -> ZScoreTransform {
    let config = ZScoreConfig {
        max_pending_prices,
        ..ZScoreConfig::default()
    };
    ZScoreTransform::new(&config, "test").unwrap()
}

#[test]
fn at_max_pending_prices_the_join_asks_to_pause_prices_and_drops_only_past_twice_the_bound() {
    let mut d = Driver::new(capped(5));
    for i in 0..5 {
        assert!(!d.transform.input_full(PRICES), "room for price {i}");
        d.price("BTCUSDT", T0 + 100 * i, 97_000.0 + i as f64);
    }
    assert!(
        d.transform.input_full(PRICES),
        "five wait: stop reading prices"
    );
    assert!(!d.transform.input_full(STATS), "statistics keep flowing");
    // A runtime that cannot pause: prices are still taken up to twice the bound.
    for i in 5..12 {
        d.price("BTCUSDT", T0 + 100 * i, 97_000.0 + i as f64);
    }
    assert_eq!(d.reasons(), ["too_many_pending", "too_many_pending"]);
    assert_eq!(d.transform.buffered().probes, 10);
    // The statistics at T0 decide the ten waiting prices: room again.
    d.stats("BTCUSDT", T0, &[("30s", 97_000.0, 2.0)]);
    assert_eq!(d.records.len(), 10);
    assert!(
        !d.transform.input_full(PRICES),
        "decided: read prices again"
    );
    d.price("BTCUSDT", T0 + 1_500, 97_001.0);
    assert_eq!(
        d.rejected.len(),
        2,
        "accepted again once the others were decided"
    );
    assert_eq!(d.transform.buffered().probes, 1);
}

#[test]
fn max_pending_prices_and_max_stats_per_key_out_of_range_are_config_issues() {
    for bad in [0, 10_000_001] {
        let config = ZScoreConfig {
            max_pending_prices: bad,
            ..ZScoreConfig::default()
        };
        assert!(config
            .check()
            .iter()
            .any(|i| i.path == "max_pending_prices"));
    }
    for bad in [0, 1_000_001] {
        let config = ZScoreConfig {
            max_stats_per_key: bad,
            ..ZScoreConfig::default()
        };
        assert!(config.check().iter().any(|i| i.path == "max_stats_per_key"));
    }
    assert!(ZScoreConfig::default().check().is_empty());
}

/// Runs `feed` then end of input as the runtime does with an emitter full at `limit`.
fn streamed(limit: usize, prices: usize) -> (Vec<Vec<u8>>, Vec<&'static str>, usize) {
    let mut t = capped(1_000_000);
    let mut out = Emitter::with_limit(limit);
    let mut taken = Chunked::default();
    let mut drain = |t: &mut ZScoreTransform, out: &mut Emitter| taken.drain(t, out);
    let mut offset = 0;
    for symbol in ["AAA", "BBB"] {
        for i in 0..prices as i64 {
            let p = price_json(symbol, T0 + 10 * i, 100.0 + i as f64);
            t.process(&input(PRICES, symbol, &p, offset), &mut out);
            offset += 1;
            drain(&mut t, &mut out);
        }
    }
    // Statistics for the first half, one per second: each matches 100 prices at once;
    // the rest waits for the end of input and is unmatched then.
    let half = T0 + prices as i64 * 10 / 2;
    for (n, e) in (T0..=half).step_by(1_000).enumerate() {
        let s = stats_json("AAA", e, &[("30s", 100.0, 3.0)]);
        t.process(&input(STATS, "AAA", &s, n as i64), &mut out);
        drain(&mut t, &mut out);
    }
    t.end_of_input(&mut out);
    drain(&mut t, &mut out);
    let reasons = taken.rejected.iter().map(|r| r.reason).collect();
    (taken.records, reasons, taken.most)
}

#[test]
fn many_prices_decided_at_once_are_streamed_in_chunks_with_the_same_output() {
    let (want_records, want_reasons, _) = streamed(usize::MAX, 4_000);
    assert!(want_records.len() > 1_000 && want_reasons.len() > 1_000);
    assert_eq!(want_records.len() + want_reasons.len(), 8_000);
    for limit in [1, 50] {
        let (records, reasons, most) = streamed(limit, 4_000);
        assert!(records == want_records, "limit {limit}");
        assert_eq!(reasons, want_reasons, "limit {limit}");
        assert_eq!(most, limit, "limit {limit}: never more held at once");
    }
}
