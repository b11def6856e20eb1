//! Typed errors of the framework and of connectors.

use std::path::PathBuf;

/// Errors raised by a connector at build time or while running.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The configuration is valid by schema but cannot be used (checked at start-up).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A condition that will not go away by retrying (bad symbol, permission denied...).
    #[error("{0}")]
    Fatal(String),
    /// An I/O error with what was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The runtime could not deliver an emitted record (the output side is gone).
    #[error("output closed: {0}")]
    OutputClosed(String),
}

impl ConnectorError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ConnectorError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Errors of the framework itself: loading pipelines and running them.
#[derive(Debug, thiserror::Error)]
pub enum FrameworkError {
    #[error("cannot read pipeline file {path}: {source}")]
    ReadPipeline {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no stage named {name:?} in the pipeline{hint}")]
    UnknownStage { name: String, hint: String },
    #[error("Kafka {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("stage {stage:?} ({connector}): {source}")]
    Stage {
        stage: String,
        connector: String,
        #[source]
        source: ConnectorError,
    },
    #[error("stage {stage:?}: {message}")]
    Runtime { stage: String, message: String },
    /// No usable connection to the Kafka cluster at start-up (TLS, authentication or
    /// unreachable); `reason` is librdkafka's, naming the broker.
    #[error("cannot connect to Kafka at {brokers}: {reason}")]
    Connect { brokers: String, reason: String },
}

impl FrameworkError {
    pub fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        FrameworkError::Kafka {
            context: context.into(),
            source: crate::kafka_properties::without_config_value(source),
        }
    }
}
