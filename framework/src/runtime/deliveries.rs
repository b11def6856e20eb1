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
//! The deliveries in flight are shared with the rebalance hooks (`in_flight`), so that a
//! revoke does not commit past a failure the stage has not recovered yet either.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use rdkafka::{
    config::ClientConfig,
    error::KafkaError,
    message::{Message, OwnedHeaders, OwnedMessage},
    producer::{DeliveryFuture, FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
};

use super::{
    kafka::Writer,
    markers,
    refusal::{self, Failure, Refusal},
};
use crate::error::FrameworkError;

mod in_flight;
mod recover;

pub use in_flight::{InFlight, Outcomes};

/// Most deliveries in flight before a stage waits for acknowledgements.
const MAX_IN_FLIGHT: usize = 10_000;
/// How long a record resent alone (or a checkpoint) may take to be acknowledged.
const SEND_ALONE_TIMEOUT: Duration = Duration::from_secs(30);

/// The producer a stage currently uses, shared with its rebalance hooks: it is replaced
/// when librdkafka made it fatal.
pub type SharedProducer = Arc<Mutex<FutureProducer>>;

/// What a stage's rebalance hooks see of its deliveries: the producer to flush, and the
/// deliveries in flight, whose failures the stage may not have recovered yet.
#[derive(Clone)]
pub struct HookView {
    pub producer: SharedProducer,
    pub in_flight: InFlight,
}

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
    in_flight: InFlight,
    next_seq: u64,
    /// What to do with records the broker refuses; without it they fail the stage.
    refusals: Option<refusal::Policy>,
}

impl Deliveries {
    pub fn new(producer: FutureProducer) -> Self {
        Deliveries {
            producer,
            recreate: None,
            in_flight: InFlight::default(),
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

    /// The deliveries in flight, for the stage's rebalance hooks.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
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
