//! `config:` parsing and `check()` rules.

use connector_moving_stats::{MovingStatsConfig, MovingStatsConnector};
use framework::{ConfigIssue, ConnectorConfig, ConnectorRegistration, TransformConnector};

fn parse(json: serde_json::Value) -> MovingStatsConfig {
    serde_json::from_value(json).unwrap()
}

fn issues(json: serde_json::Value) -> Vec<ConfigIssue> {
    parse(json).check()
}

fn paths(json: serde_json::Value) -> Vec<String> {
    issues(json).into_iter().map(|i| i.path).collect()
}

#[test]
fn empty_config_gets_the_documented_defaults_and_passes_check() {
    let cfg = parse(serde_json::json!({}));
    assert_eq!(cfg.window_names(), ["30s", "1m", "5m", "15m", "30m", "1h"]);
    assert_eq!(cfg.slide.as_millis(), 1_000);
    assert_eq!(cfg.lateness.as_millis(), 10_000);
    assert!(cfg.check().is_empty());
}

#[test]
fn unknown_fields_and_bad_durations_are_refused_by_parsing() {
    assert!(
        serde_json::from_value::<MovingStatsConfig>(serde_json::json!({"window": ["1m"]})).is_err()
    );
    assert!(
        serde_json::from_value::<MovingStatsConfig>(serde_json::json!({"slide": "1.5s"})).is_err()
    );
}

#[test]
fn a_window_that_is_not_a_multiple_of_the_slide_is_reported_at_its_index() {
    let found = issues(serde_json::json!({"windows": ["30s", "1m", "2500ms"], "slide": "1s"}));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "windows[2]");
    assert!(found[0].message.contains("2500ms"), "{}", found[0].message);
}

#[test]
fn a_zero_window_is_reported_at_its_index() {
    assert_eq!(
        paths(serde_json::json!({"windows": ["0s", "1m"]})),
        ["windows[0]"]
    );
}

#[test]
fn a_zero_slide_is_reported() {
    assert_eq!(paths(serde_json::json!({"slide": "0ms"})), ["slide"]);
}

#[test]
fn no_windows_is_reported() {
    assert_eq!(paths(serde_json::json!({"windows": []})), ["windows"]);
}

#[test]
fn windows_with_the_same_canonical_name_are_reported_naming_both() {
    let found = issues(serde_json::json!({"windows": ["1m", "30s", "60s"]}));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "windows[2]");
    assert!(found[0].message.contains("\"1m\""), "{}", found[0].message);
    assert!(
        found[0].message.contains("windows[0]"),
        "{}",
        found[0].message
    );
}

#[test]
fn lateness_must_be_shorter_than_the_longest_window() {
    assert_eq!(
        paths(serde_json::json!({"windows": ["30s", "1m"], "lateness": "1m"})),
        ["lateness"]
    );
    assert!(issues(serde_json::json!({"windows": ["30s", "1m"], "lateness": "59s"})).is_empty());
    assert!(issues(serde_json::json!({"lateness": "0s"})).is_empty());
}

#[test]
fn lateness_must_not_be_negative() {
    let mut cfg = parse(serde_json::json!({}));
    cfg.lateness = framework::DurationSpec::from_millis(-1);
    let found: Vec<String> = cfg.check().into_iter().map(|i| i.path).collect();
    assert_eq!(found, ["lateness"]);
}

#[test]
fn windows_spanning_too_many_slides_are_reported() {
    assert_eq!(
        paths(serde_json::json!({"windows": ["1d"], "slide": "1ms", "lateness": "0s"})),
        ["windows[0]"]
    );
}

#[test]
fn building_refuses_a_config_that_fails_check() {
    let cfg = parse(serde_json::json!({"windows": ["1500ms"]}));
    assert!(connector_moving_stats::MovingStats::new(&cfg).is_err());
}

#[test]
fn output_attributes_publish_the_canonical_slide_and_window_names() {
    let cfg = parse(serde_json::json!({"windows": ["60s", "90s"], "slide": "1000ms"}));
    let attributes = cfg.output_attributes();
    assert_eq!(attributes.get("slide").map(String::as_str), Some("1s"));
    assert_eq!(
        attributes.get("windows").map(String::as_str),
        Some("1m,90s")
    );
}

#[test]
fn the_schema_documents_every_field() {
    let schema = framework::schemars::schema_for!(MovingStatsConfig).to_value();
    let properties = schema["properties"].as_object().unwrap();
    for field in ["windows", "slide", "lateness"] {
        let description = properties[field]["description"].as_str().unwrap_or("");
        assert!(description.len() > 20, "{field} is undocumented");
    }
}

#[test]
fn the_connector_is_registered_with_its_port_and_record_types() {
    assert_eq!(MovingStatsConnector::NAME, "moving_stats");
    let registration = ConnectorRegistration::find("moving_stats").expect("registered");
    assert_eq!(registration.inputs.len(), 1);
    assert_eq!(registration.inputs[0].name, "prices");
    assert_eq!(registration.inputs[0].record_type.name(), "price");
    assert_eq!(registration.output.map(|t| t.name()), Some("moving-stats"));
}

#[test]
fn field_settings_default_to_the_price_record_and_bad_paths_are_reported_by_setting() {
    let cfg = parse(serde_json::json!({}));
    assert_eq!(
        (
            cfg.fields.key_field.as_str(),
            cfg.fields.value_field.as_str(),
            cfg.fields.timestamp_field.as_str()
        ),
        ("symbol", "price", "timestamp")
    );
    assert!(cfg.positive_only);
    assert_eq!(paths(serde_json::json!({"key_field": ""})), ["key_field"]);
    assert_eq!(
        paths(serde_json::json!({"value_field": "data."})),
        ["value_field"]
    );
    assert_eq!(
        paths(serde_json::json!({"timestamp_field": "a b"})),
        ["timestamp_field"]
    );
    // A path inside another cannot be read as a separate field.
    assert_eq!(
        paths(serde_json::json!({"key_field": "data", "value_field": "data.p"})),
        ["value_field"]
    );
    assert!(issues(serde_json::json!({
        "key_field": "data.s", "value_field": "data.p", "timestamp_field": "data.T"
    }))
    .is_empty());
}

#[test]
fn attributes_publish_the_key_and_value_names_readers_derive_their_fields_from() {
    let cfg = parse(serde_json::json!({"key_field": "data.s", "value_field": "data.p"}));
    let attributes = cfg.output_attributes();
    assert_eq!(attributes.get("key").map(String::as_str), Some("s"));
    assert_eq!(attributes.get("value").map(String::as_str), Some("p"));
    assert_eq!(attributes.get("slide").map(String::as_str), Some("1s"));
}
