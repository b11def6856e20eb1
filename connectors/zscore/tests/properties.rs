//! Properties of the z-score transform: independence from the interleaving of its two
//! inputs, agreement with a directly computed reference, and restarts that never change
//! the answer.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use connector_zscore::{zscore, ZScoreConfig, ZScoreTransform, PRICES, STATS};
use framework::{connector::Resume, event_time::format_millis, Transform};
use proptest::prelude::*;

const SLIDE: i64 = 1_000;
const LATENESS: i64 = 3_000;
const SYMBOLS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];
const WINDOWS: [&str; 6] = ["30s", "1m", "5m", "15m", "30m", "1h"];

/// SplitMix64: the generated streams are a pure function of the proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// (window name, avg_price, std_price).
type Window = (&'static str, f64, f64);

/// Sorted outputs, late prices and unmatched prices of a run.
type Results = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

#[derive(Debug, Clone)]
struct Entry {
    symbol: &'static str,
    /// Event time, which is also the Kafka timestamp.
    time: i64,
    payload: Vec<u8>,
}

#[derive(Debug, Clone)]
struct PriceDef {
    symbol: &'static str,
    time: i64,
    price: f64,
}

#[derive(Debug, Clone, Default)]
struct Streams {
    prices: Vec<Entry>,
    stats: Vec<Entry>,
    price_defs: Vec<PriceDef>,
    /// (symbol, e) -> windows, first occurrence (the stats log is increasing per symbol).
    stats_defs: BTreeMap<(&'static str, i64), Vec<Window>>,
}

/// Merges per-symbol sequences into one log, keeping each symbol's order.
fn merge<T>(rng: &mut Rng, mut per_symbol: Vec<Vec<T>>) -> Vec<T> {
    for seq in &mut per_symbol {
        seq.reverse();
    }
    let mut log = Vec::new();
    loop {
        let live: Vec<usize> = (0..per_symbol.len())
            .filter(|&i| !per_symbol[i].is_empty())
            .collect();
        if live.is_empty() {
            return log;
        }
        let pick = live[rng.below(live.len() as u64) as usize];
        if let Some(item) = per_symbol[pick].pop() {
            log.push(item);
        }
    }
}

fn generate(seed: u64) -> Streams {
    let mut rng = Rng(seed);
    let mut streams = Streams::default();
    let mut prices_per_symbol = Vec::new();
    let mut stats_per_symbol = Vec::new();
    for symbol in SYMBOLS {
        let mut t = T0 + rng.below(3_000) as i64;
        let (mut lo, mut hi) = (t, t);
        let mut prices = Vec::new();
        for _ in 0..20 + rng.below(100) {
            if rng.chance(10) {
                t -= rng.below(5_000) as i64; // out of order, sometimes late
            } else {
                t += rng.below(400) as i64;
            }
            lo = lo.min(t);
            hi = hi.max(t);
            // Whole cents: the text round-trips exactly, so z-scores can be compared.
            let price = (10_000 + rng.below(200)) as f64 / 100.0;
            let def = PriceDef {
                symbol,
                time: t,
                price,
            };
            prices.push((
                Entry {
                    symbol,
                    time: t,
                    payload: price_json(symbol, t, price),
                },
                def,
            ));
        }
        prices_per_symbol.push(prices);

        let mut stats = Vec::new();
        let mut e = lo.div_euclid(SLIDE) * SLIDE - 2 * SLIDE;
        while e <= hi + SLIDE {
            if rng.chance(80) {
                let mut windows = Vec::new();
                for w in WINDOWS {
                    if rng.chance(70) {
                        // Short decimals: their JSON text parses back exactly.
                        let avg = 100.0 + rng.below(9) as f64 * 0.25;
                        let std = rng.below(4) as f64 * 0.125;
                        windows.push((w, avg, std));
                    }
                }
                let entry = Entry {
                    symbol,
                    time: e,
                    payload: stats_json(symbol, e, &windows),
                };
                if rng.chance(10) {
                    stats.push(entry.clone()); // re-delivered
                }
                stats.push(entry);
                streams.stats_defs.insert((symbol, e), windows);
            }
            e += SLIDE;
        }
        stats_per_symbol.push(stats);
    }
    let prices = merge(&mut rng, prices_per_symbol);
    streams.prices = prices.iter().map(|(e, _)| e.clone()).collect();
    streams.price_defs = prices.into_iter().map(|(_, d)| d).collect();
    streams.stats = merge(&mut rng, stats_per_symbol);
    streams
}

/// What the join must produce, computed directly from the definition.
struct Reference {
    outputs: Vec<serde_json::Value>,
    late: Vec<Vec<u8>>,
    unmatched: Vec<Vec<u8>>,
}

fn reference(s: &Streams) -> Reference {
    let mut max_seen: BTreeMap<&str, i64> = BTreeMap::new();
    let mut r = Reference {
        outputs: Vec::new(),
        late: Vec::new(),
        unmatched: Vec::new(),
    };
    for (entry, p) in s.prices.iter().zip(&s.price_defs) {
        if max_seen
            .get(p.symbol)
            .is_some_and(|&m| p.time < m - LATENESS)
        {
            r.late.push(entry.payload.clone());
            continue;
        }
        let m = max_seen.entry(p.symbol).or_insert(p.time);
        *m = (*m).max(p.time);
        let e = p.time.div_euclid(SLIDE) * SLIDE;
        match s.stats_defs.get(&(p.symbol, e)) {
            Some(windows) => {
                let zscores: Vec<_> = windows
                    .iter()
                    .map(|(w, avg, std)| {
                        let z = if *std == 0.0 {
                            0.0
                        } else {
                            (p.price - avg) / std
                        };
                        assert_eq!(z, zscore(p.price, *avg, *std));
                        serde_json::json!({"window": w, "zscore_price": z})
                    })
                    .collect();
                r.outputs.push(serde_json::json!({
                    "timestamp": format_millis(p.time), "symbol": p.symbol,
                    "price": p.price, "zscores": zscores
                }));
            }
            None => r.unmatched.push(entry.payload.clone()),
        }
    }
    r
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn config() -> ZScoreConfig {
    common::config(SLIDE, LATENESS)
}

fn fresh() -> ZScoreTransform {
    ZScoreTransform::new(&config(), "prop").unwrap()
}

/// Feeds two logs in the interleaving chosen by `rng` (each log's own order kept), for at
/// most `limit` records; returns how many of each were consumed.
fn feed_interleaved(
    d: &mut Driver,
    prices: &[Entry],
    stats: &[Entry],
    rng: &mut Rng,
    limit: usize,
) -> (usize, usize) {
    let (mut p, mut s) = (0, 0);
    while (p < prices.len() || s < stats.len()) && p + s < limit {
        let take_price = s == stats.len() || (p < prices.len() && rng.chance(60));
        if take_price {
            d.feed(PRICES, prices[p].symbol, &prices[p].payload);
            p += 1;
        } else {
            d.feed(STATS, stats[s].symbol, &stats[s].payload);
            s += 1;
        }
    }
    (p, s)
}

fn run_uninterrupted(s: &Streams, rng: &mut Rng) -> Driver {
    let mut d = Driver::new(fresh());
    feed_interleaved(&mut d, &s.prices, &s.stats, rng, usize::MAX);
    d.end();
    d
}

fn payloads(d: &Driver) -> Vec<Vec<u8>> {
    d.records.iter().map(|r| r.payload.clone()).collect()
}

fn rejected(d: &Driver, reason: &str) -> Vec<Vec<u8>> {
    d.rejected
        .iter()
        .filter(|r| r.reason == reason)
        .map(|r| r.payload.clone())
        .collect()
}

fn approx_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            (x - y).abs() <= 1e-12 * x.abs().max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| approx_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| approx_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Orders outputs by (symbol, timestamp, price) for a pairwise comparison.
fn by_identity(v: &serde_json::Value) -> (String, String, String) {
    (
        v["symbol"].to_string(),
        v["timestamp"].to_string(),
        v["price"].to_string(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_interleaving_gives_the_same_outputs_equal_to_the_reference(seed in any::<u64>()) {
        let s = generate(seed);
        let expected = reference(&s);
        let mut first: Option<Results> = None;
        for round in 0..8u64 {
            let d = run_uninterrupted(&s, &mut Rng(seed ^ (round + 1).wrapping_mul(0x51_7C_C1_B7)));
            let got = (
                sorted(payloads(&d)),
                sorted(rejected(&d, "late")),
                sorted(rejected(&d, "unmatched")),
            );
            prop_assert_eq!(d.rejected.len(), got.1.len() + got.2.len(), "only late/unmatched");
            prop_assert_eq!(d.transform.buffered().total(), 0);
            match &first {
                None => first = Some(got),
                Some(first) => prop_assert_eq!(first, &got, "interleaving {} differs", round),
            }
        }
        let Some((outputs, late, unmatched)) = first else { unreachable!() };
        prop_assert_eq!(late, sorted(expected.late.clone()));
        prop_assert_eq!(unmatched, sorted(expected.unmatched.clone()));

        let mut got: Vec<serde_json::Value> = outputs
            .iter()
            .map(|p| serde_json::from_slice(p).unwrap())
            .collect();
        let mut want = expected.outputs;
        got.sort_by_key(by_identity);
        want.sort_by_key(by_identity);
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert!(approx_eq(g, w), "got {g}\nwant {w}");
        }
    }

    #[test]
    fn restarts_from_checkpoints_reproduce_the_uninterrupted_outputs(
        seed in any::<u64>(),
        cuts in prop::collection::vec(0.0f64..1.0, 1..3),
    ) {
        let s = generate(seed);
        let total = s.prices.len() + s.stats.len();
        let uninterrupted = run_uninterrupted(&s, &mut Rng(seed.wrapping_add(1)));

        let mut all_outputs = BTreeSet::new();
        let mut all_unmatched = BTreeSet::new();
        let mut all_late = BTreeSet::new();
        // Where each log's consumption stands (the committed offsets) and the checkpoint.
        let (mut committed_p, mut committed_s) = (0usize, 0usize);
        let mut checkpoint: Option<String> = None;
        for (i, cut) in cuts.iter().chain(std::iter::once(&1.0)).enumerate() {
            let mut d = Driver::new(fresh());
            let (start_p, start_s) = match d.transform.resume(checkpoint.as_deref()).unwrap() {
                Resume::FromCommitted => (committed_p, committed_s),
                // The first record at or after T (or a little earlier, as the runtime's
                // coarse replay index may start), but never past the committed offset:
                // records after it were not processed yet, whatever their time (a symbol
                // the checkpoint does not know may have older records there).
                Resume::ReplayFrom { event_time_ms } => {
                    let early = (seed >> (8 * i)) as usize % 4;
                    let start = |log: &[Entry], committed: usize| {
                        log.iter()
                            .position(|e| e.time >= event_time_ms)
                            .map_or(committed, |i| i.saturating_sub(early).min(committed))
                    };
                    (start(&s.prices, committed_p), start(&s.stats, committed_s))
                }
            };
            let remaining = (s.prices.len() - start_p) + (s.stats.len() - start_s);
            let last = i == cuts.len();
            let limit = if last { usize::MAX } else { (remaining as f64 * cut) as usize };
            let mut rng = Rng(seed ^ (i as u64 + 7).wrapping_mul(0x2545_F491_4F6C_DD1D));
            let (p, st) = feed_interleaved(
                &mut d, &s.prices[start_p..], &s.stats[start_s..], &mut rng, limit,
            );
            // A replaying instance re-reads records before the committed offsets; the
            // committed offsets only move forward.
            committed_p = committed_p.max(start_p + p);
            committed_s = committed_s.max(start_s + st);
            if last {
                d.end();
            } else {
                checkpoint = d.transform.checkpoint();
            }
            all_outputs.extend(payloads(&d));
            all_unmatched.extend(rejected(&d, "unmatched"));
            all_late.extend(rejected(&d, "late"));
        }
        prop_assert!(total > 0);
        let want: BTreeSet<_> = payloads(&uninterrupted).into_iter().collect();
        let text = |v: Vec<&Vec<u8>>| -> Vec<String> {
            v.into_iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect()
        };
        let missing = text(want.difference(&all_outputs).collect());
        let extra = text(all_outputs.difference(&want).collect());
        prop_assert!(
            missing.is_empty() && extra.is_empty(),
            "outputs differ from the uninterrupted run:\nmissing {:#?}\nextra {:#?}",
            missing,
            extra
        );
        let want_unmatched: BTreeSet<_> = rejected(&uninterrupted, "unmatched").into_iter().collect();
        prop_assert_eq!(all_unmatched, want_unmatched);
        let want_late: BTreeSet<_> = rejected(&uninterrupted, "late").into_iter().collect();
        prop_assert!(all_late.is_subset(&want_late), "a restart invented late prices");
    }
}
