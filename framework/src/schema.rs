//! `pipeline schema`: one standalone JSON Schema (draft 2020-12) of a pipeline file, with
//! every registered connector's `config` selected by the stage's `type`, so that editors
//! (yaml-language-server) complete and document pipeline files.
//!
//! It is the schema `pipeline validate` checks, adapted for tools that see the file as
//! written (before `${VAR}` expansion):
//! * any non-string value may also be a `${VAR}` reference;
//! * durations carry a `pattern` instead of the custom `duration` format, which generic
//!   validators do not know (and JSON Schema's own `duration` means ISO 8601, "PT30S").

use serde_json::{json, Map, Value};

use crate::{connector::ConnectorRegistration, duration::DURATION_FORMAT, spec::PipelineSpec};

/// A string that is one or more `${VAR}` / `${VAR:-default}` references.
const VARIABLE_PATTERN: &str = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}";
/// A duration as written (`30s`), or a variable.
const DURATION_PATTERN: &str =
    r"^([0-9]+ *(ms|s|m|h|d)|.*\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}.*)$";

/// The JSON Schema of a pipeline file with the given connectors.
pub fn pipeline_schema(connectors: &[&ConnectorRegistration]) -> Value {
    let mut root = PipelineSpec::json_schema();
    let mut per_type = Vec::new();
    for c in connectors {
        let mut config = (c.schema)();
        if let Some(object) = config.as_object_mut() {
            object.remove("$schema");
            object.remove("title");
            object.insert(
                "description".into(),
                Value::String(format!(
                    "Configuration of `{}` ({}): {}",
                    c.name,
                    c.kind.as_str(),
                    c.summary
                )),
            );
        }
        per_type.push(json!({
            "if": { "properties": { "type": { "const": c.name } }, "required": ["type"] },
            "then": { "properties": { "config": config } }
        }));
    }
    if let Some(stage) = root.pointer_mut("/properties/stages/items") {
        let names: Vec<&str> = connectors.iter().map(|c| c.name).collect();
        let summary: Vec<String> = connectors
            .iter()
            .map(|c| format!("- `{}` ({}): {}", c.name, c.kind.as_str(), c.summary))
            .collect();
        if let Some(type_schema) = stage.pointer_mut("/properties/type") {
            let description = type_schema
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            *type_schema = json!({
                "description": format!("{description}\n\n{}", summary.join("\n")),
                "enum": names,
            });
        }
        if let Some(object) = stage.as_object_mut() {
            object.insert("allOf".into(), Value::Array(per_type));
        }
    }
    if let Some(object) = root.as_object_mut() {
        object.insert(
            "$id".into(),
            Value::String("https://pipeline.invalid/pipeline.schema.json".into()),
        );
        object.insert("title".into(), Value::String("Pipeline file".into()));
    }
    allow_variables(&mut root);
    root
}

/// Lets every number, boolean and list be a `${VAR}` string, and words durations as a
/// pattern.
fn allow_variables(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                // Keywords whose values are not schemas.
                if matches!(
                    key.as_str(),
                    "enum" | "const" | "default" | "examples" | "required"
                ) {
                    continue;
                }
                if key == "properties" || key == "$defs" {
                    if let Value::Object(children) = value {
                        children.values_mut().for_each(allow_variables);
                    }
                    continue;
                }
                allow_variables(value);
            }
            if map.get("format").and_then(Value::as_str) == Some(DURATION_FORMAT) {
                map.remove("format");
                map.insert("pattern".into(), Value::String(DURATION_PATTERN.into()));
            }
            // Mappings, and lists of mappings (`stages`), stay what they are: nobody writes
            // them as one variable, and wrapping them would blur editors' messages.
            let items_are_objects = map
                .get("items")
                .and_then(|i| i.get("type"))
                .is_some_and(|t| t == "object");
            let scalar = |t: &Value| {
                t != "string"
                    && t != "object"
                    && t != "null"
                    && !(t == "array" && items_are_objects)
            };
            let non_string_type = match map.get("type") {
                Some(t @ Value::String(_)) => scalar(t),
                Some(Value::Array(ts)) => {
                    !ts.iter().any(|t| t == "string") && ts.iter().any(scalar)
                }
                _ => false,
            };
            if non_string_type {
                let original: Map<String, Value> = std::mem::take(map);
                let mut outer = Map::new();
                // Editors show the description of the outer schema.
                for keep in ["description", "default", "title"] {
                    if let Some(v) = original.get(keep) {
                        outer.insert(keep.into(), v.clone());
                    }
                }
                outer.insert(
                    "anyOf".into(),
                    json!([
                        Value::Object(original),
                        { "type": "string", "pattern": VARIABLE_PATTERN,
                          "description": "`${VAR}` or `${VAR:-default}`, expanded when the file is loaded" }
                    ]),
                );
                *map = outer;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(allow_variables),
        _ => {}
    }
}
