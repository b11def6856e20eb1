//! Transform checkpoints, kept in a Kafka topic of the stage's own.
//!
//! At each commit, a stateful transform's checkpoint (its `checkpoint()` text, plus the
//! input offsets to replay from after a restart) is produced to
//! `<group>.checkpoints`, partition = input partition, and the offset of that record is
//! committed in the same offset commit as the input offsets. A restarted partition reads
//! back exactly that record. This needs nothing beyond produce, fetch and offset commits,
//! so it works on every Kafka-protocol broker (commit metadata and time-based offset
//! lookups are not implemented by all of them).

use std::{collections::VecDeque, time::Duration};
use tracing::warn;

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Message, Offset, TopicPartitionList,
};
use serde::{Deserialize, Serialize};

use crate::spec::KafkaSpec;

/// What is stored per input partition at each commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The transform's own checkpoint text.
    pub state: String,
    /// Per input topic (stage order): where to start after a restart so that the
    /// transform can rebuild its state; `None` means at the committed offset.
    pub replay_from: Vec<Option<ReplayPoint>>,
}

/// An offset before which every record is older than `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayPoint {
    pub offset: i64,
    pub ts: i64,
}

/// Name of a stage's checkpoint topic.
pub fn topic_for_group(group: &str) -> String {
    format!("{group}.checkpoints")
}

/// Reads the checkpoint record at `offset` of `topic`/`partition`.
pub fn fetch(
    kafka: &KafkaSpec,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<CheckpointRecord, String> {
    let consumer: BaseConsumer = super::kafka::client_config(kafka)
        .set("group.id", format!("{topic}.reader"))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| {
            let e = crate::kafka_properties::without_config_value(e);
            format!("creating a checkpoint reader: {e}")
        })?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(|e| format!("checkpoint position: {e}"))?;
    consumer
        .assign(&tpl)
        .map_err(|e| format!("assigning {topic}/{partition}: {e}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) if message.offset() == offset => {
                let payload = message.payload().unwrap_or_default();
                return serde_json::from_slice(payload).map_err(|e| {
                    format!("checkpoint {topic}/{partition}@{offset} is corrupt: {e}")
                });
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                return Err(format!(
                    "reading checkpoint {topic}/{partition}@{offset}: {e}"
                ))
            }
            None => {}
        }
    }
    Err(format!(
        "checkpoint {topic}/{partition}@{offset} could not be read within 30 s"
    ))
}

/// For one input topic-partition: offsets where the record timestamps reached new highs,
/// so that "where must a replay start so that every earlier record is older than T" is
/// answered without asking the broker.
#[derive(Debug, Clone)]
pub struct ReplayIndex {
    /// (offset, ts): every record before `offset` has a timestamp below `ts`.
    entries: VecDeque<(i64, i64)>,
    max_ts: i64,
}

/// Granularity of the index: a replay may start up to this much earlier than needed.
const INDEX_STEP_MS: i64 = 1_000;

impl ReplayIndex {
    /// Starts at `offset`, where every earlier record is known to be older than `ts`
    /// (`i64::MIN` when nothing is known, e.g. at the start of the log).
    pub fn new(offset: i64, ts: i64) -> Self {
        ReplayIndex {
            entries: VecDeque::from([(offset, ts)]),
            max_ts: i64::MIN,
        }
    }

    pub fn observe(&mut self, offset: i64, ts: i64) {
        if ts > self.max_ts {
            let step_reached = self
                .entries
                .back()
                .is_none_or(|(_, last)| ts >= last.saturating_add(INDEX_STEP_MS));
            if step_reached {
                self.entries.push_back((offset, ts));
            }
            self.max_ts = ts;
        }
    }

    /// The latest point before which every record is older than `t`. When `t` is older
    /// than everything known, the oldest known point: it replays less than asked, but
    /// never less than the replay that started this index (resuming at the committed
    /// offset instead would lose more).
    ///
    /// A transform's replay time can move back between commits (a join's oldest pending
    /// record may be an out-of-order one, up to its lateness earlier), so entries are kept
    /// for [`RETAIN_MS`] behind the latest `t` asked for and only older ones are
    /// forgotten: that bounds the index by event time, not by input.
    pub fn replay_point(&mut self, t: i64) -> Option<ReplayPoint> {
        let forget_before = t.saturating_sub(RETAIN_MS);
        if let Some(keep) = self
            .entries
            .iter()
            .rposition(|(_, ts)| *ts <= forget_before)
        {
            self.entries.drain(..keep);
        }
        let point = match self.entries.iter().rev().find(|(_, ts)| *ts <= t) {
            Some(point) => point,
            None => {
                let oldest = self.entries.front()?;
                warn!(
                    wanted_ms = t,
                    oldest_ms = oldest.1,
                    "replay point older than the input history kept; replaying from the oldest known point"
                );
                oldest
            }
        };
        Some(ReplayPoint {
            offset: point.0,
            ts: point.1,
        })
    }
}

/// How far behind the latest replay time the index still answers exactly (longer than
/// any sensible lateness).
const RETAIN_MS: i64 = 3_600_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_starts_where_every_earlier_record_is_older() {
        let mut index = ReplayIndex::new(0, i64::MIN);
        // offset: ts (out of order at 3)
        for (offset, ts) in [
            (0, 1_000),
            (1, 2_000),
            (2, 3_000),
            (3, 1_500),
            (4, 4_000),
            (5, 5_000),
        ] {
            index.observe(offset, ts);
        }
        // Records before offset 2 are older than 3000 (3_000 > 2_000, 1_000).
        assert_eq!(index.replay_point(3_000).map(|p| p.offset), Some(2));
        assert_eq!(index.replay_point(3_500).map(|p| p.offset), Some(2));
        assert_eq!(
            index.replay_point(4_000),
            Some(ReplayPoint {
                offset: 4,
                ts: 4_000
            })
        );
    }

    #[test]
    fn a_replay_time_before_the_known_history_gets_the_oldest_known_point() {
        let mut index = ReplayIndex::new(10, 50_000);
        index.observe(10, 60_000);
        assert_eq!(
            index.replay_point(40_000),
            Some(ReplayPoint {
                offset: 10,
                ts: 50_000
            })
        );
        assert_eq!(index.replay_point(55_000).map(|p| p.offset), Some(10));
    }

    #[test]
    fn a_replay_time_that_moves_back_is_still_answered_exactly() {
        let mut index = ReplayIndex::new(0, i64::MIN);
        for i in 0..10_000 {
            index.observe(i, i * 1_000);
        }
        assert_eq!(index.replay_point(5_000_000).map(|p| p.offset), Some(5_000));
        // A join's oldest pending record can be older than at the previous commit.
        assert_eq!(index.replay_point(4_990_000).map(|p| p.offset), Some(4_990));
        assert_eq!(index.replay_point(3_500_000).map(|p| p.offset), Some(3_500));
    }

    #[test]
    fn entries_are_at_least_a_step_apart_and_pruned_an_hour_behind_the_replay_time() {
        let mut index = ReplayIndex::new(0, i64::MIN);
        for i in 0..100_000 {
            index.observe(i, i * 100);
        }
        assert!(index.entries.len() <= 10_002, "{}", index.entries.len());
        assert_eq!(
            index.replay_point(8_000_000).map(|p| p.offset),
            Some(80_000)
        );
        // Kept: from 8,000 s - 1 h = 4,400 s on, one entry per second.
        assert!(index.entries.len() <= 5_602, "{}", index.entries.len());
    }
}
