//! Issue 15: the join's memory is bounded by configuration. Once the probe input ended it
//! keeps no table records; while live, table records per key are capped; the waiting
//! probes of evicted keys go out in chunks.

use super::*;
use crate::event_time::KeyLimits;

const S: i64 = 1_000;
const LATENESS: i64 = 10_000;

type Join = KeyedJoin<String, u32, u32>;

/// (key, probe, matched table value or `None` when unmatched).
type Decision = (String, u32, Option<u32>);

fn decision(event: JoinEvent<'_, String, u32, u32>) -> Decision {
    match event {
        JoinEvent::Matched {
            key, probe, table, ..
        } => (key.clone(), probe, Some(*table)),
        JoinEvent::Unmatched { key, probe, .. }
        | JoinEvent::Late { key, probe, .. }
        | JoinEvent::Fenced { key, probe, .. }
        | JoinEvent::Refused { key, probe, .. } => (key.clone(), probe, None),
    }
}

/// The benchmark's shape: one probe per key, early, then an hour of table records per key
/// (as `moving_stats` writes them at end of input), plus probes that wait for a table
/// record that comes after the probe input ended (matched) or is skipped (unmatched).
/// Returns the decisions and the most table records held at once.
fn run(end_probes: bool) -> (Vec<Decision>, usize) {
    let mut join = Join::new(S, LATENESS).unwrap();
    let mut out = Vec::new();
    let mut on = |e: JoinEvent<'_, String, u32, u32>| out.push(decision(e));
    for k in 0..20_u32 {
        join.push_probe(format!("K{k}").as_str(), 500, k, &mut on);
    }
    join.push_probe("W", 5_500, 100, &mut on); // waits for its record at 5,000
    join.push_probe("X", 5_500, 101, &mut on); // its record at 5,000 never comes
    if end_probes {
        join.probe_input_ended();
    }
    let mut most = 0;
    for e in (0..3_600_i64).map(|i| i * S) {
        for k in 0..20_u32 {
            join.push_table(format!("K{k}").as_str(), e, k, &mut on);
        }
        most = most.max(join.buffered().table_records);
    }
    join.push_table("W", 5_000, 7, &mut on);
    join.push_table("X", 4_000, 8, &mut on);
    join.push_table("X", 6_000, 9, &mut on);
    most = most.max(join.buffered().table_records);
    join.end_of_input(&mut on);
    (out, most)
}

#[test]
fn once_the_probe_input_ended_no_table_record_is_kept_and_the_decisions_are_unchanged() {
    let (want, most_live) = run(false);
    let (got, most_ended) = run(true);
    assert_eq!(got, want);
    assert!(want.contains(&("W".into(), 100, Some(7))), "{want:?}");
    assert!(want.contains(&("X".into(), 101, None)));
    assert!(want.contains(&("K3".into(), 3, Some(3))));
    // Without the signal every key keeps its whole hour of records (nothing passes them).
    assert!(most_live >= 20 * 3_590, "{most_live}");
    assert_eq!(most_ended, 0);
}

#[test]
fn probe_input_ended_drops_the_tables_already_held() {
    let mut join = Join::new(S, LATENESS).unwrap();
    let mut out = Vec::new();
    let mut on = |e: JoinEvent<'_, String, u32, u32>| out.push(decision(e));
    join.push_probe("A", 500, 1, &mut on);
    for e in (0..100_i64).map(|i| i * S) {
        join.push_table("A", e, 0, &mut on);
    }
    assert!(join.buffered().table_records >= 90);
    join.probe_input_ended();
    assert!(join.probes_ended());
    assert_eq!(join.buffered().table_records, 0);
    // The key's state is kept: re-delivered records (a restarted writer of the table
    // input sends some again) are still ignored as duplicates, not refused.
    for e in [99 * S, 50 * S] {
        assert_eq!(join.push_table("A", e, 0, &mut on), TableOutcome::Duplicate);
    }
}

#[test]
fn table_records_per_key_are_capped_and_room_frees_as_probes_pass_them() {
    let mut join = Join::new(S, 0).unwrap().with_max_table_per_key(3);
    let mut out = Vec::new();
    let mut on = |e: JoinEvent<'_, String, u32, u32>| out.push(decision(e));
    let mut none = |e: JoinEvent<'_, String, u32, u32>| panic!("{:?}", decision(e));
    for e in [0, 1_000, 2_000] {
        assert_eq!(
            join.push_table("A", e, 1, &mut none),
            TableOutcome::Accepted
        );
    }
    assert_eq!(
        join.push_table("A", 3_000, 1, &mut none),
        TableOutcome::TableFull { max_per_key: 3 }
    );
    // Another key has its own room.
    assert_eq!(
        join.push_table("B", 3_000, 1, &mut none),
        TableOutcome::Accepted
    );
    assert_eq!(join.buffered().table_records, 4);
    // A probe at 2,500 moves the watermark past the records at 0 and 1,000.
    join.push_probe("A", 2_500, 9, &mut on);
    assert_eq!(join.buffered().table_records, 2);
    // The refused record was never taken: sent again, it is accepted now.
    assert_eq!(
        join.push_table("A", 3_000, 2, &mut none),
        TableOutcome::Accepted
    );
    join.push_probe("A", 3_100, 10, &mut on);
    assert_eq!(out, [("A".into(), 9, Some(1)), ("A".into(), 10, Some(2))]);
}

/// Probes of `WAITING` keys that wait at the idle timeout, then a record far later.
const WAITING: u32 = 3;
const PER_KEY: u32 = 700;

fn idle_input(join: &mut Join, on: &mut impl FnMut(JoinEvent<'_, String, u32, u32>)) {
    for k in 0..WAITING {
        for i in 0..PER_KEY {
            join.push_probe(
                format!("K{k}").as_str(),
                i64::from(i) * 10,
                k * PER_KEY + i,
                on,
            );
        }
    }
}

fn idle_join() -> Join {
    Join::new(S, LATENESS).unwrap().with_limits(KeyLimits {
        max_keys: 100,
        idle_ms: 60_000,
    })
}

fn fill(chunk: &mut Vec<Decision>, limit: usize, e: JoinEvent<'_, String, u32, u32>) -> bool {
    chunk.push(decision(e));
    chunk.len() < limit
}

#[test]
fn waiting_probes_of_evicted_keys_go_out_in_chunks_in_the_same_order() {
    let late = 1_000_000;
    let mut want = Vec::new();
    let mut unbounded = idle_join();
    idle_input(&mut unbounded, &mut |e| want.push(decision(e)));
    unbounded.push_table("Z", late, 5, &mut |e| want.push(decision(e)));
    assert_eq!(
        want.len(),
        (WAITING * PER_KEY) as usize,
        "every waiting probe evicted"
    );

    for limit in [1_usize, 64, 1_000] {
        let mut join = idle_join();
        let mut got = Vec::new();
        idle_input(&mut join, &mut |e| got.push(decision(e)));
        let mut chunk = Vec::new();
        let mut most = 0;
        let mut done = join.evict_due(late, &mut |e| fill(&mut chunk, limit, e));
        while !done {
            most = most.max(chunk.len());
            got.append(&mut chunk);
            done = join.emit_pending(&mut |e| fill(&mut chunk, limit, e));
        }
        // The record that evicted them is taken once they are out.
        join.push_table_bounded("Z", late, 5, &mut |e| fill(&mut chunk, limit, e));
        most = most.max(chunk.len());
        got.append(&mut chunk);
        assert_eq!(got, want, "limit {limit}");
        assert!(most <= limit, "limit {limit}: {most} at once");
        assert_eq!(join.buffered().probes, 0);
        assert_eq!(join.key_count(), 1);
    }
}

#[test]
fn a_table_record_that_evicts_keys_reports_their_probes_in_chunks_too() {
    let late = 1_000_000;
    let mut join = idle_join();
    idle_input(&mut join, &mut |_| {});
    let mut got = Vec::new();
    let outcome = join.push_table_bounded("Z", late, 5, &mut |e| {
        got.push(decision(e));
        got.len() < 10
    });
    assert_eq!(outcome, TableOutcome::Accepted);
    assert_eq!(got.len(), 10);
    assert!(join.has_pending());
    let mut calls = 0;
    while !join.emit_pending(&mut |e| {
        got.push(decision(e));
        got.len() % 100 != 0
    }) {
        calls += 1;
    }
    assert_eq!(got.len(), (WAITING * PER_KEY) as usize);
    assert!(calls >= 20, "{calls}");
}
