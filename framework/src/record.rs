//! Records as connectors see them, and the buffer transforms emit into.

use std::fmt;

/// The contract of the records on a topic, checked between writers and readers by
/// `pipeline validate`. [`RecordType::ANY_JSON`] is compatible with every type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordType(pub &'static str);

impl RecordType {
    /// Any UTF-8 JSON object: what generic connectors (files) read and write.
    pub const ANY_JSON: RecordType = RecordType("json");
    /// Records a stage could not process, with the reason in the `x-dead-letter-reason` header.
    pub const DEAD_LETTER: RecordType = RecordType("dead-letter");

    pub fn name(self) -> &'static str {
        self.0
    }

    /// Whether records of type `written` may be read by a reader expecting `self`.
    pub fn accepts(self, written: RecordType) -> bool {
        self == written || self == Self::ANY_JSON || written == Self::ANY_JSON
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// One consumed record, borrowed from the consumer's buffer.
#[derive(Debug, Clone, Copy)]
pub struct InputRecord<'a> {
    /// Index of the input port (in the connector's declared `inputs` order).
    pub port: usize,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// Kafka timestamp (CreateTime) in ms since the epoch, when the message has one.
    pub timestamp_ms: Option<i64>,
    pub partition: i32,
    pub offset: i64,
}

/// A record to produce to the stage's output topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Becomes the Kafka message timestamp: the record's event time.
    pub timestamp_ms: i64,
}

/// A record a transform refused, to be counted by reason and dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Short, stable, snake_case reason used as a metric label (`malformed_json`, `late`...).
    pub reason: &'static str,
    /// Human-readable details for the log line and the dead-letter header.
    pub detail: String,
    pub port: usize,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub timestamp_ms: Option<i64>,
}

/// Where a transform puts its results for one call; the runtime drains it.
#[derive(Debug, Default)]
pub struct Emitter {
    pub records: Vec<OutputRecord>,
    pub rejected: Vec<Rejected>,
}

impl Emitter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn emit(&mut self, key: Option<Vec<u8>>, payload: Vec<u8>, timestamp_ms: i64) {
        self.records.push(OutputRecord {
            key,
            payload,
            timestamp_ms,
        });
    }

    /// Skips `record`: it is counted under `reason` and copied to the dead-letter topic.
    pub fn reject(&mut self, record: &InputRecord<'_>, reason: &'static str, detail: String) {
        self.rejected.push(Rejected {
            reason,
            detail,
            port: record.port,
            key: record.key.map(<[u8]>::to_vec),
            payload: record.payload.to_vec(),
            timestamp_ms: record.timestamp_ms,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.rejected.is_empty()
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.rejected.clear();
    }
}
