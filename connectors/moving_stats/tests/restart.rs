//! Restart without a different answer: checkpoint, resume, replay from the asked event
//! time, and compare with an uninterrupted run.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{config, feed, Msg, T0};
use connector_moving_stats::{MovingStats, MovingStatsConfig};
use framework::{connector::Resume, Emitter, OutputRecord, Transform};
use proptest::prelude::*;

/// The index the runtime seeks to: the first record whose Kafka timestamp is >= T.
fn seek(msgs: &[Msg], resume: Resume, committed: usize) -> usize {
    match resume {
        Resume::FromCommitted => committed,
        Resume::ReplayFrom { event_time_ms } => msgs
            .iter()
            .position(|m| m.timestamp_ms >= event_time_ms)
            .unwrap_or(msgs.len()),
    }
}

type Key = (Vec<u8>, i64, Vec<u8>);

fn keyed(records: &[OutputRecord]) -> Vec<Key> {
    records
        .iter()
        .map(|r| {
            (
                r.key.clone().unwrap_or_default(),
                r.timestamp_ms,
                r.payload.clone(),
            )
        })
        .collect()
}

fn rejections(out: &Emitter) -> Vec<(Vec<u8>, &'static str)> {
    let mut r: Vec<_> = out
        .rejected
        .iter()
        .map(|r| (r.payload.clone(), r.reason))
        .collect();
    r.sort();
    r
}

/// Runs the log with up to two restarts (at `cuts`, processed-record counts of each
/// instance before it stops) and checks the union of outputs against one uninterrupted
/// run.
fn check_restarts(cfg: &MovingStatsConfig, msgs: &[Msg], cuts: &[usize], end: bool) {
    let mut uninterrupted = MovingStats::new(cfg).unwrap();
    let mut want = Emitter::new();
    feed(&mut uninterrupted, msgs, 0, &mut want);
    if end {
        uninterrupted.end_of_input(&mut want);
    }

    let mut outputs: Vec<Key> = Vec::new();
    let mut refused = Emitter::new();
    let mut checkpoint: Option<String> = None;
    let mut position = 0usize;
    let mut committed = 0usize;
    for (round, stop) in cuts.iter().copied().chain([usize::MAX]).enumerate() {
        let mut instance = MovingStats::new(cfg).unwrap();
        if round > 0 {
            let resume = instance.resume(checkpoint.as_deref()).unwrap();
            position = seek(msgs, resume, committed);
        }
        let stop = stop.clamp(position, msgs.len());
        let mut out = Emitter::new();
        feed(
            &mut instance,
            &msgs[position..stop],
            position as i64,
            &mut out,
        );
        if stop == msgs.len() && cuts.len() == round && end {
            instance.end_of_input(&mut out);
        }
        outputs.extend(keyed(&out.records));
        refused.rejected.extend(out.rejected);
        checkpoint = instance.checkpoint();
        committed = committed.max(stop);
        position = stop;
    }

    // Duplicates are allowed, but only byte-identical ones.
    let mut by_end: BTreeMap<(Vec<u8>, i64), Vec<u8>> = BTreeMap::new();
    for (key, end_ms, payload) in &outputs {
        if let Some(previous) = by_end.insert((key.clone(), *end_ms), payload.clone()) {
            assert_eq!(
                String::from_utf8_lossy(&previous),
                String::from_utf8_lossy(payload),
                "a re-emitted record differs"
            );
        }
    }
    let got: BTreeSet<Key> = outputs.into_iter().collect();
    let expected: BTreeSet<Key> = keyed(&want.records).into_iter().collect();
    assert_eq!(expected.len(), want.records.len());
    let missing: Vec<_> = expected
        .difference(&got)
        .map(|k| (k.1, String::from_utf8_lossy(&k.2).into_owned()))
        .collect();
    let extra: Vec<_> = got
        .difference(&expected)
        .map(|k| (k.1, String::from_utf8_lossy(&k.2).into_owned()))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nextra {extra:#?}"
    );
    assert_eq!(
        rejections(&refused),
        rejections(&want),
        "each refusal reported once"
    );
}

fn stream() -> impl Strategy<Value = Vec<Msg>> {
    prop::collection::vec((0usize..3, 0i64..900, -6_000i64..800, 0i64..200), 0..160).prop_map(
        |raw| {
            let mut clock = T0;
            raw.into_iter()
                .map(|(symbol, step, jitter, cents)| {
                    clock += step;
                    let t = if !(-4_000..=0).contains(&jitter) {
                        clock
                    } else {
                        clock + jitter
                    };
                    // Irregular decimals so that the floating-point merge order matters.
                    let price = 97_000.0 + cents as f64 * 0.37 + (step as f64) / 7.0;
                    Msg::price(["BTCUSDT", "ETHUSDT", "XRP"][symbol], price, t)
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_restart_at_any_point_rewrites_only_identical_records_and_loses_none(
        msgs in stream(),
        cut in 0usize..200,
        second in prop::option::of(0usize..200),
        end in any::<bool>(),
        setup in 0usize..3,
    ) {
        let cfg = match setup {
            0 => config(&["1s", "3s", "5s"], "1s", "2s"),
            1 => config(&["5s", "2s"], "500ms", "0ms"),
            _ => config(&["4s"], "2s", "3500ms"),
        };
        let mut cuts = vec![cut.min(msgs.len())];
        cuts.extend(second.map(|s| s.min(msgs.len())));
        check_restarts(&cfg, &msgs, &cuts, end);
    }
}

#[test]
fn resume_without_checkpoint_starts_from_the_committed_offsets() {
    let mut t = MovingStats::new(&config(&["1m"], "1s", "10s")).unwrap();
    assert_eq!(t.resume(None).unwrap(), Resume::FromCommitted);
    assert_eq!(t.checkpoint(), None, "no state yet");
}

#[test]
fn checkpoint_holds_each_symbols_watermark_and_resume_asks_for_the_longest_window_back() {
    let cfg = config(&["30s", "1m"], "1s", "10s");
    let mut t = MovingStats::new(&cfg).unwrap();
    let mut out = Emitter::new();
    let msgs = [
        Msg::price("A", 1.0, T0 + 100_000),
        Msg::price("B", 2.0, T0 + 50_000),
    ];
    feed(&mut t, &msgs, 7, &mut out);
    let cp = t.checkpoint().unwrap();
    let v: serde_json::Value = serde_json::from_str(&cp).unwrap();
    assert_eq!(v["watermarks"]["A"], T0 + 90_000);
    assert_eq!(v["watermarks"]["B"], T0 + 40_000);
    assert_eq!(v["next_offset"], 9);
    // What the runtime records at every commit, computed without a new instance.
    assert_eq!(
        t.replay_from(&cp).unwrap(),
        Resume::ReplayFrom {
            event_time_ms: T0 + 40_000 - 60_000
        }
    );
    let mut fresh = MovingStats::new(&cfg).unwrap();
    assert_eq!(
        fresh.resume(Some(&cp)).unwrap(),
        Resume::ReplayFrom {
            event_time_ms: T0 + 40_000 - 60_000
        }
    );
}

#[test]
fn after_end_of_input_the_checkpoint_is_plus_infinity_and_nothing_is_rewritten() {
    let cfg = config(&["2s"], "1s", "0ms");
    let mut t = MovingStats::new(&cfg).unwrap();
    let mut out = Emitter::new();
    feed(&mut t, &[Msg::price("A", 1.0, T0)], 0, &mut out);
    t.end_of_input(&mut out);
    let cp = t.checkpoint().unwrap();
    assert!(cp.contains("\"+inf\""), "{cp}");
    let mut fresh = MovingStats::new(&cfg).unwrap();
    assert_eq!(t.replay_from(&cp).unwrap(), Resume::FromCommitted);
    assert_eq!(fresh.resume(Some(&cp)).unwrap(), Resume::FromCommitted);
    let mut again = Emitter::new();
    feed(&mut fresh, &[Msg::price("A", 1.0, T0)], 0, &mut again);
    fresh.end_of_input(&mut again);
    assert!(again.records.is_empty());
}

#[test]
fn a_corrupt_checkpoint_is_an_error_not_a_silent_fresh_start() {
    let mut t = MovingStats::new(&config(&["1m"], "1s", "10s")).unwrap();
    assert!(t.resume(Some("{\"version\":1")).is_err());
}

/// Why the replay starts a whole longest window before the watermark, not `lateness`
/// later: with in-order data, the records between the two belong to windows that end at
/// or after the watermark, so they would be rewritten with too few records.
#[test]
fn replaying_from_lateness_later_than_asked_would_rewrite_windows_wrongly() {
    let cfg = config(&["5s"], "1s", "2s");
    let msgs: Vec<Msg> = (0..100)
        .map(|i| Msg::price("A", 100.0 + i as f64, T0 + i * 200))
        .collect();
    let cut = 60;
    check_restarts(&cfg, &msgs, &[cut], true);

    let mut a = MovingStats::new(&cfg).unwrap();
    let mut before = Emitter::new();
    feed(&mut a, &msgs[..cut], 0, &mut before);
    let cp = a.checkpoint().unwrap();
    let mut b = MovingStats::new(&cfg).unwrap();
    let Resume::ReplayFrom { event_time_ms } = b.resume(Some(&cp)).unwrap() else {
        panic!("expected a replay");
    };
    let too_late = event_time_ms + cfg.lateness.as_millis();
    let from = msgs
        .iter()
        .position(|m| m.timestamp_ms >= too_late)
        .unwrap();
    let mut after = Emitter::new();
    feed(&mut b, &msgs[from..], from as i64, &mut after);
    b.end_of_input(&mut after);
    let mut whole = MovingStats::new(&cfg).unwrap();
    let mut want = Emitter::new();
    feed(&mut whole, &msgs, 0, &mut want);
    whole.end_of_input(&mut want);
    let want: BTreeSet<_> = keyed(&want.records).into_iter().collect();
    assert!(keyed(&after.records).iter().any(|k| !want.contains(k)));
}
