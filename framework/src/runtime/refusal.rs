//! Records the broker refuses for good (issue 10 §2): they never fail a stage. The
//! producer refuses a record locally when it exceeds `message.max.bytes`, the broker on
//! delivery when it is too large (`MSG_SIZE_TOO_LARGE`) or fails the topic's validation
//! (`INVALID_RECORD`, `INVALID_TIMESTAMP`...). A copy (truncated when it would not fit) goes
//! to the stage's dead-letter topic with reason `too_large` or `refused_by_broker`, or the
//! record is counted and dropped when there is none or when even the copy is refused.

use rdkafka::{
    error::KafkaError,
    message::{Header, Headers, OwnedHeaders},
    types::RDKafkaErrorCode,
};
use tracing::warn;

use super::kafka::{
    dead_letter_headers, DEAD_LETTER_DETAIL, DEAD_LETTER_REASON, DEAD_LETTER_SOURCE,
    DEAD_LETTER_STAGE,
};
use crate::metrics::StageMetrics;

/// Reason label of records too large for the broker.
pub const TOO_LARGE: &str = "too_large";
/// Reason label of records the broker refuses for their content (schema, timestamp...).
pub const REFUSED_BY_BROKER: &str = "refused_by_broker";
/// Header of a truncated dead-letter copy: the original payload's size in bytes.
pub const TRUNCATED_HEADER: &str = "x-dead-letter-truncated";
/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// Room kept for the record's framing and protocol overhead.
const OVERHEAD: usize = 1024;
/// Longest header value (and key) kept in a truncated copy.
const MAX_HEADER_VALUE: usize = 1024;

/// Why the broker (or the producer) refused a record for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than the producer or the broker accepts.
    TooLarge,
    /// Refused for its content: the broker's record validation, its timestamp, a corrupt
    /// record. `code` is the broker's error.
    Invalid(RDKafkaErrorCode),
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooLarge => TOO_LARGE,
            Refusal::Invalid(_) => REFUSED_BY_BROKER,
        }
    }
}

/// What a failed delivery says about the record and the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The broker refused this record's batch for good: one record of it (or several) is
    /// to blame, the others are fine. Resending them one at a time finds which.
    Refused(Refusal),
    /// Failed because of another record's refusal: the producer became fatal, purged its
    /// queue or lost its idempotence sequence. Resending delivers it.
    Collateral,
    /// Anything else (timeouts, authorization, unknown topic): fails the stage.
    Other,
}

/// Classifies a produce or delivery error.
pub fn classify(error: &KafkaError) -> Failure {
    use RDKafkaErrorCode as C;
    let KafkaError::MessageProduction(code) = error else {
        return Failure::Other;
    };
    match code {
        // MSG_SIZE_TOO_LARGE for a record; RECORD_LIST_TOO_LARGE for a batch, which is
        // only a single record's fault when that record is alone in it.
        C::MessageSizeTooLarge | C::MessageBatchTooLarge => Failure::Refused(Refusal::TooLarge),
        C::InvalidRecord | C::InvalidTimestamp | C::InvalidMessage => {
            Failure::Refused(Refusal::Invalid(*code))
        }
        C::Fatal
        | C::PurgeQueue
        | C::PurgeInflight
        | C::OutOfOrderSequenceNumber
        | C::InvalidProducerEpoch
        | C::UnknownProducerId
        | C::ProducerFenced => Failure::Collateral,
        _ => Failure::Other,
    }
}

/// What a stage does with records the broker refuses.
#[derive(Clone)]
pub struct Policy {
    pub stage: String,
    pub connector: &'static str,
    pub dead_letter: Option<String>,
    pub metrics: StageMetrics,
    /// The producer's `message.max.bytes`: a truncated copy is made to fit it.
    pub max_message_bytes: usize,
}

/// A dead-letter copy of a refused record (truncated when it would not fit).
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
    /// A dead-letter copy of a record `topic` refused as `refusal` that fits
    /// `max_message_bytes`: key and header values cut to 1 KiB, the payload to what is
    /// left. A record that was itself a dead-letter copy keeps its reason, with the
    /// refusal added to its detail. `error` is the broker's answer.
    pub fn copy(
        &self,
        refusal: Refusal,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<&impl Headers>,
        error: &str,
    ) -> Copy {
        let (reason, detail, stage, source) = match dead_letter_fields(headers) {
            Some([reason, detail, stage, source]) => {
                let why = match refusal {
                    Refusal::TooLarge => "copy truncated: too large for the broker".to_string(),
                    Refusal::Invalid(_) => format!("{topic} refused the copy: {error}"),
                };
                (reason, format!("{detail} ({why})"), stage, source)
            }
            None => (
                refusal.reason().to_string(),
                match refusal {
                    Refusal::TooLarge => format!(
                        "record of {} bytes for {topic} is larger than the broker accepts \
                         (message.max.bytes {})",
                        payload.len(),
                        self.max_message_bytes
                    ),
                    Refusal::Invalid(_) => {
                        format!("the broker refused the record for {topic}: {error}")
                    }
                },
                self.stage.clone(),
                format!("{} -> {topic}", self.connector),
            ),
        };
        let original = payload.len().to_string();
        let key = key.map(|k| truncate(k, MAX_HEADER_VALUE).to_vec());
        // Header names and values, the key and the framing must all fit.
        let used = OVERHEAD + 5 * 64 + 4 * MAX_HEADER_VALUE + original.len() + MAX_HEADER_VALUE;
        let room = self.max_message_bytes.saturating_sub(used);
        let kept = truncate(payload, room);
        let mut copy_headers = dead_letter_headers(
            &truncate_str(&stage, MAX_HEADER_VALUE),
            &truncate_str(&reason, MAX_HEADER_VALUE),
            &truncate_str(&detail, MAX_HEADER_VALUE),
            &truncate_str(&source, MAX_HEADER_VALUE),
        );
        // A record too large is cut by definition; another is marked only when it was.
        if refusal == Refusal::TooLarge || kept.len() < payload.len() {
            copy_headers = copy_headers.insert(Header {
                key: TRUNCATED_HEADER,
                value: Some(original.as_bytes()),
            });
        }
        Copy {
            key,
            payload: kept.to_vec(),
            headers: copy_headers,
        }
    }

    /// Counts a refused record; `dead_lettered` when a copy is on its way.
    pub fn count(&self, refusal: Refusal, topic: &str, size: usize, dead_lettered: bool) {
        self.metrics.rejected(refusal.reason());
        if dead_lettered {
            self.metrics.dead_lettered.increment(1);
        }
        let what = match refusal {
            Refusal::TooLarge => "record too large for the broker",
            Refusal::Invalid(_) => "record refused by the broker",
        };
        warn!(
            stage = %self.stage,
            topic,
            size,
            dead_lettered,
            reason = refusal.reason(),
            "{what}: {}",
            if dead_lettered {
                "a copy goes to the dead-letter topic"
            } else {
                "dropped (no dead-letter topic, or even its copy was refused)"
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
        let copy = p.copy(
            Refusal::TooLarge,
            "dlq",
            Some(&key),
            &payload,
            Some(&original),
            "",
        );
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
        let copy = p.copy(
            Refusal::TooLarge,
            "out",
            None,
            &payload,
            None::<&OwnedHeaders>,
            "",
        );
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

    #[test]
    fn a_record_refused_for_its_content_is_copied_whole_with_the_brokers_answer() {
        let p = policy(DEFAULT_MESSAGE_MAX_BYTES);
        let refusal = Refusal::Invalid(RDKafkaErrorCode::InvalidRecord);
        let copy = p.copy(
            refusal,
            "out",
            Some(b"K"),
            b"{\"x\":1}",
            None::<&OwnedHeaders>,
            "bad",
        );
        let fields = dead_letter_fields(Some(&copy.headers)).unwrap();
        assert_eq!(fields[0], REFUSED_BY_BROKER);
        assert_eq!(fields[1], "the broker refused the record for out: bad");
        assert_eq!(copy.payload, b"{\"x\":1}");
        assert!(!is_truncated_copy(Some(&copy.headers)), "nothing was cut");
    }

    #[test]
    fn delivery_errors_are_classified_by_who_is_to_blame() {
        use RDKafkaErrorCode as C;
        let of = |c| classify(&KafkaError::MessageProduction(c));
        assert_eq!(
            of(C::InvalidRecord),
            Failure::Refused(Refusal::Invalid(C::InvalidRecord))
        );
        assert_eq!(
            of(C::MessageSizeTooLarge),
            Failure::Refused(Refusal::TooLarge)
        );
        assert_eq!(
            of(C::MessageBatchTooLarge),
            Failure::Refused(Refusal::TooLarge)
        );
        assert_eq!(of(C::Fatal), Failure::Collateral);
        assert_eq!(of(C::PurgeQueue), Failure::Collateral);
        assert_eq!(of(C::MessageTimedOut), Failure::Other);
        assert_eq!(of(C::TopicAuthorizationFailed), Failure::Other);
        assert_eq!(classify(&KafkaError::Canceled), Failure::Other);
    }
}
