//! `mongo`: a sink that writes `btc-price-zscore` records to MongoDB, one collection per
//! window (`<collection_prefix><window>`), one document per (symbol, price timestamp):
//!
//! ```json
//! {timestamp: <Date>, symbol: "BTCUSDT", window: "30s", zscore_price: <double>, price: <double>}
//! ```
//!
//! * Idempotent: replace-one upserts filtered on `{symbol, timestamp}`, backed by a
//!   unique index, so re-delivered batches overwrite instead of duplicating.
//! * One unordered `bulkWrite` per batch across all window collections.
//! * Transient errors are retried with exponential backoff until success or shutdown
//!   (backpressure: the runtime consumes nothing meanwhile); bad records and documents
//!   the server refuses for good are reported in [`framework::WriteOutcome::rejected`].
//!
//! See `README.md` for the configuration and the time-series trade-off.

pub mod config;
pub mod counters;
pub mod decode;
pub mod error;
pub mod redact;
pub mod sink;

use framework::{
    connector::StageContext, ConnectorError, InputPort, RecordType, Sink, SinkConnector,
};

pub use config::{
    MongoSinkConfig, RetryConfig, WriteAcknowledgment, WriteCommand, WriteConcernConfig,
};
pub use counters::{CountersSnapshot, SinkCounters};
pub use error::MongoSinkError;
pub use sink::{is_transient, MongoSink, KEY_INDEX_NAME};

/// The record type the sink reads (semantics.md §1, `btc-price-zscore`).
pub const ZSCORE: RecordType = RecordType("zscore");

/// Registration of the `mongo` sink.
pub struct MongoSinkConnector;

impl SinkConnector for MongoSinkConnector {
    type Config = MongoSinkConfig;
    const NAME: &'static str = "mongo";
    const SUMMARY: &'static str =
        "Writes z-score records to MongoDB, one collection per window, upserted by (symbol, timestamp)";
    const INPUTS: &'static [InputPort] = &[InputPort {
        name: "input",
        record_type: ZSCORE,
    }];

    fn build(config: Self::Config, stage: &StageContext) -> Result<Box<dyn Sink>, ConnectorError> {
        Ok(Box::new(MongoSink::new(config, stage)?))
    }
}

framework::register_sink!(MongoSinkConnector);
