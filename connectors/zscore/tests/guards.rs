//! Hostile input cannot stop or silence the join (issue 10 §2): records far in the future
//! on either input, floods of distinct symbols. Driven on a virtual wall clock.

mod common;

use std::sync::Arc;

use common::*;
use connector_zscore::{ZScoreConfig, ZScoreTransform};
use framework::{ConnectorConfig, Transform};

/// 9999-12-31T23:59:59.000Z
const YEAR_9999: i64 = 253_402_300_799_000;

fn at(config: &ZScoreConfig, now: i64) -> Driver {
    Driver::new(ZScoreTransform::with_clock(config, "guards", Arc::new(move || now)).unwrap())
}

const W: &[(&str, f64, f64)] = &[("30s", 100.0, 2.0)];

#[test]
fn future_prices_and_statistics_are_refused_and_never_move_a_watermark() {
    let now = T0 + 60_000;
    let mut d = at(&config(1_000, 10_000), now);
    d.price("BTCUSDT", YEAR_9999, 1.0);
    d.stats("BTCUSDT", YEAR_9999, W);
    // Had either moved a watermark, these would be late or superseded.
    d.price("BTCUSDT", T0 + 500, 104.0);
    d.stats("BTCUSDT", T0, W);
    assert_eq!(d.reasons(), vec!["future", "future"]);
    assert_eq!(d.outputs().len(), 1, "{:?}", d.outputs());
    assert!(d.outputs()[0].contains("zscore_price"));
    let checkpoint = d.transform.checkpoint().unwrap();
    assert!(!checkpoint.contains("253402"), "{checkpoint}");
}

#[test]
fn with_a_virtual_clock_a_replay_of_old_data_is_unaffected() {
    // Wall clock long after the data: everything is in the past.
    let mut d = at(&config(1_000, 10_000), i64::MAX);
    d.stats("A", T0, W);
    d.price("A", T0 + 10, 102.0);
    assert!(d.reasons().is_empty());
    assert_eq!(d.outputs().len(), 1);
}

#[test]
fn symbols_beyond_max_keys_are_refused_on_both_inputs_and_the_checkpoint_fits_a_message() {
    let mut cfg = config(1_000, 10_000);
    cfg.guards.max_keys = 4_000;
    let mut d = at(&cfg, T0 + 3_600_000);
    let symbol = |i: usize| format!("\"{i:0>30}\"");
    for i in 0..4_005 {
        // Pending prices: every symbol holds state.
        d.price(&symbol(i), T0 + 1_500, 1.0);
    }
    d.stats(&symbol(4_001), T0 + 1_000, W);
    let mut reasons = d.reasons();
    reasons.dedup();
    assert_eq!(reasons, vec!["too_many_keys"]);
    assert_eq!(d.rejected.len(), 6);
    let checkpoint = d.transform.checkpoint().unwrap();
    let stored = serde_json::to_vec(&serde_json::json!({"state": checkpoint})).unwrap();
    assert!(
        stored.len() < 1_000_000,
        "checkpoint of {} bytes",
        stored.len()
    );
}

#[test]
fn idle_symbols_are_evicted_their_waiting_prices_unmatched_and_new_ones_admitted() {
    let mut cfg = config(1_000, 10_000);
    cfg.guards.max_keys = 1;
    cfg.guards.key_idle_timeout = Some("1m".parse().unwrap());
    let mut d = at(&cfg, T0 + 3_600_000);
    d.price("A", T0 + 1_500, 1.0);
    d.price("B", T0 + 1_500, 1.0);
    // Two minutes later A is idle: it is evicted, and its waiting price is unmatched.
    d.price("B", T0 + 121_500, 1.0);
    assert_eq!(d.reasons(), vec!["too_many_keys", "unmatched"]);
    assert!(d.rejected[1].detail.contains("evicted"));
}

#[test]
fn guard_settings_out_of_range_fail_validation() {
    let mut cfg = config(1_000, 10_000);
    cfg.guards.max_keys = 1_000_001;
    cfg.guards.key_idle_timeout = Some("400d".parse().unwrap());
    cfg.slide = "2d".parse().unwrap();
    let paths: Vec<String> = cfg.check().into_iter().map(|i| i.path).collect();
    assert_eq!(paths, ["slide", "max_keys", "key_idle_timeout"]);
    assert!(ZScoreTransform::new(&cfg, "t").is_err());
}
