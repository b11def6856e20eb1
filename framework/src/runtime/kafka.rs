//! Kafka plumbing shared by every stage: client configs, topic creation, tracked
//! deliveries, end-of-input markers and dead-letter records.

use rdkafka::{
    config::ClientConfig,
    message::{Header, OwnedHeaders},
    producer::FutureProducer,
};

use crate::{error::FrameworkError, redact::redact, spec::KafkaSpec};

/// Tracked deliveries: see `deliveries`.
pub use super::deliveries::{Deliveries, HookView, SharedProducer};
/// Control markers (end of input, progress): see `markers`.
pub use super::markers::{Writer, EOF_HEADER};
/// Headers of dead-letter records.
pub const DEAD_LETTER_REASON: &str = "x-dead-letter-reason";
pub const DEAD_LETTER_DETAIL: &str = "x-dead-letter-detail";
pub const DEAD_LETTER_STAGE: &str = "x-dead-letter-stage";
pub const DEAD_LETTER_SOURCE: &str = "x-dead-letter-source";

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
            // librdkafka buffers up to 1 GiB by default; 64 MiB keeps a stage's memory
            // modest and still far ahead of the broker. (16 MiB, with a 4 MiB prefetch,
            // cut a replay's peak RSS from 172 to 107 MiB but ran 2.4 times slower:
            // docs/benchmarks.md.)
            ("queue.buffering.max.kbytes", "65536"),
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
            // Prefetch at most 16 MiB (default 64 MiB): enough to keep a stage busy.
            ("queued.max.messages.kbytes", "16384"),
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
