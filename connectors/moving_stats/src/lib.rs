//! `moving_stats`: per-symbol moving average and population standard deviation of prices
//! over event-time sliding windows (semantics.md §1-§3, §5).
//!
//! Reads value records (`{"symbol","price","timestamp"}` by default; `key_field`,
//! `value_field` and `timestamp_field` name other fields, dotted paths included) on the
//! `prices` port and writes one `btc-price-moving` record per (key, window end `e`) once
//! the key's watermark passes `e` (formats: [`framework::formats::price`] and
//! [`framework::formats::moving_stats`]):
//!
//! ```json
//! {"timestamp":"2025-05-07T15:31:00.000Z","symbol":"BTCUSDT","stats":[
//!   {"window":"30s","window_start":"2025-05-07T15:30:30.000Z","count":300,
//!    "avg_price":97009.021,"std_price":0.0049}]}
//! ```
//!
//! The windowing itself is [`framework::event_time::KeyedWindowOperator`] with
//! [`DecimalMoments`] (exact integer sums of decimals, correctly rounded results); this
//! crate wires the formats to it and checkpoints.
//!
//! Restart: [`Transform::checkpoint`] stores each symbol's watermark `W_c` and the next
//! offset; [`Transform::resume`] asks the runtime to replay from
//! `T = min W_c - longest window`, fences each symbol at its `W_c` (windows ending before
//! it were already written) and does not re-reject (dead-letter) records below the
//! checkpointed offset. Re-written records are byte-identical to the first ones.

pub mod checkpoint;
pub mod config;

use framework::{
    connector::{InputPort, Resume, StageContext},
    event_time::{
        format_millis, guard, system_clock, Admission, Clock, ClosedWindows, DecimalMoments,
        FutureGuard, KeyedWindowOperator,
    },
    formats::{moving_stats::StatsWriter, price::PriceParser},
    ConnectorError, Emitter, InputRecord, RecordType, Transform, TransformConnector,
};

pub use checkpoint::{Checkpoint, CheckpointError};
pub use config::MovingStatsConfig;

/// Records of `btc-price` (declared once, in the format's home).
pub const PRICE: RecordType = framework::formats::PRICE;
/// Records of `btc-price-moving`.
pub const MOVING_STATS: RecordType = framework::formats::MOVING_STATS;

/// The registered connector.
pub struct MovingStatsConnector;

impl TransformConnector for MovingStatsConnector {
    type Config = MovingStatsConfig;
    const NAME: &'static str = "moving_stats";
    const SUMMARY: &'static str =
        "Per-symbol moving average and standard deviation of prices over event-time sliding windows";
    const INPUTS: &'static [InputPort] = &[InputPort {
        name: "prices",
        record_type: PRICE,
    }];
    const OUTPUT: RecordType = MOVING_STATS;

    fn build(
        config: &Self::Config,
        stage: &StageContext,
    ) -> Result<Box<dyn Transform>, ConnectorError> {
        let mut transform = MovingStats::from_checked(config, system_clock())?;
        transform.stage = stage.stage.clone();
        Ok(Box::new(transform))
    }
}

framework::register_transform!(MovingStatsConnector);

/// One instance per input partition.
pub struct MovingStats {
    operator: KeyedWindowOperator<String, DecimalMoments>,
    future: FutureGuard,
    parser: PriceParser,
    format: StatsWriter,
    lateness: String,
    stage: String,
    /// Offset after the last processed record (checkpointed).
    next_offset: Option<i64>,
    /// After a resume: records below this offset were processed (and refused ones
    /// dead-lettered) before the restart, so their refusals are not reported again.
    replayed_below: Option<i64>,
}

impl MovingStats {
    pub fn new(config: &MovingStatsConfig) -> Result<Self, ConnectorError> {
        Self::with_clock(config, system_clock())
    }

    /// Like [`MovingStats::new`], with the wall clock `max_future_skew` is measured
    /// against (tests replay with a virtual one).
    pub fn with_clock(config: &MovingStatsConfig, clock: Clock) -> Result<Self, ConnectorError> {
        framework::connector::require_valid(config)?;
        Self::from_checked(config, clock)
    }

    /// Builds from a config the registry already checked (once, not per partition).
    fn from_checked(config: &MovingStatsConfig, clock: Clock) -> Result<Self, ConnectorError> {
        let windows = config
            .sliding_windows()
            .map_err(|e| ConnectorError::Config(e.to_string()))?;
        let fields = config.fields().map_err(ConnectorError::Config)?;
        let format = StatsWriter::new(
            &config.window_names(),
            fields.key.name(),
            fields.value.name(),
        );
        let parser =
            PriceParser::new(fields, config.positive_only).map_err(ConnectorError::Config)?;
        Ok(MovingStats {
            operator: KeyedWindowOperator::new(windows, config.lateness.as_millis())
                .with_limits(config.key_limits()),
            future: config.guards.future_guard(clock),
            parser,
            format,
            lateness: config.lateness.to_string(),
            stage: String::from("moving_stats"),
            next_offset: None,
            replayed_below: None,
        })
    }

    fn refuse(
        &mut self,
        record: &InputRecord<'_>,
        reason: &'static str,
        detail: String,
        out: &mut Emitter,
    ) {
        if self
            .replayed_below
            .is_some_and(|below| record.offset < below)
        {
            tracing::debug!(stage = %self.stage, reason, offset = record.offset,
                "replayed record refused again; already dead-lettered before the restart");
            return;
        }
        // Logged (rate-limited, at the reason's level) by the runtime, not here.
        out.reject(record, reason, detail);
    }
}

/// Writes each closed (symbol, end) as one record; asks the operator to pause once `out`
/// is full (the runtime then produces it and calls `emit_pending`).
fn emit_into<'a>(
    format: &'a StatsWriter,
    out: &'a mut Emitter,
) -> impl FnMut(&String, &ClosedWindows<'_, DecimalMoments>) -> bool + 'a {
    move |symbol, closed| {
        let mut payload = Vec::with_capacity(96 + 160 * closed.aggregates.len());
        format.write(&mut payload, symbol, closed);
        out.emit(Some(symbol.as_bytes().to_vec()), payload, closed.end_ms);
        !out.is_full()
    }
}

impl Transform for MovingStats {
    fn process(&mut self, record: &InputRecord<'_>, out: &mut Emitter) {
        self.next_offset = Some(
            self.next_offset
                .map_or(record.offset + 1, |n| n.max(record.offset + 1)),
        );
        let price = match self.parser.parse(record.payload) {
            Ok(price) => price,
            Err(bad) => return self.refuse(record, bad.reason, bad.detail, out),
        };
        if let Err(detail) = guard::check_key(&price.key) {
            return self.refuse(record, "invalid_symbol", detail, out);
        }
        if let Err(now_ms) = self.future.check(price.event_ms) {
            let detail = format!(
                "event time {} of {:?} is more than {} ahead of the wall clock {}",
                format_millis(price.event_ms),
                price.key,
                framework::DurationSpec::from_millis(self.future.max_skew_ms()),
                format_millis(now_ms)
            );
            return self.refuse(record, guard::FUTURE, detail, out);
        }
        if self
            .replayed_below
            .is_some_and(|below| record.offset < below)
            && !self.operator.has_key(price.key.as_ref())
        {
            // Replayed after a restart, of a symbol the checkpoint does not hold: it was
            // evicted or refused before the restart, and its windows were written then.
            return;
        }
        let admission = self.operator.process_bounded(
            price.key.as_ref(),
            price.event_ms,
            &price.value,
            emit_into(&self.format, out),
        );
        let (reason, detail) = match admission {
            Admission::Accepted => return,
            Admission::TooManyKeys { max_keys } => (
                guard::TOO_MANY_KEYS,
                format!(
                    "{:?} would be symbol number {} of this partition; max_keys is {max_keys}",
                    price.key,
                    max_keys + 1
                ),
            ),
            Admission::BeforeIdleHorizon { horizon_ms } => (
                "late",
                format!(
                    "event time {} of {:?} is before {}, the idle-key horizon (symbols idle \
                     longer than key_idle_timeout are evicted)",
                    format_millis(price.event_ms),
                    price.key,
                    format_millis(horizon_ms)
                ),
            ),
            Admission::Late { watermark_ms } => ("late", {
                let detail = format!(
                    "event time {} of {:?} is before its watermark {} (lateness {})",
                    format_millis(price.event_ms),
                    price.key,
                    if watermark_ms == i64::MAX {
                        "+inf (its input ended)".to_string()
                    } else {
                        format_millis(watermark_ms)
                    },
                    self.lateness
                );
                detail
            }),
        };
        self.refuse(record, reason, detail, out);
    }

    fn end_of_input(&mut self, out: &mut Emitter) {
        self.operator
            .end_of_input_bounded(emit_into(&self.format, out));
    }

    fn emit_pending(&mut self, out: &mut Emitter) {
        self.operator.emit_pending(emit_into(&self.format, out));
    }

    fn advance(&mut self, _port: usize, event_ms: i64, out: &mut Emitter) {
        self.operator
            .advance_to(event_ms, emit_into(&self.format, out));
    }

    fn watermarks(&self) -> Vec<(String, i64)> {
        self.operator
            .watermarks()
            .filter(|(_, w)| *w != i64::MAX)
            .map(|(k, w)| (k.clone(), w))
            .collect()
    }

    fn checkpoint(&self) -> Option<String> {
        let watermarks: std::collections::BTreeMap<String, i64> = self
            .operator
            .restart_watermarks()
            .into_iter()
            .map(|(k, w)| (k.clone(), w))
            .collect();
        if watermarks.is_empty() {
            return None;
        }
        Some(
            Checkpoint {
                next_offset: self.next_offset,
                watermarks,
            }
            .to_json(),
        )
    }

    fn resume(&mut self, checkpoint: Option<&str>) -> Result<Resume, ConnectorError> {
        let Some(text) = checkpoint else {
            return Ok(Resume::FromCommitted);
        };
        let cp = Checkpoint::from_json(text).map_err(|e| ConnectorError::Fatal(e.to_string()))?;
        self.next_offset = cp.next_offset;
        let replay_from = self.operator.resume(cp.watermarks);
        match replay_from {
            Some(event_time_ms) => {
                self.replayed_below = cp.next_offset;
                // Debug: the runtime logs the actual replay itself.
                tracing::debug!(stage = %self.stage, from = %format_millis(event_time_ms),
                    "rebuilding window state by replaying the input");
                Ok(Resume::ReplayFrom { event_time_ms })
            }
            None => Ok(Resume::FromCommitted),
        }
    }

    fn replay_from(&self, checkpoint: &str) -> Result<Resume, ConnectorError> {
        let cp =
            Checkpoint::from_json(checkpoint).map_err(|e| ConnectorError::Fatal(e.to_string()))?;
        Ok(
            match self.operator.replay_from(cp.watermarks.values().copied()) {
                Some(event_time_ms) => Resume::ReplayFrom { event_time_ms },
                None => Resume::FromCommitted,
            },
        )
    }
}
