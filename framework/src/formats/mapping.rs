//! The `key_field` / `value_field` / `timestamp_field` settings shared by every stage that
//! reads value records (`moving_stats`, `zscore`): one type, flattened into each config
//! with `#[serde(flatten)]`, so the YAML stays `config: {key_field: sensor, ...}`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::price::{PriceFields, DEFAULT_KEY_FIELD, DEFAULT_TIMESTAMP_FIELD, DEFAULT_VALUE_FIELD};
use crate::{
    contract::{JsonType, NeededField},
    ConfigIssue,
};

/// Where a stage reads the key, value and event time of its input records.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct FieldMapping {
    /// Field of the key (a string) records are grouped and joined by. A dotted path reads
    /// nested objects (`data.s`); outputs hold the key under the path's last segment.
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// Field of the value (a JSON number or a decimal string such as `"97000.01"`).
    /// Outputs derive their names from the path's last segment `<name>`: `avg_<name>`,
    /// `std_<name>`, `zscore_<name>`. Decimals with up to 8 fractional digits are summed
    /// exactly (semantics.md §2).
    #[serde(default = "default_value_field")]
    pub value_field: String,
    /// Field of the event time: an ISO 8601 string, or an integer of milliseconds since
    /// the Unix epoch.
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
}

fn default_key_field() -> String {
    DEFAULT_KEY_FIELD.to_string()
}

fn default_value_field() -> String {
    DEFAULT_VALUE_FIELD.to_string()
}

fn default_timestamp_field() -> String {
    DEFAULT_TIMESTAMP_FIELD.to_string()
}

impl Default for FieldMapping {
    fn default() -> Self {
        FieldMapping {
            key_field: default_key_field(),
            value_field: default_value_field(),
            timestamp_field: default_timestamp_field(),
        }
    }
}

impl FieldMapping {
    /// The parsed paths, when the settings are usable.
    pub fn fields(&self) -> Result<PriceFields, String> {
        PriceFields::new(&self.key_field, &self.value_field, &self.timestamp_field)
    }

    /// Syntax of each path, and paths that overlap.
    pub fn check(&self) -> Vec<ConfigIssue> {
        PriceFields::check(&self.key_field, &self.value_field, &self.timestamp_field)
    }

    /// The fields a value record must carry, with the setting naming each.
    pub fn needed_fields(&self) -> Vec<NeededField> {
        vec![
            NeededField::new(&self.key_field, &[JsonType::String], "key_field"),
            NeededField::new(
                &self.value_field,
                &[JsonType::Number, JsonType::String],
                "value_field",
            ),
            NeededField::new(
                &self.timestamp_field,
                &[JsonType::String, JsonType::Number],
                "timestamp_field",
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_read_the_btcusdt_price_record() {
        let mapping: FieldMapping = serde_json::from_str("{}").expect("defaults");
        assert_eq!(mapping, FieldMapping::default());
        let paths: Vec<String> = mapping
            .needed_fields()
            .into_iter()
            .flat_map(|n| n.paths)
            .collect();
        assert_eq!(paths, ["symbol", "price", "timestamp"]);
    }

    #[test]
    fn overlapping_paths_are_reported_at_the_later_setting() {
        let mapping = FieldMapping {
            key_field: "data".into(),
            value_field: "data.p".into(),
            ..FieldMapping::default()
        };
        let issues = mapping.check();
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].path, "value_field");
    }
}
