//! Consumer lag from librdkafka statistics.
//!
//! Lag is `end − position` per assigned partition, where `end` is the partition's last
//! stable offset (the high watermark for non-transactional topics) and `position` the
//! offset after the last record handed to the stage (`app_offset`; the committed offset
//! before the first record). Both come from the statistics librdkafka emits every
//! `statistics.interval.ms`: its high watermark is the one the broker returns in every
//! Fetch response, which is right on the local test broker (Tansu), whereas ListOffsets
//! LATEST — what `fetch_watermarks` sends — is not; and reading the statistics costs no
//! extra broker round trip.

use rdkafka::statistics::Statistics;

/// Lag of one assigned partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

/// Lags of every partition the statistics show as assigned and fetched, sorted by topic
/// and partition. Partitions whose end or position is still unknown are left out.
pub fn consumer_lags(statistics: &Statistics) -> Vec<PartitionLag> {
    let mut lags = Vec::new();
    for (topic, t) in &statistics.topics {
        for (&partition, p) in &t.partitions {
            // -1 is librdkafka's internal "unassigned" partition.
            if partition < 0 || !p.desired {
                continue;
            }
            let end = if p.ls_offset >= 0 {
                p.ls_offset
            } else {
                p.hi_offset
            };
            let position = if p.app_offset >= 0 {
                p.app_offset
            } else {
                p.committed_offset
            };
            if end < 0 || position < 0 {
                continue;
            }
            lags.push(PartitionLag {
                topic: topic.clone(),
                partition,
                lag: (end - position).max(0),
            });
        }
    }
    lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    lags
}

#[cfg(test)]
mod tests {
    use rdkafka::statistics::{Partition, Topic};

    use super::*;

    fn partition(
        id: i32,
        desired: bool,
        hi: i64,
        ls: i64,
        app: i64,
        committed: i64,
    ) -> (i32, Partition) {
        (
            id,
            Partition {
                partition: id,
                desired,
                hi_offset: hi,
                ls_offset: ls,
                app_offset: app,
                committed_offset: committed,
                ..Partition::default()
            },
        )
    }

    #[test]
    fn lag_is_end_minus_position_and_unknown_partitions_are_left_out() {
        const UNKNOWN: i64 = -1001;
        let topic = Topic {
            topic: "prices".into(),
            partitions: [
                partition(-1, false, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN),
                partition(0, true, 120, 120, 100, 50),
                partition(1, true, 80, UNKNOWN, UNKNOWN, 30),
                partition(2, true, 10, 10, 12, UNKNOWN),
                partition(3, true, UNKNOWN, UNKNOWN, 5, UNKNOWN),
                partition(4, false, 50, 50, 0, 0),
            ]
            .into_iter()
            .collect(),
            ..Topic::default()
        };
        let mut stats = Statistics::default();
        stats.topics.insert("prices".into(), topic);
        let lags = consumer_lags(&stats);
        let got: Vec<(i32, i64)> = lags.iter().map(|l| (l.partition, l.lag)).collect();
        // 0: position is the app offset; 1: the committed offset before any record, and
        // the high watermark when no stable offset is known; 2: never negative; 3: end
        // unknown; 4: not assigned to this consumer.
        assert_eq!(got, vec![(0, 20), (1, 50), (2, 0)]);
        assert!(lags.iter().all(|l| l.topic == "prices"));
    }
}
