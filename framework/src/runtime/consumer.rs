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
    producer::{FutureProducer, Producer},
    types::RDKafkaRespErr,
    ClientContext, Offset, TopicPartitionList,
};
use tracing::{debug, error, info, warn};

use crate::connector::{Resume, Transform, TransformFactory};

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
    /// Input topics (indexes) whose end-of-input marker was consumed on this partition.
    pub ended: HashSet<usize>,
    pub finished: bool,
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
    input_topics: Vec<String>,
    factory: Option<TransformFactory>,
    producer: Option<FutureProducer>,
    shared: Arc<Mutex<Shared>>,
}

pub type StageConsumer = StreamConsumer<StageHooks>;

impl StageHooks {
    pub fn new(
        stage: &str,
        input_topics: Vec<String>,
        factory: Option<TransformFactory>,
        producer: Option<FutureProducer>,
    ) -> (Self, Arc<Mutex<Shared>>) {
        let shared = Arc::new(Mutex::new(Shared::default()));
        (
            StageHooks {
                stage: stage.to_string(),
                input_topics,
                factory,
                producer,
                shared: shared.clone(),
            },
            shared,
        )
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let committed = match consumer.committed_offsets(tpl.clone(), REBALANCE_CALL_TIMEOUT) {
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
            match self.setup_partition(consumer, &committed, partition, &topics) {
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
        if let Err(e) = consumer.assign(tpl) {
            self.fail(format!("assigning partitions: {e}"));
        }
        info!(stage = %self.stage, partitions = ?tpl.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect::<Vec<_>>(), "partitions assigned");
    }

    /// Builds the partition's transform, resumes it from its checkpoint and decides where
    /// each input topic starts.
    fn setup_partition(
        &self,
        consumer: &BaseConsumer<Self>,
        committed: &TopicPartitionList,
        partition: i32,
        topics: &[String],
    ) -> Result<(PartitionState, Vec<(String, Offset)>), String> {
        let mut committed_at_start = vec![None; self.input_topics.len()];
        let mut checkpoint: Option<String> = None;
        // Inputs in declared port order, so the checkpoint is read from the same topic
        // every time.
        for (index, topic) in self.input_topics.iter().enumerate() {
            if !topics.contains(topic) {
                continue;
            }
            if let Some(element) = committed.find_partition(topic, partition) {
                if let Offset::Offset(o) = element.offset() {
                    committed_at_start[index] = Some(o);
                    if checkpoint.is_none() && !element.metadata().is_empty() {
                        checkpoint = Some(element.metadata().to_string());
                    }
                }
            }
        }
        let mut transform =
            match &self.factory {
                Some(factory) => Some(factory(partition).map_err(|e| {
                    format!("building the transform for partition {partition}: {e}")
                })?),
                None => None,
            };
        let resume = match transform.as_mut() {
            Some(t) => t
                .resume(checkpoint.as_deref())
                .map_err(|e| format!("resuming partition {partition} from its checkpoint: {e}"))?,
            None => Resume::FromCommitted,
        };
        let mut starts = Vec::new();
        for topic in topics {
            let committed = self
                .input_topics
                .iter()
                .position(|t| t == topic)
                .and_then(|i| committed_at_start[i]);
            let start = match resume {
                Resume::FromCommitted => committed.map_or(Offset::Beginning, Offset::Offset),
                Resume::ReplayFrom { event_time_ms } => {
                    let replay = replay_offset(consumer, topic, partition, event_time_ms)?;
                    match (replay, committed) {
                        (Some(r), Some(c)) if r < c => Offset::Offset(r),
                        (_, Some(c)) => Offset::Offset(c),
                        (Some(r), None) => Offset::Offset(r),
                        (None, None) => Offset::Beginning,
                    }
                }
            };
            debug!(stage = %self.stage, topic, partition, ?committed, ?resume, ?start, "partition start");
            if let (Resume::ReplayFrom { .. }, Offset::Offset(s), Some(c)) =
                (resume, start, committed)
            {
                if s < c {
                    info!(stage = %self.stage, topic, partition, from = s, committed = c, "replaying input to rebuild state");
                }
            }
            starts.push((topic.clone(), start));
        }
        Ok((
            PartitionState {
                transform,
                positions: vec![None; self.input_topics.len()],
                committed_at_start,
                ended: HashSet::new(),
                finished: false,
            },
            starts,
        ))
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        // Make what was produced from these partitions durable, then commit them, so the
        // next owner starts where this one stopped.
        if let Some(producer) = &self.producer {
            if let Err(e) = producer.flush(Duration::from_secs(30)) {
                warn!(stage = %self.stage, "flushing before a rebalance failed: {e}; offsets stay uncommitted");
                self.drop_partitions(tpl);
                return;
            }
        }
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
        self.drop_partitions(tpl);
        if let Err(e) = consumer.unassign() {
            warn!(stage = %self.stage, "unassigning: {e}");
        }
        info!(stage = %self.stage, "partitions revoked");
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

fn replay_offset(
    consumer: &BaseConsumer<StageHooks>,
    topic: &str,
    partition: i32,
    event_time_ms: i64,
) -> Result<Option<i64>, String> {
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(topic, partition, Offset::Offset(event_time_ms.max(0)))
        .map_err(|e| format!("replay query for {topic}/{partition}: {e}"))?;
    let found = consumer
        .offsets_for_times(query, REBALANCE_CALL_TIMEOUT)
        .map_err(|e| {
            format!("looking up offsets for time {event_time_ms} in {topic}/{partition}: {e}")
        })?;
    Ok(found
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
}

impl ClientContext for StageHooks {}

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

/// Offsets (with each partition's checkpoint as metadata) of the partitions selected.
pub fn commit_list(
    shared: &Shared,
    input_topics: &[String],
    select: impl Fn(i32) -> bool,
) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (partition, state) in shared.partitions.iter().filter(|(p, _)| select(**p)) {
        let checkpoint = state
            .transform
            .as_ref()
            .and_then(|t| t.checkpoint())
            .unwrap_or_default();
        for (index, topic) in input_topics.iter().enumerate() {
            let offset = match (state.positions[index], state.committed_at_start[index]) {
                (Some(p), Some(c)) => Some(p.max(c)),
                (p, c) => p.or(c),
            };
            let Some(offset) = offset else { continue };
            if tpl
                .add_partition_offset(topic, *partition, Offset::Offset(offset))
                .is_ok()
            {
                if let Some(mut element) = tpl.find_partition(topic, *partition) {
                    element.set_metadata(checkpoint.clone());
                }
            }
        }
    }
    tpl
}

pub fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
