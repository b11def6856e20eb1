//! When may a process of a scaled-out stage stop? Only once the stage's whole input has
//! ended, not just the partitions it holds (issue 10 §3): if a peer dies first, its
//! partitions come back to a survivor, which must still be there to finish them.
//!
//! A peer's committed position alone cannot tell: a finished partition's position stays at
//! its first end marker, so a peer that has read every end marker but is still writing its
//! final windows (or one that merely committed an early position in a small partition)
//! looks exactly like one that is done. So the process that finishes a partition says so
//! once its work is durable (a sink's records written, a transform's final output and end
//! markers delivered, the position committed): it commits the same position a second time,
//! in the group `<group>.finished` (offset commit metadata would do, but Tansu drops it). A
//! partition has ended for the stage when that record equals the group's committed
//! position.

use std::{collections::HashSet, sync::Mutex, time::Duration};

use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer},
    Offset, TopicPartitionList,
};
use tracing::{debug, warn};

use super::{
    consumer::{lock, Shared, StageConsumer},
    StageRuntime,
};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The group holding, per input partition, the position at which a process finished it.
pub fn finished_group(group: &str) -> String {
    format!("{group}.finished")
}

/// The stage's record of finished partitions (see the module docs).
pub struct FinishedPartitions {
    group: String,
    client: Option<BaseConsumer>,
}

impl FinishedPartitions {
    pub fn new(stage: &StageRuntime) -> Self {
        FinishedPartitions {
            group: finished_group(&stage.group),
            client: None,
        }
    }

    /// A client of the `.finished` group (never subscribed: it only commits and reads
    /// offsets), created on first use.
    fn client(&mut self, stage: &StageRuntime) -> Option<&BaseConsumer> {
        if self.client.is_none() {
            match super::kafka::client_config(&stage.kafka)
                .set("group.id", &self.group)
                .set("enable.auto.commit", "false")
                .create::<BaseConsumer>()
            {
                Ok(c) => self.client = Some(c),
                Err(e) => {
                    let e = crate::kafka_properties::without_config_value(e);
                    warn!(stage = %stage.name, "creating the client of group {}: {e}", self.group);
                }
            }
        }
        self.client.as_ref()
    }

    /// Records every partition this process finished and has not recorded yet. Call it
    /// only after their output is acknowledged and their positions committed
    /// synchronously: the record promises that.
    pub fn record(&mut self, shared: &Mutex<Shared>, stage: &StageRuntime) {
        let (list, partitions) = {
            let guard = lock(shared);
            let mut list = TopicPartitionList::new();
            let mut partitions = Vec::new();
            for (partition, state) in guard
                .partitions
                .iter()
                .filter(|(_, s)| s.finished && !s.finish_recorded)
            {
                for (topic, position) in stage.input_topics.iter().zip(&state.positions) {
                    if let Some(offset) = position {
                        if let Err(e) =
                            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                        {
                            warn!(stage = %stage.name, "offset {offset} of {topic}/{partition} left out of the finished record: {e}");
                        }
                    }
                }
                partitions.push(*partition);
            }
            (list, partitions)
        };
        if partitions.is_empty() || list.count() == 0 {
            return;
        }
        let Some(client) = self.client(stage) else {
            return;
        };
        match client.commit(&list, CommitMode::Sync) {
            Ok(()) => {
                debug!(stage = %stage.name, ?partitions, "recorded finished partitions");
                let mut guard = lock(shared);
                for p in partitions {
                    if let Some(state) = guard.partitions.get_mut(&p) {
                        state.finish_recorded = true;
                    }
                }
            }
            Err(e) => warn!(stage = %stage.name, "recording finished partitions: {e}"),
        }
    }

    /// Whether every partition of every input topic has ended: here, or recorded as
    /// finished by the process that held it, at the group's committed position.
    pub fn whole_input_ended(
        &mut self,
        consumer: &StageConsumer,
        shared: &Mutex<Shared>,
        stage: &StageRuntime,
    ) -> bool {
        let local: HashSet<i32> = lock(shared)
            .partitions
            .iter()
            .filter(|(_, s)| s.finished)
            .map(|(p, _)| *p)
            .collect();
        let mut list = TopicPartitionList::new();
        for topic in &stage.input_topics {
            for partition in (0..stage.partitions_of(topic)).filter(|p| !local.contains(p)) {
                list.add_partition(topic, partition);
            }
        }
        if list.count() == 0 {
            return true;
        }
        let committed = match consumer.committed_offsets(list.clone(), CALL_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                warn!(stage = %stage.name, "reading the group's committed offsets: {e}");
                return false;
            }
        };
        let Some(client) = self.client(stage) else {
            return false;
        };
        let recorded = match client.committed_offsets(list, CALL_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                warn!(stage = %stage.name, "reading the finished partitions: {e}");
                return false;
            }
        };
        all_recorded_at_committed(&offsets_of(&committed), &offsets_of(&recorded))
    }
}

type Position = ((String, i32), Option<i64>);

fn offsets_of(list: &TopicPartitionList) -> Vec<Position> {
    list.elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            ((e.topic().to_string(), e.partition()), offset)
        })
        .collect()
}

/// The pure rule: every partition the group has committed is recorded as finished at the
/// same position. A partition nobody committed, or recorded at another position (finished
/// in an earlier run, then read further), has not ended.
fn all_recorded_at_committed(committed: &[Position], recorded: &[Position]) -> bool {
    committed.iter().all(|(partition, offset)| {
        offset.is_some()
            && recorded
                .iter()
                .any(|(p, finished)| p == partition && finished == offset)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, offset: Option<i64>) -> Position {
        (("prices".to_string(), partition), offset)
    }

    #[test]
    fn a_partition_recorded_finished_at_its_committed_position_has_ended() {
        let committed = [at(0, Some(120)), at(1, Some(7))];
        let recorded = [at(1, Some(7)), at(0, Some(120))];
        assert!(all_recorded_at_committed(&committed, &recorded));
    }

    #[test]
    fn a_partition_committed_but_not_recorded_finished_has_not_ended() {
        // A peer read every end marker but has not delivered its final output yet.
        let committed = [at(0, Some(120)), at(1, Some(7))];
        let recorded = [at(0, Some(120)), at(1, None)];
        assert!(!all_recorded_at_committed(&committed, &recorded));
    }

    #[test]
    fn a_record_at_another_position_or_no_commit_at_all_is_not_an_end() {
        assert!(!all_recorded_at_committed(
            &[at(0, Some(130))],
            &[at(0, Some(120))]
        ));
        assert!(!all_recorded_at_committed(&[at(0, None)], &[at(0, None)]));
    }
}
