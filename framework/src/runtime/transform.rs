//! Runs a transform stage: consume, transform per partition, produce, commit.

use std::collections::HashMap;

use rdkafka::{
    consumer::{CommitMode, Consumer},
    Message, Offset,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    checkpoint::{self, CheckpointRecord},
    consumer::{
        assigned_all_finished, bad_marker, commit_list, consumer_error, lock, subscribe,
        StageConsumer, StageHooks,
    },
    flow::InputFlow,
    kafka,
    markers::{self, Control},
    peers::FinishedPartitions,
    reject::Rejection,
    StageRuntime,
};
use crate::{
    connector::{Resume, TransformFactory},
    error::FrameworkError,
    metrics::{RateLimitedLog, Tally},
    record::{Emitter, InputRecord},
};

/// Records a transform emits before it must pause (see [`Emitter::is_full`]): the most
/// output of one stage held in memory before the producer takes it.
pub const EMIT_CHUNK: usize = 1_024;
/// A transform that emits more than this in one call ignores [`Emitter::is_full`]: the
/// stage stops with an error rather than let one input grow memory without bound.
pub const EMIT_HARD_LIMIT: usize = 64 * EMIT_CHUNK;

pub async fn run(
    stage: StageRuntime,
    factory: TransformFactory,
    shutdown: CancellationToken,
) -> Result<(), FrameworkError> {
    let output = stage
        .output
        .clone()
        .ok_or_else(|| stage.error("a transform needs an output topic"))?;
    let (producer, mut deliveries) = stage.deliveries()?;
    let checkpoints = Checkpoints {
        topic: checkpoint::topic_for_group(&stage.group),
    };
    let (hooks, shared) = StageHooks::new(&stage, Some(factory), Some(producer));
    let consumer = subscribe(&stage, hooks)?;
    // Port of each input topic (a topic feeds the first port that names it).
    let mut topic_index: HashMap<&str, usize> = HashMap::new();
    for (i, t) in stage.input_topics.iter().enumerate() {
        topic_index.entry(t.as_str()).or_insert(i);
    }
    let mut emitter = Emitter::with_limit(EMIT_CHUNK);
    let mut tally = Tally::default();
    let mut log = RateLimitedLog::new(std::time::Duration::from_secs(10));
    let mut commit_tick = tokio::time::interval(stage.commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    stage.metrics.up.set(1.0);
    stage.status.set(
        &stage.name,
        stage.connector,
        super::StageState::Running { ready: false },
    );
    info!(stage = %stage.name, inputs = ?stage.input_topics, output = %output, "transform stage started");
    let mut ended = false;
    // Set when shutdown interrupts a transform's pending output: its state is then
    // mid-emission, so nothing is checkpointed or committed (the restart replays).
    let mut interrupted = false;
    let mut waiting_for_peers = false;
    let mut finished = FinishedPartitions::new(&stage);
    let mut flow = InputFlow::default();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = commit_tick.tick() => {
                checkpoint_and_commit(&consumer, &shared, &stage, &mut deliveries, &checkpoints, CommitMode::Async).await?;
                publish_watermarks(&shared, &stage);
                flow.retain_assigned(&shared, &stage);
                tally.flush(&stage.metrics);
                if waiting_for_peers && assigned_all_finished(&shared) && finished.whole_input_ended(&consumer, &shared, &stage) {
                    ended = true;
                    break;
                }
            }
            received = consumer.recv() => {
                let message = match received {
                    Ok(m) => m,
                    Err(e) => {
                        consumer_error(&stage, e).await;
                        continue;
                    }
                };
                let partition = message.partition();
                let port = topic_index.get(message.topic()).copied();
                let handled = match handle(&stage, &shared, &topic_index, &message, &mut emitter, &mut tally, &mut log)? {
                    Some(handled) => handled,
                    None => continue,
                };
                let mut full = check_bound(&stage, &emitter)?;
                drain(&stage, &output, &mut emitter, &mut deliveries, &mut log, &mut tally).await?;
                while full {
                    if shutdown.is_cancelled() {
                        interrupted = true;
                        break;
                    }
                    if !emit_pending(&shared, partition, &mut emitter) {
                        break;
                    }
                    full = check_bound(&stage, &emitter)?;
                    drain(&stage, &output, &mut emitter, &mut deliveries, &mut log, &mut tally).await?;
                }
                if interrupted {
                    // Not ours to commit any more: its output is incomplete.
                    lock(&shared).partitions.remove(&partition);
                    break;
                }
                flow.update(&consumer, &shared, &stage, partition, port);
                if handled.partition_ended {
                    end_partition(&stage, &output, &mut deliveries, partition).await?;
                }
                if handled.all_finished {
                    checkpoint_and_commit(&consumer, &shared, &stage, &mut deliveries, &checkpoints, CommitMode::Sync).await?;
                    // Its final output and end markers are acknowledged and its position
                    // committed: peers may now count it as ended.
                    finished.record(&shared, &stage);
                    if finished.whole_input_ended(&consumer, &shared, &stage) {
                        ended = true;
                        break;
                    }
                    if !waiting_for_peers {
                        info!(stage = %stage.name, "assigned partitions ended; waiting for the other processes of the stage");
                        waiting_for_peers = true;
                    }
                }
            }
        }
    }
    tally.flush(&stage.metrics);
    if interrupted {
        warn!(stage = %stage.name, "stopped in the middle of a transform's output: \
            the input since the last commit is processed again on restart");
        deliveries.wait_all().await?;
        stage.metrics.up.set(0.0);
        return Ok(());
    }
    checkpoint_and_commit(
        &consumer,
        &shared,
        &stage,
        &mut deliveries,
        &checkpoints,
        CommitMode::Sync,
    )
    .await?;
    if ended {
        info!(stage = %stage.name, "every assigned input partition ended");
    }
    stage.metrics.up.set(0.0);
    info!(stage = %stage.name, "transform stage finished");
    Ok(())
}

/// What handling one message did.
struct Handled {
    /// Its partition's inputs have all ended with this message.
    partition_ended: bool,
    /// Every assigned partition has ended.
    all_finished: bool,
}

/// Hands one consumed message to its partition's transform, or acts on a control marker.
/// `None` when the message is not ours to process.
fn handle<M: Message>(
    stage: &StageRuntime,
    shared: &std::sync::Mutex<super::consumer::Shared>,
    topic_index: &HashMap<&str, usize>,
    message: &M,
    emitter: &mut Emitter,
    tally: &mut Tally,
    log: &mut RateLimitedLog,
) -> Result<Option<Handled>, FrameworkError> {
    let partition = message.partition();
    let offset = message.offset();
    let Some(&index) = topic_index.get(message.topic()) else {
        return Ok(None);
    };
    let mut guard = lock(shared);
    if let Some(failure) = guard.failure.take() {
        return Err(stage.error(failure));
    }
    let Some(state) = guard.partitions.get_mut(&partition) else {
        debug!(stage = %stage.name, partition, "message of an unassigned partition skipped");
        return Ok(None);
    };
    if state.transform.is_none() {
        return Ok(None);
    }
    let mut partition_ended = false;
    match markers::control_of(message) {
        Some(Ok(Control::EndOfInput(writer))) => match state.end_marker(index, offset, &writer) {
            Ok(true) if !state.finished => {
                let all = state.ended.len() == stage.input_topics.len();
                if all {
                    state.finished = true;
                    partition_ended = true;
                }
                if let Some(transform) = state.transform.as_mut() {
                    if all {
                        transform.end_of_input(emitter);
                    } else {
                        transform.input_ended(index, emitter);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => bad_marker(stage, log, &e),
        },
        Some(Ok(Control::Progress { writer, event_ms })) if !state.finished => {
            match state.markers[index].progress(&writer, event_ms) {
                Ok(Some(progress)) => {
                    if let Some(transform) = state.transform.as_mut() {
                        transform.advance(index, progress, emitter);
                    }
                }
                Ok(None) => {}
                Err(e) => bad_marker(stage, log, &e),
            }
            state.consumed(index, offset, None);
        }
        Some(Ok(Control::Progress { .. })) => {}
        Some(Err(e)) => {
            bad_marker(stage, log, &e);
            state.consumed(index, offset, None);
        }
        None if !state.finished => {
            let payload = message.payload().unwrap_or_default();
            tally.record_in(payload.len(), &stage.metrics);
            let record = InputRecord {
                port: index,
                key: message.key(),
                payload,
                timestamp_ms: message.timestamp().to_millis(),
                partition,
                offset,
            };
            crate::observe::tap::read(message.topic(), record.key, payload, record.timestamp_ms);
            if let Some(transform) = state.transform.as_mut() {
                transform.process(&record, emitter);
            }
            state.consumed(index, offset, record.timestamp_ms);
        }
        None => {}
    }
    Ok(Some(Handled {
        partition_ended,
        all_finished: guard.partitions.values().all(|s| s.finished) && !guard.partitions.is_empty(),
    }))
}

/// Input partition `partition` ended: tells every reader of the outputs that this part of
/// the stage has written everything. Each input partition is one part of the stage as a
/// writer, whichever process owns it, so readers wait for all of them (issue 10 §3).
async fn end_partition(
    stage: &StageRuntime,
    output: &str,
    deliveries: &mut kafka::Deliveries,
    partition: i32,
) -> Result<(), FrameworkError> {
    let parts = stage
        .input_topics
        .first()
        .map_or(1, |t| stage.partitions_of(t))
        .max(1);
    let writer = kafka::Writer {
        stage: stage.name.clone(),
        part: u32::try_from(partition).unwrap_or_default(),
        parts: u32::try_from(parts).unwrap_or(1),
    };
    info!(stage = %stage.name, partition, "input partition ended: signalling end of input downstream");
    for topic in std::iter::once(output).chain(stage.dead_letter.as_deref()) {
        deliveries
            .send_end_of_input(topic, stage.partitions_of(topic), &writer)
            .await?;
    }
    Ok(())
}

/// Whether the last call left the emitter full (more may be pending); fails the stage
/// when a transform ignored the limit by far.
fn check_bound(stage: &StageRuntime, emitter: &Emitter) -> Result<bool, FrameworkError> {
    let emitted = emitter.len();
    if emitted > EMIT_HARD_LIMIT {
        return Err(stage.error(format!(
            "the transform emitted {emitted} records in one call, more than the bound of \
             {EMIT_HARD_LIMIT}: it must stop when `Emitter::is_full` and continue in \
             `emit_pending`"
        )));
    }
    Ok(emitter.is_full())
}

/// Asks the transform of `partition` for more of its pending output. Returns `false`
/// when the partition is no longer ours (nothing to continue).
fn emit_pending(
    shared: &std::sync::Mutex<super::consumer::Shared>,
    partition: i32,
    emitter: &mut Emitter,
) -> bool {
    let mut guard = lock(shared);
    match guard
        .partitions
        .get_mut(&partition)
        .and_then(|state| state.transform.as_mut())
    {
        Some(transform) => {
            transform.emit_pending(emitter);
            true
        }
        None => false,
    }
}

/// Produces what the transform emitted and dead-letters what it rejected.
async fn drain(
    stage: &StageRuntime,
    output: &str,
    emitter: &mut Emitter,
    deliveries: &mut kafka::Deliveries,
    log: &mut RateLimitedLog,
    tally: &mut Tally,
) -> Result<(), FrameworkError> {
    if emitter.is_empty() {
        return Ok(());
    }
    for record in emitter.records.drain(..) {
        tally.record_out(record.payload.len());
        deliveries.send_record(output, &record).await?;
    }
    for rejected in emitter.rejected.drain(..) {
        let rejection = Rejection {
            reason: rejected.reason,
            detail: &rejected.detail,
            source: stage.input_topic(rejected.port),
            key: rejected.key.as_deref(),
            payload: &rejected.payload,
            timestamp_ms: rejected.timestamp_ms,
        };
        stage.reject(deliveries, log, rejection).await?;
    }
    Ok(())
}

/// Exports every key's watermark and event-time lag.
fn publish_watermarks(shared: &std::sync::Mutex<super::consumer::Shared>, stage: &StageRuntime) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let guard = lock(shared);
    for state in guard.partitions.values() {
        if let Some(transform) = &state.transform {
            for (key, watermark_ms) in transform.watermarks() {
                stage.metrics.watermark(&key, watermark_ms, now_ms);
            }
        }
    }
}

/// Where a transform stage keeps its checkpoints.
struct Checkpoints {
    topic: String,
}

/// Makes everything produced so far durable, stores each partition's checkpoint, and
/// commits the input offsets together with the checkpoints' offsets.
async fn checkpoint_and_commit(
    consumer: &StageConsumer,
    shared: &std::sync::Mutex<super::consumer::Shared>,
    stage: &StageRuntime,
    deliveries: &mut kafka::Deliveries,
    checkpoints: &Checkpoints,
    mode: CommitMode,
) -> Result<(), FrameworkError> {
    deliveries.wait_all().await?;
    let (mut list, records) = {
        let mut guard = lock(shared);
        let list = commit_list(&guard, &stage.input_topics, |_| true);
        let mut records = Vec::new();
        for (partition, state) in guard.partitions.iter_mut() {
            let Some(text) = state.transform.as_ref().and_then(|t| t.checkpoint()) else {
                continue;
            };
            // Where would a transform restarted from this checkpoint replay from?
            let replay = state.transform.as_ref().map(|t| t.replay_from(&text));
            let replay_from = match replay.unwrap_or(Ok(Resume::FromCommitted)) {
                Ok(Resume::ReplayFrom { event_time_ms }) => state
                    .replay_index
                    .iter_mut()
                    .map(|index| index.as_mut().and_then(|i| i.replay_point(event_time_ms)))
                    .collect(),
                Ok(Resume::FromCommitted) => vec![None; stage.input_topics.len()],
                Err(e) => {
                    return Err(stage.error(format!(
                        "checkpoint of partition {partition} cannot be resumed: {e}"
                    )))
                }
            };
            records.push((
                *partition,
                CheckpointRecord {
                    state: text,
                    replay_from,
                },
            ));
        }
        (list, records)
    };
    for (partition, record) in records {
        let payload = serde_json::to_vec(&record)
            .map_err(|e| stage.error(format!("encoding a checkpoint: {e}")))?;
        let offset = deliveries
            .send_and_wait(&checkpoints.topic, partition, &payload)
            .await?;
        if let Err(e) =
            list.add_partition_offset(&checkpoints.topic, partition, Offset::Offset(offset + 1))
        {
            return Err(stage.error(format!("committing checkpoint offset: {e}")));
        }
    }
    if list.count() == 0 {
        return Ok(());
    }
    match consumer.commit(&list, mode) {
        Ok(()) => stage.metrics.commits.increment(1),
        Err(e) => warn!(stage = %stage.name, "offset commit failed: {e}"),
    }
    Ok(())
}
