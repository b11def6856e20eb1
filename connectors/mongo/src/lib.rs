//! `mongo`: a sink that writes JSON object records to MongoDB. Each record (or each
//! element of its `explode` array, merged with the record's other fields) becomes one
//! document in the collection its `collection` template names, upserted by `key`:
//!
//! ```yaml
//! config:
//!   collection: "btc-price-zscore-{window}"
//!   explode: zscores
//!   key: [symbol, timestamp]
//!   date_fields: [timestamp]
//! ```
//!
//! * Idempotent: a unique index on the `key` fields; each batch is inserted, and the
//!   documents the index refuses as duplicates (a re-delivery) are replaced by upserts
//!   filtered on the key, so re-delivered batches overwrite instead of duplicating.
//! * One unordered `bulkWrite` per batch across all collections (a second one for the
//!   re-delivered documents, after the first is answered).
//! * Transient errors are retried with exponential backoff until success or shutdown
//!   (backpressure: the runtime consumes nothing meanwhile), each retry counted in the
//!   stage's `pipeline_sink_write_retries_total`; bad records and documents the server
//!   refuses for good are reported in [`framework::WriteOutcome::rejected`].
//!
//! Modules by role: [`config`], [`template`] and [`documents`] (what is written),
//! `plan` (a batch's documents), `setup` (client, collections, indexes), `write` and
//! `commands` (the two wire protocols), `retry` (transient errors and backoff).
//! See `README.md` for the configuration and the time-series trade-off.

mod commands;
pub mod config;
pub mod counters;
pub mod documents;
pub mod error;
mod layout_check;
pub mod names;
mod plan;
pub mod redact;
pub mod retry;
mod setup;
pub mod sink;
pub mod template;
mod write;

use framework::{
    connector::StageContext, ConnectorError, InputPort, RecordType, Sink, SinkConnector,
};

pub use config::{
    MongoSinkConfig, RetryConfig, WriteAcknowledgment, WriteCommand, WriteConcernConfig,
};
pub use counters::{CountersSnapshot, SinkCounters, DOCUMENTS_WRITTEN_METRIC};
pub use error::MongoSinkError;
pub use retry::is_transient;
pub use setup::key_index_name;
pub use sink::MongoSink;
pub use template::{template_fields, TemplateError};

/// Registration of the `mongo` sink.
pub struct MongoSinkConnector;

impl SinkConnector for MongoSinkConnector {
    type Config = MongoSinkConfig;
    const NAME: &'static str = "mongo";
    const SUMMARY: &'static str =
        "Writes JSON records to MongoDB: collection from a template, optional explode of an array, idempotent upserts by key";
    const INPUTS: &'static [InputPort] = &[InputPort {
        name: "input",
        // Any JSON object: the fields the sink needs are checked per record.
        record_type: RecordType::ANY_JSON,
    }];

    fn build(config: Self::Config, stage: &StageContext) -> Result<Box<dyn Sink>, ConnectorError> {
        Ok(Box::new(MongoSink::from_checked(config, stage)?))
    }
}

framework::register_sink!(MongoSinkConnector);
