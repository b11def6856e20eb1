//! A copy of an input record that must wait: when the prices of evicted symbols fill the
//! output, the record that evicted them is handed to the join only after they went out
//! (`emit_pending`), so every symbol's decisions stay in order.

use framework::InputRecord;

pub(crate) struct OwnedRecord {
    port: usize,
    key: Option<Box<[u8]>>,
    payload: Box<[u8]>,
    timestamp_ms: Option<i64>,
    partition: i32,
    offset: i64,
}

impl OwnedRecord {
    pub(crate) fn new(record: &InputRecord<'_>) -> Self {
        OwnedRecord {
            port: record.port,
            key: record.key.map(Box::from),
            payload: record.payload.into(),
            timestamp_ms: record.timestamp_ms,
            partition: record.partition,
            offset: record.offset,
        }
    }

    pub(crate) fn as_input(&self) -> InputRecord<'_> {
        InputRecord {
            port: self.port,
            key: self.key.as_deref(),
            payload: &self.payload,
            timestamp_ms: self.timestamp_ms,
            partition: self.partition,
            offset: self.offset,
        }
    }
}
