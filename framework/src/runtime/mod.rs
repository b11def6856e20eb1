//! Runs a validated pipeline: every stage as tokio tasks joined through Kafka topics.
//!
//! * Sources emit into a bounded channel; the runtime produces to the output topic.
//! * Transforms and sinks are consumer-group members: one transform instance per input
//!   partition, resumed from the checkpoint committed with its offsets.
//! * Offsets are committed only after everything derived from the records is acknowledged
//!   (produced downstream, or written by the sink): at-least-once, and since outputs are
//!   deterministic and keyed, re-delivery is idempotent.
//! * A bounded source signals end of input with a marker on every partition; each stage
//!   forwards it once all its inputs ended, so a replay pipeline finishes by itself.
//! * Cancelling the shutdown token (SIGINT/SIGTERM) stops sources, drains, flushes,
//!   commits and returns.

mod checkpoint;
mod consumer;
mod deliveries;
mod flow;
pub mod kafka;
pub mod markers;
mod peers;
pub mod refusal;
mod reject;
mod revoke;
#[cfg(test)]
mod revoke_tests;
mod sink;
mod source;
pub mod topics;
mod transform;

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, Instrument};

pub use crate::observe::status::{PipelineStatus, StageState};
pub use transform::{EMIT_CHUNK, EMIT_HARD_LIMIT};

use crate::{
    connector::{Builder, StageContext},
    error::FrameworkError,
    metrics::StageMetrics,
    spec::{BatchSpec, KafkaSpec},
    suggest::did_you_mean,
    validate::ValidatedPipeline,
};

/// Everything a running stage needs to know about its place in the pipeline.
#[derive(Clone)]
pub struct StageRuntime {
    pub name: String,
    pub connector: &'static str,
    pub kafka: KafkaSpec,
    pub group: String,
    pub input_topics: Vec<String>,
    pub output: Option<String>,
    pub dead_letter: Option<String>,
    pub batch: BatchSpec,
    pub commit_interval: Duration,
    pub metrics: StageMetrics,
    pub status: PipelineStatus,
    partitions: Arc<HashMap<String, i32>>,
}

impl StageRuntime {
    fn error(&self, message: impl Into<String>) -> FrameworkError {
        FrameworkError::Runtime {
            stage: self.name.clone(),
            message: message.into(),
        }
    }

    fn partitions_of(&self, topic: &str) -> i32 {
        self.partitions.get(topic).copied().unwrap_or(1)
    }

    /// The stage's acknowledgement tracker, which dead-letters records the broker refuses
    /// instead of failing the stage, and what its rebalance hooks see of it (the producer
    /// and the deliveries in flight).
    fn deliveries(&self) -> Result<(kafka::HookView, kafka::Deliveries), FrameworkError> {
        let producer = kafka::create_producer(&self.kafka)?;
        let shared = Arc::new(std::sync::Mutex::new(producer.clone()));
        let config = kafka::producer_config(&self.kafka);
        let policy = refusal::Policy {
            stage: self.name.clone(),
            connector: self.connector,
            dead_letter: self.dead_letter.clone(),
            metrics: self.metrics.clone(),
            max_message_bytes: refusal::max_message_bytes(&config),
        };
        let deliveries =
            kafka::Deliveries::new(producer).with_refusals(policy, config, shared.clone());
        let view = kafka::HookView {
            producer: shared,
            in_flight: deliveries.in_flight(),
        };
        Ok((view, deliveries))
    }
}

/// How to run a pipeline.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stages to run in this process; empty means all of them.
    pub stages: Vec<String>,
    /// Cancelled to stop the pipeline gracefully.
    pub shutdown: CancellationToken,
    /// Updated with each stage's state (for `/health` and `/ready`).
    pub status: PipelineStatus,
}

/// Runs the pipeline until every stage finished (bounded input) or shutdown is requested.
/// A stage failure stops the others and is returned.
pub async fn run(pipeline: &ValidatedPipeline, options: RunOptions) -> Result<(), FrameworkError> {
    let spec = &pipeline.spec;
    for name in &options.stages {
        if !pipeline.stages.iter().any(|s| &s.spec.name == name) {
            return Err(FrameworkError::UnknownStage {
                name: name.clone(),
                hint: did_you_mean(name, pipeline.stages.iter().map(|s| s.spec.name.as_str())),
            });
        }
    }
    let selected: Vec<_> = pipeline
        .stages
        .iter()
        .filter(|s| options.stages.is_empty() || options.stages.contains(&s.spec.name))
        .collect();

    // Every topic the selected stages touch, except external ones, exists before they start.
    let mut wanted: Vec<(String, i32)> = Vec::new();
    for stage in &selected {
        let topics = stage
            .input_topics
            .iter()
            .chain(&stage.spec.output)
            .chain(&stage.spec.dead_letter);
        for topic in topics {
            if !wanted.iter().any(|(t, _)| t == topic) {
                wanted.push((topic.clone(), pipeline.partitions_of(topic)));
            }
        }
    }
    wanted.retain(|(t, _)| !spec.topics.get(t).is_some_and(|t| t.external));
    // Stateful transforms keep checkpoints in a topic of their own, one partition per
    // input partition.
    for stage in &selected {
        if matches!(stage.registration.builder, Builder::Transform(_)) {
            let partitions = stage
                .input_topics
                .iter()
                .map(|t| pipeline.partitions_of(t))
                .max()
                .unwrap_or(1);
            wanted.push((
                checkpoint::topic_for_group(&stage.spec.group_id(spec)),
                partitions,
            ));
        }
    }
    let partitions = Arc::new(topics::ensure_topics(spec, &wanted).await?);
    // Keyed state lives per partition number, so every input of a stage must be
    // partitioned alike: the records of a key then meet in the same partition number.
    for stage in &selected {
        let counts: Vec<(&String, i32)> = stage
            .input_topics
            .iter()
            .filter_map(|t| partitions.get(t).map(|n| (t, *n)))
            .collect();
        if counts.windows(2).any(|w| w[0].1 != w[1].1) {
            let listed: Vec<String> = counts.iter().map(|(t, n)| format!("{t} has {n}")).collect();
            return Err(FrameworkError::Runtime {
                stage: stage.spec.name.clone(),
                message: format!(
                    "its input topics are not co-partitioned ({}): give them the same number of partitions",
                    listed.join(", ")
                ),
            });
        }
    }

    let shutdown = options.shutdown.clone();
    let connector_of = |name: &str| {
        pipeline
            .stages
            .iter()
            .find(|s| s.spec.name == name)
            .map_or("", |s| s.registration.name)
    };
    let mut tasks = JoinSet::new();
    for stage in selected {
        let context = StageContext {
            pipeline: spec.name.clone(),
            stage: stage.spec.name.clone(),
            connector: stage.registration.name,
        };
        let runtime = StageRuntime {
            name: stage.spec.name.clone(),
            connector: stage.registration.name,
            kafka: spec.kafka.clone(),
            group: stage.spec.group_id(spec),
            input_topics: stage.input_topics.clone(),
            output: stage.spec.output.clone(),
            dead_letter: stage.spec.dead_letter.clone(),
            batch: stage.spec.batch.clone(),
            commit_interval: spec.kafka.commit_interval.as_std(),
            metrics: StageMetrics::new(&stage.spec.name, stage.registration.name),
            status: options.status.clone(),
            partitions: partitions.clone(),
        };
        options
            .status
            .set(&runtime.name, runtime.connector, StageState::Starting);
        let built = |source| FrameworkError::Stage {
            stage: stage.spec.name.clone(),
            connector: stage.registration.name.to_string(),
            source,
        };
        let token = shutdown.clone();
        let name = runtime.name.clone();
        // Gives every log event of the stage its stage and connector (`--log-format json`
        // enables this trace-level span; the text format stays as it was).
        let span = tracing::trace_span!(target: "stage_context", "stage", stage = %stage.spec.name, connector = stage.registration.name);
        match stage.registration.builder {
            Builder::Source(build) => {
                let source = build(&stage.spec.config, &context).map_err(built)?;
                tasks.spawn(
                    async move { (name, source::run(runtime, source, token).await) }
                        .instrument(span),
                );
            }
            Builder::Transform(build) => {
                let factory = build(&stage.spec.config, &context).map_err(built)?;
                tasks.spawn(
                    async move { (name, transform::run(runtime, factory, token).await) }
                        .instrument(span),
                );
            }
            Builder::Sink(build) => {
                let sink = build(&stage.spec.config, &context).map_err(built)?;
                tasks.spawn(
                    async move { (name, sink::run(runtime, sink, token).await) }.instrument(span),
                );
            }
        }
    }

    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((name, Ok(()))) => {
                info!(stage = %name, "stage done");
                let connector = connector_of(&name);
                options.status.set(&name, connector, StageState::Finished);
            }
            Ok((name, Err(e))) => {
                error!(stage = %name, "stage failed: {e}");
                let connector = connector_of(&name);
                options
                    .status
                    .set(&name, connector, StageState::Failed(e.to_string()));
                StageMetrics::new(&name, connector).up.set(0.0);
                shutdown.cancel();
                first_error.get_or_insert(e);
            }
            Err(e) => {
                error!("stage task panicked: {e}");
                shutdown.cancel();
                first_error.get_or_insert(FrameworkError::Runtime {
                    stage: String::new(),
                    message: format!("stage task panicked: {e}"),
                });
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
