use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

const S: i64 = 1_000;
const LATENESS: i64 = 10_000;

type Join = KeyedJoin<String, u32, &'static str>;

/// A decision, owned, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Decision {
    Matched(String, u32, i64, &'static str),
    Unmatched(String, u32),
    Late(String, u32),
    Fenced(String, u32),
    Refused(String, u32),
}

fn record(
    decisions: &mut Vec<Decision>,
) -> impl FnMut(JoinEvent<'_, String, u32, &'static str>) + '_ {
    move |event| {
        decisions.push(match event {
            JoinEvent::Matched {
                key,
                probe,
                table_ms,
                table,
                ..
            } => Decision::Matched(key.clone(), probe, table_ms, table),
            JoinEvent::Unmatched { key, probe, .. } => Decision::Unmatched(key.clone(), probe),
            JoinEvent::Late { key, probe, .. } => Decision::Late(key.clone(), probe),
            JoinEvent::Fenced { key, probe, .. } => Decision::Fenced(key.clone(), probe),
            JoinEvent::Refused { key, probe, .. } => Decision::Refused(key.clone(), probe),
        })
    }
}

fn join() -> Join {
    Join::new(S, LATENESS).unwrap()
}

#[test]
fn rejects_non_positive_slide_and_negative_lateness() {
    assert_eq!(
        Join::new(0, 0).err(),
        Some(JoinConfigError::NonPositiveSlide(0))
    );
    assert_eq!(
        Join::new(1_000, -1).err(),
        Some(JoinConfigError::NegativeLateness(-1))
    );
}

#[test]
fn bucket_of_floors_also_for_negative_times() {
    assert_eq!(bucket_of(1_999, S), 1_000);
    assert_eq!(bucket_of(2_000, S), 2_000);
    assert_eq!(bucket_of(0, S), 0);
    assert_eq!(bucket_of(-1, S), -1_000);
    assert_eq!(bucket_of(-1_000, S), -1_000);
    assert_eq!(bucket_of(-1_001, S), -2_000);
    assert_eq!(bucket_of(i64::MIN, S), i64::MIN);
}

#[test]
fn probe_waiting_for_its_table_record_is_matched_when_it_arrives() {
    let mut j = join();
    let mut d = Vec::new();
    j.push_probe("A", 5_500, 1, &mut record(&mut d));
    assert!(d.is_empty());
    assert_eq!(j.buffered().probes, 1);
    let outcome = j.push_table("A", 5_000, "s5", &mut record(&mut d));
    assert_eq!(outcome, TableOutcome::Accepted);
    assert_eq!(d, vec![Decision::Matched("A".into(), 1, 5_000, "s5")]);
    assert_eq!(j.buffered().probes, 0);
}

#[test]
fn table_record_first_matches_the_probe_immediately() {
    let mut j = join();
    let mut d = Vec::new();
    j.push_table("A", 5_000, "s5", &mut record(&mut d));
    j.push_probe("A", 5_999, 1, &mut record(&mut d));
    assert_eq!(d, vec![Decision::Matched("A".into(), 1, 5_000, "s5")]);
}

#[test]
fn probe_on_a_slide_boundary_matches_the_record_ending_there() {
    let mut j = join();
    let mut d = Vec::new();
    j.push_table("A", 4_000, "s4", &mut record(&mut d));
    j.push_probe("A", 5_000, 1, &mut record(&mut d));
    assert!(
        d.is_empty(),
        "t = 5000 must wait for e = 5000, not use e = 4000"
    );
    j.push_table("A", 5_000, "s5", &mut record(&mut d));
    assert_eq!(d, vec![Decision::Matched("A".into(), 1, 5_000, "s5")]);
}

#[test]
fn negative_event_times_match_the_floor_bucket() {
    let mut j = join();
    let mut d = Vec::new();
    j.push_table("A", -2_000, "s-2", &mut record(&mut d));
    j.push_probe("A", -1_500, 1, &mut record(&mut d));
    assert_eq!(d, vec![Decision::Matched("A".into(), 1, -2_000, "s-2")]);
}

#[test]
fn late_probe_is_reported_late_and_not_buffered() {
    let mut j = join();
    let mut d = Vec::new();
    j.push_probe("A", 100_000, 1, &mut record(&mut d));
    j.push_probe("A", 90_000, 2, &mut record(&mut d)); // exactly at W: not late
    j.push_probe("A", 89_999, 3, &mut record(&mut d));
    assert_eq!(d, vec![Decision::Late("A".into(), 3)]);
    assert_eq!(j.buffered().probes, 2);
}

#[test]
fn probe_is_unmatched_once_a_later_table_record_was_seen() {
    let mut j = join();
    let mut d = Vec::new();
    j.push_probe("A", 3_200, 1, &mut record(&mut d)); // waits for e = 3000
    j.push_table("A", 4_000, "s4", &mut record(&mut d)); // 3000 skipped: never coming
    j.push_probe("A", 3_700, 2, &mut record(&mut d)); // decided on arrival
    assert_eq!(
        d,
        vec![
            Decision::Unmatched("A".into(), 1),
            Decision::Unmatched("A".into(), 2)
        ]
    );
    assert_eq!(j.buffered().probes, 0);
}

#[test]
fn end_of_input_reports_every_pending_probe_unmatched() {
    let mut j = join();
    let mut d = Vec::new();
    j.push_probe("B", 1_000, 1, &mut record(&mut d));
    j.push_probe("A", 7_000, 2, &mut record(&mut d));
    j.push_probe("A", 2_000, 3, &mut record(&mut d));
    j.end_of_input(&mut record(&mut d));
    assert_eq!(
        d,
        vec![
            Decision::Unmatched("A".into(), 3),
            Decision::Unmatched("A".into(), 2),
            Decision::Unmatched("B".into(), 1)
        ]
    );
    assert_eq!(j.buffered(), Buffered::default());
}

#[test]
fn redelivered_table_record_is_a_duplicate_and_matches_nothing_twice() {
    let mut j = join();
    let mut d = Vec::new();
    j.push_probe("A", 5_100, 1, &mut record(&mut d));
    assert_eq!(
        j.push_table("A", 5_000, "first", &mut record(&mut d)),
        TableOutcome::Accepted
    );
    assert_eq!(
        j.push_table("A", 5_000, "again", &mut record(&mut d)),
        TableOutcome::Duplicate
    );
    j.push_probe("A", 5_200, 2, &mut record(&mut d));
    assert_eq!(
        j.push_table("A", 6_000, "s6", &mut record(&mut d)),
        TableOutcome::Accepted
    );
    // Older but still stored: still a duplicate, not superseded.
    assert_eq!(
        j.push_table("A", 5_000, "third", &mut record(&mut d)),
        TableOutcome::Duplicate
    );
    assert_eq!(
        d,
        vec![
            Decision::Matched("A".into(), 1, 5_000, "first"),
            Decision::Matched("A".into(), 2, 5_000, "first")
        ]
    );
}

#[test]
fn out_of_order_table_records_are_superseded_or_late_never_accepted() {
    let mut j = join();
    let mut d = Vec::new();
    j.push_table("A", 20_000, "s20", &mut record(&mut d));
    assert_eq!(
        j.push_table("A", 15_000, "s15", &mut record(&mut d)),
        TableOutcome::Superseded {
            latest_table_ms: 20_000
        }
    );
    assert_eq!(
        j.push_table("A", 9_000, "s9", &mut record(&mut d)),
        TableOutcome::Late {
            watermark_ms: 10_000
        }
    );
    assert_eq!(
        j.push_table("A", 1_500, "x", &mut record(&mut d)),
        TableOutcome::Misaligned
    );
    assert_eq!(j.buffered().table_records, 1);
    assert!(d.is_empty());
}

#[test]
fn keys_are_joined_independently() {
    let mut j = join();
    let mut d = Vec::new();
    j.push_table("A", 5_000, "a5", &mut record(&mut d));
    j.push_probe("B", 5_500, 1, &mut record(&mut d)); // B has no table record yet
    j.push_probe("A", 5_500, 2, &mut record(&mut d));
    j.push_probe("B", 200_000, 3, &mut record(&mut d)); // B's watermark: not A's
    j.push_probe("A", 5_600, 4, &mut record(&mut d));
    j.push_table("B", 5_000, "b5", &mut record(&mut d));
    assert_eq!(
        d,
        vec![
            Decision::Matched("A".into(), 2, 5_000, "a5"),
            Decision::Matched("A".into(), 4, 5_000, "a5"),
            Decision::Matched("B".into(), 1, 5_000, "b5"),
        ]
    );
}

#[test]
fn table_record_is_evicted_once_the_probe_watermark_passes_its_end() {
    let mut j = join();
    let mut d = Vec::new();
    j.push_table("A", 5_000, "s5", &mut record(&mut d));
    j.push_probe("A", 15_999, 1, &mut record(&mut d)); // W = 5999 < 6000: kept
    assert_eq!(j.buffered().table_records, 1);
    j.push_probe("A", 16_000, 2, &mut record(&mut d)); // W = 6000: every 5xxx probe is late
    assert_eq!(j.buffered().table_records, 0);
    j.push_probe("A", 5_999, 3, &mut record(&mut d));
    assert_eq!(d.last(), Some(&Decision::Late("A".into(), 3)));
    // A table record arriving after every probe it could match would be late is not kept.
    j.push_probe("A", 30_000, 4, &mut record(&mut d)); // W = 20000
    assert_eq!(
        j.push_table("A", 6_000, "s6", &mut record(&mut d)),
        TableOutcome::Accepted
    );
    assert_eq!(j.buffered().table_records, 0);
}

#[test]
fn checkpoint_holds_the_oldest_pending_probe_or_the_watermark_per_key() {
    let mut j = join();
    let mut d = Vec::new();
    j.push_table("T", 3_000, "t3", &mut record(&mut d)); // no probe: table-only
    j.push_probe("A", 50_000, 1, &mut record(&mut d)); // pending; W = 40000
    j.push_probe("A", 45_000, 2, &mut record(&mut d)); // pending, older
    j.push_table("B", 1_000, "b1", &mut record(&mut d));
    j.push_probe("B", 30_000, 3, &mut record(&mut d)); // unmatched; W = 20000
    let cp = j.checkpoint();
    assert_eq!(cp.decided_before.get("A"), Some(&40_000));
    assert_eq!(cp.decided_before.get("B"), Some(&20_000));
    assert_eq!(cp.table_only.get("T"), Some(&3_000));
    assert_eq!(cp.replay_from(S), Some(3_000));
    assert_eq!(JoinCheckpoint::<String>::default().replay_from(S), None);

    let json = serde_json::to_string(&cp).unwrap();
    assert_eq!(
        json,
        r#"{"decided_before":{"A":40000,"B":20000},"table_only":{"T":3000}}"#
    );
    let back: JoinCheckpoint<String> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cp);
}

#[test]
fn resumed_join_fences_decided_probes_and_keeps_the_fence_in_its_checkpoints() {
    let mut cp = JoinCheckpoint::default();
    cp.decided_before.insert("A".to_string(), 40_000);
    let mut j = join();
    j.resume(&cp);
    // Nothing seen yet: the fence alone is carried over.
    assert_eq!(j.checkpoint().decided_before.get("A"), Some(&40_000));
    let mut d = Vec::new();
    j.push_probe("A", 39_999, 1, &mut record(&mut d));
    j.push_probe("A", 40_000, 2, &mut record(&mut d));
    j.push_table("A", 40_000, "s40", &mut record(&mut d));
    assert_eq!(
        d,
        vec![
            Decision::Fenced("A".into(), 1),
            Decision::Matched("A".into(), 2, 40_000, "s40")
        ]
    );
    // Own W = 30000 is below the fence: the fence still holds.
    assert_eq!(j.checkpoint().decided_before.get("A"), Some(&40_000));
}

#[test]
fn state_stays_bounded_over_a_million_probes_at_ten_per_second() {
    // Table records come as a moving-statistics stage emits them: once its watermark
    // (max price time - lateness) reaches e.
    let mut j = join();
    let mut matched = 0u64;
    let mut other = 0u64;
    let mut on_event = |event: JoinEvent<'_, String, u32, &'static str>| match event {
        JoinEvent::Matched { .. } => matched += 1,
        _ => other += 1,
    };
    let start = 1_746_631_800_000i64;
    let mut next_e = start;
    let mut peak = 0;
    for i in 0..1_000_000u32 {
        let t = start + i64::from(i) * 100;
        j.push_probe("BTCUSDT", t, i, &mut on_event);
        while next_e <= t - LATENESS {
            j.push_table("BTCUSDT", next_e, "stats", &mut on_event);
            next_e += S;
        }
        peak = peak.max(j.buffered().total());
    }
    assert!(peak < 200, "peak buffered state {peak}");
    assert_eq!(other, 0);
    assert!(matched > 999_000, "matched {matched}");
}

// ---------------------------------------------------------------------------------------
// Interleaving independence

#[derive(Debug, Clone)]
struct Streams {
    /// (key, time, id) in the probe input's order.
    probes: Vec<(String, i64, u32)>,
    /// (key, e, payload) in the table input's order.
    tables: Vec<(String, i64, &'static str)>,
}

const PAYLOADS: [&str; 4] = ["p0", "p1", "p2", "p3"];

fn streams() -> impl Strategy<Value = Streams> {
    let key = prop_oneof![Just("A".to_string()), Just("B".to_string())];
    let probes = prop::collection::vec((key.clone(), 0i64..40_000, -15_000i64..1_000), 0..60);
    let tables = prop::collection::vec((key, 0i64..40, 0usize..4, 0u8..10), 0..40);
    (probes, tables).prop_map(|(probes, tables)| {
        // Probe times drift upwards with jitter (some late); ids are their positions.
        let probes = probes
            .into_iter()
            .enumerate()
            .map(|(i, (k, base, jitter))| (k, base / 4 + i as i64 * 500 + jitter, i as u32))
            .collect();
        // Table records mostly increasing per key, with duplicates, gaps and strays.
        let mut tables: Vec<_> = tables
            .into_iter()
            .map(|(k, e, p, dup)| (k, e * S, PAYLOADS[p], dup))
            .collect();
        tables.sort_by_key(|(_, e, _, dup)| (*e, *dup == 0));
        let tables = tables
            .into_iter()
            .flat_map(|(k, e, p, dup)| {
                let copies = if dup == 1 { 2 } else { 1 };
                std::iter::repeat_n((k, e, p), copies)
            })
            .collect();
        Streams { probes, tables }
    })
}

/// Decisions computed directly from the definition, without the join.
fn reference(s: &Streams) -> BTreeSet<Decision> {
    use std::collections::BTreeMap;
    // Accepted table records: per key, strictly increasing first occurrences.
    let mut accepted: BTreeMap<(String, i64), &'static str> = BTreeMap::new();
    let mut latest: BTreeMap<String, i64> = BTreeMap::new();
    for (k, e, p) in &s.tables {
        if latest.get(k).is_none_or(|l| e > l) {
            latest.insert(k.clone(), *e);
            accepted.insert((k.clone(), *e), p);
        }
    }
    let mut max_seen: BTreeMap<String, i64> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (k, t, id) in &s.probes {
        if max_seen.get(k).is_some_and(|m| *t < m - LATENESS) {
            out.insert(Decision::Late(k.clone(), *id));
            continue;
        }
        let m = max_seen.entry(k.clone()).or_insert(*t);
        *m = (*m).max(*t);
        let b = t.div_euclid(S) * S;
        out.insert(match accepted.get(&(k.clone(), b)) {
            Some(p) => Decision::Matched(k.clone(), *id, b, p),
            None => Decision::Unmatched(k.clone(), *id),
        });
    }
    out
}

proptest! {
    #[test]
    fn decisions_do_not_depend_on_the_interleaving_and_equal_the_reference(
        s in streams(),
        choices in prop::collection::vec(any::<bool>(), 100),
    ) {
        let mut j = join();
        let mut d = Vec::new();
        let (mut pi, mut ti) = (0, 0);
        let mut step = 0;
        while pi < s.probes.len() || ti < s.tables.len() {
            let take_probe = ti == s.tables.len()
                || (pi < s.probes.len() && choices[step % choices.len()]);
            step += 1;
            if take_probe {
                let (k, t, id) = &s.probes[pi];
                j.push_probe(k.as_str(), *t, *id, &mut record(&mut d));
                pi += 1;
            } else {
                let (k, e, p) = &s.tables[ti];
                j.push_table(k.as_str(), *e, *p, &mut record(&mut d));
                ti += 1;
            }
        }
        j.end_of_input(&mut record(&mut d));
        prop_assert_eq!(d.len(), s.probes.len(), "one decision per probe");
        let got: BTreeSet<_> = d.into_iter().collect();
        prop_assert_eq!(got, reference(&s));
    }
}

#[test]
fn a_new_key_beyond_the_cap_is_refused_on_both_inputs() {
    let mut j = join().with_limits(crate::event_time::KeyLimits {
        max_keys: 1,
        idle_ms: i64::MAX,
    });
    let mut decisions = Vec::new();
    j.push_probe("A", 1_500, 1, &mut record(&mut decisions));
    j.push_probe("B", 1_500, 2, &mut record(&mut decisions));
    assert_eq!(
        j.push_table("B", 1_000, "b", &mut record(&mut decisions)),
        TableOutcome::Refused(Refusal::TooManyKeys { max_keys: 1 })
    );
    j.push_table("A", 1_000, "a", &mut record(&mut decisions));
    assert_eq!(
        decisions,
        vec![
            Decision::Refused("B".into(), 2),
            Decision::Matched("A".into(), 1, 1_000, "a"),
        ]
    );
    assert_eq!(j.key_count(), 1);
}

#[test]
fn idle_keys_are_evicted_with_their_pending_probes_unmatched_and_leave_the_checkpoint() {
    let mut j = join().with_limits(crate::event_time::KeyLimits {
        max_keys: 2,
        idle_ms: 60_000,
    });
    let mut decisions = Vec::new();
    j.push_probe("A", 1_500, 1, &mut record(&mut decisions));
    j.push_probe("B", 2_500, 2, &mut record(&mut decisions));
    j.push_table("B", 2_000, "b", &mut record(&mut decisions));
    // 100 s later only B is active: A is evicted, which makes room for C.
    j.push_probe("B", 100_000, 3, &mut record(&mut decisions));
    j.push_probe("C", 100_000, 4, &mut record(&mut decisions));
    assert_eq!(
        decisions,
        vec![
            Decision::Matched("B".into(), 2, 2_000, "b"),
            Decision::Unmatched("A".into(), 1),
        ]
    );
    assert_eq!(j.key_count(), 2);
    let checkpoint = j.checkpoint();
    assert!(!checkpoint.decided_before.contains_key("A"));
    // A record of an evicted key older than the idle horizon is refused, not re-decided.
    j.push_probe("A", 1_600, 5, &mut record(&mut decisions));
    assert_eq!(decisions.last(), Some(&Decision::Refused("A".into(), 5)));
}
