//! The `zscore` stage's `config:` block and its checks.

use framework::{
    event_time::{guard, KeyLimits},
    schemars::JsonSchema,
    ConfigIssue, ConnectorConfig, DurationSpec, ValidationContext,
};
use serde::Deserialize;

use crate::STATS;

fn default_slide() -> DurationSpec {
    DurationSpec::from_secs(1)
}

fn default_lateness() -> DurationSpec {
    DurationSpec::from_secs(10)
}

/// Configuration of the `zscore` transform.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZScoreConfig {
    /// Slide `S` of the moving statistics: a price at time `t` is compared with the
    /// statistics record of its symbol ending at `floor(t / S) * S`. Must equal the `slide`
    /// of the stage writing the statistics topic.
    #[serde(default = "default_slide")]
    pub slide: DurationSpec,
    /// Allowed lateness, per symbol and per input: a price (or statistics record) whose
    /// time is more than this behind the newest one of its symbol is dropped as `late`.
    #[serde(default = "default_lateness")]
    pub lateness: DurationSpec,
    /// How far ahead of the wall clock a price's or statistics record's time may be (0s
    /// to 7d). Later ones are refused as `future` and never move a watermark.
    #[serde(default = "default_max_future_skew")]
    pub max_future_skew: DurationSpec,
    /// Most symbols with state per input partition (1 to 1,000,000; default 4000, which keeps
    /// a checkpoint within a 1 MB Kafka message: above it raise `message.max.bytes`): a record of a new symbol
    /// beyond it is refused as `too_many_keys`.
    #[serde(default = "default_max_keys")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_keys: usize,
    /// A symbol whose newest record trails the partition's newest record by more than this
    /// is evicted; its waiting prices become `unmatched` (default 1d; 1s to 365d).
    #[serde(default)]
    pub key_idle_timeout: Option<DurationSpec>,
    /// Most prices of one partition waiting for their statistics (1 to 10,000,000). While
    /// that many wait (the statistics lag far behind), a new price is dropped as
    /// `too_many_pending` (counted, dead-lettered) instead of growing memory.
    #[serde(default = "default_max_pending_prices")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub max_pending_prices: usize,
}

fn default_max_pending_prices() -> usize {
    100_000
}

/// Range of `max_pending_prices`.
pub const MAX_PENDING_PRICES_RANGE: std::ops::RangeInclusive<usize> = 1..=10_000_000;

fn default_max_future_skew() -> DurationSpec {
    DurationSpec::from_millis(guard::DEFAULT_MAX_FUTURE_SKEW_MS)
}

fn default_max_keys() -> usize {
    guard::MAX_KEYS_LIMIT
}

impl Default for ZScoreConfig {
    fn default() -> Self {
        ZScoreConfig {
            slide: default_slide(),
            lateness: default_lateness(),
            max_future_skew: default_max_future_skew(),
            max_keys: default_max_keys(),
            key_idle_timeout: None,
            max_pending_prices: default_max_pending_prices(),
        }
    }
}

impl ZScoreConfig {
    /// The bounds on keyed state per partition.
    pub fn key_limits(&self) -> KeyLimits {
        KeyLimits {
            max_keys: self.max_keys,
            idle_ms: self
                .key_idle_timeout
                .map_or(guard::DEFAULT_KEY_IDLE_MS, DurationSpec::as_millis),
        }
    }
}

impl ConnectorConfig for ZScoreConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.slide.as_millis() <= 0 {
            issues.push(ConfigIssue::new(
                "slide",
                format!("slide must be positive, got {}", self.slide),
            ));
        }
        if self.lateness.as_millis() < 0 {
            issues.push(ConfigIssue::new(
                "lateness",
                format!("lateness must not be negative, got {}", self.lateness),
            ));
        }
        // Upper bounds: state per symbol grows with both.
        let day = DurationSpec::from_secs(86_400);
        for (path, value) in [("slide", self.slide), ("lateness", self.lateness)] {
            if value > day {
                issues.push(ConfigIssue::new(
                    path,
                    format!("{path} must be at most {day}"),
                ));
            }
        }
        if !MAX_PENDING_PRICES_RANGE.contains(&self.max_pending_prices) {
            issues.push(ConfigIssue::new(
                "max_pending_prices",
                format!(
                    "{} is out of range: {} to {}",
                    self.max_pending_prices,
                    MAX_PENDING_PRICES_RANGE.start(),
                    MAX_PENDING_PRICES_RANGE.end()
                ),
            ));
        }
        issues.extend(guard::check_settings(
            self.max_future_skew.as_millis(),
            self.max_keys,
            self.key_idle_timeout.map(DurationSpec::as_millis),
            0,
        ));
        issues
    }

    fn check_inputs(&self, inputs: &ValidationContext) -> Vec<ConfigIssue> {
        let Some(Some(writer)) = inputs.input_attributes.get(STATS) else {
            return Vec::new();
        };
        let Some(theirs) = writer.get("slide") else {
            return Vec::new();
        };
        // Compared as durations: "60s" and "1m" are the same slide.
        if theirs.parse::<DurationSpec>().ok() == Some(self.slide) {
            return Vec::new();
        }
        vec![ConfigIssue::new(
            "slide",
            format!(
                "slide {} differs from the slide {theirs} of the statistics writer; \
                 z-scores would match no statistics",
                self.slide
            ),
        )]
    }
}
