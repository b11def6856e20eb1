//! Runs a sink stage: consume in batches, write, then commit what was written.

use std::collections::HashMap;

use rdkafka::{consumer::CommitMode, message::OwnedMessage, Message};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    consumer::{commit_offsets, consumer_error, lock, subscribe, Shared, StageHooks},
    kafka, StageRuntime,
};
use crate::{
    connector::{Sink, SinkContext},
    error::FrameworkError,
    metrics::RateLimitedLog,
    record::InputRecord,
};

struct Batch {
    /// (input topic index, message)
    messages: Vec<(usize, OwnedMessage)>,
    deadline: Option<Instant>,
}

pub async fn run(
    stage: StageRuntime,
    mut sink: Box<dyn Sink>,
    shutdown: CancellationToken,
) -> Result<(), FrameworkError> {
    let producer = kafka::create_producer(&stage.kafka)?;
    let mut deliveries = stage.deliveries(producer.clone());
    let (hooks, shared) = StageHooks::new(&stage, None, Some(producer));
    let consumer = subscribe(&stage, hooks)?;
    let mut topic_index: HashMap<String, usize> = HashMap::new();
    for (i, t) in stage.input_topics.iter().enumerate() {
        topic_index.entry(t.clone()).or_insert(i);
    }
    let ctx =
        SinkContext::with_retry_counter(shutdown.clone(), stage.metrics.sink_write_retries.clone());
    let max_records = stage.batch.max_records.max(1);
    let max_wait = stage.batch.max_wait.as_std();
    let mut batch = Batch {
        messages: Vec::with_capacity(max_records),
        deadline: None,
    };
    let mut log = RateLimitedLog::new(std::time::Duration::from_secs(10));
    stage.metrics.up.set(1.0);
    stage.status.set(
        &stage.name,
        stage.connector,
        super::StageState::Running { ready: false },
    );
    info!(stage = %stage.name, inputs = ?stage.input_topics, "sink stage started");
    let mut ended = false;
    let mut interrupted = false;
    loop {
        let deadline = batch.deadline;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } }, if deadline.is_some() => {
                if !write(&stage, &mut *sink, &ctx, &mut batch, &shared, &mut deliveries, &mut log).await? {
                    interrupted = true;
                    break;
                }
                commit_offsets(&consumer, &shared, &stage, CommitMode::Async);
            }
            received = consumer.recv() => {
                let message = match received {
                    Ok(m) => m,
                    Err(e) => {
                        consumer_error(&stage, e).await;
                        continue;
                    }
                };
                if let Some(failure) = lock(&shared).failure.take() {
                    return Err(stage.error(failure));
                }
                let Some(&index) = topic_index.get(message.topic()) else { continue };
                let partition = message.partition();
                if !lock(&shared).partitions.contains_key(&partition) {
                    debug!(stage = %stage.name, partition, "message of an unassigned partition skipped");
                    continue;
                }
                if kafka::is_end_of_input(&message) {
                    // Everything before the marker must be written before it counts.
                    let offset = message.offset();
                    if !write(&stage, &mut *sink, &ctx, &mut batch, &shared, &mut deliveries, &mut log).await? {
                        interrupted = true;
                        break;
                    }
                    let mut guard = lock(&shared);
                    if let Some(state) = guard.partitions.get_mut(&partition) {
                        state.ended_at(index, offset);
                        if state.ended.len() == stage.input_topics.len() {
                            state.finished = true;
                        }
                    }
                    let all_finished = guard.partitions.values().all(|s| s.finished);
                    drop(guard);
                    commit_offsets(&consumer, &shared, &stage, CommitMode::Async);
                    if all_finished {
                        ended = true;
                        break;
                    }
                    continue;
                }
                let payload_len = message.payload().map_or(0, <[u8]>::len);
                stage.metrics.records_in.increment(1);
                stage.metrics.bytes_in.increment(payload_len as u64);
                crate::observe::tap::read(
                    message.topic(),
                    message.key(),
                    message.payload().unwrap_or_default(),
                    message.timestamp().to_millis(),
                );
                batch.messages.push((index, message.detach()));
                if batch.deadline.is_none() {
                    batch.deadline = Some(Instant::now() + max_wait);
                }
                if batch.messages.len() >= max_records {
                    if !write(&stage, &mut *sink, &ctx, &mut batch, &shared, &mut deliveries, &mut log).await? {
                        interrupted = true;
                        break;
                    }
                    commit_offsets(&consumer, &shared, &stage, CommitMode::Async);
                }
            }
        }
    }
    if !interrupted && !ended && !batch.messages.is_empty() {
        // Stopping: write what was consumed, so the restart has less to redo.
        write(
            &stage,
            &mut *sink,
            &ctx,
            &mut batch,
            &shared,
            &mut deliveries,
            &mut log,
        )
        .await?;
    }
    commit_offsets(&consumer, &shared, &stage, CommitMode::Sync);
    if let Err(e) = sink.close().await {
        warn!(stage = %stage.name, "closing the sink: {e}");
    }
    stage.metrics.up.set(0.0);
    info!(stage = %stage.name, "sink stage finished");
    Ok(())
}

/// Writes the batch; returns false when the write was abandoned because the pipeline is
/// stopping (its records stay uncommitted and are consumed again after a restart).
async fn write(
    stage: &StageRuntime,
    sink: &mut dyn Sink,
    ctx: &SinkContext,
    batch: &mut Batch,
    shared: &std::sync::Mutex<Shared>,
    deliveries: &mut kafka::Deliveries,
    log: &mut RateLimitedLog,
) -> Result<bool, FrameworkError> {
    batch.deadline = None;
    if batch.messages.is_empty() {
        return Ok(true);
    }
    let records: Vec<InputRecord<'_>> = batch
        .messages
        .iter()
        .map(|(index, m)| InputRecord {
            port: *index,
            key: m.key(),
            payload: m.payload().unwrap_or_default(),
            timestamp_ms: m.timestamp().to_millis(),
            partition: m.partition(),
            offset: m.offset(),
        })
        .collect();
    let started = std::time::Instant::now();
    let written = sink.write(&records, ctx).await;
    stage
        .metrics
        .sink_write_seconds
        .record(started.elapsed().as_secs_f64());
    let outcome = match written {
        Ok(outcome) => outcome,
        Err(e) if ctx.shutdown().is_cancelled() => {
            warn!(stage = %stage.name, "write abandoned while stopping ({e}); its records stay uncommitted");
            return Ok(false);
        }
        Err(source) => {
            return Err(FrameworkError::Stage {
                stage: stage.name.clone(),
                connector: stage.connector.to_string(),
                source,
            })
        }
    };
    for (i, reason, detail) in &outcome.rejected {
        let Some(record) = records.get(*i) else {
            continue;
        };
        stage.metrics.rejected(reason);
        log.warn(&stage.name, reason, detail);
        if let Some(dlq) = &stage.dead_letter {
            let source = stage
                .input_topics
                .get(record.port)
                .map(String::as_str)
                .unwrap_or_default();
            let headers = kafka::dead_letter_headers(&stage.name, reason, detail, source);
            deliveries
                .send(
                    dlq,
                    None,
                    record.key,
                    Some(record.payload),
                    record.timestamp_ms,
                    Some(headers),
                )
                .await?;
            stage.metrics.dead_lettered.increment(1);
        }
    }
    deliveries.wait_all().await?;
    stage
        .metrics
        .records_out
        .increment((records.len() - outcome.rejected.len()) as u64);
    let mut guard = lock(shared);
    for record in &records {
        if let Some(state) = guard.partitions.get_mut(&record.partition) {
            state.positions[record.port] = Some(record.offset + 1);
        }
    }
    drop(guard);
    batch.messages.clear();
    Ok(true)
}
