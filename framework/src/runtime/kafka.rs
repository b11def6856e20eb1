//! Kafka plumbing shared by every stage: client configs, topic creation, tracked
//! deliveries, end-of-input markers and dead-letter records.

use std::{collections::HashMap, time::Duration};

use futures::{stream::FuturesUnordered, StreamExt};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    error::KafkaError,
    message::{Header, Message, OwnedHeaders},
    producer::{DeliveryFuture, FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
};
use tracing::{debug, info};

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
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    for (key, value) in &kafka.properties {
        config.set(key, value.to_string());
    }
    config
}

pub fn producer_config(kafka: &KafkaSpec) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        // Idempotence keeps retried sends from duplicating or reordering records.
        .set("enable.idempotence", "true")
        // Wait at most 1 ms to fill a batch: under load, batches still form while earlier
        // requests are in flight; when idle, a record leaves at once (issue 14).
        .set("linger.ms", "1")
        .set("message.timeout.ms", "60000")
        // librdkafka buffers up to 1 GiB by default; 64 MiB keeps a stage's memory modest
        // and still far ahead of the broker.
        .set("queue.buffering.max.kbytes", "65536");
    for (key, value) in &kafka.properties {
        config.set(key, value.to_string());
    }
    config
}

pub fn consumer_config(kafka: &KafkaSpec, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", group)
        // Offsets are committed by the runtime, only after outputs are acknowledged.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        // Prefetch at most 16 MiB (default 64 MiB): enough to keep a stage busy.
        .set("queued.max.messages.kbytes", "16384")
        // Tansu holds an empty fetch for the whole wait instead of answering when data
        // arrives, so this bounds the latency of every hop (librdkafka's default is
        // 500 ms). 10 ms keeps three hops well under 50 ms; an idle consumer then sends
        // ~100 empty fetches/s (measured cost in docs/benchmarks.md).
        .set("fetch.wait.max.ms", "10")
        // Statistics feed `pipeline_consumer_lag_records` (see observe::lag).
        .set("statistics.interval.ms", "5000");
    for (key, value) in &kafka.properties {
        config.set(key, value.to_string());
    }
    config
}

pub fn create_producer(kafka: &KafkaSpec) -> Result<FutureProducer, FrameworkError> {
    producer_config(kafka).create().map_err(|e| {
        FrameworkError::kafka(
            format!("creating a producer for {}", redact(&kafka.brokers)),
            e,
        )
    })
}

/// Creates the topics that are missing, and returns the partition count of every topic.
pub async fn ensure_topics(
    kafka: &KafkaSpec,
    wanted: &[(String, i32)],
) -> Result<HashMap<String, i32>, FrameworkError> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka)
        .create()
        .map_err(|e| FrameworkError::kafka("creating an admin client", e))?;
    let topics: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(&topics, &options).await.map_err(|e| {
        FrameworkError::kafka(format!("creating topics on {}", redact(&kafka.brokers)), e)
    })?;
    for result in results {
        match result {
            Ok(name) => info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(FrameworkError::kafka(
                    format!("creating topic {name}"),
                    KafkaError::AdminOp(code),
                ))
            }
        }
    }
    let mut counts = HashMap::new();
    for (name, _) in wanted {
        counts.insert(name.clone(), partition_count(&admin, name).await?);
    }
    Ok(counts)
}

/// Partition count from metadata, waiting briefly for a just-created topic to appear.
async fn partition_count(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<i32, FrameworkError> {
    for attempt in 0..50 {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(|e| FrameworkError::kafka(format!("reading metadata of topic {topic}"), e))?;
        if let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) {
            if t.error().is_none() && !t.partitions().is_empty() {
                return Ok(t.partitions().len() as i32);
            }
        }
        debug!(topic, attempt, "waiting for topic metadata");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(FrameworkError::Runtime {
        stage: String::new(),
        message: format!("topic {topic} did not appear in the broker's metadata"),
    })
}

/// Sends records and keeps their delivery acknowledgements, so that a stage can wait until
/// everything it produced is durable before committing its input offsets.
pub struct Deliveries {
    producer: FutureProducer,
    in_flight: FuturesUnordered<DeliveryFuture>,
    delivered: u64,
}

impl Deliveries {
    pub fn new(producer: FutureProducer) -> Self {
        Deliveries {
            producer,
            in_flight: FuturesUnordered::new(),
            delivered: 0,
        }
    }

    pub fn producer(&self) -> &FutureProducer {
        &self.producer
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
            check_delivery(result)?;
            self.delivered += 1;
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

    /// Sends one record to `partition` and waits for it; returns its offset.
    pub async fn send_and_wait(
        &mut self,
        topic: &str,
        partition: i32,
        payload: &[u8],
    ) -> Result<i64, FrameworkError> {
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(partition)
            .payload(payload);
        match self.producer.send(record, Duration::from_secs(30)).await {
            Ok(delivery) => Ok(delivery.offset),
            Err((e, _)) => Err(FrameworkError::kafka(format!("producing to {topic}"), e)),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
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
        self.wait_all().await
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
