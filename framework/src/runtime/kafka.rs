//! Kafka plumbing shared by every stage: client configs, topic creation, tracked
//! deliveries, end-of-input markers and dead-letter records.

use std::time::Duration;

use futures::{stream::FuturesUnordered, StreamExt};
use rdkafka::{
    config::ClientConfig,
    error::KafkaError,
    message::{Header, Message, OwnedHeaders},
    producer::{DeliveryFuture, FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
};

use tracing::debug;

use crate::{error::FrameworkError, redact::redact, spec::KafkaSpec};

/// Control markers (end of input, progress): see `markers`.
pub use super::markers::{Writer, EOF_HEADER};
/// Headers of dead-letter records.
pub const DEAD_LETTER_REASON: &str = "x-dead-letter-reason";
pub const DEAD_LETTER_DETAIL: &str = "x-dead-letter-detail";
pub const DEAD_LETTER_STAGE: &str = "x-dead-letter-stage";
pub const DEAD_LETTER_SOURCE: &str = "x-dead-letter-source";

/// Most deliveries in flight before a stage waits for acknowledgements.
const MAX_IN_FLIGHT: usize = 10_000;

/// Base client config: brokers plus the user's pass-through properties.
pub fn client_config(kafka: &KafkaSpec) -> ClientConfig {
    config_with(kafka, &[])
}

/// Brokers, then the runtime's `defaults`, then the user's pass-through properties.
fn config_with(kafka: &KafkaSpec, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in &kafka.properties {
        config.set(key, value.to_string());
    }
    config
}

pub fn producer_config(kafka: &KafkaSpec) -> ClientConfig {
    config_with(
        kafka,
        &[
            // Idempotence keeps retried sends from duplicating or reordering records.
            ("enable.idempotence", "true"),
            // Wait at most 1 ms to fill a batch: under load, batches still form while
            // earlier requests are in flight; when idle, a record leaves at once (issue 14).
            ("linger.ms", "1"),
            ("message.timeout.ms", "60000"),
            // librdkafka buffers up to 1 GiB by default; 16 MiB (~50,000 records of
            // 300 bytes) is still far ahead of the broker and keeps a process of four
            // stages under 200 MB however much input waits (docs/benchmarks.md).
            ("queue.buffering.max.kbytes", "16384"),
        ],
    )
}

pub fn consumer_config(kafka: &KafkaSpec, group: &str) -> ClientConfig {
    config_with(
        kafka,
        &[
            ("group.id", group),
            // Offsets are committed by the runtime, only after outputs are acknowledged.
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("partition.assignment.strategy", "range"),
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "1000"),
            // Prefetch at most 4 MiB per consumer (default 64 MiB): ~13,000 records of
            // 300 bytes, enough to keep a stage busy between fetches.
            ("queued.max.messages.kbytes", "4096"),
            // Tansu holds an empty fetch for the whole wait instead of answering when data
            // arrives, so this bounds the latency of every hop (librdkafka's default is
            // 500 ms). 10 ms keeps three hops well under 50 ms; an idle consumer then sends
            // ~100 empty fetches/s (measured cost in docs/benchmarks.md).
            ("fetch.wait.max.ms", "10"),
            // Statistics feed `pipeline_consumer_lag_records` (see observe::lag).
            ("statistics.interval.ms", "5000"),
        ],
    )
}

pub fn create_producer(kafka: &KafkaSpec) -> Result<FutureProducer, FrameworkError> {
    producer_config(kafka).create().map_err(|e| {
        FrameworkError::kafka(
            format!("creating a producer for {}", redact(&kafka.brokers)),
            e,
        )
    })
}

/// Sends records and keeps their delivery acknowledgements, so that a stage can wait until
/// everything it produced is durable before committing its input offsets.
pub struct Deliveries {
    producer: FutureProducer,
    in_flight: FuturesUnordered<DeliveryFuture>,
    /// What to do with records too large for the broker; without it they fail the stage.
    oversize: Option<super::oversize::Policy>,
}

impl Deliveries {
    pub fn new(producer: FutureProducer) -> Self {
        Deliveries {
            producer,
            in_flight: FuturesUnordered::new(),
            oversize: None,
        }
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

    /// Records too large for the broker are dead-lettered truncated (or counted and
    /// dropped) as `policy` says, instead of failing the stage.
    pub fn with_oversize(mut self, policy: super::oversize::Policy) -> Self {
        self.oversize = Some(policy);
        self
    }

    /// Dead-letters a truncated copy of a record refused as too large, or counts and
    /// drops it. Never fails: the stage keeps running.
    async fn refuse_too_large(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        timestamp_ms: Option<i64>,
        headers: Option<&OwnedHeaders>,
    ) {
        let Some(policy) = self.oversize.clone() else {
            return;
        };
        let dead_letter = match &policy.dead_letter {
            Some(dlq) if !super::oversize::is_truncated_copy(headers) => dlq,
            _ => return policy.count(topic, payload.len(), false),
        };
        let copy = policy.copy(topic, key, payload, headers);
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dead_letter)
                .payload(copy.payload.as_slice())
                .headers(copy.headers.clone());
            if let Some(key) = &copy.key {
                record = record.key(key.as_slice());
            }
            if let Some(ts) = timestamp_ms {
                record = record.timestamp(ts);
            }
            match self.producer.send_result(record) {
                Ok(future) => {
                    self.in_flight.push(future);
                    return policy.count(topic, payload.len(), true);
                }
                // The queue drains in the background; waiting here on acknowledgements
                // would recurse into this function.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    debug!(topic = %dead_letter, "truncated copy refused too: {e}");
                    return policy.count(topic, payload.len(), false);
                }
            }
        }
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
        loop {
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
            if let Some(h) = headers.clone() {
                record = record.headers(h);
            }
            match self.producer.send_result(record) {
                Ok(future) => {
                    self.in_flight.push(future);
                    if self.in_flight.len() >= MAX_IN_FLIGHT {
                        self.wait_one().await?;
                    }
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _))
                    if self.oversize.is_some() =>
                {
                    let payload = payload.unwrap_or_default();
                    self.refuse_too_large(topic, key, payload, timestamp_ms, headers.as_ref())
                        .await;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if self.in_flight.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    } else {
                        self.wait_one().await?;
                    }
                }
                Err((e, _)) => {
                    return Err(FrameworkError::kafka(format!("producing to {topic}"), e))
                }
            }
        }
    }

    async fn wait_one(&mut self) -> Result<(), FrameworkError> {
        if let Some(result) = self.in_flight.next().await {
            // The broker may accept less than the producer's `message.max.bytes`.
            if let Ok(Err((
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                message,
            ))) = &result
            {
                if self.oversize.is_some() {
                    let headers = message.headers().cloned();
                    self.refuse_too_large(
                        message.topic(),
                        message.key(),
                        message.payload().unwrap_or_default(),
                        message.timestamp().to_millis(),
                        headers.as_ref(),
                    )
                    .await;
                    return Ok(());
                }
            }
            check_delivery(result)?;
        }
        Ok(())
    }

    /// Waits until every record sent so far is acknowledged by the broker.
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
        match self.producer.send(record, Duration::from_secs(30)).await {
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
        let headers = super::markers::end_headers(writer);
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
        let headers = super::markers::progress_headers(writer, event_ms);
        self.send_marker(topic, partitions, headers).await
    }
}

type DeliveryResult = Result<
    rdkafka::producer::future_producer::OwnedDeliveryResult,
    futures::channel::oneshot::Canceled,
>;

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

/// Headers of a dead-letter copy.
pub fn dead_letter_headers(stage: &str, reason: &str, detail: &str, source: &str) -> OwnedHeaders {
    // A detail may quote configuration (e.g. a connection string): never a secret.
    let detail = redact(detail);
    let detail = detail.as_str();
    OwnedHeaders::new()
        .insert(Header {
            key: DEAD_LETTER_REASON,
            value: Some(reason.as_bytes()),
        })
        .insert(Header {
            key: DEAD_LETTER_DETAIL,
            value: Some(detail.as_bytes()),
        })
        .insert(Header {
            key: DEAD_LETTER_STAGE,
            value: Some(stage.as_bytes()),
        })
        .insert(Header {
            key: DEAD_LETTER_SOURCE,
            value: Some(source.as_bytes()),
        })
}
