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
///
/// An emitter made by [`Emitter::with_limit`] is *full* at `limit` records (or rejections): a transform
/// that can produce many records from one call (a watermark jump, end of input, a join
/// resolving buffered probes) checks [`Emitter::is_full`] before each record and, when
/// full, stops and keeps the rest pending. The runtime produces what was emitted and calls
/// [`Transform::emit_pending`](crate::Transform::emit_pending) while the previous call
/// left the emitter full, so output is streamed in chunks of `limit` records as the
/// producer accepts them, never materialised whole. [`Emitter::new`] has no limit
/// (tests and in-process tools that want everything at once).
#[derive(Debug)]
pub struct Emitter {
    pub records: Vec<OutputRecord>,
    pub rejected: Vec<Rejected>,
    limit: usize,
}

impl Default for Emitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Emitter {
    /// An emitter that is never full.
    pub fn new() -> Self {
        Self::with_limit(usize::MAX)
    }

    /// An emitter that is full at `limit` records (at least 1).
    pub fn with_limit(limit: usize) -> Self {
        Emitter {
            records: Vec::new(),
            rejected: Vec::new(),
            limit: limit.max(1),
        }
    }

    /// Records after which the emitter is full.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether a transform must stop emitting and keep the rest for `emit_pending`
    /// (records and rejections both count).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len() >= self.limit
    }

    /// Records and rejections held.
    pub fn len(&self) -> usize {
        self.records.len() + self.rejected.len()
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
