//! The `zscore` stage's `config:` block and its checks.

use framework::{
    contract::{NeededField, OutputFields},
    event_time::{KeyGuards, KeyLimits},
    formats::{self, price::PriceFields, FieldMapping},
    schemars::JsonSchema,
    ConfigIssue, ConnectorConfig, DurationSpec, ValidationContext,
};
use serde::Deserialize;

use crate::STATS;

/// Configuration of the `zscore` transform.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZScoreConfig {
    /// Slide `S` of the moving statistics: a price at time `t` is compared with the
    /// statistics record of its symbol ending at `floor(t / S) * S`. Must equal the `slide`
    /// of the stage writing the statistics topic.
    #[serde(default = "formats::default_slide")]
    pub slide: DurationSpec,
    /// Allowed lateness, per symbol and per input: a price (or statistics record) whose
    /// time is more than this behind the newest one of its symbol is dropped as `late`.
    #[serde(default = "formats::default_lateness")]
    pub lateness: DurationSpec,
    /// `max_future_skew`, `max_keys`, `key_idle_timeout`: the bounds on the state per
    /// input partition.
    #[serde(flatten)]
    pub guards: KeyGuards,
    /// Prices of one partition waiting for their statistics (1 to 10,000,000) at which the
    /// join stops reading prices until statistics decide some (backpressure: nothing is
    /// dropped, the price input's lag grows instead). Prices that arrive anyway, past twice
    /// this (a runtime that cannot pause, e.g. a rebalance), are dropped as
    /// `too_many_pending` (counted, dead-lettered) instead of growing memory.
    #[serde(default = "default_max_pending_prices")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub max_pending_prices: usize,
    /// Most statistics records held per symbol (1 to 1,000,000). They are held while
    /// prices could still match them: a symbol holds more than `lateness / slide` + 1 only
    /// while its prices trail its statistics (a backlog being caught up), and the join
    /// stops reading statistics while they run more than half this many slides ahead of
    /// the newest price (backpressure). A newer one beyond the bound is refused as
    /// `too_many_stats` (counted, dead-lettered); the prices it would have matched become
    /// `unmatched`.
    #[serde(default = "default_max_stats_per_key")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_stats_per_key: usize,
    /// Where the key, value and event time of prices are read (`key_field`,
    /// `value_field`, `timestamp_field`). Statistics records hold the key and
    /// `avg_<name>`/`std_<name>` under the last segments of these paths, as `moving_stats`
    /// writes them; so does the output, with `zscore_<name>` per window.
    #[serde(flatten)]
    pub fields: FieldMapping,
    /// Refuse values <= 0 as `invalid_price`, like the `moving_stats` stage should (set
    /// both to false for values that may be zero or negative).
    #[serde(default = "default_positive_only")]
    pub positive_only: bool,
}

fn default_positive_only() -> bool {
    true
}

fn default_max_pending_prices() -> usize {
    100_000
}

fn default_max_stats_per_key() -> usize {
    10_000
}

/// Range of `max_stats_per_key`.
pub const MAX_STATS_PER_KEY_RANGE: std::ops::RangeInclusive<usize> = 1..=1_000_000;

/// Range of `max_pending_prices`.
pub const MAX_PENDING_PRICES_RANGE: std::ops::RangeInclusive<usize> = 1..=10_000_000;

impl Default for ZScoreConfig {
    fn default() -> Self {
        ZScoreConfig {
            slide: formats::default_slide(),
            lateness: formats::default_lateness(),
            guards: KeyGuards::default(),
            max_pending_prices: default_max_pending_prices(),
            max_stats_per_key: default_max_stats_per_key(),
            fields: FieldMapping::default(),
            positive_only: default_positive_only(),
        }
    }
}

impl ZScoreConfig {
    /// Where the key, value and event time of prices are read (when the config is usable).
    pub fn fields(&self) -> Result<PriceFields, String> {
        self.fields.fields()
    }

    /// The bounds on keyed state per partition.
    pub fn key_limits(&self) -> KeyLimits {
        // Any idle timeout is safe: an evicted symbol's waiting prices are reported.
        self.guards.limits(0)
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
        for (path, value, range) in [
            (
                "max_pending_prices",
                self.max_pending_prices,
                MAX_PENDING_PRICES_RANGE,
            ),
            (
                "max_stats_per_key",
                self.max_stats_per_key,
                MAX_STATS_PER_KEY_RANGE,
            ),
        ] {
            if !range.contains(&value) {
                issues.push(ConfigIssue::new(
                    path,
                    format!(
                        "{value} is out of range: {} to {}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        issues.extend(self.guards.check(0));
        issues.extend(self.fields.check());
        issues
    }

    fn output_fields(&self) -> OutputFields {
        match self.fields() {
            Ok(f) => OutputFields::Known(formats::zscore::written_fields(
                f.key.name(),
                f.value.name(),
            )),
            Err(_) => OutputFields::Unknown,
        }
    }

    /// Prices only: the statistics port is checked against its writer's published key and
    /// value names (`check_inputs`), which words the mismatch better.
    fn needed_fields(&self, port: &str) -> Vec<NeededField> {
        if port == crate::PRICES_PORT {
            self.fields.needed_fields()
        } else {
            Vec::new()
        }
    }

    fn check_inputs(&self, inputs: &ValidationContext) -> Vec<ConfigIssue> {
        let Some(Some(writer)) = inputs.input_attributes.get(STATS) else {
            return Vec::new();
        };
        let mut issues = Vec::new();
        // Compared as durations: "60s" and "1m" are the same slide.
        if let Some(theirs) = writer.get(formats::SLIDE_ATTRIBUTE) {
            if theirs.parse::<DurationSpec>().ok() != Some(self.slide) {
                issues.push(ConfigIssue::new(
                    "slide",
                    format!(
                        "slide {} differs from the slide {theirs} of the statistics writer; \
                         z-scores would match no statistics",
                        self.slide
                    ),
                ));
            }
        }
        let Ok(fields) = self.fields() else {
            return issues;
        };
        for (setting, ours, attribute, written) in [
            (
                "value_field",
                fields.value.name(),
                formats::VALUE_ATTRIBUTE,
                "avg_/std_",
            ),
            (
                "key_field",
                fields.key.name(),
                formats::KEY_ATTRIBUTE,
                "its key as",
            ),
        ] {
            if let Some(theirs) = writer.get(attribute).filter(|theirs| *theirs != ours) {
                issues.push(ConfigIssue::new(
                    setting,
                    format!(
                        "{setting} names `{ours}`, but the statistics writer writes \
                         {written}`{theirs}`; every statistics record would be refused"
                    ),
                ));
            }
        }
        issues
    }
}
