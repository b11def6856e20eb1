//! Random streams against an exact reference: prices are `base + k/1024` (exact doubles),
//! so integer sums give exact counts, means and deviations.

mod common;

use std::collections::BTreeMap;

use common::{config, run, Msg};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Event {
    symbol: usize,
    t: i64,
    /// Price in 1/1024 units.
    x: i64,
}

const SYMBOLS: [&str; 3] = ["BTCUSDT", "ETHUSDT", "A\"B"];

fn to_price(x: i64) -> f64 {
    x as f64 / 1024.0
}

/// (windows, slide, lateness candidates)
const SETUPS: [(&[&str], &str, &[&str]); 3] = [
    (&["1s", "3s", "5s"], "1s", &["0ms", "1500ms", "2500ms"]),
    (&["1500ms", "500ms"], "500ms", &["0ms", "700ms"]),
    (&["2s"], "2s", &["0ms", "1999ms"]),
];

fn events() -> impl Strategy<Value = (usize, usize, Vec<Event>)> {
    let base_price = prop_oneof![Just(1i64), Just(100), Just(100_000), Just(30)];
    let spread = prop_oneof![Just(0i64), Just(3), Just(2_000), Just(1_000_000)];
    let start = prop_oneof![Just(-20_000i64), Just(common::T0)];
    (
        0usize..3,
        0usize..3,
        base_price,
        spread,
        start,
        prop::collection::vec(
            (0usize..3, 0i64..700, -4_000i64..600, 0i64..=1_000_000),
            0..150,
        ),
    )
        .prop_map(|(setup, late, base, spread, start, raw)| {
            let mut clock = start;
            let events = raw
                .into_iter()
                .map(|(symbol, step, jitter, k)| {
                    clock += step;
                    // Mostly in order; some jitter reaches beyond the lateness.
                    let t = if !(-2_500..=0).contains(&jitter) {
                        clock
                    } else {
                        clock + jitter
                    };
                    let x = base * 1024 + if spread == 0 { 0 } else { k % (spread + 1) };
                    Event { symbol, t, x }
                })
                .collect();
            (setup, late, events)
        })
}

/// (symbol, end) -> per window: (count, exact avg, exact std)
type Expected = BTreeMap<(String, i64), Vec<Option<(u64, f64, f64)>>>;

fn reference(events: &[Event], lengths: &[i64], slide: i64, lateness: i64) -> Expected {
    let mut max_seen: BTreeMap<usize, i64> = BTreeMap::new();
    let mut accepted: BTreeMap<usize, Vec<(i64, i64)>> = BTreeMap::new();
    for e in events {
        let late = max_seen.get(&e.symbol).is_some_and(|&m| e.t < m - lateness);
        if !late {
            accepted.entry(e.symbol).or_default().push((e.t, e.x));
            let m = max_seen.entry(e.symbol).or_insert(e.t);
            *m = (*m).max(e.t);
        }
    }
    let mut out = Expected::new();
    for (symbol, records) in accepted {
        let mut ends = std::collections::BTreeSet::new();
        for &(t, _) in &records {
            let first = t.div_euclid(slide) + 1;
            let longest = lengths.iter().max().unwrap() / slide;
            ends.extend((first..first + longest).map(|e| e * slide));
        }
        for end in ends {
            let entries: Vec<Option<(u64, f64, f64)>> = lengths
                .iter()
                .map(|&l| {
                    let xs: Vec<i128> = records
                        .iter()
                        .filter(|(t, _)| *t >= end - l && *t < end)
                        .map(|&(_, x)| x as i128)
                        .collect();
                    if xs.is_empty() {
                        return None;
                    }
                    let n = xs.len() as i128;
                    let s1: i128 = xs.iter().sum();
                    let s2: i128 = xs.iter().map(|x| x * x).sum();
                    let avg = s1 as f64 / (n as f64 * 1024.0);
                    let std = ((n * s2 - s1 * s1) as f64).sqrt() / (n as f64 * 1024.0);
                    Some((n as u64, avg, std))
                })
                .collect();
            if entries.iter().any(Option::is_some) {
                out.insert((SYMBOLS[symbol].to_string(), end), entries);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_streams_match_exact_arithmetic((setup, late, events) in events()) {
        let (windows, slide, latenesses) = SETUPS[setup];
        let lateness = latenesses[late % latenesses.len()];
        let cfg = config(windows, slide, lateness);
        let msgs: Vec<Msg> = events
            .iter()
            .map(|e| Msg::price(SYMBOLS[e.symbol], to_price(e.x), e.t))
            .collect();
        let out = run(&cfg, &msgs, true);
        let lengths: Vec<i64> = cfg.windows.iter().map(|w| w.as_millis()).collect();
        let expected = reference(&events, &lengths, cfg.slide.as_millis(), cfg.lateness.as_millis());
        let names = cfg.window_names();

        let mut last_end: BTreeMap<String, i64> = BTreeMap::new();
        let mut got = BTreeMap::new();
        for r in &out.records {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            let symbol = v["symbol"].as_str().unwrap().to_string();
            let end = framework::event_time::parse_millis(v["timestamp"].as_str().unwrap()).unwrap();
            prop_assert_eq!(end, r.timestamp_ms);
            prop_assert_eq!(r.key.as_deref(), Some(symbol.as_bytes()));
            // Append mode: increasing ends per symbol.
            if let Some(&prev) = last_end.get(&symbol) {
                prop_assert!(end > prev);
            }
            last_end.insert(symbol.clone(), end);
            got.insert((symbol, end), v["stats"].as_array().unwrap().clone());
        }
        prop_assert_eq!(got.len(), out.records.len());
        prop_assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
        let rejected_late = out.rejected.iter().filter(|r| r.reason == "late").count();
        prop_assert_eq!(rejected_late, out.rejected.len());

        for (key, entries) in &expected {
            let stats = &got[key];
            let want: Vec<(usize, &(u64, f64, f64))> = entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.as_ref().map(|e| (i, e)))
                .collect();
            prop_assert_eq!(stats.len(), want.len());
            for (entry, (i, (count, avg, std))) in stats.iter().zip(want) {
                prop_assert_eq!(entry["window"].as_str().unwrap(), names[i].as_str());
                let start = framework::event_time::parse_millis(entry["window_start"].as_str().unwrap()).unwrap();
                prop_assert_eq!(start, key.1 - lengths[i]);
                prop_assert_eq!(entry["count"].as_u64().unwrap(), *count);
                let got_avg = entry["avg_price"].as_f64().unwrap();
                let got_std = entry["std_price"].as_f64().unwrap();
                prop_assert!(((got_avg - avg) / avg).abs() <= 1e-12, "avg {} vs {}", got_avg, avg);
                if *std == 0.0 {
                    prop_assert_eq!(got_std.to_bits(), 0f64.to_bits(), "equal prices: std {}", got_std);
                } else {
                    prop_assert!(((got_std - std) / std).abs() <= 1e-9, "std {} vs {} at {:?}", got_std, std, key);
                }
            }
        }
    }
}
