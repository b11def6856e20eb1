//! A small bounded ring of recent records per topic, for `pipeline tap` and the web view.
//!
//! The runtime calls [`written`] for every record it produces and [`read`] for every record
//! it consumes. While nobody taps, that is one relaxed atomic load: the rings fill only
//! after a client asked for records within the last [`IDLE_AFTER`], and are emptied again
//! when clients stop asking. Each ring keeps at most [`MAX_PER_SECOND`] records per second
//! (server-side sampling, so a client polling at 1,000 records/s gets a bounded answer) and
//! counts the records it skipped, so clients can show the sampling.
//!
//! Only payloads pass through here (never headers, so no credentials), each cut to
//! [`MAX_PAYLOAD`] bytes; memory is bounded by topics × [`CAPACITY`] × [`MAX_PAYLOAD`].

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// Records kept per topic.
pub const CAPACITY: usize = 512;
/// Records kept per topic and second; the rest are counted as skipped.
pub const MAX_PER_SECOND: u32 = 50;
/// Longest payload kept (longer ones are cut, and marked so).
pub const MAX_PAYLOAD: usize = 4096;
/// Topics tapped at most (a pipeline has a handful; this bounds memory whatever happens).
pub const MAX_TOPICS: usize = 64;
/// The rings stop filling (and are emptied) this long after the last client request.
pub const IDLE_AFTER: Duration = Duration::from_secs(30);

static ACTIVE: AtomicBool = AtomicBool::new(false);
static TAP: OnceLock<Tap> = OnceLock::new();

/// One record as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TapRecord {
    /// Position in the topic's tap stream (counts every record seen, kept or skipped).
    pub seq: u64,
    /// Event time (the Kafka timestamp) in ms since the epoch, when the record has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<String>,
    /// The payload, as JSON when it parses, else as a (lossy UTF-8) string.
    pub value: serde_json::Value,
    /// Whether the payload was cut to [`MAX_PAYLOAD`] bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// An answer to a tap request: the kept records after a position, and how many were seen.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TapBatch {
    pub topic: String,
    /// Sequence number of the newest record seen (a client's next `after`).
    pub last_seq: u64,
    /// Records seen after the requested position (kept or skipped).
    pub seen: u64,
    /// Records of those that were kept (`seen - kept` were skipped by sampling or fell out
    /// of the ring before this request).
    pub kept: u64,
    pub records: Vec<TapRecord>,
}

struct Stored {
    seq: u64,
    timestamp_ms: Option<i64>,
    key: Option<String>,
    payload: String,
    truncated: bool,
}

#[derive(Default)]
struct Ring {
    seq: u64,
    records: VecDeque<Stored>,
    second: Option<Instant>,
    kept_this_second: u32,
}

impl Ring {
    fn push(&mut self, key: Option<&[u8]>, payload: &[u8], timestamp_ms: Option<i64>) {
        self.seq += 1;
        let now = Instant::now();
        match self.second {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {
                if self.kept_this_second >= MAX_PER_SECOND {
                    return;
                }
            }
            _ => {
                self.second = Some(now);
                self.kept_this_second = 0;
            }
        }
        self.kept_this_second += 1;
        if self.records.len() >= CAPACITY {
            self.records.pop_front();
        }
        let truncated = payload.len() > MAX_PAYLOAD;
        self.records.push_back(Stored {
            seq: self.seq,
            timestamp_ms,
            key: key.map(|k| String::from_utf8_lossy(&k[..k.len().min(256)]).into_owned()),
            payload: String::from_utf8_lossy(&payload[..payload.len().min(MAX_PAYLOAD)])
                .into_owned(),
            truncated,
        });
    }

    fn batch(&self, topic: &str, after: u64, limit: usize) -> TapBatch {
        // A client from before a reset (or a made-up position) starts over.
        let after = if after > self.seq { 0 } else { after };
        let newer: Vec<&Stored> = self.records.iter().filter(|r| r.seq > after).collect();
        let kept = newer.len() as u64;
        let records = newer[newer.len().saturating_sub(limit)..]
            .iter()
            .map(|r| TapRecord {
                seq: r.seq,
                timestamp_ms: r.timestamp_ms,
                key: r.key.clone(),
                value: if r.truncated {
                    serde_json::Value::String(r.payload.clone())
                } else {
                    serde_json::from_str(&r.payload)
                        .unwrap_or_else(|_| serde_json::Value::String(r.payload.clone()))
                },
                truncated: r.truncated,
            })
            .collect();
        TapBatch {
            topic: topic.to_string(),
            last_seq: self.seq,
            seen: self.seq - after,
            kept,
            records,
        }
    }
}

struct Tap {
    /// Topics a stage of this process writes: their records are tapped where produced, so
    /// reading them back is not tapped twice.
    written_here: HashSet<String>,
    /// Topics clients may tap (the pipeline's); anything else is refused.
    known: HashSet<String>,
    rings: Mutex<BTreeMap<String, Ring>>,
    last_request: Mutex<Option<Instant>>,
}

/// Enables tapping for a pipeline whose topics are `known`, of which this process writes
/// `written_here`. Without it (e.g. in tests of the runtime) the hooks do nothing.
/// A second call keeps the first configuration.
pub fn install(
    known: impl IntoIterator<Item = String>,
    written_here: impl IntoIterator<Item = String>,
) {
    let _ = TAP.set(Tap {
        written_here: written_here.into_iter().collect(),
        known: known.into_iter().take(MAX_TOPICS).collect(),
        rings: Mutex::new(BTreeMap::new()),
        last_request: Mutex::new(None),
    });
}

/// A record the runtime produced to `topic`.
#[inline]
pub fn written(topic: &str, key: Option<&[u8]>, payload: &[u8], timestamp_ms: Option<i64>) {
    if ACTIVE.load(Ordering::Relaxed) {
        keep(topic, key, payload, timestamp_ms, true);
    }
}

/// A record the runtime consumed from `topic`.
#[inline]
pub fn read(topic: &str, key: Option<&[u8]>, payload: &[u8], timestamp_ms: Option<i64>) {
    if ACTIVE.load(Ordering::Relaxed) {
        keep(topic, key, payload, timestamp_ms, false);
    }
}

#[cold]
fn keep(topic: &str, key: Option<&[u8]>, payload: &[u8], timestamp_ms: Option<i64>, out: bool) {
    let Some(tap) = TAP.get() else { return };
    if !tap.known.contains(topic) || (!out && tap.written_here.contains(topic)) {
        return;
    }
    let mut rings = tap.rings.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ring) = rings.get_mut(topic) {
        ring.push(key, payload, timestamp_ms);
    } else {
        let mut ring = Ring::default();
        ring.push(key, payload, timestamp_ms);
        rings.insert(topic.to_string(), ring);
    }
}

/// Why a tap request is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TapError {
    #[error("tapping is not enabled in this process")]
    NotInstalled,
    #[error("unknown topic {0:?}: the pipeline reads or writes {1}")]
    UnknownTopic(String, String),
}

/// The kept records of `topic` after position `after` (at most `limit`, the newest), and
/// starts or keeps the rings filling.
pub fn fetch(topic: &str, after: u64, limit: usize) -> Result<TapBatch, TapError> {
    let tap = TAP.get().ok_or(TapError::NotInstalled)?;
    if !tap.known.contains(topic) {
        let mut known: Vec<&String> = tap.known.iter().collect();
        known.sort();
        let listed: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
        return Err(TapError::UnknownTopic(topic.to_string(), listed.join(", ")));
    }
    *tap.last_request.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    ACTIVE.store(true, Ordering::Relaxed);
    let rings = tap.rings.lock().unwrap_or_else(|p| p.into_inner());
    Ok(match rings.get(topic) {
        Some(ring) => ring.batch(topic, after, limit),
        None => Ring::default().batch(topic, after, limit),
    })
}

/// Stops filling (and empties) the rings once no client asked for [`IDLE_AFTER`]; the
/// metrics server calls it periodically.
pub fn upkeep() {
    let Some(tap) = TAP.get() else { return };
    let idle = tap
        .last_request
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_none_or(|at| at.elapsed() >= IDLE_AFTER);
    if idle && ACTIVE.swap(false, Ordering::Relaxed) {
        tap.rings.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Whether the rings are filling (someone tapped recently).
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_at_most_max_per_second_and_counts_the_skipped() {
        let mut ring = Ring::default();
        for i in 0..1000 {
            ring.push(None, format!("{{\"i\":{i}}}").as_bytes(), Some(i));
        }
        let batch = ring.batch("t", 0, usize::MAX);
        assert_eq!(batch.seen, 1000);
        assert_eq!(batch.kept, MAX_PER_SECOND as u64);
        assert_eq!(batch.records.len(), MAX_PER_SECOND as usize);
        assert_eq!(batch.records[0].value, serde_json::json!({"i": 0}));
        assert_eq!(batch.last_seq, 1000);
        // Nothing new after the last position.
        let again = ring.batch("t", batch.last_seq, usize::MAX);
        assert_eq!((again.seen, again.kept, again.records.len()), (0, 0, 0));
    }

    #[test]
    fn ring_is_bounded_in_records_and_payload_size() {
        let mut ring = Ring::default();
        let big = vec![b'x'; MAX_PAYLOAD * 3];
        for _ in 0..(CAPACITY * 3) {
            // A new second for every record, so sampling keeps them all.
            ring.second = None;
            ring.push(Some(b"k"), &big, None);
        }
        assert_eq!(ring.records.len(), CAPACITY);
        assert!(ring.records.iter().all(|r| r.payload.len() == MAX_PAYLOAD));
        let batch = ring.batch("t", 0, 10);
        assert_eq!(batch.records.len(), 10);
        assert!(batch.records[0].truncated);
        assert_eq!(batch.records[9].seq, (CAPACITY * 3) as u64);
        assert_eq!(batch.records[0].key.as_deref(), Some("k"));
    }

    #[test]
    fn a_position_beyond_the_stream_starts_over() {
        let mut ring = Ring::default();
        ring.push(None, b"not json", None);
        let batch = ring.batch("t", 99, 10);
        assert_eq!(batch.records.len(), 1);
        assert_eq!(batch.records[0].value, serde_json::json!("not json"));
    }

    #[test]
    fn hooks_keep_nothing_until_a_client_asks_and_never_tap_a_topic_twice() {
        install(
            ["written".to_string(), "external".to_string()],
            ["written".to_string()],
        );
        written("written", None, b"{\"n\":1}", Some(1));
        assert!(!is_active());
        assert_eq!(fetch("written", 0, 10).unwrap().records.len(), 0);
        assert!(is_active());
        written("written", None, b"{\"n\":2}", Some(2));
        // Read back by a stage of this process: already tapped where it was written.
        read("written", None, b"{\"n\":2}", Some(2));
        // Written elsewhere: tapped where it is read.
        read("external", Some(b"k"), b"{\"n\":3}", Some(3));
        written("not-in-the-pipeline", None, b"{}", None);
        let batch = fetch("written", 0, 10).unwrap();
        assert_eq!(batch.records.len(), 1);
        assert_eq!(batch.records[0].value, serde_json::json!({"n": 2}));
        assert_eq!(fetch("external", 0, 10).unwrap().records.len(), 1);
        assert_eq!(
            fetch("not-in-the-pipeline", 0, 10),
            Err(TapError::UnknownTopic(
                "not-in-the-pipeline".into(),
                "external, written".into()
            ))
        );
        // A client asked just now: upkeep keeps the rings.
        upkeep();
        assert!(is_active());
    }
}
