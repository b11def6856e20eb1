//! Counters of the sink that the runtime's stage metrics do not already cover, exported
//! through the stage metrics (`pipeline_mongo_documents_written_total{outcome}`) and
//! readable in process (`snapshot`, for tests and the benchmark).
//!
//! Batches, write latency, rejections per reason and retries are the runtime's series
//! (`pipeline_sink_write_duration_seconds`, `pipeline_rejected_records_total`,
//! `pipeline_sink_write_retries_total`, fed by `SinkContext::record_retry`).

use std::sync::atomic::{AtomicU64, Ordering};

use framework::connector::StageContext;

/// Name of the exported counter of acknowledged documents.
pub const DOCUMENTS_WRITTEN_METRIC: &str = "pipeline_mongo_documents_written_total";

/// Live counters of one sink instance.
#[derive(Debug)]
pub struct SinkCounters {
    inserted: AtomicU64,
    replaced: AtomicU64,
    retries: AtomicU64,
    exported_inserted: metrics::Counter,
    exported_replaced: metrics::Counter,
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
            inserted: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            exported_inserted: stage.counter(DOCUMENTS_WRITTEN_METRIC, &[("outcome", "inserted")]),
            exported_replaced: stage.counter(DOCUMENTS_WRITTEN_METRIC, &[("outcome", "replaced")]),
        }
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let inserted = self.inserted.load(Ordering::Relaxed);
        let replaced = self.replaced.load(Ordering::Relaxed);
        CountersSnapshot {
            documents_written: inserted + replaced,
            documents_inserted: inserted,
            documents_replaced: replaced,
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_written(&self, inserted: u64, replaced: u64) {
        self.inserted.fetch_add(inserted, Ordering::Relaxed);
        self.replaced.fetch_add(replaced, Ordering::Relaxed);
        self.exported_inserted.increment(inserted);
        self.exported_replaced.increment(replaced);
    }

    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
}
