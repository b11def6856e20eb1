//! Counters of the sink, shared with whoever exposes them as metrics.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, PoisonError,
    },
    time::Duration,
};

/// Live counters of one sink instance (cheap to update, readable from any thread).
#[derive(Debug, Default)]
pub struct SinkCounters {
    batches: AtomicU64,
    documents_written: AtomicU64,
    documents_inserted: AtomicU64,
    documents_replaced: AtomicU64,
    retries: AtomicU64,
    last_write_latency_us: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

/// A consistent-enough copy of [`SinkCounters`] for reporting and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Batches that `write` completed (returned `Ok`).
    pub batches: u64,
    /// Documents acknowledged by the server (new plus overwritten).
    pub documents_written: u64,
    /// Documents that did not exist before (upserted or inserted).
    pub documents_inserted: u64,
    /// Documents that already existed and were overwritten (re-delivery).
    pub documents_replaced: u64,
    /// Failed attempts that were retried (bulk writes, index and collection creation).
    pub retries: u64,
    /// Wall time of the last completed `write`, retries included.
    pub last_write_latency: Duration,
    /// Rejected input records per reason label.
    pub rejected: BTreeMap<&'static str, u64>,
}

impl SinkCounters {
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            batches: self.batches.load(Ordering::Relaxed),
            documents_written: self.documents_written.load(Ordering::Relaxed),
            documents_inserted: self.documents_inserted.load(Ordering::Relaxed),
            documents_replaced: self.documents_replaced.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            last_write_latency: Duration::from_micros(
                self.last_write_latency_us.load(Ordering::Relaxed),
            ),
            rejected: self
                .rejected
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    pub(crate) fn add_written(&self, inserted: u64, replaced: u64) {
        self.documents_inserted
            .fetch_add(inserted, Ordering::Relaxed);
        self.documents_replaced
            .fetch_add(replaced, Ordering::Relaxed);
        self.documents_written
            .fetch_add(inserted + replaced, Ordering::Relaxed);
    }

    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_rejected(&self, reason: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(reason)
            .or_default() += 1;
    }

    pub(crate) fn finish_batch(&self, latency: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.last_write_latency_us.store(micros, Ordering::Relaxed);
    }
}
