//! Runs a sink stage: consume in batches, write, then commit what was written.

use std::collections::HashMap;

use futures::FutureExt;
use rdkafka::{
    consumer::CommitMode,
    message::{BorrowedMessage, OwnedMessage},
    Message,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    consumer::{
        assigned_all_finished, bad_marker, commit_offsets, consumer_error, lock, subscribe, Shared,
        StageHooks,
    },
    kafka,
    markers::{self, Control},
    peers::FinishedPartitions,
    reject::Rejection,
    StageRuntime,
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

/// What one consumed message asks of the loop.
enum Step {
    Continue,
    /// Write the batch now (an end marker: what precedes it must be written first).
    WriteNow {
        ended: Option<(i32, usize, i64, kafka::Writer)>,
    },
}

pub async fn run(
    stage: StageRuntime,
    sink: Box<dyn Sink>,
    shutdown: CancellationToken,
) -> Result<(), FrameworkError> {
    let (producer, deliveries) = stage.deliveries()?;
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
        messages: Vec::with_capacity(max_records.min(4096)),
        deadline: None,
    };
    let mut output = BatchWriter {
        sink,
        ctx,
        deliveries,
        log: RateLimitedLog::new(std::time::Duration::from_secs(10)),
    };
    let mut commit_tick = tokio::time::interval(stage.commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    stage.metrics.up.set(1.0);
    stage.status.set(
        &stage.name,
        stage.connector,
        super::StageState::Running { ready: false },
    );
    info!(stage = %stage.name, inputs = ?stage.input_topics, "sink stage started");
    let mut ended = false;
    let mut interrupted = false;
    let mut waiting_for_peers = false;
    let mut finished = FinishedPartitions::new(&stage);
    'run: loop {
        // Adaptive batching (issue 14): wait for one record, then take only those already
        // waiting, and write. An idle input gets each record written at once; a busy one
        // gets batches of what accumulated during the previous write. `max_records` and
        // `max_wait` stay upper bounds.
        let mut step = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = commit_tick.tick() => {
                commit_offsets(&consumer, &shared, &stage, CommitMode::Async);
                if waiting_for_peers && assigned_all_finished(&shared) && finished.whole_input_ended(&consumer, &shared, &stage) {
                    ended = true;
                    break;
                }
                continue;
            }
            received = consumer.recv() => match received {
                Ok(message) => accept(&stage, &shared, &topic_index, &mut batch, message, max_wait, &mut output.log)?,
                Err(e) => {
                    consumer_error(&stage, e).await;
                    continue;
                }
            },
        };
        while matches!(step, Step::Continue)
            && batch.messages.len() < max_records
            && batch.deadline.is_none_or(|d| Instant::now() < d)
        {
            match consumer.recv().now_or_never() {
                Some(Ok(message)) => {
                    step = accept(
                        &stage,
                        &shared,
                        &topic_index,
                        &mut batch,
                        message,
                        max_wait,
                        &mut output.log,
                    )?;
                }
                Some(Err(e)) => {
                    consumer_error(&stage, e).await;
                    break;
                }
                None => break,
            }
        }
        if !output.write(&stage, &mut batch, &shared).await? {
            interrupted = true;
            break;
        }
        if let Step::WriteNow {
            ended: Some((partition, index, offset, writer)),
        } = step
        {
            let mut guard = lock(&shared);
            let mut all_finished = false;
            if let Some(state) = guard.partitions.get_mut(&partition) {
                match state.end_marker(index, offset, &writer) {
                    Ok(_) => {
                        if state.ended.len() == stage.input_topics.len() {
                            state.finished = true;
                        }
                        all_finished = guard.partitions.values().all(|s| s.finished);
                    }
                    Err(e) => bad_marker(&stage, &mut output.log, &e),
                }
            }
            drop(guard);
            if all_finished {
                commit_offsets(&consumer, &shared, &stage, CommitMode::Sync);
                // Its records are written and its position committed: peers may now
                // count it as ended.
                finished.record(&shared, &stage);
                if finished.whole_input_ended(&consumer, &shared, &stage) {
                    ended = true;
                    break 'run;
                }
                if !waiting_for_peers {
                    info!(stage = %stage.name, "assigned partitions ended; waiting for the other processes of the stage");
                    waiting_for_peers = true;
                }
            } else {
                commit_offsets(&consumer, &shared, &stage, CommitMode::Async);
            }
        }
    }
    if !interrupted && !ended && !batch.messages.is_empty() {
        // Stopping: write what was consumed, so the restart has less to redo.
        output.write(&stage, &mut batch, &shared).await?;
    }
    commit_offsets(&consumer, &shared, &stage, CommitMode::Sync);
    if let Err(e) = output.sink.close().await {
        warn!(stage = %stage.name, "closing the sink: {e}");
    }
    stage.metrics.up.set(0.0);
    info!(stage = %stage.name, "sink stage finished");
    Ok(())
}

/// Takes one consumed message: a data record joins the batch, a marker is acted on.
fn accept(
    stage: &StageRuntime,
    shared: &std::sync::Mutex<Shared>,
    topic_index: &HashMap<String, usize>,
    batch: &mut Batch,
    message: BorrowedMessage<'_>,
    max_wait: std::time::Duration,
    log: &mut RateLimitedLog,
) -> Result<Step, FrameworkError> {
    if let Some(failure) = lock(shared).failure.take() {
        return Err(stage.error(failure));
    }
    let Some(&index) = topic_index.get(message.topic()) else {
        return Ok(Step::Continue);
    };
    let partition = message.partition();
    if !lock(shared).partitions.contains_key(&partition) {
        debug!(stage = %stage.name, partition, "message of an unassigned partition skipped");
        return Ok(Step::Continue);
    }
    match markers::control_of(&message) {
        Some(Ok(Control::EndOfInput(writer))) => {
            return Ok(Step::WriteNow {
                ended: Some((partition, index, message.offset(), writer)),
            })
        }
        // A sink has no watermark; the position moves past it with the next record.
        Some(Ok(Control::Progress { .. })) => return Ok(Step::Continue),
        Some(Err(e)) => {
            bad_marker(stage, log, &e);
            return Ok(Step::Continue);
        }
        None => {}
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
    Ok(Step::Continue)
}

/// What writing a batch needs besides the batch: the sink, its context, the producer of
/// dead letters and the stage's rejection log.
struct BatchWriter {
    sink: Box<dyn Sink>,
    ctx: SinkContext,
    deliveries: kafka::Deliveries,
    log: RateLimitedLog,
}

impl BatchWriter {
    /// Writes the batch; returns false when the write was abandoned because the pipeline
    /// is stopping (its records stay uncommitted and are consumed again after a restart).
    async fn write(
        &mut self,
        stage: &StageRuntime,
        batch: &mut Batch,
        shared: &std::sync::Mutex<Shared>,
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
        let written = self.sink.write(&records, &self.ctx).await;
        stage
            .metrics
            .sink_write_seconds
            .record(started.elapsed().as_secs_f64());
        let outcome = match written {
            Ok(outcome) => outcome,
            Err(e) if self.ctx.shutdown().is_cancelled() => {
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
            let rejection = Rejection {
                reason,
                detail,
                source: stage.input_topic(record.port),
                key: record.key,
                payload: record.payload,
                timestamp_ms: record.timestamp_ms,
            };
            stage
                .reject(&mut self.deliveries, &mut self.log, rejection)
                .await?;
        }
        self.deliveries.wait_all().await?;
        stage
            .metrics
            .records_out
            .increment((records.len() - outcome.rejected.len()) as u64);
        let mut guard = lock(shared);
        for record in &records {
            if let Some(state) = guard.partitions.get_mut(&record.partition) {
                state.advance_position(record.port, record.offset);
            }
        }
        drop(guard);
        batch.messages.clear();
        Ok(true)
    }
}
