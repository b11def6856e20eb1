//! The consuming side of transform and sink stages: a consumer-group member whose
//! partitions carry their own state, resumed from the checkpoint committed with their
//! offsets, and committed only up to what is durable downstream.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer},
    error::KafkaResult,
    types::RDKafkaRespErr,
    ClientContext, Offset, TopicPartitionList,
};
use tracing::{debug, error, info, warn};

use super::{
    checkpoint::{self, ReplayIndex},
    markers::{InputMarkers, Writer},
};
use crate::{
    connector::{Transform, TransformFactory},
    spec::KafkaSpec,
};

/// Timeout of the blocking broker calls made during a rebalance.
const REBALANCE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// State of one input partition number (the same number across all input topics, which
/// are co-partitioned by key).
pub struct PartitionState {
    /// The transform owning this partition's keyed state (`None` for sinks).
    pub transform: Option<Box<dyn Transform>>,
    /// Next offset to commit, per input topic (indexed like the stage's input topics):
    /// everything before it is durable downstream.
    pub positions: Vec<Option<i64>>,
    /// Offsets committed when the partition was assigned: commits never go below them,
    /// even while a transform replays older records to rebuild its state.
    pub committed_at_start: Vec<Option<i64>>,
    /// Input topics (indexes) whose writers have all ended on this partition.
    pub ended: HashSet<usize>,
    /// Per input topic: the control markers seen (writers ended, their progress).
    pub markers: Vec<InputMarkers>,
    pub finished: bool,
    /// Whether this process recorded the partition as finished (`peers`).
    pub finish_recorded: bool,
    /// Per input topic: where a replay would have to start (stateful transforms only).
    pub replay_index: Vec<Option<ReplayIndex>>,
    /// Per input topic: what is known of the records before the first consumed one.
    pub replay_guarantee: Vec<i64>,
}

impl PartitionState {
    /// Records a consumed data record of input `index`.
    pub fn consumed(&mut self, index: usize, offset: i64, timestamp_ms: Option<i64>) {
        self.advance_position(index, offset);
        if self.transform.is_some() {
            let guarantee = self.replay_guarantee[index];
            let entry =
                self.replay_index[index].get_or_insert_with(|| ReplayIndex::new(offset, guarantee));
            if let Some(ts) = timestamp_ms {
                entry.observe(offset, ts);
            }
        }
    }

    /// Moves the committed position of input `index` past `offset`, but never past the
    /// input's first end-of-input marker: a restarted stage must read every writer's
    /// marker again, or it would wait forever for the writers whose marker it skipped.
    pub fn advance_position(&mut self, index: usize, offset: i64) {
        let next = match self.markers[index].hold() {
            Some(hold) => hold.min(offset + 1),
            None => offset + 1,
        };
        self.positions[index] = Some(next);
    }

    /// Records an end-of-input marker of input `index` at `offset`; returns whether the
    /// input has ended on this partition with this marker (every writer's parts ended, and
    /// it had not before).
    pub fn end_marker(
        &mut self,
        index: usize,
        offset: i64,
        writer: &Writer,
    ) -> Result<bool, String> {
        let complete = self.markers[index].end(writer, offset)?;
        self.advance_position(index, offset);
        Ok(complete && self.ended.insert(index))
    }
}

#[derive(Default)]
pub struct Shared {
    pub partitions: BTreeMap<i32, PartitionState>,
    /// Set when a partition could not be set up; the stage stops with it.
    pub failure: Option<String>,
    /// Whether the consumer has been assigned partitions at least once.
    pub assigned_once: bool,
}

/// Hooks run by librdkafka inside `recv()` when partitions move.
pub struct StageHooks {
    stage: String,
    status: super::PipelineStatus,
    metrics: crate::metrics::StageMetrics,
    kafka: KafkaSpec,
    /// Topic of the stage's checkpoints (stateful transforms).
    checkpoint_topic: Option<String>,
    input_topics: Vec<String>,
    factory: Option<TransformFactory>,
    /// The stage's producer and deliveries in flight: a revoke commits only what is durable.
    deliveries: Option<super::kafka::HookView>,
    shared: Arc<Mutex<Shared>>,
}

pub type StageConsumer = StreamConsumer<StageHooks>;

impl StageHooks {
    pub fn new(
        stage: &super::StageRuntime,
        factory: Option<TransformFactory>,
        deliveries: Option<super::kafka::HookView>,
    ) -> (Self, Arc<Mutex<Shared>>) {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let input_topics = stage.input_topics.clone();
        (
            StageHooks {
                stage: stage.name.clone(),
                status: stage.status.clone(),
                metrics: stage.metrics.clone(),
                kafka: stage.kafka.clone(),
                checkpoint_topic: factory
                    .as_ref()
                    .map(|_| checkpoint::topic_for_group(&stage.group)),
                input_topics,
                factory,
                deliveries,
                shared: shared.clone(),
            },
            shared,
        )
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let mut query = tpl.clone();
        if let Some(topic) = &self.checkpoint_topic {
            let partitions: HashSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            for p in partitions {
                query.add_partition(topic, p);
            }
        }
        let committed = match consumer.committed_offsets(query, REBALANCE_CALL_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                self.fail(format!("reading committed offsets: {e}"));
                return;
            }
        };
        let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for element in tpl.elements() {
            by_partition
                .entry(element.partition())
                .or_default()
                .push(element.topic().to_string());
        }
        for (partition, topics) in by_partition {
            match self.setup_partition(&committed, partition, &topics) {
                Ok((state, starts)) => {
                    for (topic, offset) in starts {
                        if let Err(e) = tpl.set_partition_offset(&topic, partition, offset) {
                            self.fail(format!("setting start offset of {topic}/{partition}: {e}"));
                        }
                    }
                    lock(&self.shared).partitions.insert(partition, state);
                }
                Err(message) => self.fail(message),
            }
        }
        lock(&self.shared).assigned_once = true;
        self.status.mark_ready(&self.stage);
        if let Err(e) = consumer.assign(tpl) {
            self.fail(format!("assigning partitions: {e}"));
        }
        // librdkafka keeps a partition paused by the application (backpressure, flow.rs)
        // across a revoke and a new assignment; the new transform starts with empty
        // buffers, so its inputs start unpaused (resuming a running partition is a no-op).
        if let Err(e) = consumer.resume(tpl) {
            self.fail(format!("resuming assigned partitions: {e}"));
        }
        info!(stage = %self.stage, partitions = ?tpl.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect::<Vec<_>>(), "partitions assigned");
    }

    /// Builds the partition's transform, resumes it from its checkpoint and decides where
    /// each input topic starts.
    fn setup_partition(
        &self,
        committed: &TopicPartitionList,
        partition: i32,
        topics: &[String],
    ) -> Result<(PartitionState, Vec<(String, Offset)>), String> {
        let committed_offset = |topic: &str| match committed
            .find_partition(topic, partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        };
        let committed_at_start: Vec<Option<i64>> = self
            .input_topics
            .iter()
            .map(|t| {
                if topics.contains(t) {
                    committed_offset(t)
                } else {
                    None
                }
            })
            .collect();
        let record = match (
            &self.checkpoint_topic,
            self.checkpoint_topic.as_deref().and_then(committed_offset),
        ) {
            (Some(topic), Some(next)) if next > 0 => {
                Some(checkpoint::fetch(&self.kafka, topic, partition, next - 1)?)
            }
            _ => None,
        };
        let mut transform =
            match &self.factory {
                Some(factory) => Some(factory(partition).map_err(|e| {
                    format!("building the transform for partition {partition}: {e}")
                })?),
                None => None,
            };
        if let Some(t) = transform.as_mut() {
            t.resume(record.as_ref().map(|r| r.state.as_str()))
                .map_err(|e| format!("resuming partition {partition} from its checkpoint: {e}"))?;
        }
        let mut starts = Vec::new();
        let mut replay_guarantee = vec![i64::MIN; self.input_topics.len()];
        for (index, topic) in self.input_topics.iter().enumerate() {
            if !topics.contains(topic) {
                continue;
            }
            let replay = record
                .as_ref()
                .and_then(|r| r.replay_from.get(index).copied().flatten());
            let start = match (replay, committed_at_start[index]) {
                (Some(r), Some(c)) if r.offset < c => {
                    info!(stage = %self.stage, topic, partition, from = r.offset, committed = c, "replaying input to rebuild state");
                    replay_guarantee[index] = r.ts;
                    Offset::Offset(r.offset)
                }
                (_, Some(c)) => Offset::Offset(c),
                (Some(r), None) => {
                    replay_guarantee[index] = r.ts;
                    Offset::Offset(r.offset)
                }
                (None, None) => Offset::Beginning,
            };
            debug!(stage = %self.stage, topic, partition, ?start, "partition start");
            starts.push((topic.clone(), start));
        }
        let inputs = self.input_topics.len();
        Ok((
            PartitionState {
                transform,
                positions: vec![None; inputs],
                committed_at_start,
                ended: HashSet::new(),
                markers: vec![InputMarkers::default(); inputs],
                finished: false,
                finish_recorded: false,
                replay_index: vec![None; inputs],
                replay_guarantee,
            },
            starts,
        ))
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        // Make what was produced from these partitions durable, then commit them, so the
        // next owner starts where this one stopped; if something is not durable, the next
        // owner starts from the last commit instead.
        let durable = self
            .deliveries
            .as_ref()
            .map_or(Ok(()), super::revoke::flush_and_check);
        match durable {
            Ok(()) => self.commit_revoked(consumer, tpl),
            Err(why) => {
                warn!(stage = %self.stage, "offsets of the revoked partitions stay uncommitted \
                    (their next owner starts from the last commit): {why}");
            }
        }
        self.drop_partitions(tpl);
        // Even without a commit: the group's rebalance waits for it.
        if let Err(e) = consumer.unassign() {
            warn!(stage = %self.stage, "unassigning: {e}");
        }
        info!(stage = %self.stage, "partitions revoked");
    }

    fn commit_revoked(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let commit = {
            let shared = lock(&self.shared);
            commit_list(&shared, &self.input_topics, |p| {
                tpl.elements().iter().any(|e| e.partition() == p)
            })
        };
        if commit.count() > 0 {
            if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
                warn!(stage = %self.stage, "committing revoked partitions failed: {e}");
            }
        }
    }

    fn drop_partitions(&self, tpl: &TopicPartitionList) {
        let mut shared = lock(&self.shared);
        for element in tpl.elements() {
            shared.partitions.remove(&element.partition());
        }
    }

    fn fail(&self, message: String) {
        error!(stage = %self.stage, "{message}");
        lock(&self.shared).failure.get_or_insert(message);
    }
}

impl ClientContext for StageHooks {
    /// Runs every `statistics.interval.ms`: publishes the consumer lag of each partition.
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        for l in crate::observe::lag::consumer_lags(&statistics) {
            self.metrics.consumer_lag(&l.topic, l.partition, l.lag);
        }
    }
}

impl ConsumerContext for StageHooks {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.on_revoke(consumer, tpl),
            other => {
                warn!(stage = %self.stage, "rebalance error {other:?}; dropping the assignment");
                self.drop_partitions(tpl);
                let _ = consumer.unassign();
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            warn!(stage = %self.stage, "offset commit failed: {e}");
        }
    }
}

/// Offsets to commit for the partitions selected.
pub fn commit_list(
    shared: &Shared,
    input_topics: &[String],
    select: impl Fn(i32) -> bool,
) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (partition, state) in shared.partitions.iter().filter(|(p, _)| select(**p)) {
        // No commit metadata: checkpoints live in their own topic (checkpoint.rs), and
        // brokers cap metadata (4 KB by default on Kafka).
        for (index, topic) in input_topics.iter().enumerate() {
            let offset = match (state.positions[index], state.committed_at_start[index]) {
                (Some(p), Some(c)) => Some(p.max(c)),
                (p, c) => p.or(c),
            };
            let Some(offset) = offset else { continue };
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(offset)) {
                warn!("offset {offset} of {topic}/{partition} left out of the commit: {e}");
            }
        }
    }
    tpl
}

/// Whether this process has nothing left to do: it was assigned partitions once and every
/// partition it holds now has ended.
pub fn assigned_all_finished(shared: &Mutex<Shared>) -> bool {
    let guard = lock(shared);
    guard.assigned_once && guard.partitions.values().all(|s| s.finished)
}

pub fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Commits the positions of every partition (stages without checkpoints).
pub fn commit_offsets(
    consumer: &StageConsumer,
    shared: &Mutex<Shared>,
    stage: &super::StageRuntime,
    mode: CommitMode,
) {
    let list = commit_list(&lock(shared), &stage.input_topics, |_| true);
    if list.count() == 0 {
        return;
    }
    match consumer.commit(&list, mode) {
        Ok(()) => stage.metrics.commits.increment(1),
        Err(e) => warn!(stage = %stage.name, "offset commit failed: {e}"),
    }
}

/// A malformed control marker: counted, logged at a limited rate, skipped.
pub fn bad_marker(stage: &super::StageRuntime, log: &mut crate::metrics::RateLimitedLog, e: &str) {
    stage.note_rejected(log, "bad_marker", e);
}

/// Creates the stage's consumer-group member and subscribes it to the stage's inputs.
pub fn subscribe(
    stage: &super::StageRuntime,
    hooks: StageHooks,
) -> Result<StageConsumer, crate::error::FrameworkError> {
    use crate::error::FrameworkError;
    let consumer: StageConsumer = super::kafka::consumer_config(&stage.kafka, &stage.group)
        .create_with_context(hooks)
        .map_err(|e| {
            FrameworkError::kafka(format!("creating the consumer of stage {}", stage.name), e)
        })?;
    let topics: Vec<&str> = stage.input_topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| FrameworkError::kafka(format!("subscribing to {topics:?}"), e))?;
    Ok(consumer)
}

/// A consumer error is usually transient (a broker going away): log it and pause briefly
/// instead of spinning; librdkafka reconnects by itself.
pub async fn consumer_error(stage: &super::StageRuntime, error: rdkafka::error::KafkaError) {
    warn!(stage = %stage.name, "consumer error: {error}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
