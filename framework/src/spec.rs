//! The pipeline file, as typed structs. Their JSON Schema (derived) is what
//! `pipeline validate` checks the file's structure against, so the doc comments here are
//! the reference documentation of the format.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{contract::JsonType, duration::DurationSpec};

/// A pipeline: Kafka connection, topics and the stages that read and write them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Name of the pipeline; the default prefix of every stage's consumer group.
    pub name: String,
    /// How to reach Kafka.
    pub kafka: KafkaSpec,
    /// Topics that need settings: partitions, or `external: true` for topics written
    /// outside this pipeline (with the record type they carry).
    #[serde(default)]
    pub topics: BTreeMap<String, TopicSpec>,
    /// The stages, each a registered connector.
    pub stages: Vec<StageSpec>,
}

/// Kafka connection and defaults.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSpec {
    /// Bootstrap servers, comma-separated `host:port` list.
    pub brokers: String,
    /// Client properties passed through to librdkafka as they are (e.g.
    /// `security.protocol`, `sasl.mechanism`, `sasl.username`, `ssl.ca.location`).
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValue>,
    /// Partitions of topics the runtime creates when they are missing (1 to 10000).
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 10_000))]
    pub partitions: i32,
    /// Replication factor of every topic the runtime creates, checkpoint topics included
    /// (1 to 32; at most the number of brokers of the cluster).
    #[serde(default = "default_replication")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor: i32,
    /// Prefix of consumer group ids (`<prefix>.<stage>`); defaults to the pipeline name.
    #[serde(default)]
    pub group_prefix: Option<String>,
    /// How often consumed offsets are committed (after everything derived from them is
    /// acknowledged downstream); 10ms to 1h.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: DurationSpec,
}

/// A librdkafka property or topic config value; numbers and booleans are passed as their
/// text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PropertyValue {
    Text(String),
    Integer(i64),
    Boolean(bool),
    Float(f64),
}

impl std::fmt::Display for PropertyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PropertyValue::Text(s) => f.write_str(s),
            PropertyValue::Integer(i) => write!(f, "{i}"),
            PropertyValue::Boolean(b) => write!(f, "{b}"),
            PropertyValue::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Settings of one topic.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Partitions when the runtime creates the topic (default: `kafka.partitions`).
    #[serde(default)]
    #[schemars(range(min = 1, max = 10_000))]
    pub partitions: Option<i32>,
    /// Replication factor when the runtime creates the topic (default:
    /// `kafka.replication_factor`).
    #[serde(default)]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor: Option<i32>,
    /// Topic configs applied when the runtime creates the topic, with Kafka's names
    /// (`retention.ms`, `cleanup.policy`, `min.insync.replicas`, ...). An existing topic
    /// keeps its own.
    #[serde(default)]
    pub config: BTreeMap<String, PropertyValue>,
    /// The topic is written outside this pipeline; stages may read it.
    #[serde(default)]
    pub external: bool,
    /// Record type carried by an external topic (default `json`: any JSON object).
    #[serde(default)]
    pub record_type: Option<String>,
    /// Fields of the topic's records and their JSON types (`{sensor: string, temp_c:
    /// number}`; dotted paths for nested fields), for topics whose writer does not declare
    /// its own: external topics, or a `file_source`'s output. `pipeline validate` checks
    /// that readers need only these; without a declaration on either side, fields are not
    /// checked.
    #[serde(default)]
    pub fields: BTreeMap<String, JsonType>,
    /// The topic is read outside this pipeline (e.g. operators inspect a dead-letter
    /// topic): `pipeline validate` then does not warn that no stage reads it.
    #[serde(default)]
    pub read_externally: bool,
}

/// One stage: a connector instance and the topics it reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Unique stage name (used in `--stage`, consumer groups and metrics).
    pub name: String,
    /// The registered connector (`pipeline connectors` lists them).
    #[serde(rename = "type")]
    pub connector: String,
    /// Shorthand for `inputs` when the connector has a single input port.
    #[serde(default)]
    pub input: Option<String>,
    /// Topic read by each input port of the connector (`port: topic`).
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Topic written by a source or transform.
    #[serde(default)]
    pub output: Option<String>,
    /// Topic that receives records this stage rejects (bad, late or unmatched records),
    /// with the reason in the `x-dead-letter-reason` header.
    #[serde(default)]
    pub dead_letter: Option<String>,
    /// Consumer group id for this stage (default `<group_prefix>.<name>`).
    #[serde(default)]
    pub group: Option<String>,
    /// Sink batching: records handed to one `write` call.
    #[serde(default)]
    pub batch: BatchSpec,
    /// The connector's own configuration (`pipeline connectors describe TYPE`).
    #[serde(default = "empty_object")]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub config: serde_json::Value,
}

/// How a sink stage groups records into writes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// Most records in one write (1 to 100000).
    #[serde(default = "default_batch_records")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_records: usize,
    /// Longest time a record waits for its batch to fill (0ms to 10m).
    #[serde(default = "default_batch_wait")]
    pub max_wait: DurationSpec,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            max_records: default_batch_records(),
            max_wait: default_batch_wait(),
        }
    }
}

fn default_partitions() -> i32 {
    3
}
fn default_replication() -> i32 {
    1
}
fn default_commit_interval() -> DurationSpec {
    DurationSpec::from_millis(1_000)
}
fn default_batch_records() -> usize {
    1_000
}
fn default_batch_wait() -> DurationSpec {
    DurationSpec::from_millis(100)
}
fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl PipelineSpec {
    /// The JSON Schema of the pipeline file.
    pub fn json_schema() -> serde_json::Value {
        crate::inline_schema::inline_schema_for::<PipelineSpec>()
    }
}

impl StageSpec {
    /// Consumer group of this stage.
    pub fn group_id(&self, pipeline: &PipelineSpec) -> String {
        self.group.clone().unwrap_or_else(|| {
            let prefix = pipeline
                .kafka
                .group_prefix
                .clone()
                .unwrap_or_else(|| pipeline.name.clone());
            format!("{prefix}.{}", self.name)
        })
    }
}
