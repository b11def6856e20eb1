//! The stage's `config:` block.

use std::collections::HashMap;

use framework::{
    connector::Attributes,
    contract::{NeededField, OutputFields},
    event_time::{KeyGuards, KeyLimits, SlidingWindows},
    formats::{self, price::PriceFields, FieldMapping},
    ConfigIssue, ConnectorConfig, DurationSpec,
};
use schemars::JsonSchema;
use serde::Deserialize;

/// Most windows per stage (each costs state per symbol and bytes per output record).
pub const MAX_WINDOWS: usize = 32;
/// Longest slide.
pub const MAX_SLIDE: DurationSpec = DurationSpec::from_secs(86_400);
/// Longest window.
pub const MAX_WINDOW: DurationSpec = DurationSpec::from_secs(30 * 86_400);

/// Configuration of a `moving_stats` stage.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MovingStatsConfig {
    /// Window lengths, in the order of the output's `stats` entries. Each entry is named
    /// by its canonical form (`60s` is named `1m`), so names must be unique, and each
    /// length must be a positive multiple of `slide`.
    #[serde(default = "default_windows")]
    pub windows: Vec<DurationSpec>,
    /// Distance between consecutive window ends: windows end at every multiple of the
    /// slide since the Unix epoch (Spark's `window(ts, length, slide)`), and one record is
    /// written per symbol and window end.
    #[serde(default = "formats::default_slide")]
    pub slide: DurationSpec,
    /// How far a price may trail the newest event time seen for its symbol and still be
    /// counted (the per-symbol watermark is that newest time minus this). Later prices are
    /// dropped as `late`. A window is written once the watermark passes its end, so this is
    /// also the output delay. Must be shorter than the longest window.
    #[serde(default = "formats::default_lateness")]
    pub lateness: DurationSpec,
    /// `max_future_skew`, `max_keys`, `key_idle_timeout`: the bounds on the state per
    /// input partition.
    #[serde(flatten)]
    pub guards: KeyGuards,
    /// Where the key, value and event time are read (`key_field`, `value_field`,
    /// `timestamp_field`).
    #[serde(flatten)]
    pub fields: FieldMapping,
    /// Refuse values <= 0 as `invalid_price` (a zero price is a feed error). Set to false
    /// for values that may be zero or negative, such as temperatures.
    #[serde(default = "default_positive_only")]
    pub positive_only: bool,
}

fn default_positive_only() -> bool {
    true
}

fn default_windows() -> Vec<DurationSpec> {
    [30, 60, 300, 900, 1_800, 3_600]
        .into_iter()
        .map(DurationSpec::from_secs)
        .collect()
}

impl Default for MovingStatsConfig {
    fn default() -> Self {
        MovingStatsConfig {
            windows: default_windows(),
            slide: formats::default_slide(),
            lateness: formats::default_lateness(),
            guards: KeyGuards::default(),
            fields: FieldMapping::default(),
            positive_only: default_positive_only(),
        }
    }
}

impl MovingStatsConfig {
    /// Names of the windows as written in the output (`window` field), in order.
    pub fn window_names(&self) -> Vec<String> {
        self.windows.iter().map(ToString::to_string).collect()
    }

    /// Shortest idle timeout that cannot change the output: the longest window plus the
    /// lateness.
    fn min_idle_ms(&self) -> i64 {
        let longest = self
            .windows
            .iter()
            .map(|w| w.as_millis())
            .max()
            .unwrap_or(0);
        longest.saturating_add(self.lateness.as_millis())
    }

    /// The bounds on keyed state per partition.
    pub fn key_limits(&self) -> KeyLimits {
        self.guards.limits(self.min_idle_ms())
    }

    /// Where the key, value and event time are read (when the config is usable).
    pub fn fields(&self) -> Result<PriceFields, String> {
        self.fields.fields()
    }

    /// The window geometry, when the config is usable.
    pub fn sliding_windows(
        &self,
    ) -> Result<SlidingWindows, framework::event_time::WindowSpecError> {
        let lengths: Vec<i64> = self.windows.iter().map(|w| w.as_millis()).collect();
        SlidingWindows::new(self.slide.as_millis(), &lengths)
    }
}

impl ConnectorConfig for MovingStatsConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let slide = self.slide.as_millis();
        if slide <= 0 {
            issues.push(ConfigIssue::new("slide", "the slide must be longer than 0"));
        }
        if self.windows.is_empty() {
            issues.push(ConfigIssue::new(
                "windows",
                "at least one window is required",
            ));
        } else if self.windows.len() > MAX_WINDOWS {
            issues.push(ConfigIssue::new(
                "windows",
                format!("at most {MAX_WINDOWS} windows are supported"),
            ));
        }
        if self.slide > MAX_SLIDE {
            issues.push(ConfigIssue::new(
                "slide",
                format!("the slide must be at most {MAX_SLIDE}"),
            ));
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, window) in self.windows.iter().enumerate() {
            let path = format!("windows[{i}]");
            let length = window.as_millis();
            if length <= 0 {
                issues.push(ConfigIssue::new(&path, "a window must be longer than 0"));
            } else if *window > MAX_WINDOW {
                issues.push(ConfigIssue::new(
                    &path,
                    format!("a window must be at most {MAX_WINDOW}"),
                ));
            } else if slide > 0 && length % slide != 0 {
                issues.push(ConfigIssue::new(
                    &path,
                    format!(
                        "window {window} is not a multiple of the slide {}",
                        self.slide
                    ),
                ));
            } else if slide > 0 && length / slide > SlidingWindows::MAX_PANES {
                issues.push(ConfigIssue::new(
                    &path,
                    format!(
                        "window {window} spans {} slides of {}; at most {} are supported \
                         (state per symbol grows with it): use a longer slide",
                        length / slide,
                        self.slide,
                        SlidingWindows::MAX_PANES
                    ),
                ));
            }
            let name = window.to_string();
            match seen.get(&name) {
                Some(first) => issues.push(ConfigIssue::new(
                    &path,
                    format!(
                        "window {i} ({length} ms) is named {name:?}, like windows[{first}]: \
                         window names must be unique"
                    ),
                )),
                None => {
                    seen.insert(name, i);
                }
            }
        }
        let lateness = self.lateness.as_millis();
        let longest = self.windows.iter().copied().max();
        if lateness < 0 {
            issues.push(ConfigIssue::new(
                "lateness",
                "lateness must not be negative",
            ));
        } else if let Some(longest) = longest {
            if lateness >= longest.as_millis() {
                issues.push(ConfigIssue::new(
                    "lateness",
                    format!(
                        "lateness {} must be shorter than the longest window ({longest})",
                        self.lateness
                    ),
                ));
            }
        }
        issues.extend(self.guards.check(self.min_idle_ms()));
        issues.extend(self.fields.check());
        issues
    }

    fn warnings(&self) -> Vec<ConfigIssue> {
        // Every record of the shortest window could still be late-corrected for longer than
        // the window lasts: its output is delayed by more than one window length.
        let lateness = self.lateness.as_millis();
        match self.windows.iter().copied().min() {
            Some(shortest) if lateness > shortest.as_millis() && shortest.as_millis() > 0 => {
                vec![ConfigIssue::new(
                    "lateness",
                    format!(
                        "lateness {} is longer than the shortest window ({shortest}): that window's results are delayed by more than its own length",
                        self.lateness
                    ),
                )]
            }
            _ => Vec::new(),
        }
    }

    fn output_fields(&self) -> OutputFields {
        match self.fields() {
            Ok(f) => OutputFields::Known(formats::moving_stats::written_fields(
                f.key.name(),
                f.value.name(),
            )),
            Err(_) => OutputFields::Unknown,
        }
    }

    fn needed_fields(&self, _port: &str) -> Vec<NeededField> {
        self.fields.needed_fields()
    }

    fn output_attributes(&self) -> Attributes {
        let mut attributes = Attributes::new();
        attributes.insert(formats::SLIDE_ATTRIBUTE.into(), self.slide.to_string());
        if let Ok(fields) = self.fields() {
            attributes.insert(formats::KEY_ATTRIBUTE.into(), fields.key.name().into());
            attributes.insert(formats::VALUE_ATTRIBUTE.into(), fields.value.name().into());
        }
        attributes.insert("windows".into(), self.window_names().join(","));
        attributes
    }
}
