//! The one path of a rejected record, in every kind of stage: counted under its reason,
//! logged once (rate-limited, at the reason's level; connectors never log it) and copied
//! to the stage's dead-letter topic with the reason headers.

use super::{kafka::Deliveries, StageRuntime};
use crate::{error::FrameworkError, metrics::RateLimitedLog};

/// A record a connector (or the runtime) refused.
pub(super) struct Rejection<'a> {
    pub reason: &'static str,
    pub detail: &'a str,
    /// Where the record came from: its input topic (a source's: its connector type).
    pub source: &'a str,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub timestamp_ms: Option<i64>,
}

impl StageRuntime {
    /// Counts and logs a rejection that has no record to dead-letter (e.g. a bad marker).
    pub(super) fn note_rejected(
        &self,
        log: &mut RateLimitedLog,
        reason: &'static str,
        detail: &str,
    ) {
        self.metrics.rejected(reason);
        log.rejected(&self.name, reason, detail);
    }

    /// Counts, logs and dead-letters a rejected record.
    pub(super) async fn reject(
        &self,
        deliveries: &mut Deliveries,
        log: &mut RateLimitedLog,
        rejection: Rejection<'_>,
    ) -> Result<(), FrameworkError> {
        self.note_rejected(log, rejection.reason, rejection.detail);
        let Some(dlq) = &self.dead_letter else {
            return Ok(());
        };
        let headers = super::kafka::dead_letter_headers(
            &self.name,
            rejection.reason,
            rejection.detail,
            rejection.source,
        );
        deliveries
            .send(
                dlq,
                None,
                rejection.key,
                Some(rejection.payload),
                rejection.timestamp_ms,
                Some(headers),
            )
            .await?;
        self.metrics.dead_lettered.increment(1);
        Ok(())
    }

    /// The topic of input port `port` ("" for an unknown port).
    pub(super) fn input_topic(&self, port: usize) -> &str {
        self.input_topics
            .get(port)
            .map(String::as_str)
            .unwrap_or_default()
    }
}
