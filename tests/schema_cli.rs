//! `pipeline schema` and `connectors describe`: the exported JSON Schema is a standalone
//! document that an independent validator (the `jsonschema` crate, used here on its own,
//! not through `pipeline validate`) accepts every shipped pipeline with, as written
//! (before `${VAR}` expansion), and rejects every golden fixture that is a schema error.

mod common;

use std::{fs, process::Command};

use serde_json::Value;

fn exported_schema() -> Value {
    let output = Command::new(common::pipeline_bin())
        .arg("schema")
        .output()
        .expect("run pipeline schema");
    assert_eq!(output.status.code(), Some(0));
    serde_json::from_slice(&output.stdout).expect("the schema is JSON")
}

fn load_yaml(path: &str) -> Value {
    let text = fs::read_to_string(path).expect("read");
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn exported_schema_accepts_every_shipped_pipeline_as_written() {
    let validator = jsonschema::validator_for(&exported_schema()).expect("a valid schema");
    let mut files = Vec::new();
    for dir in ["pipelines", "pipelines/examples", "tests/fixtures/valid"] {
        for entry in fs::read_dir(dir).expect("folder").filter_map(Result::ok) {
            let path = entry.path().to_string_lossy().into_owned();
            if path.ends_with(".yaml") && !path.ends_with("_test.yaml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let found = errors(&validator, &load_yaml(&file));
        assert!(found.is_empty(), "{file}: {found:#?}");
    }
}

#[test]
fn exported_schema_rejects_every_golden_fixture_that_is_a_schema_error() {
    let validator = jsonschema::validator_for(&exported_schema()).expect("a valid schema");
    // The fixtures whose problems are about the file's shape (the others are YAML
    // syntax, unset variables, or graph and connector rules a schema cannot express).
    let schema_errors = [
        ("02-unknown-connector-type", "/stages/0/type"),
        ("03-unknown-top-level-field", ""),
        ("04-unknown-config-field", "/stages/0/config"),
        ("05-wrong-value-type", "/kafka/partitions"),
        ("10-invalid-duration", "/kafka/commit_interval"),
        ("15-not-a-mapping", ""),
        ("16-missing-required", ""),
        ("17-out-of-range-and-stage-errors", "/kafka/partitions"),
    ];
    for (fixture, pointer) in schema_errors {
        let path = format!("tests/fixtures/invalid/{fixture}.yaml");
        let found = errors(&validator, &load_yaml(&path));
        assert!(!found.is_empty(), "{path} passed the schema");
        assert!(
            found.iter().any(|e| e.starts_with(&format!("{pointer}:"))),
            "{path}: no error at {pointer:?}: {found:#?}"
        );
    }
}

#[test]
fn exported_schema_documents_connector_configs_with_descriptions_defaults_and_enums() {
    let schema = exported_schema();
    let stage = &schema["properties"]["stages"]["items"];
    let types: Vec<&str> = stage["properties"]["type"]["enum"]
        .as_array()
        .expect("type enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for name in [
        "binance",
        "binance_ws",
        "file_sink",
        "file_source",
        "mongo",
        "moving_stats",
        "zscore",
    ] {
        assert!(types.contains(&name), "{types:?}");
    }
    let moving = stage["allOf"]
        .as_array()
        .expect("allOf")
        .iter()
        .find(|c| c["if"]["properties"]["type"]["const"] == "moving_stats")
        .expect("moving_stats branch");
    let config = &moving["then"]["properties"]["config"];
    assert_eq!(config["additionalProperties"], false);
    let windows = &config["properties"]["windows"];
    assert!(windows["description"]
        .as_str()
        .unwrap_or_default()
        .contains("Window lengths"));
    assert_eq!(windows["default"][0], "30s");
    let text = schema.to_string();
    assert!(
        text.contains("\"per_collection\""),
        "mongo's write_command values"
    );
}

fn describe(args: &[&str]) -> String {
    let output = Command::new(common::pipeline_bin())
        .args(["connectors", "describe"])
        .args(args)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn describe_shows_nested_fields_and_enum_values_in_text_and_json() {
    let text = describe(&["mongo"]);
    assert!(text.contains("\n  write_concern.w: "), "{text}");
    assert!(
        text.contains("\n  retry.max_backoff: duration (default: "),
        "{text}"
    );
    assert!(
        text.contains("write_command: one of \"auto\", \"bulk_write\", \"per_collection\""),
        "{text}"
    );
    assert!(!text.contains("string | string"), "{text}");

    let json: Value =
        serde_json::from_str(&describe(&["mongo", "--format", "json"])).expect("JSON");
    assert_eq!(json["name"], "mongo");
    assert_eq!(json["kind"], "sink");
    // The sink takes any JSON object record.
    assert_eq!(json["inputs"][0]["record_type"], "json");
    let fields = json["fields"].as_array().expect("fields");
    let field = |path: &str| {
        fields
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("no field {path}: {fields:#?}"))
    };
    assert_eq!(field("retry.max_backoff")["type"], "duration");
    for path in [
        "collection",
        "explode",
        "key",
        "date_fields",
        "meta_field",
        "max_collections",
    ] {
        assert!(
            field(path)["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{path} is documented: {:#?}",
            field(path)
        );
    }
    let values: Vec<&Value> = field("write_command")["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| &v["value"])
        .collect();
    assert_eq!(values, ["auto", "bulk_write", "per_collection"]);
    assert!(json["config_schema"]["properties"].is_object());
}
