//! Counters of the sink that the runtime's stage metrics do not already cover, exported
//! through the stage metrics (`pipeline_mongo_documents_written_total{outcome}`) and
//! readable in process (`snapshot`, for tests and the benchmark).
//!
//! Batches, write latency, rejections per reason and retries are the runtime's series
//! (`pipeline_sink_write_duration_seconds`, `pipeline_rejected_records_total`,
//! `pipeline_sink_write_retries_total`, fed by
//! `framework::retry::Retry` through `SinkContext::retry_counter`).

use framework::{connector::StageContext, metrics::LiveCounter};

/// Name of the exported counter of acknowledged documents.
pub const DOCUMENTS_WRITTEN_METRIC: &str = "pipeline_mongo_documents_written_total";

/// Live counters of one sink instance.
#[derive(Debug)]
pub struct SinkCounters {
    inserted: LiveCounter,
    replaced: LiveCounter,
    /// In process only: the runtime's `pipeline_sink_write_retries_total` exports them.
    retries: LiveCounter,
}

/// A copy of [`SinkCounters`] for reporting and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Documents acknowledged by the server (new plus overwritten).
    pub documents_written: u64,
    /// Documents that did not exist before (upserted or inserted).
    pub documents_inserted: u64,
    /// Documents that already existed and were overwritten (re-delivery).
    pub documents_replaced: u64,
    /// Failed attempts that were retried (bulk writes, index and collection creation);
    /// each is also counted in the stage's `pipeline_sink_write_retries_total`.
    pub retries: u64,
}

impl SinkCounters {
    /// Counters of `stage`, registered with the installed metrics recorder.
    pub fn new(stage: &StageContext) -> Self {
        SinkCounters {
            inserted: stage.live_counter(DOCUMENTS_WRITTEN_METRIC, &[("outcome", "inserted")]),
            replaced: stage.live_counter(DOCUMENTS_WRITTEN_METRIC, &[("outcome", "replaced")]),
            retries: LiveCounter::default(),
        }
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let (inserted, replaced) = (self.inserted.get(), self.replaced.get());
        CountersSnapshot {
            documents_written: inserted + replaced,
            documents_inserted: inserted,
            documents_replaced: replaced,
            retries: self.retries.get(),
        }
    }

    pub(crate) fn add_written(&self, inserted: u64, replaced: u64) {
        self.inserted.add(inserted);
        self.replaced.add(replaced);
    }

    pub(crate) fn add_retry(&self) {
        self.retries.add(1);
    }
}
