//! The test file: `<pipeline>_test.yaml` beside `<pipeline>.yaml`. Its JSON Schema (derived
//! from these structs) checks the file, so the doc comments are its reference.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// Tests of one pipeline: records in, expected records and rejections out.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The pipeline under test, relative to this file. Default: this file's name without
    /// `_test` (`btcusdt_test.yaml` tests `btcusdt.yaml`).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Values of `${VAR}` in the pipeline. The process environment is not read, so a test
    /// gives the same result on every machine; variables left unset are allowed (sources
    /// and sinks, which usually need them, are not run).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The tests, each run on freshly built stages.
    pub tests: Vec<TestCase>,
}

/// One test: a stage or a chain of stages, its input and what must come out.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// Shown in reports.
    pub name: String,
    /// The transform stages under test, by name: one stage, or a chain in which what a
    /// stage writes flows on to the later stages that read its topic (depth first, at
    /// once). Default: every transform of the pipeline, in file order. Sources and sinks
    /// are replaced by `input` and `expect`.
    #[serde(default)]
    pub stages: Vec<String>,
    /// Input in arrival order, interleaved across topics (or ports) as it should arrive.
    pub input: Vec<TestInput>,
    /// What must come out; each expectation is checked on its own.
    pub expect: Vec<Expectation>,
}

/// One input record, or the end of every input.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestInput {
    /// Topic the record arrives on: one that the stages under test read but none of them
    /// writes. Default: the only such topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// Input port of the first stage under test (e.g. `prices`), instead of `topic`.
    #[serde(default)]
    pub port: Option<String>,
    /// Kafka message key. Default: none.
    #[serde(default)]
    pub key: Option<String>,
    /// Event time (the Kafka message timestamp): ISO 8601 (`2025-01-01T00:00:01.500Z`) or
    /// milliseconds since the Unix epoch. Default: the value's `timestamp` field.
    #[serde(default)]
    pub at: Option<Time>,
    /// The record (any JSON).
    #[serde(default)]
    pub value: Option<Value>,
    /// The record as raw bytes of text instead of `value` (e.g. malformed JSON).
    #[serde(default)]
    pub raw: Option<String>,
    /// `true`: every input ends here, as a replayed file does: each stage emits what is
    /// pending (closes its windows) once all its inputs have ended. Nothing may follow.
    #[serde(default)]
    pub end_of_input: bool,
}

/// An event time: ISO 8601 text or milliseconds since the Unix epoch.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Time {
    Millis(i64),
    Text(String),
}

impl JsonSchema for Time {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Time".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "integer"],
            "description": "ISO 8601 (`2025-01-01T00:00:01.500Z`) or milliseconds since the Unix epoch."
        })
    }
    fn inline_schema() -> bool {
        true
    }
}

/// What must come out of the stages under test: records of one topic, or rejections.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Topic whose records are checked. Default: the output topic of the last stage.
    #[serde(default)]
    pub topic: Option<String>,
    /// Only records emitted while processing input (`input`) or at the end of input
    /// (`end_of_input`). Default: all.
    #[serde(default)]
    pub when: Option<When>,
    /// Exactly these records, in this order (and no others).
    #[serde(default)]
    pub records: Option<Vec<ExpectedRecord>>,
    /// Largest absolute difference between numbers in `records` and the actual ones.
    /// Default 0: exact.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub tolerance: Option<f64>,
    /// Number of records.
    #[serde(default)]
    pub count: Option<usize>,
    /// Conditions on fields of the records.
    #[serde(default)]
    pub fields: Vec<FieldCondition>,
    /// Records a stage rejected (dead letters), instead of records of a topic.
    #[serde(default)]
    pub rejected: Option<RejectedExpectation>,
}

/// Which records of a topic an expectation looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Emitted while processing an input record.
    Input,
    /// Emitted at the end of input.
    EndOfInput,
}

/// One expected record.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRecord {
    /// Kafka message key; not compared when left out.
    #[serde(default)]
    pub key: Option<String>,
    /// Event time (Kafka timestamp); not compared when left out.
    #[serde(default)]
    pub at: Option<Time>,
    /// The record's JSON; numbers compare by value (`0` equals `0.0`).
    pub value: Value,
}

/// A condition on one field of the records.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldCondition {
    /// Which record, 0-based (`-1` is the last). Default: every record (and at least one).
    #[serde(default)]
    pub record: Option<i64>,
    /// Path of the field: `price`, `stats[0].std_price`, or an array element selected by
    /// one of its fields: `zscores[window=1m].zscore_price`.
    pub field: String,
    /// The field equals this JSON value (numbers compare by value).
    #[serde(default)]
    pub equals: Option<Value>,
    /// The field is a number within `tolerance` of this.
    #[serde(default)]
    pub approx: Option<f64>,
    /// Tolerance of `approx`, absolute. Default 1e-9.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub tolerance: Option<f64>,
    /// `true`: the field exists (any value).
    #[serde(default)]
    pub present: bool,
    /// `true`: the field does not exist.
    #[serde(default)]
    pub absent: bool,
}

/// Records rejected by the stages under test.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectedExpectation {
    /// Reason label, e.g. `late`, `unmatched`, `malformed_json`.
    pub reason: String,
    /// Stage that rejected them. Default: any stage under test.
    #[serde(default)]
    pub stage: Option<String>,
    /// How many. Default: at least one.
    #[serde(default)]
    pub count: Option<usize>,
    /// The rejected records' values, in order (numbers compare by value).
    #[serde(default)]
    pub values: Option<Vec<Value>>,
}
