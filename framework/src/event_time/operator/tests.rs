//! Unit tests of the keyed window operator.

use super::*;
use crate::event_time::aggregate::MomentStats;

type Out = Vec<(String, i64, Vec<(usize, i64, u64, f64)>)>;

fn collect(out: &mut Out) -> impl FnMut(&String, &ClosedWindows<'_, MomentStats>) + '_ {
    |k, c| {
        let stats = c
            .non_empty()
            .map(|(i, start, a)| (i, start, a.count(), a.mean().unwrap_or(f64::NAN)))
            .collect();
        out.push((k.clone(), c.end_ms, stats));
    }
}

fn op(lengths: &[i64], slide: i64, lateness: i64) -> KeyedWindowOperator<String, MomentStats> {
    KeyedWindowOperator::new(SlidingWindows::new(slide, lengths).unwrap(), lateness)
}

#[test]
fn windows_close_when_the_watermark_reaches_their_end_and_are_reported_once() {
    let mut o = op(&[2_000], 1_000, 500);
    let mut out = Out::new();
    o.process("A", 100, &1.0, collect(&mut out));
    o.process("A", 1_100, &3.0, collect(&mut out));
    assert!(out.is_empty(), "W = 600 closes nothing");
    o.process("A", 1_600, &5.0, collect(&mut out));
    // W = 1100 >= 1000: the window [-1000, 1000) closes.
    assert_eq!(out, vec![("A".into(), 1_000, vec![(0, -1_000, 1, 1.0)])]);
    o.end_of_input(collect(&mut out));
    assert_eq!(
        out[1..],
        [
            ("A".into(), 2_000, vec![(0, 0, 3, 3.0)]),
            ("A".into(), 3_000, vec![(0, 1_000, 2, 4.0)]),
        ]
    );
}

#[test]
fn late_records_are_reported_and_join_nothing() {
    let mut o = op(&[2_000], 1_000, 500);
    let mut out = Out::new();
    o.process("A", 5_000, &1.0, collect(&mut out));
    assert_eq!(
        o.process("A", 4_499, &9.0, collect(&mut out)),
        Admission::Late {
            watermark_ms: 4_500
        }
    );
    assert_eq!(
        o.process("A", 4_500, &3.0, collect(&mut out)),
        Admission::Accepted
    );
    o.end_of_input(collect(&mut out));
    let counts: u64 = out.iter().flat_map(|r| &r.2).map(|s| s.2).sum();
    assert_eq!(counts, 4, "two records, each in two windows");
}

#[test]
fn gaps_longer_than_the_longest_window_report_nothing_in_between() {
    let mut o = op(&[1_000, 3_000], 1_000, 0);
    let mut out = Out::new();
    o.process("A", 0, &1.0, collect(&mut out));
    o.process("A", 1_000_000_000, &2.0, collect(&mut out));
    let ends: Vec<i64> = out.iter().map(|r| r.1).collect();
    assert_eq!(ends, vec![1_000, 2_000, 3_000]);
    assert_eq!(
        out[1].2,
        vec![(1, -1_000, 1, 1.0)],
        "only the 3s window is non-empty"
    );
}

#[test]
fn a_new_key_beyond_the_cap_is_refused_and_known_keys_go_on() {
    let mut o = op(&[2_000], 1_000, 0).with_limits(KeyLimits {
        max_keys: 2,
        idle_ms: i64::MAX,
    });
    let mut out = Out::new();
    assert_eq!(
        o.process("A", 0, &1.0, collect(&mut out)),
        Admission::Accepted
    );
    assert_eq!(
        o.process("B", 0, &1.0, collect(&mut out)),
        Admission::Accepted
    );
    assert_eq!(
        o.process("C", 0, &1.0, collect(&mut out)),
        Admission::TooManyKeys { max_keys: 2 }
    );
    assert_eq!(o.key_count(), 2);
    assert_eq!(
        o.process("A", 5_000, &1.0, collect(&mut out)),
        Admission::Accepted
    );
}

#[test]
fn idle_keys_are_evicted_with_their_windows_reported_as_without_eviction() {
    let limits = KeyLimits {
        max_keys: 2,
        idle_ms: 10_000,
    };
    let feed = [
        ("A", 0),
        ("B", 500),
        ("A", 1_500),
        ("B", 30_000),
        ("C", 31_000),
        ("B", 40_000),
        ("A", 60_000),
    ];
    let mut bounded = op(&[3_000, 6_000], 1_000, 1_000).with_limits(limits);
    let mut unbounded = op(&[3_000, 6_000], 1_000, 1_000);
    let (mut a, mut b) = (Out::new(), Out::new());
    for (key, t) in feed {
        assert_eq!(
            bounded.process(key, t, &(t as f64), collect(&mut a)),
            Admission::Accepted,
            "{key} at {t}: A idle-evicted makes room for C"
        );
        unbounded.process(key, t, &(t as f64), collect(&mut b));
    }
    assert!(bounded.key_count() <= 2);
    bounded.end_of_input(collect(&mut a));
    unbounded.end_of_input(collect(&mut b));
    a.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    b.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    assert_eq!(a, b);
    assert!(matches!(
        bounded.process("D", 100, &1.0, collect(&mut a)),
        Admission::BeforeIdleHorizon { .. }
    ));
}

#[test]
fn resume_fences_reported_windows_and_replays_from_the_longest_window_back() {
    let mut o = op(&[1_000, 5_000], 1_000, 2_000);
    let t = o.resume([("A".to_string(), 20_000), ("B".to_string(), 12_000)]);
    assert_eq!(t, Some(7_000));
    let mut out = Out::new();
    for ts in (7_000..=30_000).step_by(500) {
        o.process("B", ts, &1.0, collect(&mut out));
    }
    assert!(out.iter().all(|r| r.1 >= 12_000));
    assert_eq!(out.first().map(|r| r.1), Some(12_000));
    assert_eq!(o.restart_watermarks()[0], (&"A".to_string(), 20_000));
}
