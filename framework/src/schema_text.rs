//! Plain-language wording of JSON Schema violations, so that `pipeline validate` never
//! shows a validator's raw message ("... is not valid under any of the schemas listed in
//! the 'anyOf' keyword"): each says what was expected and what was found.

use jsonschema::error::ValidationErrorKind as K;
use serde_json::Value;

use crate::yaml::{child_index, child_key};

/// The message for a violation not worded by the validator itself (unknown fields,
/// missing fields, types, enums and durations are worded there, with suggestions).
pub(crate) fn explain(kind: &K, schema: &Value, schema_path: &str, instance: &Value) -> String {
    let found = describe_value(instance);
    match kind {
        K::Minimum { limit } => format!("{} is less than the minimum of {limit}", plain(instance)),
        K::Maximum { limit } => format!("{} is more than the maximum of {limit}", plain(instance)),
        K::ExclusiveMinimum { limit } => {
            format!("{} must be greater than {limit}", plain(instance))
        }
        K::ExclusiveMaximum { limit } => format!("{} must be less than {limit}", plain(instance)),
        K::MultipleOf { multiple_of } => {
            format!("{} is not a multiple of {multiple_of}", plain(instance))
        }
        K::MinItems { limit } => format!(
            "expected at least {limit} item(s), found {}",
            count(instance)
        ),
        K::MaxItems { limit } => format!(
            "expected at most {limit} item(s), found {}",
            count(instance)
        ),
        K::AdditionalItems { limit } => {
            format!(
                "expected at most {limit} item(s), found {}",
                count(instance)
            )
        }
        K::MinLength { limit } => format!("expected at least {limit} character(s), found {found}"),
        K::MaxLength { limit } => format!("expected at most {limit} character(s), found {found}"),
        K::MinProperties { limit } => format!("expected at least {limit} field(s)"),
        K::MaxProperties { limit } => format!("expected at most {limit} field(s)"),
        K::Pattern { pattern } => format!("{found} does not match the pattern {pattern:?}"),
        K::Constant { expected_value } => format!("expected {expected_value}, found {found}"),
        K::UniqueItems => "the list has duplicate items: each may appear once".into(),
        K::Format { format } => format!("{found} is not a valid {format}"),
        K::AnyOf { .. } | K::OneOfNotValid { .. } => {
            let alternatives = schema_at(schema, schema_path)
                .and_then(|s| s.get("anyOf").or_else(|| s.get("oneOf")))
                .and_then(Value::as_array)
                .map(|a| a.iter().map(describe_schema).collect::<Vec<_>>())
                .unwrap_or_default();
            format!("expected {}, found {found}", one_of(&alternatives))
        }
        K::OneOfMultipleValid { .. } => {
            format!("{found} fits more than one of the allowed forms: make it unambiguous")
        }
        K::Not { .. } | K::FalseSchema => format!("{found} is not allowed here"),
        K::Contains => "the list has no item of the expected kind".into(),
        K::PropertyNames { .. } => "a field name is not allowed here".into(),
        _ => format!("{found} is not allowed here"),
    }
}

/// A number or string as written in the file.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn count(value: &Value) -> String {
    match value.as_array() {
        Some(items) => items.len().to_string(),
        None => describe_value(value),
    }
}

/// "a string", "an integer or nothing", "one of \"a\", \"b\"".
fn describe_schema(schema: &Value) -> String {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values.iter().map(Value::to_string).collect();
        return format!("one of {}", names.join(", "));
    }
    if let Some(value) = schema.get("const") {
        return value.to_string();
    }
    if let Some(types) = schema.get("type") {
        return describe_type(types);
    }
    if let Some(inner) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        return one_of(&inner.iter().map(describe_schema).collect::<Vec<_>>());
    }
    "another form".into()
}

fn one_of(alternatives: &[String]) -> String {
    let mut unique: Vec<&String> = Vec::new();
    for a in alternatives {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    match unique.as_slice() {
        [] => "another form".into(),
        [one] => (*one).clone(),
        [init @ .., last] => format!(
            "{} or {last}",
            init.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub(crate) fn instance_path(base: &str, location: &jsonschema::paths::Location) -> String {
    use jsonschema::paths::LocationSegment;
    let mut path = base.to_string();
    for segment in location.segments() {
        path = match segment {
            LocationSegment::Property(key) => child_key(&path, &key),
            LocationSegment::Index(i) => child_index(&path, i),
        };
    }
    path
}

pub(crate) fn schema_at<'a>(schema: &'a Value, pointer: &str) -> Option<&'a Value> {
    let parent = pointer.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    schema.pointer(parent)
}

pub(crate) fn describe_type(types: &Value) -> String {
    let one = |t: &str| match t {
        "integer" => "an integer".to_string(),
        "number" => "a number".to_string(),
        "string" => "a string".to_string(),
        "boolean" => "true or false".to_string(),
        "array" => "a list".to_string(),
        "object" => "a mapping".to_string(),
        "null" => "nothing (null)".to_string(),
        other => other.to_string(),
    };
    match types {
        Value::String(t) => one(t),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .map(one)
            .collect::<Vec<_>>()
            .join(" or "),
        other => other.to_string(),
    }
}

pub(crate) fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}
