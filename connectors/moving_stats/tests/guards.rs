//! Hostile input cannot stop or silence the stage (issue 10 §2): records far in the
//! future, floods of distinct symbols. Driven on a virtual wall clock.

mod common;

use std::sync::Arc;

use common::{config, feed, payloads, Msg, T0};
use connector_moving_stats::{MovingStats, MovingStatsConfig};
use framework::{connector::Resume, Emitter, Transform};

/// 9999-12-31T23:59:59.999Z
const YEAR_9999: i64 = 253_402_300_799_999;

/// A transform whose wall clock reads `now`.
fn at(config: &MovingStatsConfig, now: i64) -> MovingStats {
    MovingStats::with_clock(config, Arc::new(move || now)).unwrap()
}

fn prices(symbol: &str, from: i64, count: i64) -> Vec<Msg> {
    (0..count)
        .map(|i| Msg::price(symbol, 100.0 + (i % 7) as f64, from + i * 250))
        .collect()
}

#[test]
fn a_price_in_year_9999_is_refused_as_future_and_later_prices_still_count() {
    let cfg = config(&["10s", "30s"], "1s", "2s");
    let mut log = prices("BTCUSDT", T0, 80);
    let clean = log.clone();
    log.insert(20, Msg::price("BTCUSDT", 5.0, YEAR_9999));
    // The virtual clock is where a live feed would be: at the newest price.
    let now = T0 + 80 * 250;

    let mut guarded = at(&cfg, now);
    let mut out = Emitter::new();
    feed(&mut guarded, &log, 0, &mut out);
    guarded.end_of_input(&mut out);
    let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason).collect();
    assert_eq!(reasons, vec!["future"]);
    assert!(out.rejected[0].detail.contains("9999-12-31"));

    let mut reference = at(&cfg, now);
    let mut expected = Emitter::new();
    feed(&mut reference, &clean, 0, &mut expected);
    reference.end_of_input(&mut expected);
    assert_eq!(payloads(&out.records), payloads(&expected.records));
    assert!(!out.records.is_empty());
}

#[test]
fn the_future_price_never_reaches_the_checkpoint_so_a_restart_does_not_loop_on_it() {
    let cfg = config(&["10s"], "1s", "2s");
    let now = T0 + 60_000;
    let mut t = at(&cfg, now);
    let mut out = Emitter::new();
    let mut log = prices("BTCUSDT", T0, 40);
    log.push(Msg::price("BTCUSDT", 1.0, YEAR_9999));
    feed(&mut t, &log, 0, &mut out);
    let checkpoint = t.checkpoint().unwrap();
    let json: serde_json::Value = serde_json::from_str(&checkpoint).unwrap();
    let watermark = json["watermarks"]["BTCUSDT"].as_i64().unwrap();
    assert_eq!(watermark, T0 + 39 * 250 - 2_000, "the watermark ignores it");
    // After a restart the replay refuses it again but does not dead-letter it twice.
    let mut restarted = at(&cfg, now);
    assert!(matches!(
        restarted.resume(Some(&checkpoint)).unwrap(),
        Resume::ReplayFrom { .. }
    ));
    let mut again = Emitter::new();
    feed(&mut restarted, &log, 0, &mut again);
    assert!(again.rejected.is_empty(), "{:?}", again.rejected);
    feed(
        &mut restarted,
        &prices("BTCUSDT", T0 + 40 * 250, 40),
        41,
        &mut again,
    );
    assert!(
        !again.records.is_empty(),
        "later prices still close windows"
    );
}

#[test]
fn old_data_replays_with_any_clock_and_the_skew_is_configurable() {
    let mut cfg = config(&["10s"], "1s", "2s");
    // Old data against today's clock: nothing is in the future.
    let mut t = MovingStats::new(&cfg).unwrap();
    let mut out = Emitter::new();
    feed(&mut t, &prices("A", T0, 20), 0, &mut out);
    assert!(out.rejected.is_empty());
    // A clock an hour behind the data refuses it with the default 1m skew...
    let mut t = at(&cfg, T0 - 3_600_000);
    let mut out = Emitter::new();
    feed(&mut t, &prices("A", T0, 20), 0, &mut out);
    assert_eq!(out.rejected.len(), 20);
    // ...and accepts it with a 2h skew.
    cfg.guards.max_future_skew = "2h".parse().unwrap();
    let mut t = at(&cfg, T0 - 3_600_000);
    let mut out = Emitter::new();
    feed(&mut t, &prices("A", T0, 20), 0, &mut out);
    assert!(out.rejected.is_empty());
}

#[test]
fn symbols_beyond_max_keys_are_refused_and_the_checkpoint_of_the_most_keys_fits_a_message() {
    let cfg = MovingStatsConfig::default();
    assert_eq!(cfg.guards.max_keys, 4_000);
    let mut t = at(&cfg, T0 + 3_600_000);
    let mut out = Emitter::new();
    // The longest symbols allowed, quotes included (escaped twice in the stored checkpoint).
    let symbol = |i: usize| format!("\"{i:0>30}\"");
    let log: Vec<Msg> = (0..4_010)
        .map(|i| Msg::price(&symbol(i), 1.0, T0 + i as i64))
        .collect();
    feed(&mut t, &log, 0, &mut out);
    let refused: Vec<&str> = out.rejected.iter().map(|r| r.reason).collect();
    assert_eq!(refused, vec!["too_many_keys"; 10]);
    let checkpoint = t.checkpoint().unwrap();
    // The runtime stores the checkpoint as a JSON string inside its own record.
    let stored =
        serde_json::to_vec(&serde_json::json!({"state": checkpoint, "replay_from": [1]})).unwrap();
    assert!(
        stored.len() < 1_000_000,
        "checkpoint of {} bytes",
        stored.len()
    );
    let too_long = Msg::price(&"S".repeat(33), 1.0, T0);
    let mut out = Emitter::new();
    feed(&mut t, &[too_long], 5_000, &mut out);
    assert_eq!(out.rejected[0].reason, "invalid_symbol");
}

#[test]
fn idle_symbols_are_evicted_so_new_ones_fit_and_outputs_match_an_unbounded_run() {
    let mut bounded_cfg = config(&["10s"], "1s", "2s");
    bounded_cfg.guards.max_keys = 2;
    bounded_cfg.guards.key_idle_timeout = Some("1m".parse().unwrap());
    let mut unbounded_cfg = bounded_cfg.clone();
    unbounded_cfg.guards.max_keys = 4_000;
    unbounded_cfg.guards.key_idle_timeout = Some("365d".parse().unwrap());
    let mut log = prices("A", T0, 40);
    log.extend(prices("B", T0 + 5_000, 40));
    // Two minutes later: A and B went quiet, C and D arrive.
    log.extend(prices("C", T0 + 120_000, 40));
    log.extend(prices("D", T0 + 121_000, 40));
    let now = T0 + 200_000;
    let run = |cfg: &MovingStatsConfig| {
        let mut t = at(cfg, now);
        let mut out = Emitter::new();
        feed(&mut t, &log, 0, &mut out);
        t.end_of_input(&mut out);
        out
    };
    let bounded = run(&bounded_cfg);
    let unbounded = run(&unbounded_cfg);
    assert!(bounded.rejected.is_empty(), "{:?}", bounded.rejected);
    let sorted = |out: &Emitter| {
        let mut p = payloads(&out.records);
        p.sort();
        p
    };
    assert_eq!(sorted(&bounded), sorted(&unbounded));
}

#[test]
fn guard_settings_out_of_range_fail_validation() {
    use framework::ConnectorConfig;
    let mut cfg = config(&["10s"], "1s", "2s");
    cfg.guards.max_keys = 0;
    cfg.guards.max_future_skew = "30d".parse().unwrap();
    cfg.guards.key_idle_timeout = Some("5s".parse().unwrap());
    let paths: Vec<String> = cfg.check().into_iter().map(|i| i.path).collect();
    assert_eq!(paths, ["max_future_skew", "max_keys", "key_idle_timeout"]);
    assert!(MovingStats::new(&cfg).is_err());
}
