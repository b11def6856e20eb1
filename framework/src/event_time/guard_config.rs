//! The key-guard settings every keyed transform's `config:` block shares
//! (`max_future_skew`, `max_keys`, `key_idle_timeout`), flattened into it, with their
//! range checks and the guards they build.

use schemars::JsonSchema;
use serde::Deserialize;

use super::guard::{
    check_settings, Clock, FutureGuard, KeyLimits, DEFAULT_KEY_IDLE_MS, DEFAULT_MAX_FUTURE_SKEW_MS,
    MAX_KEYS_LIMIT,
};
use crate::{ConfigIssue, DurationSpec};

/// Bounds on a keyed transform's state per input partition against hostile input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct KeyGuards {
    /// How far ahead of the wall clock a record's time may be (0s to 7d). Later ones are
    /// refused as `future` and never move a watermark (a year-9999 record would otherwise
    /// make every later record of its key late).
    #[serde(default = "default_max_future_skew")]
    pub max_future_skew: DurationSpec,
    /// Most keys (symbols) with state per input partition (1 to 1,000,000; default 4000,
    /// which keeps a checkpoint within a 1 MB Kafka message: above it raise
    /// `message.max.bytes`): a record of a new key beyond it is refused as
    /// `too_many_keys`. Bounds memory, checkpoints and metrics.
    #[serde(default = "default_max_keys")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_keys: usize,
    /// A key whose newest record trails the partition's newest record by more than this is
    /// evicted: `moving_stats` writes its open windows first, `zscore` reports its waiting
    /// prices `unmatched` (default: the longer of 1d and the stage's minimum, for
    /// `moving_stats` the longest window plus the lateness; at most 365d).
    #[serde(default)]
    pub key_idle_timeout: Option<DurationSpec>,
}

fn default_max_future_skew() -> DurationSpec {
    DurationSpec::from_millis(DEFAULT_MAX_FUTURE_SKEW_MS)
}

fn default_max_keys() -> usize {
    MAX_KEYS_LIMIT
}

impl Default for KeyGuards {
    fn default() -> Self {
        KeyGuards {
            max_future_skew: default_max_future_skew(),
            max_keys: default_max_keys(),
            key_idle_timeout: None,
        }
    }
}

impl KeyGuards {
    /// The bounds on keys; `min_idle_ms` is the shortest idle timeout that changes no
    /// output (0 when any does).
    pub fn limits(&self, min_idle_ms: i64) -> KeyLimits {
        KeyLimits {
            max_keys: self.max_keys,
            idle_ms: self.key_idle_timeout.map_or_else(
                || DEFAULT_KEY_IDLE_MS.max(min_idle_ms),
                DurationSpec::as_millis,
            ),
        }
    }

    /// The guard against times too far ahead of `clock`.
    pub fn future_guard(&self, clock: Clock) -> FutureGuard {
        FutureGuard::new(self.max_future_skew.as_millis(), clock)
    }

    /// Range checks, as config issues (paths relative to the connector's config).
    pub fn check(&self, min_idle_ms: i64) -> Vec<ConfigIssue> {
        check_settings(
            self.max_future_skew.as_millis(),
            self.max_keys,
            self.key_idle_timeout.map(DurationSpec::as_millis),
            min_idle_ms,
        )
    }
}
