//! Backpressure per input port: the runtime stops fetching an input partition while the
//! transform that owns it says its buffer for that input is full
//! ([`Transform::input_full`](crate::Transform::input_full)), and resumes it once not.
//!
//! librdkafka discards what it prefetched for a paused partition and fetches again from
//! the consumed position on resume, so pausing loses nothing and skips nothing.

use std::collections::BTreeSet;

use rdkafka::{consumer::Consumer, TopicPartitionList};
use tracing::{debug, warn};

use super::{
    consumer::{lock, Shared, StageConsumer},
    StageRuntime,
};

/// The input partitions this stage has paused, as (port, partition).
#[derive(Debug, Default)]
pub(super) struct InputFlow {
    paused: BTreeSet<(usize, i32)>,
}

impl InputFlow {
    /// Asks the transform of `partition` which of its inputs are full after a record of
    /// `port` was handled, and pauses or resumes their partitions to match. A record that
    /// arrived on a port we had paused (the pause was lost in a rebalance) pauses it again.
    pub(super) fn update(
        &mut self,
        consumer: &StageConsumer,
        shared: &std::sync::Mutex<Shared>,
        stage: &StageRuntime,
        partition: i32,
        port: Option<usize>,
    ) {
        let full: Vec<bool> = {
            let guard = lock(shared);
            match guard
                .partitions
                .get(&partition)
                .and_then(|state| state.transform.as_ref())
            {
                Some(transform) => (0..stage.input_topics.len())
                    .map(|p| transform.input_full(p))
                    .collect(),
                None => return,
            }
        };
        let before = self.paused.len();
        for (p, full) in full.into_iter().enumerate() {
            let paused = self.paused.contains(&(p, partition));
            if full && (!paused || port == Some(p)) {
                if set_paused(consumer, stage, p, partition, true) {
                    self.paused.insert((p, partition));
                }
            } else if !full && paused {
                set_paused(consumer, stage, p, partition, false);
                self.paused.remove(&(p, partition));
            }
        }
        if self.paused.len() != before {
            stage.metrics.inputs_paused.set(self.paused.len() as f64);
        }
    }

    /// Forgets partitions that are no longer assigned (a new assignment starts unpaused:
    /// the consumer's assignment callback resumes every partition it assigns).
    pub(super) fn retain_assigned(
        &mut self,
        shared: &std::sync::Mutex<Shared>,
        stage: &StageRuntime,
    ) {
        let guard = lock(shared);
        self.paused
            .retain(|(_, partition)| guard.partitions.contains_key(partition));
        stage.metrics.inputs_paused.set(self.paused.len() as f64);
    }
}

/// Pauses or resumes the partition of input `port`; `false` when librdkafka refused.
fn set_paused(
    consumer: &StageConsumer,
    stage: &StageRuntime,
    port: usize,
    partition: i32,
    pause: bool,
) -> bool {
    let Some(topic) = stage.input_topics.get(port) else {
        return false;
    };
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let result = if pause {
        consumer.pause(&list)
    } else {
        consumer.resume(&list)
    };
    match result {
        Ok(()) => {
            debug!(stage = %stage.name, topic, partition, pause, "input backpressure");
            true
        }
        Err(e) => {
            // The partition may have been revoked meanwhile; the transform's hard bound
            // still holds if a pause is lost.
            warn!(stage = %stage.name, topic, partition, pause, "pausing or resuming an input: {e}");
            false
        }
    }
}
