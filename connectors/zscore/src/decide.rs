//! What becomes of the join's decisions about prices: output records, rejections with a
//! reason (dead-lettered with the original message; the runtime counts and logs them).

use framework::{
    event_time::{format_millis, guard},
    formats::zscore::ZScoreWriter,
    join::{JoinEvent, Refusal, UnmatchedCause},
    record::Rejected,
    Emitter, InputRecord,
};

use crate::{symbol::Symbol, Stats, PRICES};

/// A price waiting for its statistics, with its original message for the dead-letter
/// topic in case it ends up unmatched.
pub(crate) struct PendingPrice {
    price: f64,
    kafka_ts: Option<i64>,
    /// The Kafka key (when there was one) followed by the payload.
    raw: Box<[u8]>,
    key_len: Option<usize>,
}

impl PendingPrice {
    pub(crate) fn new(price: f64, record: &InputRecord<'_>) -> Self {
        let key = record.key.unwrap_or_default();
        let mut raw = Vec::with_capacity(key.len() + record.payload.len());
        raw.extend_from_slice(key);
        raw.extend_from_slice(record.payload);
        PendingPrice {
            price,
            kafka_ts: record.timestamp_ms,
            raw: raw.into(),
            key_len: record.key.map(<[u8]>::len),
        }
    }

    fn into_rejected(self, reason: &'static str, detail: String) -> Rejected {
        let split = self.key_len.unwrap_or(0);
        Rejected {
            reason,
            detail,
            port: PRICES,
            key: self.key_len.map(|_| self.raw[..split].to_vec()),
            payload: self.raw[split..].to_vec(),
            timestamp_ms: self.kafka_ts,
        }
    }
}

/// Turns the join's decisions about prices into output records and rejections. Returns
/// whether `out` can take more (the join pauses otherwise; see `emit_pending`).
pub(crate) fn on_join_event(
    writer: &ZScoreWriter,
    out: &mut Emitter,
    slide_ms: i64,
    event: JoinEvent<'_, Symbol, PendingPrice, Stats>,
) -> bool {
    match event {
        JoinEvent::Matched {
            key,
            time_ms,
            probe,
            table,
            ..
        } => {
            let mut payload =
                Vec::with_capacity(table.record_size_hint(key.json.len(), writer.heads_len()));
            writer.write(time_ms, &key.json, probe.price, table, &mut payload);
            out.emit(Some(key.name.as_bytes().to_vec()), payload, time_ms);
        }
        JoinEvent::Unmatched {
            key,
            time_ms,
            probe,
            cause,
        } => {
            let e = format_millis(framework::join::bucket_of(time_ms, slide_ms));
            let detail = match cause {
                UnmatchedCause::Superseded { latest_table_ms } => format!(
                    "no statistics for {} at {e}: statistics at {} already arrived",
                    key.name,
                    format_millis(latest_table_ms)
                ),
                UnmatchedCause::EndOfInput => format!(
                    "input ended before the statistics for {} at {e} arrived",
                    key.name
                ),
                UnmatchedCause::Evicted => format!(
                    "{} was evicted as idle (key_idle_timeout) before the statistics at {e} arrived",
                    key.name
                ),
            };
            out.rejected.push(probe.into_rejected("unmatched", detail));
        }
        JoinEvent::Late {
            key,
            time_ms,
            probe,
            watermark_ms,
        } => {
            let detail = format!(
                "price at {} is behind the price watermark {} of {}",
                format_millis(time_ms),
                format_millis(watermark_ms),
                key.name
            );
            out.rejected.push(probe.into_rejected("late", detail));
        }
        JoinEvent::Refused {
            key,
            time_ms,
            probe,
            cause,
        } => {
            let (reason, detail) = refusal(&key.name, time_ms, cause);
            out.rejected.push(probe.into_rejected(reason, detail));
        }
        // Decided, emitted and counted before the restart.
        JoinEvent::Fenced { .. } => {}
    }
    !out.is_full()
}

/// A decision about a price that was waiting for its statistics: one fewer waits.
pub(crate) fn on_waiting_decided(
    writer: &ZScoreWriter,
    out: &mut Emitter,
    slide_ms: i64,
    pending: &mut usize,
    event: JoinEvent<'_, Symbol, PendingPrice, Stats>,
) -> bool {
    *pending = pending.saturating_sub(1);
    on_join_event(writer, out, slide_ms, event)
}

/// Reason and details of a record the join refused for its key.
pub(crate) fn refusal(symbol: &str, time_ms: i64, cause: Refusal) -> (&'static str, String) {
    match cause {
        Refusal::TooManyKeys { max_keys } => (
            guard::TOO_MANY_KEYS,
            format!("{symbol:?} would exceed max_keys {max_keys} symbols in this partition"),
        ),
        Refusal::BeforeIdleHorizon { horizon_ms } => (
            "late",
            format!(
                "time {} of {symbol:?} is before the idle-key horizon {}",
                format_millis(time_ms),
                format_millis(horizon_ms)
            ),
        ),
    }
}
