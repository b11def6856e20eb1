//! Counters of a running source (for metrics and the stop summary) and a rate limiter
//! for repeated warnings.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::response::reason;

/// Live counters, shared through an `Arc` so the runtime can export them while the source
/// runs ([`crate::BinanceSource::stats`]).
#[derive(Debug, Default)]
pub struct SourceStats {
    requests: AtomicU64,
    records: AtomicU64,
    rejected: [AtomicU64; reason::ALL.len()],
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

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl SourceStats {
    pub(crate) fn request(&self) {
        bump(&self.requests, 1);
    }
    pub(crate) fn records(&self, n: u64) {
        bump(&self.records, n);
    }
    pub(crate) fn rejected(&self, reason_label: &str) {
        if let Some(i) = reason::ALL.iter().position(|r| *r == reason_label) {
            bump(&self.rejected[i], 1);
        }
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
            rejected: reason::ALL
                .iter()
                .zip(&self.rejected)
                .map(|(r, c)| (*r, get(c)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            retries: get(&self.retries),
            network_errors: get(&self.network_errors),
            server_errors: get(&self.server_errors),
            rate_limited_waits: get(&self.rate_limited_waits),
            rate_limited_wait_ms: get(&self.rate_limited_wait_ms),
            base_url_rotations: get(&self.base_url_rotations),
        }
    }
}

/// Lets one warning through per `period` and counts the ones it held back, so that a
/// five-minute outage logs a handful of lines instead of thousands.
#[derive(Debug)]
pub struct LogLimiter {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(period: Duration) -> Self {
        LogLimiter {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when this occurrence should be logged, `n` being how many were held back
    /// since the last logged one; `None` to stay quiet.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_logs_the_first_then_one_per_period_with_the_held_back_count() {
        let mut l = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0));
        for i in 1..=50 {
            assert_eq!(l.allow(t0 + Duration::from_millis(100 * i)), None);
        }
        assert_eq!(l.allow(t0 + Duration::from_secs(10)), Some(50));
        assert_eq!(l.allow(t0 + Duration::from_secs(11)), None);
    }

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
