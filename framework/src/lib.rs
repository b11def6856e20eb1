//! Generic runtime of the pipeline connector framework.
//!
//! It knows no concrete connector: connectors register themselves with
//! [`inventory::submit!`] (see [`connector`]) and the runtime wires them through Kafka
//! topics as a YAML pipeline file declares.
//!
//! * [`spec`] and [`validate`]: the pipeline file and its pure, I/O-free validation.
//! * [`connector`]: the `Source`, `Transform` and `Sink` traits and the registry.
//! * [`runtime`]: runs validated pipelines against a Kafka-protocol broker.
//! * [`event_time`] and [`join`]: deterministic event-time cores (windows, watermarks,
//!   joins) that windowed connectors reuse.

pub mod connector;
pub mod contract;
pub mod duration;
pub mod error;
pub mod event_time;
pub mod formats;
pub mod inline_schema;
pub mod interpolate;
pub mod join;
pub mod json;
pub mod kafka_properties;
pub mod metrics;
pub mod observe;
pub mod pipeline_test;
pub mod record;
pub mod redact;
pub mod retry;
pub mod retype;
pub mod runtime;
pub mod schema;
mod schema_text;
pub mod settings;
pub mod spec;
pub mod suggest;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod validate;
pub mod yaml;

/// Re-exported so connector crates register with the same `inventory` version.
pub use inventory;
pub use schemars;

pub use connector::{
    ConfigIssue, ConnectorConfig, ConnectorKind, ConnectorRegistration, InputPort, Sink,
    SinkConnector, SinkContext, Source, SourceConnector, SourceContext, SourceEnd, Transform,
    TransformConnector, ValidationContext, WriteOutcome,
};
pub use duration::DurationSpec;
pub use error::{ConnectorError, FrameworkError};
pub use record::{Emitter, InputRecord, OutputRecord, RecordType};

/// The README's connector example compiles (checked by `cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}
