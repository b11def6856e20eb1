//! Sends records and keeps their delivery acknowledgements, so that a stage can wait until
//! everything it produced is durable before committing its input offsets.
//!
//! A record the broker refuses for good never fails the stage (issue 10 §2). The broker
//! refuses a whole batch for one bad record (`INVALID_RECORD`), and the idempotent
//! producer may then turn fatal and fail everything behind it. So on such a failure every
//! delivery in flight is settled first; the failed records are then resent in their
//! original order, one at a time up to the last refused one (which isolates the culprits:
//! they are dead-lettered), the rest together. A fatal producer is replaced before
//! resending. Nothing behind a refused batch was written before it (the fatal producer
//! failed it), so each partition keeps its order, and `wait_all` returns only once every
//! record is delivered or dead-lettered: offsets are never committed past a lost record.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use futures::{stream::FuturesUnordered, StreamExt};
use rdkafka::{
    config::ClientConfig,
    error::KafkaError,
    message::{Message, OwnedHeaders, OwnedMessage},
    producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer},
    types::RDKafkaErrorCode,
};
use tracing::{debug, warn};

use super::{
    kafka::Writer,
    markers,
    refusal::{self, Failure, Refusal},
};
use crate::error::FrameworkError;

/// Most deliveries in flight before a stage waits for acknowledgements.
const MAX_IN_FLIGHT: usize = 10_000;
/// How long a record resent alone (or a checkpoint) may take to be acknowledged.
const SEND_ALONE_TIMEOUT: Duration = Duration::from_secs(30);

/// The producer a stage currently uses, shared with its rebalance hooks: it is replaced
/// when librdkafka made it fatal.
pub type SharedProducer = Arc<Mutex<FutureProducer>>;

type DeliveryResult = Result<
    rdkafka::producer::future_producer::OwnedDeliveryResult,
    futures::channel::oneshot::Canceled,
>;

/// A delivery tagged with its send order, so failed records are resent in that order.
struct Tagged {
    seq: u64,
    future: DeliveryFuture,
}

impl Future for Tagged {
    type Output = (u64, DeliveryResult);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let seq = self.seq;
        Pin::new(&mut self.future).poll(cx).map(|r| (seq, r))
    }
}

/// A record whose delivery failed, as the producer handed it back.
struct Failed {
    seq: u64,
    error: KafkaError,
    message: OwnedMessage,
}

pub struct Deliveries {
    producer: FutureProducer,
    /// How to make a new producer, and where the stage's hooks look for it.
    recreate: Option<(ClientConfig, SharedProducer)>,
    in_flight: FuturesUnordered<Tagged>,
    next_seq: u64,
    /// What to do with records the broker refuses; without it they fail the stage.
    refusals: Option<refusal::Policy>,
}

impl Deliveries {
    pub fn new(producer: FutureProducer) -> Self {
        Deliveries {
            producer,
            recreate: None,
            in_flight: FuturesUnordered::new(),
            next_seq: 0,
            refusals: None,
        }
    }

    /// Records the broker refuses are dead-lettered (or counted and dropped) as `policy`
    /// says, instead of failing the stage; a producer librdkafka made fatal is replaced by
    /// one made from `config`, and published in `shared`.
    pub fn with_refusals(
        mut self,
        policy: refusal::Policy,
        config: ClientConfig,
        shared: SharedProducer,
    ) -> Self {
        self.refusals = Some(policy);
        self.recreate = Some((config, shared));
        self
    }

    /// Sends a record a connector emitted: its key and payload, its event time as the
    /// Kafka timestamp.
    pub async fn send_record(
        &mut self,
        topic: &str,
        record: &crate::record::OutputRecord,
    ) -> Result<(), FrameworkError> {
        self.send(
            topic,
            None,
            record.key.as_deref(),
            Some(&record.payload),
            Some(record.timestamp_ms),
            None,
        )
        .await
    }

    fn push(&mut self, future: DeliveryFuture) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push(Tagged { seq, future });
    }

    /// Queues one record; waits for acknowledgements when the producer queue is full.
    pub async fn send(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        timestamp_ms: Option<i64>,
        headers: Option<OwnedHeaders>,
    ) -> Result<(), FrameworkError> {
        if let Some(payload) = payload {
            crate::observe::tap::written(topic, key, payload, timestamp_ms);
        }
        let mut replaced = false;
        loop {
            let record = build(
                topic,
                partition,
                key,
                payload,
                timestamp_ms,
                headers.as_ref(),
            );
            let error = match self.producer.send_result(record) {
                Ok(future) => {
                    self.push(future);
                    if self.in_flight.len() >= MAX_IN_FLIGHT {
                        self.wait_one().await?;
                    }
                    return Ok(());
                }
                Err((error, _)) => error,
            };
            match (refusal::classify(&error), &error) {
                (Failure::Refused(Refusal::TooLarge), _) if self.refusals.is_some() => {
                    let payload = payload.unwrap_or_default();
                    let error = error.to_string();
                    let refused = (topic, key, payload, timestamp_ms, headers.as_ref());
                    self.dead_letter(Refusal::TooLarge, refused, &error).await;
                    return Ok(());
                }
                (_, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    if self.in_flight.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    } else {
                        self.wait_one().await?;
                    }
                }
                // The producer turned fatal on an earlier record: settling what is in
                // flight resends it through a new producer; then this record goes too.
                (Failure::Collateral, _) if self.recreate.is_some() && !replaced => {
                    replaced = true;
                    self.wait_all().await?;
                    self.replace(&error.to_string())?;
                }
                _ => {
                    return Err(FrameworkError::kafka(
                        format!("producing to {topic}"),
                        error,
                    ))
                }
            }
        }
    }

    async fn wait_one(&mut self) -> Result<(), FrameworkError> {
        let Some((seq, result)) = self.in_flight.next().await else {
            return Ok(());
        };
        match result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((error, message)))
                if self.refusals.is_some() && refusal::classify(&error) != Failure::Other =>
            {
                self.recover(Failed {
                    seq,
                    error,
                    message,
                })
                .await
            }
            other => check_delivery(other),
        }
    }

    /// Settles every delivery in flight after `first` failed, then resends what failed:
    /// one at a time up to the last refused record (the culprits are dead-lettered), the
    /// rest together, in the order they were first sent.
    async fn recover(&mut self, first: Failed) -> Result<(), FrameworkError> {
        let mut failed = vec![first];
        while let Some((seq, result)) = self.in_flight.next().await {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((error, message))) => failed.push(Failed {
                    seq,
                    error,
                    message,
                }),
                Err(_) => return check_delivery(result),
            }
        }
        failed.sort_by_key(|f| f.seq);
        if let Some(other) = failed
            .iter()
            .find(|f| refusal::classify(&f.error) == Failure::Other)
        {
            let context = format!("delivering a record to {}", other.message.topic());
            return Err(FrameworkError::kafka(context, other.error.clone()));
        }
        // Without a refused record in sight, resend everything alone: progress is then
        // certain whatever made the producer fail.
        let alone = failed
            .iter()
            .rposition(|f| matches!(refusal::classify(&f.error), Failure::Refused(_)))
            .map_or(failed.len(), |last| last + 1);
        warn!(
            failed = failed.len(),
            resent_alone = alone,
            "the broker refused a batch: resending its records one at a time to find the refused ones"
        );
        self.replace_if_fatal()?;
        let mut rest = failed.split_off(alone);
        for record in failed {
            self.resend_alone(&record.message).await?;
        }
        for record in rest.drain(..) {
            self.requeue(&record.message).await?;
        }
        Ok(())
    }

    /// Sends `message` again and waits for it; dead-letters it if the broker refuses it.
    async fn resend_alone(&mut self, message: &OwnedMessage) -> Result<(), FrameworkError> {
        let mut replaced = false;
        loop {
            let error = match self.send_and_await(message).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            match refusal::classify(&error) {
                // Dropping a marker would stall every reader of the topic for good.
                Failure::Refused(_) if markers::control_of(message).is_some() => {
                    let context = format!(
                        "the broker refused a control marker (headers, no value) for {}: \
                         the topic's validation must accept records without a value",
                        message.topic()
                    );
                    return Err(FrameworkError::kafka(context, error));
                }
                Failure::Refused(refusal) => {
                    self.replace_if_fatal()?;
                    let payload = message.payload().unwrap_or_default();
                    let refused = (
                        message.topic(),
                        message.key(),
                        payload,
                        message.timestamp().to_millis(),
                        message.headers(),
                    );
                    self.dead_letter(refusal, refused, &error.to_string()).await;
                    return self.replace_if_fatal();
                }
                // Fenced or fatal: librdkafka may not call it fatal yet (an epoch bump the
                // broker refused), but it will not deliver again.
                Failure::Collateral if !replaced => {
                    replaced = true;
                    self.replace(&error.to_string())?;
                }
                _ => {
                    let context = format!("delivering a record to {}", message.topic());
                    return Err(FrameworkError::kafka(context, error));
                }
            }
        }
    }

    /// Sends `message` again without waiting for it.
    async fn requeue(&mut self, message: &OwnedMessage) -> Result<(), FrameworkError> {
        loop {
            match self.producer.send_result(resend_of(message)) {
                Ok(future) => return Ok(self.push(future)),
                // Waiting on acknowledgements here would recurse into `recover`; the
                // queue drains in the background.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => {
                    let context = format!("producing to {}", message.topic());
                    return Err(FrameworkError::kafka(context, error));
                }
            }
        }
    }

    async fn send_and_await(&self, message: &OwnedMessage) -> Result<(), KafkaError> {
        match self
            .producer
            .send(resend_of(message), SEND_ALONE_TIMEOUT)
            .await
        {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error),
        }
    }

    /// Replaces the producer when librdkafka made it fatal (it refuses everything then).
    fn replace_if_fatal(&mut self) -> Result<(), FrameworkError> {
        match self.producer.client().fatal_error() {
            Some((code, reason)) => self.replace(&format!("{code:?}: {reason}")),
            None => Ok(()),
        }
    }

    /// Replaces the producer with a new one (nothing is in flight on it).
    fn replace(&mut self, why: &str) -> Result<(), FrameworkError> {
        let Some((config, shared)) = &self.recreate else {
            return Ok(());
        };
        warn!("the producer cannot deliver any more ({why}): replacing it");
        let producer: FutureProducer = config
            .create()
            .map_err(|e| FrameworkError::kafka("recreating the producer", e))?;
        *shared.lock().unwrap_or_else(|p| p.into_inner()) = producer.clone();
        self.producer = producer;
        Ok(())
    }

    /// Dead-letters a copy of a refused record (truncated if it would not fit), or counts
    /// and drops it. Never fails: the stage keeps running. The copy is waited for, so a
    /// refused copy is counted as dropped rather than refused again.
    async fn dead_letter(
        &mut self,
        refusal: Refusal,
        (topic, key, payload, timestamp_ms, headers): Refused<'_>,
        error: &str,
    ) {
        let Some(policy) = self.refusals.clone() else {
            return;
        };
        let dead_letter = match &policy.dead_letter {
            Some(dlq) if dlq != topic && !refusal::is_truncated_copy(headers) => dlq,
            _ => return policy.count(refusal, topic, payload.len(), false),
        };
        let copy = policy.copy(refusal, topic, key, payload, headers, error);
        let mut replaced = false;
        let delivered = loop {
            let record = build(
                dead_letter,
                None,
                copy.key.as_deref(),
                Some(&copy.payload),
                timestamp_ms,
                Some(&copy.headers),
            );
            match self.producer.send(record, SEND_ALONE_TIMEOUT).await {
                Ok(_) => break true,
                // The refusal fenced the producer: the copy goes through a new one.
                Err((e, _)) if refusal::classify(&e) == Failure::Collateral && !replaced => {
                    replaced = true;
                    if let Err(e) = self.replace(&e.to_string()) {
                        debug!("replacing the producer for a dead-letter copy: {e}");
                        break false;
                    }
                }
                Err((e, _)) => {
                    debug!(topic = %dead_letter, "the dead-letter copy was refused too: {e}");
                    break false;
                }
            }
        };
        policy.count(refusal, topic, payload.len(), delivered);
    }

    /// Waits until every record sent so far is acknowledged by the broker (or, refused,
    /// dead-lettered).
    pub async fn wait_all(&mut self) -> Result<(), FrameworkError> {
        while !self.in_flight.is_empty() {
            self.wait_one().await?;
        }
        Ok(())
    }

    /// Sends one checkpoint record to `partition` and waits for it; returns its offset.
    /// The key is the partition number: checkpoint topics are compacted, and compaction
    /// keeps the latest record per key (a keyless record is refused there).
    pub async fn send_and_wait(
        &mut self,
        topic: &str,
        partition: i32,
        payload: &[u8],
    ) -> Result<i64, FrameworkError> {
        let key = format!("partition-{partition}");
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(partition)
            .key(key.as_bytes())
            .payload(payload);
        match self.producer.send(record, SEND_ALONE_TIMEOUT).await {
            Ok(delivery) => Ok(delivery.offset),
            Err((e, _)) => Err(FrameworkError::kafka(format!("producing to {topic}"), e)),
        }
    }

    /// Writes `writer`'s end-of-input marker to every partition of `topic` and waits
    /// until everything sent before is acknowledged.
    pub async fn send_end_of_input(
        &mut self,
        topic: &str,
        partitions: i32,
        writer: &Writer,
    ) -> Result<(), FrameworkError> {
        let headers = markers::end_headers(writer);
        self.send_marker(topic, partitions, headers).await?;
        self.wait_all().await
    }

    /// Sends a marker (headers, no key or payload) to partitions `0..partitions`.
    async fn send_marker(
        &mut self,
        topic: &str,
        partitions: i32,
        headers: OwnedHeaders,
    ) -> Result<(), FrameworkError> {
        for partition in 0..partitions {
            self.send(
                topic,
                Some(partition),
                None,
                None,
                None,
                Some(headers.clone()),
            )
            .await?;
        }
        Ok(())
    }

    /// Writes `writer`'s progress marker (no record before `event_ms` will follow) to
    /// every partition of `topic`, behind every record sent before it.
    pub async fn send_progress(
        &mut self,
        topic: &str,
        partitions: i32,
        writer: &Writer,
        event_ms: i64,
    ) -> Result<(), FrameworkError> {
        let headers = markers::progress_headers(writer, event_ms);
        self.send_marker(topic, partitions, headers).await
    }
}

/// A refused record: topic, key, payload, timestamp, headers.
type Refused<'a> = (
    &'a str,
    Option<&'a [u8]>,
    &'a [u8],
    Option<i64>,
    Option<&'a OwnedHeaders>,
);

fn build<'a>(
    topic: &'a str,
    partition: Option<i32>,
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    timestamp_ms: Option<i64>,
    headers: Option<&OwnedHeaders>,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    if let Some(p) = partition {
        record = record.partition(p);
    }
    if let Some(ts) = timestamp_ms {
        record = record.timestamp(ts);
    }
    if let Some(h) = headers {
        record = record.headers(h.clone());
    }
    record
}

/// The record a failed delivery handed back, to the partition it was bound for (the
/// partitioner would pick the same one; markers name theirs).
fn resend_of(message: &OwnedMessage) -> FutureRecord<'_, [u8], [u8]> {
    let partition = Some(message.partition()).filter(|p| *p >= 0);
    build(
        message.topic(),
        partition,
        message.key(),
        message.payload(),
        message.timestamp().to_millis(),
        message.headers(),
    )
}

fn check_delivery(result: DeliveryResult) -> Result<(), FrameworkError> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, message))) => Err(FrameworkError::kafka(
            format!("delivering a record to {}", message.topic()),
            e,
        )),
        Err(_) => Err(FrameworkError::Runtime {
            stage: String::new(),
            message: "producer was dropped before acknowledging a record".into(),
        }),
    }
}
