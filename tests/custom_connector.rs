//! A connector defined only inside this test: registering it is one `register_transform!`
//! line, after which validation, `describe` data and the Kafka runtime all know it.

mod common;

use std::{collections::HashMap, time::Duration};

use framework::{
    connector::{InputPort, StageContext, Transform, TransformConnector},
    runtime::{self, RunOptions},
    validate::validate_source,
    ConfigIssue, ConnectorConfig, ConnectorError, ConnectorRegistration, Emitter, InputRecord,
    RecordType,
};
use schemars::JsonSchema;
use serde::Deserialize;

// The built-in file connectors, for the replay around the custom transform.
extern crate connector_file;

/// Counts records per value of a field.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CountConfig {
    /// Field whose value is counted.
    field: String,
}

impl ConnectorConfig for CountConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        if self.field.is_empty() {
            vec![ConfigIssue::new("field", "field is empty")]
        } else {
            Vec::new()
        }
    }
}

struct CountPerKey;

struct Counter {
    field: String,
    counts: HashMap<String, u64>,
}

impl TransformConnector for CountPerKey {
    type Config = CountConfig;
    const NAME: &'static str = "test_count_per_key";
    const SUMMARY: &'static str = "Emits a running count per value of a field";
    const INPUTS: &'static [InputPort] = &[InputPort {
        name: "input",
        record_type: RecordType::ANY_JSON,
    }];
    const OUTPUT: RecordType = RecordType("test-count");

    fn build(
        config: &CountConfig,
        _stage: &StageContext,
    ) -> Result<Box<dyn Transform>, ConnectorError> {
        Ok(Box::new(Counter {
            field: config.field.clone(),
            counts: HashMap::new(),
        }))
    }
}

framework::register_transform!(CountPerKey);

impl Transform for Counter {
    fn process(&mut self, record: &InputRecord<'_>, out: &mut Emitter) {
        let value: serde_json::Value = match serde_json::from_slice(record.payload) {
            Ok(v) => v,
            Err(e) => return out.reject(record, "malformed_json", e.to_string()),
        };
        let Some(key) = value.get(&self.field).and_then(|v| v.as_str()) else {
            return out.reject(record, "missing_field", format!("no {}", self.field));
        };
        let n = self.counts.entry(key.to_string()).or_default();
        *n += 1;
        let payload = serde_json::json!({"key": key, "n": *n})
            .to_string()
            .into_bytes();
        out.emit(
            Some(key.as_bytes().to_vec()),
            payload,
            record.timestamp_ms.unwrap_or_default(),
        );
    }

    // The whole state is small, so it travels with the committed offsets.
    fn checkpoint(&self) -> Option<String> {
        serde_json::to_string(&self.counts).ok()
    }

    fn resume(
        &mut self,
        checkpoint: Option<&str>,
    ) -> Result<framework::connector::Resume, ConnectorError> {
        if let Some(text) = checkpoint {
            self.counts = serde_json::from_str(text)
                .map_err(|e| ConnectorError::Fatal(format!("bad checkpoint: {e}")))?;
        }
        Ok(framework::connector::Resume::FromCommitted)
    }
}

fn pipeline_text(topic: &str, connector: &str) -> String {
    format!(
        r#"name: {name}
kafka:
  brokers: ${{KAFKA_BROKERS:-127.0.0.1:9092}}
stages:
  - name: read
    type: file_source
    output: {topic}-in
    config: {{ path: "${{IN_FILE:-in.jsonl}}", key_field: symbol }}
  - name: count
    type: {connector}
    input: {topic}-in
    output: {topic}-counts
    dead_letter: {topic}-dead
    config: {{ field: symbol }}
  - name: write
    type: file_sink
    input: {topic}-counts
    config: {{ path: "${{OUT_FILE:-out.jsonl}}" }}
"#,
        name = common::unique("custom")
    )
}

#[test]
fn a_connector_defined_in_a_test_is_registered_and_described() {
    let registration =
        ConnectorRegistration::find("test_count_per_key").expect("registered by the test");
    assert_eq!(registration.inputs.len(), 1);
    let schema = (registration.schema)();
    assert_eq!(
        schema["properties"]["field"]["description"],
        "Field whose value is counted."
    );
}

#[test]
fn validation_knows_the_test_connector_and_suggests_its_name() {
    let env = |_: &str| None;
    let valid = validate_source("p.yaml", &pipeline_text("t", "test_count_per_key"), &env);
    assert!(valid.is_ok(), "{:?}", valid.err());
    let invalid = validate_source("p.yaml", &pipeline_text("t", "test_count_per_kye"), &env)
        .expect_err("misspelled type");
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0].path, "stages[1].type");
    assert!(
        invalid[0]
            .message
            .contains("did you mean \"test_count_per_key\""),
        "{}",
        invalid[0].message
    );
    assert_eq!((invalid[0].line, invalid[0].column), (10, 11));
}

#[test]
fn the_test_connector_runs_through_kafka_between_file_connectors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    let mut text = String::new();
    for i in 0..3_000 {
        let symbol = ["A", "B", "C"][i % 3];
        text.push_str(&format!("{{\"symbol\":\"{symbol}\",\"i\":{i}}}\n"));
    }
    text.push_str("{\"i\": 1}\n");
    std::fs::write(&input, text).expect("write");
    let brokers = common::kafka_brokers();
    let env = move |name: &str| match name {
        "KAFKA_BROKERS" => Some(brokers.clone()),
        "IN_FILE" => Some(input.display().to_string()),
        "OUT_FILE" => Some(output.display().to_string()),
        _ => None,
    };
    let pipeline = validate_source(
        "p.yaml",
        &pipeline_text(&common::unique("count"), "test_count_per_key"),
        &env,
    )
    .expect("valid");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(90),
                runtime::run(&pipeline, RunOptions::default()),
            )
            .await
        })
        .expect("finished in time")
        .expect("pipeline ran");
    let lines = common::read_lines(&dir.path().join("out.jsonl"));
    assert_eq!(
        lines.len(),
        3_000,
        "the record without the field was rejected, the rest counted"
    );
    for key in ["A", "B", "C"] {
        let mut counts: Vec<u64> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["key"] == key)
            .filter_map(|v| v["n"].as_u64())
            .collect();
        counts.sort_unstable();
        assert_eq!(
            counts,
            (1..=1_000).collect::<Vec<u64>>(),
            "running counts of {key}"
        );
    }
}
