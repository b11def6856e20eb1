//! Counters of a running source (for metrics and the stop summary).

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use serde::Serialize;

use crate::response::reason;

/// Live counters, shared through an `Arc` so the runtime can export them while the source
/// runs ([`crate::BinanceSource::stats`]).
#[derive(Debug)]
pub struct SourceStats {
    requests: AtomicU64,
    records: AtomicU64,
    rejected: ReasonCounts,
    retries: AtomicU64,
    network_errors: AtomicU64,
    server_errors: AtomicU64,
    rate_limited_waits: AtomicU64,
    rate_limited_wait_ms: AtomicU64,
    base_url_rotations: AtomicU64,
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// HTTP requests sent (including failed ones).
    pub requests: u64,
    /// Records emitted.
    pub records: u64,
    /// Refused answers (or array elements), by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Failed requests that were retried after a backoff.
    pub retries: u64,
    /// Requests that failed without an HTTP answer (connect, reset, timeout).
    pub network_errors: u64,
    /// 5xx answers.
    pub server_errors: u64,
    /// 429/418 answers honoured by waiting `Retry-After`.
    pub rate_limited_waits: u64,
    /// Total time spent waiting for `Retry-After`.
    pub rate_limited_wait_ms: u64,
    /// Moves to the next base URL after repeated failures.
    pub base_url_rotations: u64,
}

impl StatsSnapshot {
    /// Rejections under `reason` (0 when none).
    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected.get(reason).copied().unwrap_or(0)
    }
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Adds `by` to a live counter.
pub fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Live counts of refused input per reason, out of a source's fixed list of reasons
/// (shared by both Binance sources).
#[derive(Debug)]
pub struct ReasonCounts {
    reasons: &'static [&'static str],
    counts: Box<[AtomicU64]>,
}

impl ReasonCounts {
    pub fn new(reasons: &'static [&'static str]) -> Self {
        ReasonCounts {
            reasons,
            counts: reasons.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one refusal; a reason outside the list is not counted.
    pub fn add(&self, reason: &str) {
        if let Some(i) = self.reasons.iter().position(|r| *r == reason) {
            bump(&self.counts[i], 1);
        }
    }

    /// The reasons that occurred, with their counts.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.reasons
            .iter()
            .zip(self.counts.iter())
            .map(|(r, c)| (*r, c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

impl Default for SourceStats {
    fn default() -> Self {
        SourceStats {
            requests: AtomicU64::new(0),
            records: AtomicU64::new(0),
            rejected: ReasonCounts::new(&reason::ALL),
            retries: AtomicU64::new(0),
            network_errors: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            rate_limited_waits: AtomicU64::new(0),
            rate_limited_wait_ms: AtomicU64::new(0),
            base_url_rotations: AtomicU64::new(0),
        }
    }
}

impl SourceStats {
    pub(crate) fn request(&self) {
        bump(&self.requests, 1);
    }
    pub(crate) fn records(&self, n: u64) {
        bump(&self.records, n);
    }
    pub(crate) fn rejected(&self, reason_label: &str) {
        self.rejected.add(reason_label);
    }
    pub(crate) fn retry(&self) {
        bump(&self.retries, 1);
    }
    pub(crate) fn network_error(&self) {
        bump(&self.network_errors, 1);
    }
    pub(crate) fn server_error(&self) {
        bump(&self.server_errors, 1);
    }
    pub(crate) fn rate_limited(&self, wait: Duration) {
        bump(&self.rate_limited_waits, 1);
        bump(
            &self.rate_limited_wait_ms,
            u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        );
    }
    pub(crate) fn rotation(&self) {
        bump(&self.base_url_rotations, 1);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            requests: get(&self.requests),
            records: get(&self.records),
            rejected: self.rejected.snapshot(),
            retries: get(&self.retries),
            network_errors: get(&self.network_errors),
            server_errors: get(&self.server_errors),
            rate_limited_waits: get(&self.rate_limited_waits),
            rate_limited_wait_ms: get(&self.rate_limited_wait_ms),
            base_url_rotations: get(&self.base_url_rotations),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lists_only_reasons_that_occurred() {
        let s = SourceStats::default();
        s.rejected(reason::INVALID_PRICE);
        s.rejected(reason::INVALID_PRICE);
        s.rejected("not_a_reason");
        s.records(3);
        let snap = s.snapshot();
        assert_eq!(snap.rejected(reason::INVALID_PRICE), 2);
        assert_eq!(snap.rejected.len(), 1);
        assert_eq!(snap.records, 3);
    }
}
