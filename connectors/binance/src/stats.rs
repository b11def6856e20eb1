//! Counters of a running source: exported with the stage metrics (`pipeline_binance_*`,
//! labels `stage` and `connector`) and readable in process (tests, the stop summary).
//! Records, rejections and retries are the runtime's series already
//! (`pipeline_records_out_total`, `pipeline_rejected_records_total`,
//! `pipeline_source_retries_total`), so those stay in process only.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use framework::{connector::StageContext, metrics::LiveCounter};
use serde::Serialize;

use crate::response::reason;

/// Exported HTTP requests sent.
pub const REQUESTS_METRIC: &str = "pipeline_binance_requests_total";
/// Exported failed requests, by `kind`: `network` (no answer) or `server` (5xx).
pub const REQUEST_ERRORS_METRIC: &str = "pipeline_binance_request_errors_total";
/// Exported waits for `Retry-After` (429/418 answers).
pub const RATE_LIMITED_WAITS_METRIC: &str = "pipeline_binance_rate_limited_waits_total";
/// Exported moves to the next base URL.
pub const BASE_URL_ROTATIONS_METRIC: &str = "pipeline_binance_base_url_rotations_total";

/// Live counters, shared through an `Arc` with tests ([`crate::BinanceSource::stats`]).
#[derive(Debug)]
pub struct SourceStats {
    requests: LiveCounter,
    records: LiveCounter,
    rejected: ReasonCounts,
    retries: LiveCounter,
    network_errors: LiveCounter,
    server_errors: LiveCounter,
    rate_limited_waits: LiveCounter,
    rate_limited_wait_ms: LiveCounter,
    base_url_rotations: LiveCounter,
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
    /// Counters that are not exported (a source built outside the runtime).
    fn default() -> Self {
        SourceStats {
            requests: LiveCounter::default(),
            records: LiveCounter::default(),
            rejected: ReasonCounts::new(&reason::ALL),
            retries: LiveCounter::default(),
            network_errors: LiveCounter::default(),
            server_errors: LiveCounter::default(),
            rate_limited_waits: LiveCounter::default(),
            rate_limited_wait_ms: LiveCounter::default(),
            base_url_rotations: LiveCounter::default(),
        }
    }
}

impl SourceStats {
    /// Counters of a running stage, exported with its stage metrics.
    pub fn exported(stage: &StageContext) -> Self {
        SourceStats {
            requests: stage.live_counter(REQUESTS_METRIC, &[]),
            network_errors: stage.live_counter(REQUEST_ERRORS_METRIC, &[("kind", "network")]),
            server_errors: stage.live_counter(REQUEST_ERRORS_METRIC, &[("kind", "server")]),
            rate_limited_waits: stage.live_counter(RATE_LIMITED_WAITS_METRIC, &[]),
            base_url_rotations: stage.live_counter(BASE_URL_ROTATIONS_METRIC, &[]),
            ..SourceStats::default()
        }
    }

    pub(crate) fn request(&self) {
        self.requests.add(1);
    }
    pub(crate) fn records(&self, n: u64) {
        self.records.add(n);
    }
    pub(crate) fn rejected(&self, reason_label: &str) {
        self.rejected.add(reason_label);
    }
    pub(crate) fn retry(&self) {
        self.retries.add(1);
    }
    pub(crate) fn network_error(&self) {
        self.network_errors.add(1);
    }
    pub(crate) fn server_error(&self) {
        self.server_errors.add(1);
    }
    pub(crate) fn rate_limited(&self, wait: Duration) {
        self.rate_limited_waits.add(1);
        self.rate_limited_wait_ms
            .add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
    }
    pub(crate) fn rotation(&self) {
        self.base_url_rotations.add(1);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.get(),
            records: self.records.get(),
            rejected: self.rejected.snapshot(),
            retries: self.retries.get(),
            network_errors: self.network_errors.get(),
            server_errors: self.server_errors.get(),
            rate_limited_waits: self.rate_limited_waits.get(),
            rate_limited_wait_ms: self.rate_limited_wait_ms.get(),
            base_url_rotations: self.base_url_rotations.get(),
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
