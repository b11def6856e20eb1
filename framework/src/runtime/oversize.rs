//! Records too large for the broker (issue 10 §2): they never fail a stage. The producer
//! refuses them locally (`message.max.bytes`) or the broker does on delivery
//! (`MessageSizeTooLarge`); either way a truncated copy goes to the stage's dead-letter
//! topic, or the record is counted (`too_large`) and dropped when there is none or when
//! even the truncated copy does not fit.

use rdkafka::message::{Header, Headers, OwnedHeaders};
use tracing::warn;

use super::kafka::{
    dead_letter_headers, DEAD_LETTER_DETAIL, DEAD_LETTER_REASON, DEAD_LETTER_SOURCE,
    DEAD_LETTER_STAGE,
};
use crate::metrics::StageMetrics;

/// Reason label of records too large for the broker.
pub const TOO_LARGE: &str = "too_large";
/// Header of a truncated dead-letter copy: the original payload's size in bytes.
pub const TRUNCATED_HEADER: &str = "x-dead-letter-truncated";
/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// Room kept for the record's framing and protocol overhead.
const OVERHEAD: usize = 1024;
/// Longest header value (and key) kept in a truncated copy.
const MAX_HEADER_VALUE: usize = 1024;

/// What a stage does with records too large for the broker.
#[derive(Clone)]
pub struct Policy {
    pub stage: String,
    pub connector: &'static str,
    pub dead_letter: Option<String>,
    pub metrics: StageMetrics,
    /// The producer's `message.max.bytes`: a truncated copy is made to fit it.
    pub max_message_bytes: usize,
}

/// A truncated dead-letter copy of a refused record.
#[derive(Debug, Clone)]
pub struct Copy {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: OwnedHeaders,
}

/// `text` cut to at most `max` bytes, on a character boundary when it is UTF-8.
pub fn truncate(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        return bytes;
    }
    let mut end = max;
    if std::str::from_utf8(bytes).is_ok() {
        while end > 0 && (bytes[end] & 0xC0) == 0x80 {
            end -= 1;
        }
    }
    &bytes[..end]
}

fn truncate_str(text: &str, max: usize) -> String {
    String::from_utf8_lossy(truncate(text.as_bytes(), max)).into_owned()
}

/// Whether a record's headers mark it as an already truncated copy (never copied again).
pub fn is_truncated_copy(headers: Option<&impl Headers>) -> bool {
    headers.is_some_and(|h| h.iter().any(|h| h.key == TRUNCATED_HEADER))
}

/// The `x-dead-letter-*` values of `headers`, when it is already a dead-letter copy.
fn dead_letter_fields(headers: Option<&impl Headers>) -> Option<[String; 4]> {
    let headers = headers?;
    let get = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    Some([
        get(DEAD_LETTER_REASON)?,
        get(DEAD_LETTER_DETAIL).unwrap_or_default(),
        get(DEAD_LETTER_STAGE).unwrap_or_default(),
        get(DEAD_LETTER_SOURCE).unwrap_or_default(),
    ])
}

impl Policy {
    /// A copy of a record `topic` refused as too large that fits `max_message_bytes`: key
    /// and header values cut to 1 KiB, the payload to what is left. A record that was
    /// itself a dead-letter copy keeps its reason, with `too_large` added to its detail.
    pub fn copy(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<&impl Headers>,
    ) -> Copy {
        let (reason, detail, stage, source) = match dead_letter_fields(headers) {
            Some([reason, detail, stage, source]) => (
                reason,
                format!("{detail} (copy truncated: too large for the broker)"),
                stage,
                source,
            ),
            None => (
                TOO_LARGE.to_string(),
                format!(
                    "record of {} bytes for {topic} is larger than the broker accepts \
                     (message.max.bytes {})",
                    payload.len(),
                    self.max_message_bytes
                ),
                self.stage.clone(),
                format!("{} -> {topic}", self.connector),
            ),
        };
        let original = payload.len().to_string();
        let headers = dead_letter_headers(
            &truncate_str(&stage, MAX_HEADER_VALUE),
            &truncate_str(&reason, MAX_HEADER_VALUE),
            &truncate_str(&detail, MAX_HEADER_VALUE),
            &truncate_str(&source, MAX_HEADER_VALUE),
        )
        .insert(Header {
            key: TRUNCATED_HEADER,
            value: Some(original.as_bytes()),
        });
        let key = key.map(|k| truncate(k, MAX_HEADER_VALUE).to_vec());
        // Header names and values, the key and the framing must all fit.
        let used = OVERHEAD + 5 * 64 + 4 * MAX_HEADER_VALUE + original.len() + MAX_HEADER_VALUE;
        let room = self.max_message_bytes.saturating_sub(used);
        Copy {
            key,
            payload: truncate(payload, room).to_vec(),
            headers,
        }
    }

    /// Counts a refused record; `dead_lettered` when a copy is on its way.
    pub fn count(&self, topic: &str, size: usize, dead_lettered: bool) {
        self.metrics.rejected(TOO_LARGE);
        if dead_lettered {
            self.metrics.dead_lettered.increment(1);
        }
        warn!(
            stage = %self.stage,
            topic,
            size,
            dead_lettered,
            "record too large for the broker: {}",
            if dead_lettered {
                "a truncated copy goes to the dead-letter topic"
            } else {
                "dropped (no dead-letter topic, or even its truncated copy does not fit)"
            }
        );
    }
}

/// `message.max.bytes` of a producer config (librdkafka's default when unset).
pub fn max_message_bytes(config: &rdkafka::ClientConfig) -> usize {
    config
        .get("message.max.bytes")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: usize) -> Policy {
        Policy {
            stage: "s".into(),
            connector: "c",
            dead_letter: Some("dlq".into()),
            metrics: StageMetrics::new("s", "c"),
            max_message_bytes: max,
        }
    }

    fn size(copy: &Copy) -> usize {
        let headers: usize = copy
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
            .sum();
        copy.payload.len() + copy.key.as_ref().map_or(0, Vec::len) + headers
    }

    #[test]
    fn a_copy_of_a_huge_record_with_huge_headers_fits_the_message_size() {
        let p = policy(100_000);
        let detail = "d".repeat(500_000);
        let original = dead_letter_headers("stage", "late", &detail, "topic");
        let (key, payload) = (vec![7; 5000], vec![b'x'; 2_000_000]);
        let copy = p.copy("dlq", Some(&key), &payload, Some(&original));
        assert!(size(&copy) + OVERHEAD <= 100_000, "{}", size(&copy));
        assert!(copy.payload.len() > 90_000, "keeps as much payload as fits");
        let fields = dead_letter_fields(Some(&copy.headers)).unwrap();
        assert_eq!(fields[0], "late", "the original reason is kept");
        assert!(is_truncated_copy(Some(&copy.headers)));
    }

    #[test]
    fn a_plain_record_becomes_a_too_large_copy() {
        let p = policy(DEFAULT_MESSAGE_MAX_BYTES);
        let payload = vec![b'y'; 3_000_000];
        let copy = p.copy("out", None, &payload, None::<&OwnedHeaders>);
        let fields = dead_letter_fields(Some(&copy.headers)).unwrap();
        assert_eq!(fields[0], TOO_LARGE);
        assert!(fields[1].contains("3000000 bytes for out"));
        assert!(size(&copy) < DEFAULT_MESSAGE_MAX_BYTES);
    }

    #[test]
    fn utf8_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("aé".as_bytes(), 2), b"a");
        assert_eq!(truncate(b"abc", 5), b"abc");
    }

    #[test]
    fn message_max_bytes_comes_from_the_producer_config() {
        let mut config = rdkafka::ClientConfig::new();
        assert_eq!(max_message_bytes(&config), DEFAULT_MESSAGE_MAX_BYTES);
        config.set("message.max.bytes", "2048");
        assert_eq!(max_message_bytes(&config), 2048);
    }
}
