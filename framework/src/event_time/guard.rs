//! Guards of keyed event-time state against hostile input (issue 10 §2):
//!
//! * [`FutureGuard`]: a record more than `max_future_skew` ahead of the wall clock would
//!   move its key's watermark so far that every later record is late (even after a
//!   restart), so it is refused as `future` before it touches any state.
//! * [`KeyLimits`]: a cap on live keys per partition (new keys beyond it are refused as
//!   `too_many_keys`) and idle-key eviction, so memory, checkpoints and metric label sets
//!   stay bounded however many distinct keys arrive.
//!
//! The wall clock is injectable ([`Clock`]), so tests replay with a virtual one.

use std::sync::Arc;

/// Reason label of records too far in the future.
pub const FUTURE: &str = "future";
/// Reason label of records of a new key when the partition holds the most keys allowed.
pub const TOO_MANY_KEYS: &str = "too_many_keys";

/// Milliseconds since the Unix epoch, now.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The real wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// Refuses event times more than `max_skew_ms` ahead of the clock.
#[derive(Clone)]
pub struct FutureGuard {
    max_skew_ms: i64,
    clock: Clock,
    /// The clock's last reading: wall time only moves forward, so a record accepted
    /// against it is accepted against the current time too, and the clock is read only
    /// when a record looks too new (keeps the hot path free of clock calls).
    seen_now_ms: i64,
}

impl std::fmt::Debug for FutureGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FutureGuard")
            .field("max_skew_ms", &self.max_skew_ms)
            .field("seen_now_ms", &self.seen_now_ms)
            .finish()
    }
}

impl FutureGuard {
    pub fn new(max_skew_ms: i64, clock: Clock) -> Self {
        FutureGuard {
            max_skew_ms: max_skew_ms.max(0),
            clock,
            seen_now_ms: i64::MIN,
        }
    }

    /// `Err(now_ms)` when `event_ms` is more than the allowed skew ahead of now.
    pub fn check(&mut self, event_ms: i64) -> Result<(), i64> {
        if event_ms <= self.seen_now_ms.saturating_add(self.max_skew_ms) {
            return Ok(());
        }
        self.seen_now_ms = self.seen_now_ms.max((self.clock)());
        if event_ms <= self.seen_now_ms.saturating_add(self.max_skew_ms) {
            Ok(())
        } else {
            Err(self.seen_now_ms)
        }
    }

    pub fn max_skew_ms(&self) -> i64 {
        self.max_skew_ms
    }
}

/// Bounds on the keyed state of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    /// Most keys with state; a record of a new key beyond it is refused.
    pub max_keys: usize,
    /// A key whose newest event time trails the partition's newest event time by more
    /// than this is evicted (its pending results are emitted first).
    pub idle_ms: i64,
}

impl KeyLimits {
    /// No bound (what the cores did before the limits existed).
    pub const UNBOUNDED: KeyLimits = KeyLimits {
        max_keys: usize::MAX,
        idle_ms: i64::MAX,
    };
}

impl Default for KeyLimits {
    fn default() -> Self {
        Self::UNBOUNDED
    }
}

/// When to look for idle keys: each time the partition's newest event time has moved a
/// quarter of the idle timeout, so a sweep over every key costs O(1) amortized.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdleSweep {
    max_event_ms: Option<i64>,
    next_sweep_ms: Option<i64>,
}

impl IdleSweep {
    /// Notes a record's event time; returns the cutoff (keys whose newest event time is
    /// below it are idle) when a sweep is due.
    pub fn observe(&mut self, event_ms: i64, limits: &KeyLimits) -> Option<i64> {
        let max = self.max_event_ms.map_or(event_ms, |m| m.max(event_ms));
        self.max_event_ms = Some(max);
        if limits.idle_ms == i64::MAX {
            return None;
        }
        match self.next_sweep_ms {
            Some(next) if max < next => None,
            _ => {
                self.next_sweep_ms = Some(max.saturating_add((limits.idle_ms / 4).max(1)));
                Some(max.saturating_sub(limits.idle_ms))
            }
        }
    }

    /// The cutoff for an immediate sweep (when the key cap is reached).
    pub fn cutoff(&self, limits: &KeyLimits) -> Option<i64> {
        if limits.idle_ms == i64::MAX {
            return None;
        }
        self.max_event_ms.map(|m| m.saturating_sub(limits.idle_ms))
    }
}

/// Default `max_future_skew`: one minute ahead of the wall clock.
pub const DEFAULT_MAX_FUTURE_SKEW_MS: i64 = 60_000;
/// Largest `max_future_skew` accepted: a week.
pub const MAX_FUTURE_SKEW_LIMIT_MS: i64 = 7 * 86_400_000;
/// Default and largest `max_keys` per partition. With keys of at most [`MAX_KEY_BYTES`]
/// printable bytes, a checkpoint holding them all stays below 1 MB, the brokers' default
/// message size, even after JSON escaping twice (worst case ~170 bytes per key).
pub const MAX_KEYS_LIMIT: usize = 4_000;
/// Largest `max_keys` accepted. Above [`MAX_KEYS_LIMIT`] a checkpoint may need up to ~250
/// bytes per key: raise the brokers' and clients' `message.max.bytes` to match.
pub const MAX_KEYS_MAX: usize = 1_000_000;
/// Default `key_idle_timeout`.
pub const DEFAULT_KEY_IDLE_MS: i64 = 86_400_000;
/// Largest `key_idle_timeout` accepted: a year.
pub const KEY_IDLE_LIMIT_MS: i64 = 365 * 86_400_000;
/// Longest key (symbol) kept in keyed state, in bytes.
pub const MAX_KEY_BYTES: usize = 32;

/// Why a key cannot be held in keyed state: too long, or with control characters (which
/// would bloat checkpoints when escaped).
pub fn check_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "symbol of {} bytes is longer than {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(format!("symbol {key:?} holds control characters"));
    }
    Ok(())
}

/// Range checks of the guard settings shared by keyed connectors, as config issues.
pub fn check_settings(
    max_future_skew_ms: i64,
    max_keys: usize,
    key_idle_ms: Option<i64>,
    min_idle_ms: i64,
) -> Vec<crate::ConfigIssue> {
    use crate::ConfigIssue;
    let mut issues = Vec::new();
    if !(0..=MAX_FUTURE_SKEW_LIMIT_MS).contains(&max_future_skew_ms) {
        issues.push(ConfigIssue::new(
            "max_future_skew",
            format!(
                "max_future_skew must be between 0s and {}",
                crate::DurationSpec::from_millis(MAX_FUTURE_SKEW_LIMIT_MS)
            ),
        ));
    }
    if !(1..=MAX_KEYS_MAX).contains(&max_keys) {
        issues.push(ConfigIssue::new(
            "max_keys",
            format!(
                "max_keys must be between 1 and {MAX_KEYS_MAX} (above {MAX_KEYS_LIMIT}, \
                 checkpoints need a larger message.max.bytes): spread more keys over more \
                 partitions"
            ),
        ));
    }
    if let Some(idle) = key_idle_ms {
        let min = min_idle_ms.max(1_000);
        if !(min..=KEY_IDLE_LIMIT_MS).contains(&idle) {
            issues.push(ConfigIssue::new(
                "key_idle_timeout",
                format!(
                    "key_idle_timeout must be between {} and {} (at least the longest \
                     window plus the lateness, so that evicting a key changes no output)",
                    crate::DurationSpec::from_millis(min),
                    crate::DurationSpec::from_millis(KEY_IDLE_LIMIT_MS)
                ),
            ));
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[test]
    fn future_records_are_refused_against_an_injected_clock_that_is_read_lazily() {
        let now = Arc::new(AtomicI64::new(1_000_000));
        let reads = Arc::new(AtomicI64::new(0));
        let (n, r) = (now.clone(), reads.clone());
        let mut guard = FutureGuard::new(
            60_000,
            Arc::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
                n.load(Ordering::SeqCst)
            }),
        );
        assert_eq!(guard.check(1_060_000), Ok(()));
        assert_eq!(guard.check(1_060_001), Err(1_000_000));
        assert_eq!(guard.check(0), Ok(()), "the past is always fine");
        let before = reads.load(Ordering::SeqCst);
        assert_eq!(guard.check(1_000_500), Ok(()));
        assert_eq!(reads.load(Ordering::SeqCst), before, "no clock read needed");
        now.store(2_000_000, Ordering::SeqCst);
        assert_eq!(guard.check(1_060_001), Ok(()), "the clock caught up");
        assert_eq!(guard.check(i64::MAX), Err(2_000_000));
    }

    #[test]
    fn settings_out_of_range_are_named() {
        assert!(check_settings(60_000, 100, None, 0).is_empty());
        let paths: Vec<String> = check_settings(-1, 0, Some(500), 0)
            .into_iter()
            .map(|i| i.path)
            .collect();
        assert_eq!(paths, ["max_future_skew", "max_keys", "key_idle_timeout"]);
        assert_eq!(check_settings(0, MAX_KEYS_MAX + 1, None, 0).len(), 1);
        assert_eq!(check_settings(0, 1, Some(60_000), 120_000).len(), 1);
    }

    #[test]
    fn long_or_control_keys_are_refused() {
        assert!(check_key("BTCUSDT").is_ok());
        assert!(check_key(&"X".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(check_key(&"X".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert!(check_key("A\u{0}B").is_err());
    }

    #[test]
    fn sweeps_are_due_every_quarter_of_the_idle_timeout() {
        let limits = KeyLimits {
            max_keys: 10,
            idle_ms: 4_000,
        };
        let mut sweep = IdleSweep::default();
        assert_eq!(sweep.observe(10_000, &limits), Some(6_000));
        assert_eq!(sweep.observe(10_999, &limits), None);
        assert_eq!(
            sweep.observe(5, &limits),
            None,
            "older records change nothing"
        );
        assert_eq!(sweep.observe(11_000, &limits), Some(7_000));
        assert_eq!(sweep.cutoff(&limits), Some(7_000));
        assert_eq!(IdleSweep::default().observe(1, &KeyLimits::UNBOUNDED), None);
    }
}
