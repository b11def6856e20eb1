//! Creating the topics a pipeline needs: partitions, replication factor and topic configs
//! from the pipeline file, compacted checkpoint topics, and a start-up connection check
//! that fails fast with the broker's TLS or authentication error instead of retrying
//! forever.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::ClientContext,
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, DeliveryResult, Producer, ProducerContext},
};
use tracing::{debug, error, info, warn};

use crate::{error::FrameworkError, redact::redact, spec::PipelineSpec};

use super::{checkpoint, kafka::client_config};

/// How long start-up waits for a reachable broker before giving up (TLS and
/// authentication failures end the wait at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A checkpoint is only read back at its committed offset, so compaction must never
/// remove a record that may still be the committed one: a newer checkpoint of the same
/// partition exists only between its write and the offset commit that follows (seconds).
const CHECKPOINT_MIN_COMPACTION_LAG_MS: &str = "86400000";

/// One topic as the runtime creates it when it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlan {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    /// Topic configs, Kafka names and values as text.
    pub config: Vec<(String, String)>,
}

/// How each wanted `(topic, partitions)` is created: replication and configs from the
/// pipeline file; checkpoint topics are compacted (a checkpoint of an idle partition must
/// not expire with time-based retention).
pub fn plan(spec: &PipelineSpec, wanted: &[(String, i32)]) -> Vec<TopicPlan> {
    let checkpoint_topics: Vec<String> = spec
        .stages
        .iter()
        .map(|s| checkpoint::topic_for_group(&s.group_id(spec)))
        .collect();
    wanted
        .iter()
        .map(|(name, partitions)| {
            let declared = spec.topics.get(name);
            let mut config: Vec<(String, String)> = Vec::new();
            if checkpoint_topics.contains(name) {
                config.push(("cleanup.policy".into(), "compact".into()));
                config.push((
                    "min.compaction.lag.ms".into(),
                    CHECKPOINT_MIN_COMPACTION_LAG_MS.into(),
                ));
            }
            for (key, value) in declared.map(|t| &t.config).into_iter().flatten() {
                config.retain(|(k, _)| k != key);
                config.push((key.clone(), value.to_string()));
            }
            TopicPlan {
                name: name.clone(),
                partitions: *partitions,
                replication: declared
                    .and_then(|t| t.replication_factor)
                    .unwrap_or(spec.kafka.replication_factor),
                config,
            }
        })
        .collect()
}

/// Client context that keeps librdkafka's last connection-level errors, so that a
/// failed start can say which broker refused and why (e.g. the TLS handshake error).
#[derive(Clone, Default)]
struct ErrorRecorder {
    errors: Arc<Mutex<Vec<ClientError>>>,
}

/// One connection-level error: librdkafka's code, if any, and its reason.
type ClientError = (Option<RDKafkaErrorCode>, String);

impl ClientContext for ErrorRecorder {
    fn error(&self, error: KafkaError, reason: &str) {
        debug!("kafka client error: {}", redact(reason));
        self.record(error.rdkafka_error_code(), reason);
    }

    /// librdkafka reports a failed TLS handshake only as a `FAIL` log line, not as an
    /// error event, so those lines are recorded too.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let message = redact(message);
        if fac == "FAIL" {
            self.record(None, &message);
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => error!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Warning => warn!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(target: "librdkafka", "{fac} {message}")
            }
            RDKafkaLogLevel::Debug => debug!(target: "librdkafka", "{fac} {message}"),
        }
    }
}

/// Only for the start-up probe, which never sends: polling a producer is what delivers
/// librdkafka's connection errors to [`ClientContext::error`] (an admin client never
/// polls its main queue, so it would never see them).
impl ProducerContext for ErrorRecorder {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl ErrorRecorder {
    fn record(&self, code: Option<RDKafkaErrorCode>, reason: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: the first errors say why; later ones repeat them.
        if errors.len() < 64 {
            errors.push((code, reason.to_string()));
        }
    }

    /// The first error that retrying will not fix: a TLS or SASL failure.
    fn fatal(&self) -> Option<String> {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        errors
            .iter()
            .find(|(code, reason)| {
                matches!(
                    code,
                    Some(RDKafkaErrorCode::SSL | RDKafkaErrorCode::Authentication)
                ) || reason.contains("SSL handshake failed")
                    || reason.contains("SASL authentication")
            })
            .map(|(_, reason)| reason.clone())
    }

    fn last(&self) -> Option<String> {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        errors.last().map(|(_, reason)| reason.clone())
    }
}

/// Checks that a broker answers, then creates the topics that are missing, and returns
/// the partition count of every wanted topic.
pub async fn ensure_topics(
    spec: &PipelineSpec,
    wanted: &[(String, i32)],
) -> Result<HashMap<String, i32>, FrameworkError> {
    let kafka = &spec.kafka;
    let brokers = redact(&kafka.brokers);
    let recorder = ErrorRecorder::default();
    let admin: AdminClient<ErrorRecorder> = client_config(kafka)
        .create_with_context(recorder.clone())
        .map_err(|e| FrameworkError::kafka(format!("creating an admin client for {brokers}"), e))?;
    let probe: BaseProducer<ErrorRecorder> = client_config(kafka)
        .create_with_context(recorder.clone())
        .map_err(|e| FrameworkError::kafka(format!("creating a client for {brokers}"), e))?;
    connect(&probe, &recorder, &brokers).await?;
    drop(probe);

    let plans = plan(spec, wanted);
    let topics: Vec<NewTopic<'_>> = plans
        .iter()
        .map(|p| {
            p.config.iter().fold(
                NewTopic::new(
                    &p.name,
                    p.partitions,
                    TopicReplication::Fixed(p.replication),
                ),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|e| FrameworkError::kafka(format!("creating topics on {brokers}"), e))?;
    for result in results {
        match result {
            Ok(name) => info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                let plan = plans.iter().find(|p| p.name == name);
                let detail = plan
                    .map(|p| {
                        format!(
                            " ({} partitions, replication factor {})",
                            p.partitions, p.replication
                        )
                    })
                    .unwrap_or_default();
                return Err(FrameworkError::kafka(
                    format!("creating topic {name}{detail} on {brokers}"),
                    KafkaError::AdminOp(code),
                ));
            }
        }
    }
    let mut counts = HashMap::new();
    for (name, _) in wanted {
        counts.insert(name.clone(), partition_count(&admin, name).await?);
    }
    Ok(counts)
}

/// Waits until the cluster answers a metadata request. A TLS or authentication failure
/// ends the wait at once with librdkafka's reason (which names the broker); an
/// unreachable cluster ends it after [`CONNECT_TIMEOUT`].
async fn connect(
    probe: &BaseProducer<ErrorRecorder>,
    recorder: &ErrorRecorder,
    brokers: &str,
) -> Result<(), FrameworkError> {
    let started = Instant::now();
    loop {
        let attempt = probe
            .client()
            .fetch_metadata(None, Duration::from_millis(500));
        // Delivers the connection errors raised meanwhile to the recorder.
        probe.poll(Duration::ZERO);
        match attempt {
            Ok(_) => return Ok(()),
            Err(e) => {
                if let Some(reason) = recorder.fatal() {
                    return Err(FrameworkError::Connect {
                        brokers: brokers.to_string(),
                        reason: redact(&reason),
                    });
                }
                if started.elapsed() >= CONNECT_TIMEOUT {
                    let reason = recorder.last().unwrap_or_else(|| e.to_string());
                    return Err(FrameworkError::Connect {
                        brokers: brokers.to_string(),
                        reason: format!(
                            "no answer within {}s: {}",
                            CONNECT_TIMEOUT.as_secs(),
                            redact(&reason)
                        ),
                    });
                }
                warn!(
                    brokers,
                    "waiting for the Kafka cluster: {}",
                    redact(&e.to_string())
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Partition count from metadata, waiting briefly for a just-created topic to appear.
async fn partition_count(
    admin: &AdminClient<ErrorRecorder>,
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

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"
name: p
kafka:
  brokers: b:1
  replication_factor: 3
topics:
  prices:
    replication_factor: 2
    config: { retention.ms: 3600000, cleanup.policy: delete }
  p.stats.checkpoints:
    config: { min.compaction.lag.ms: 1000 }
stages:
  - { name: read, type: file_source, output: prices, config: { path: x } }
  - { name: stats, type: moving_stats, input: prices, output: stats, config: {} }
"#;

    #[test]
    fn created_topics_get_the_replication_factor_and_configs_of_the_pipeline_file() {
        let spec: PipelineSpec = serde_yaml::from_str(PIPELINE).unwrap();
        let wanted = vec![
            ("prices".to_string(), 3),
            ("stats".to_string(), 3),
            ("p.stats.checkpoints".to_string(), 3),
        ];
        let plans = plan(&spec, &wanted);
        assert_eq!(plans[0].replication, 2);
        assert_eq!(
            plans[0].config,
            vec![
                ("cleanup.policy".to_string(), "delete".to_string()),
                ("retention.ms".to_string(), "3600000".to_string())
            ]
        );
        assert_eq!((plans[1].replication, plans[1].config.len()), (3, 0));
        // Checkpoint topics: the pipeline's replication, compacted, the file's override kept.
        assert_eq!(plans[2].replication, 3);
        assert_eq!(
            plans[2].config,
            vec![
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("min.compaction.lag.ms".to_string(), "1000".to_string())
            ]
        );
    }
}
