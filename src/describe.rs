//! Text of `pipeline connectors` and `pipeline connectors describe`, from the registry and
//! each connector's config schema.

use std::fmt::Write;

use framework::connector::ConnectorRegistration;
use serde_json::{json, Value};

pub fn list(connectors: &[&ConnectorRegistration]) -> String {
    let width = connectors.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in connectors {
        let _ = writeln!(
            out,
            "{:<width$}  {:<9}  {}",
            c.name,
            c.kind.as_str(),
            c.summary
        );
    }
    out
}

pub fn describe(c: &ConnectorRegistration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})\n  {}\n", c.name, c.kind.as_str(), c.summary);
    if !c.inputs.is_empty() {
        let _ = writeln!(out, "inputs:");
        for port in c.inputs {
            let _ = writeln!(out, "  {}: {} records", port.name, port.record_type);
        }
    }
    if let Some(output) = c.output {
        let _ = writeln!(out, "output: {output} records");
    }
    let schema = (c.schema)();
    let _ = writeln!(out, "\nconfig:");
    let fields = fields(&schema);
    if fields.is_empty() {
        let _ = writeln!(out, "  (no fields)");
    }
    for field in &fields {
        let mut line = format!("  {}: {}", field.path, field.kind);
        if field.required {
            line.push_str(" (required)");
        } else if let Some(default) = &field.default {
            let _ = write!(line, " (default: {default})");
        }
        let _ = writeln!(out, "{line}");
        if let Some(doc) = &field.description {
            for doc_line in doc.lines() {
                let _ = writeln!(out, "      {doc_line}");
            }
        }
        for (value, doc) in &field.values {
            match doc {
                Some(doc) => {
                    let _ = writeln!(out, "        {value}: {}", doc.replace('\n', " "));
                }
                None => {
                    let _ = writeln!(out, "        {value}");
                }
            }
        }
    }
    out
}

/// `connectors describe TYPE --format json`: the registry entry, every field (nested ones
/// with dotted paths) and the config's JSON Schema.
pub fn describe_json(c: &ConnectorRegistration) -> Value {
    let schema = (c.schema)();
    let fields: Vec<Value> = fields(&schema)
        .into_iter()
        .map(|f| {
            json!({
                "path": f.path,
                "type": f.kind,
                "required": f.required,
                "default": f.default,
                "description": f.description,
                "values": f.values.iter().map(|(v, d)| json!({"value": v, "description": d})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "name": c.name,
        "kind": c.kind.as_str(),
        "summary": c.summary,
        "inputs": c.inputs.iter().map(|p| json!({"port": p.name, "record_type": p.record_type.name()})).collect::<Vec<_>>(),
        "output": c.output.map(|o| o.name()),
        "fields": fields,
        "config_schema": schema,
    })
}

/// One documented config field.
struct FieldDoc {
    /// Dotted path: `retry.max_backoff`.
    path: String,
    kind: String,
    required: bool,
    default: Option<Value>,
    description: Option<String>,
    /// Allowed values of an enum, with their docs.
    values: Vec<(Value, Option<String>)>,
}

/// Every field of an object schema, nested objects' fields after their parent.
fn fields(schema: &Value) -> Vec<FieldDoc> {
    let mut out = Vec::new();
    collect_fields(schema, "", &mut out, 0);
    out
}

fn collect_fields(schema: &Value, prefix: &str, out: &mut Vec<FieldDoc>, depth: usize) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, prop) in props {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        out.push(FieldDoc {
            path: path.clone(),
            kind: type_of(prop),
            required: required.contains(&name.as_str()),
            default: prop.get("default").cloned(),
            description: prop
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            values: enum_values(prop),
        });
        // Nested settings (`write_concern.w`), a few levels deep at most.
        if depth < 4 {
            if let Some(object) = object_schema(prop) {
                collect_fields(object, &path, out, depth + 1);
            }
        }
    }
}

/// The object schema of a field, also when it is optional (`anyOf: [object, null]`).
fn object_schema(schema: &Value) -> Option<&Value> {
    if schema.get("properties").is_some() {
        return Some(schema);
    }
    schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)?
        .iter()
        .find(|s| s.get("properties").is_some())
}

/// Values of an enum field (`enum`, or `oneOf` of documented constants), with their docs.
fn enum_values(schema: &Value) -> Vec<(Value, Option<String>)> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values.iter().map(|v| (v.clone(), None)).collect();
    }
    let Some(variants) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    if !variants
        .iter()
        .all(|v| v.get("const").is_some() || v.get("enum").is_some())
    {
        return Vec::new();
    }
    variants
        .iter()
        .flat_map(|v| {
            let doc = v
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string);
            match (v.get("const"), v.get("enum").and_then(Value::as_array)) {
                (Some(c), _) => vec![(c.clone(), doc)],
                (None, Some(values)) => values.iter().map(|x| (x.clone(), doc.clone())).collect(),
                _ => Vec::new(),
            }
        })
        .collect()
}

fn type_of(schema: &Value) -> String {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values.iter().map(Value::to_string).collect();
        return match names.as_slice() {
            [one] => one.clone(),
            _ => format!("one of {}", names.join(", ")),
        };
    }
    if let Some(value) = schema.get("const") {
        return value.to_string();
    }
    let values = enum_values(schema);
    if !values.is_empty() {
        let names: Vec<String> = values.iter().map(|(v, _)| v.to_string()).collect();
        return format!("one of {}", names.join(", "));
    }
    if let Some(variants) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        let kinds: Vec<String> = variants
            .iter()
            .map(type_of)
            .filter(|t| t != "null")
            .collect();
        return kinds.join(" | ");
    }
    let format = schema.get("format").and_then(Value::as_str);
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".into(),
    };
    match (kind.as_str(), format) {
        ("string", Some("duration")) => "duration".into(),
        ("array", _) => format!(
            "list of {}",
            schema
                .get("items")
                .map(type_of)
                .unwrap_or_else(|| "any".into())
        ),
        (k, _) => k.to_string(),
    }
}
