//! `zscore`: joins every price with the moving statistics that ended at or before it and
//! writes its z-score per window (semantics.md §4).
//!
//! ```yaml
//! - name: zscore
//!   type: zscore
//!   inputs: { prices: btc-price, stats: btc-price-moving }
//!   output: btc-price-zscore
//!   dead_letter: btc-price-zscore-dead-letter
//!   config: { slide: 1s, lateness: 10s }
//! ```
//!
//! A price at `t` matches the statistics record of its symbol at `e = floor(t/S)*S`; the
//! join itself is [`framework::join::KeyedJoin`]. Rejected input is counted per reason
//! and dead-lettered: `malformed_json`, `missing_field`, `invalid_symbol`, `invalid_price`,
//! `invalid_timestamp`, `invalid_stats`, `misaligned_stats` (statistics not at a multiple of
//! the slide), `too_many_stats` (a symbol already holds `max_stats_per_key`), `stale_stats` (statistics older than a later record of the symbol already
//! seen: the join only accepts them in increasing time so that its result does not depend
//! on how the inputs interleave), `late` (prices or statistics behind their watermark) and
//! `unmatched` (prices whose statistics can no longer arrive). A re-delivered statistics
//! record is ignored (the first one wins) and never produces a second output.
//!
//! Restart: [`ZScoreTransform::checkpoint`] stores, per symbol, the price time `P_c` below
//! which every price was decided; `resume` asks the runtime to replay both inputs from
//! `min P_c - slide` and drops replayed prices below `P_c` unseen, so the restarted
//! instance emits only outputs identical to those of an uninterrupted run. (Prices that
//! arrive after the checkpoint below `P_c` are necessarily late; they are not counted
//! again either, so the `late` count may miss a few of them across a restart.)

mod config;
mod decide;
mod deferred;
mod flow;
mod symbol;

pub use config::ZScoreConfig;
use decide::{on_join_event, on_waiting_decided, refusal, PendingPrice};
use deferred::OwnedRecord;
use symbol::Symbol;

use framework::{
    connector::{InputPort, Resume, StageContext},
    event_time::{format_millis, guard, system_clock, Clock, FutureGuard},
    formats::{
        self,
        moving_stats::StatsReader,
        price::PriceParser,
        zscore::{Prepared, ZScoreWriter},
        Refusal as Invalid,
    },
    join::{JoinCheckpoint, KeyedJoin, TableOutcome},
    ConnectorError, DurationSpec, Emitter, InputRecord, RecordType, Transform, TransformConnector,
};

pub use formats::zscore::zscore;
pub use framework::join::Buffered;

type Stats = Prepared;

/// Input port of the prices.
pub const PRICES: usize = 0;
/// Prices past `max_pending_prices` × this, which arrive although reading prices paused at
/// `max_pending_prices`, are dropped as `too_many_pending`.
const PENDING_HARD_FACTOR: usize = 2;
/// Name of the prices port.
pub const PRICES_PORT: &str = "prices";
/// Input port of the moving statistics.
pub const STATS: usize = 1;

/// The `zscore` transform connector.
pub struct ZScore;

impl TransformConnector for ZScore {
    type Config = ZScoreConfig;
    const NAME: &'static str = "zscore";
    const SUMMARY: &'static str =
        "Joins each price with the moving statistics ending at or before it and writes its z-score per window";
    const INPUTS: &'static [InputPort] = &[
        InputPort {
            name: PRICES_PORT,
            record_type: formats::PRICE,
        },
        InputPort {
            name: "stats",
            record_type: formats::MOVING_STATS,
        },
    ];
    const OUTPUT: RecordType = formats::ZSCORE;

    fn build(
        config: &ZScoreConfig,
        stage: &StageContext,
    ) -> Result<Box<dyn Transform>, ConnectorError> {
        Ok(Box::new(ZScoreTransform::from_checked(
            config,
            &stage.stage,
            system_clock(),
        )?))
    }
}

framework::register_transform!(ZScore);

type Join = KeyedJoin<Symbol, PendingPrice, Stats>;

/// One partition's z-score join.
pub struct ZScoreTransform {
    join: Join,
    slide: DurationSpec,
    /// The stage's name, for the one error it logs itself (rejections are the runtime's).
    stage: String,
    future: FutureGuard,
    /// Prices in the join waiting for their statistics, and their bound.
    pending: usize,
    max_pending: usize,
    /// Which input to stop reading (backpressure), from how far each has got.
    balance: flow::InputBalance,
    /// A record that waits for the prices of evicted symbols to go out first.
    deferred: Option<OwnedRecord>,
    prices: PriceParser,
    stats: StatsReader,
    writer: ZScoreWriter,
}

impl ZScoreTransform {
    pub fn new(config: &ZScoreConfig, stage: &str) -> Result<Self, ConnectorError> {
        Self::with_clock(config, stage, system_clock())
    }

    /// Like [`ZScoreTransform::new`], with the wall clock `max_future_skew` is measured
    /// against (tests replay with a virtual one).
    pub fn with_clock(
        config: &ZScoreConfig,
        stage: &str,
        clock: Clock,
    ) -> Result<Self, ConnectorError> {
        framework::connector::require_valid(config)?;
        Self::from_checked(config, stage, clock)
    }

    /// Builds from a config the registry already checked (once, not per partition).
    fn from_checked(
        config: &ZScoreConfig,
        stage: &str,
        clock: Clock,
    ) -> Result<Self, ConnectorError> {
        let join = Join::new(config.slide.as_millis(), config.lateness.as_millis())
            .map_err(|e| ConnectorError::Config(e.to_string()))?
            .with_limits(config.key_limits())
            .with_max_table_per_key(config.max_stats_per_key);
        let fields = config.fields().map_err(ConnectorError::Config)?;
        let stats = StatsReader::new(fields.key.name(), fields.value.name());
        let writer = ZScoreWriter::new(fields.key.name(), fields.value.name());
        let prices =
            PriceParser::new(fields, config.positive_only).map_err(ConnectorError::Config)?;
        Ok(ZScoreTransform {
            prices,
            stats,
            writer,
            join,
            future: config.guards.future_guard(clock),
            slide: config.slide,
            stage: stage.to_string(),
            pending: 0,
            max_pending: config.max_pending_prices,
            balance: flow::InputBalance::new(
                config.max_pending_prices,
                config.max_stats_per_key,
                config.slide.as_millis(),
            ),
            deferred: None,
        })
    }

    /// Buffered prices and statistics records (bounded; see semantics.md §4).
    pub fn buffered(&self) -> Buffered {
        self.join.buffered()
    }

    /// Reports the prices of symbols evicted as idle at `time_ms`; `false` when `out` filled
    /// up first (the record at `time_ms` then waits for `emit_pending`).
    fn evict_due(&mut self, time_ms: i64, out: &mut Emitter) -> bool {
        let (writer, slide_ms, pending) = (&self.writer, self.slide.as_millis(), &mut self.pending);
        self.join.evict_due(time_ms, &mut |event| {
            on_waiting_decided(writer, out, slide_ms, pending, event)
        })
    }

    fn reject(&mut self, out: &mut Emitter, record: &InputRecord<'_>, invalid: Invalid) {
        out.reject(record, invalid.reason, invalid.detail);
    }

    /// Refuses symbols keyed state cannot hold and times too far ahead of the wall clock.
    fn guard(&mut self, symbol: &str, time_ms: i64) -> Result<(), Invalid> {
        guard::check_key(symbol).map_err(|detail| Invalid {
            reason: "invalid_symbol",
            detail,
        })?;
        self.future.check(time_ms).map_err(|now_ms| Invalid {
            reason: guard::FUTURE,
            detail: format!(
                "time {} of {symbol:?} is more than {} ahead of the wall clock {}",
                format_millis(time_ms),
                DurationSpec::from_millis(self.future.max_skew_ms()),
                format_millis(now_ms)
            ),
        })
    }

    fn process_price(&mut self, record: &InputRecord<'_>, out: &mut Emitter) {
        let price = match self.prices.parse(record.payload) {
            Ok(price) => price,
            Err(invalid) => return self.reject(out, record, invalid),
        };
        if let Err(invalid) = self.guard(&price.key, price.event_ms) {
            return self.reject(out, record, invalid);
        }
        self.balance.price_seen(price.event_ms);
        // The runtime stops reading prices at `max_pending` (`input_full`); only prices
        // that arrive anyway (a runtime that cannot pause, a rebalance) get this far.
        if self.pending >= self.max_pending.saturating_mul(PENDING_HARD_FACTOR) {
            let detail = format!(
                "{} prices already wait for their statistics (twice max_pending_prices, and \
                 reading prices did not pause); price of {} at {} dropped",
                self.pending,
                price.key,
                format_millis(price.event_ms)
            );
            return self.reject(
                out,
                record,
                Invalid {
                    reason: "too_many_pending",
                    detail,
                },
            );
        }
        if !self.evict_due(price.event_ms, out) {
            self.deferred = Some(OwnedRecord::new(record));
            return;
        }
        let pending = PendingPrice::new(price.value.value, record);
        let (writer, slide_ms) = (&self.writer, self.slide.as_millis());
        // Every event decides a probe: this price, or one that waited (evicted as idle).
        let mut decided = 0_usize;
        self.join
            .push_probe(price.key.as_ref(), price.event_ms, pending, &mut |event| {
                decided += 1;
                on_join_event(writer, out, slide_ms, event);
            });
        self.pending = (self.pending + 1).saturating_sub(decided);
    }

    fn process_stats(&mut self, record: &InputRecord<'_>, out: &mut Emitter) {
        let stats = match self.stats.parse(record.payload) {
            Ok(stats) => stats,
            Err(invalid) => return self.reject(out, record, invalid),
        };
        if let Err(invalid) = self.guard(&stats.key, stats.time_ms) {
            return self.reject(out, record, invalid);
        }
        self.balance.stats_seen(stats.time_ms);
        if !self.evict_due(stats.time_ms, out) {
            self.deferred = Some(OwnedRecord::new(record));
            return;
        }
        let prepared = self.writer.prepare(&stats.windows);
        let (writer, slide_ms, pending) = (&self.writer, self.slide.as_millis(), &mut self.pending);
        let outcome = self.join.push_table_bounded(
            stats.key.as_ref(),
            stats.time_ms,
            prepared,
            &mut |event| on_waiting_decided(writer, out, slide_ms, pending, event),
        );
        let at = format_millis(stats.time_ms);
        let invalid = match outcome {
            TableOutcome::Accepted | TableOutcome::Duplicate => return,
            TableOutcome::Refused(cause) => {
                let (reason, detail) = refusal(&stats.key, stats.time_ms, cause);
                Invalid { reason, detail }
            }
            TableOutcome::TableFull { max_per_key } => Invalid {
                reason: "too_many_stats",
                detail: format!(
                    "statistics of {} at {at} refused: the symbol already holds {max_per_key} \
                     statistics records not yet passed by its prices (max_stats_per_key)",
                    stats.key
                ),
            },
            TableOutcome::Misaligned => Invalid {
                reason: "misaligned_stats",
                detail: format!(
                    "statistics of {} at {at} do not end at a multiple of the slide {}",
                    stats.key, self.slide
                ),
            },
            TableOutcome::Late { watermark_ms } => Invalid {
                reason: "late",
                detail: format!(
                    "statistics of {} at {at} are behind the statistics watermark {}",
                    stats.key,
                    format_millis(watermark_ms)
                ),
            },
            TableOutcome::Superseded { latest_table_ms } => Invalid {
                reason: "stale_stats",
                detail: format!(
                    "statistics of {} at {at} arrived after those at {}",
                    stats.key,
                    format_millis(latest_table_ms)
                ),
            },
        };
        self.reject(out, record, invalid);
    }
}

impl Transform for ZScoreTransform {
    fn process(&mut self, record: &InputRecord<'_>, out: &mut Emitter) {
        match record.port {
            PRICES => self.process_price(record, out),
            STATS => self.process_stats(record, out),
            port => self.reject(
                out,
                record,
                Invalid {
                    reason: "unknown_port",
                    detail: format!("zscore has input ports 0 and 1, got {port}"),
                },
            ),
        }
    }

    fn input_full(&self, port: usize) -> bool {
        match port {
            PRICES => self.balance.prices_full(self.pending),
            STATS => self.balance.stats_full(self.pending),
            _ => false,
        }
    }

    fn end_of_input(&mut self, out: &mut Emitter) {
        let (writer, slide_ms, pending) = (&self.writer, self.slide.as_millis(), &mut self.pending);
        self.join.end_of_input_bounded(&mut |event| {
            on_waiting_decided(writer, out, slide_ms, pending, event)
        });
    }

    fn emit_pending(&mut self, out: &mut Emitter) {
        let (writer, slide_ms, pending) = (&self.writer, self.slide.as_millis(), &mut self.pending);
        let done = self
            .join
            .emit_pending(&mut |event| on_waiting_decided(writer, out, slide_ms, pending, event));
        if done {
            if let Some(record) = self.deferred.take() {
                self.process(&record.as_input(), out);
            }
        }
    }

    fn input_ended(&mut self, port: usize, _out: &mut Emitter) {
        // No price can come: statistics can only decide the prices already waiting.
        if port == PRICES {
            self.join.probe_input_ended();
            self.balance.prices_ended();
        }
    }

    fn watermarks(&self) -> Vec<(String, i64)> {
        self.join
            .probe_watermarks()
            .filter(|(_, w)| *w != i64::MAX)
            .map(|(symbol, w)| (symbol.name.to_string(), w))
            .collect()
    }

    fn checkpoint(&self) -> Option<String> {
        match serde_json::to_string(&self.join.checkpoint()) {
            Ok(json) => Some(json),
            Err(e) => {
                // Not reachable for string keys and integers; without a checkpoint the
                // restart resumes at the committed offsets.
                tracing::error!(stage = %self.stage, "cannot serialize the join checkpoint: {e}");
                None
            }
        }
    }

    fn resume(&mut self, checkpoint: Option<&str>) -> Result<Resume, ConnectorError> {
        let Some(text) = checkpoint else {
            return Ok(Resume::FromCommitted);
        };
        let checkpoint = parse_checkpoint(text)?;
        self.join.resume(&checkpoint);
        Ok(replay_of(&checkpoint, self.slide.as_millis()))
    }

    fn replay_from(&self, checkpoint: &str) -> Result<Resume, ConnectorError> {
        Ok(replay_of(
            &parse_checkpoint(checkpoint)?,
            self.slide.as_millis(),
        ))
    }
}

fn parse_checkpoint(text: &str) -> Result<JoinCheckpoint<Symbol>, ConnectorError> {
    serde_json::from_str(text)
        .map_err(|e| ConnectorError::Fatal(format!("invalid zscore checkpoint {text:?}: {e}")))
}

fn replay_of(checkpoint: &JoinCheckpoint<Symbol>, slide_ms: i64) -> Resume {
    match checkpoint.replay_from(slide_ms) {
        Some(event_time_ms) => Resume::ReplayFrom { event_time_ms },
        None => Resume::FromCommitted,
    }
}
