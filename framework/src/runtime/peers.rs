//! When may a process of a scaled-out stage stop? Only once the stage's whole input has
//! ended, not just the partitions it holds (issue 10 §3): if a peer dies first, its
//! partitions come back to a survivor, which must still be there to finish them.

use std::{collections::HashSet, sync::Mutex, time::Duration};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Message, Offset, TopicPartitionList,
};
use tracing::{debug, warn};

use super::{
    consumer::{lock, Shared, StageConsumer},
    markers::{self, Control, InputMarkers},
    StageRuntime,
};

/// Most records read past a peer's committed position to find its end markers.
const MAX_SCAN: usize = 10_000;
const SCAN_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether every partition of every input topic has ended: here, or in the group's
/// committed positions (a finished partition's position stays at its first end marker,
/// and reading from there finds every writer's end marker).
pub fn whole_input_ended(
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
    let committed = match consumer.committed_offsets(list, Duration::from_secs(10)) {
        Ok(c) => c,
        Err(e) => {
            warn!(stage = %stage.name, "reading the group's committed offsets: {e}");
            return false;
        }
    };
    committed.elements().iter().all(|e| match e.offset() {
        Offset::Offset(from) => ended_from(stage, e.topic(), e.partition(), from),
        _ => false,
    })
}

/// Whether the records of `topic/partition` from `from` to its end hold the end markers
/// of every writer.
fn ended_from(stage: &StageRuntime, topic: &str, partition: i32, from: i64) -> bool {
    let consumer: BaseConsumer = match super::kafka::client_config(&stage.kafka)
        .set("group.id", format!("{}.end-check", stage.group))
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            let e = crate::kafka_properties::without_config_value(e);
            warn!(stage = %stage.name, "creating an end-of-input checker: {e}");
            return false;
        }
    };
    let high = match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
        Ok((_, high)) if high > from => high,
        _ => return false,
    };
    let mut list = TopicPartitionList::new();
    if list
        .add_partition_offset(topic, partition, Offset::Offset(from))
        .is_err()
        || consumer.assign(&list).is_err()
    {
        return false;
    }
    let mut seen = InputMarkers::default();
    let deadline = std::time::Instant::now() + SCAN_TIMEOUT;
    let mut read = 0;
    while std::time::Instant::now() < deadline && read < MAX_SCAN {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                read += 1;
                if let Some(Ok(Control::EndOfInput(writer))) = markers::control_of(&message) {
                    if seen.end(&writer, message.offset()).unwrap_or(false) {
                        return true;
                    }
                }
                if message.offset() + 1 >= high {
                    break;
                }
            }
            Some(Err(e)) => {
                debug!(stage = %stage.name, topic, partition, "end-of-input check: {e}");
                return false;
            }
            None => {}
        }
    }
    false
}
