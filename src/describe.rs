//! Text of `pipeline connectors` and `pipeline connectors describe`, from the registry and
//! each connector's config schema.

use std::fmt::Write;

use framework::connector::ConnectorRegistration;
use serde_json::Value;

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
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "\nconfig:");
    match schema.get("properties").and_then(Value::as_object) {
        Some(props) if !props.is_empty() => {
            for (name, prop) in props {
                let mut line = format!("  {name}: {}", type_of(prop));
                if required.contains(&name.as_str()) {
                    line.push_str(" (required)");
                } else if let Some(default) = prop.get("default") {
                    let _ = write!(line, " (default: {default})");
                }
                let _ = writeln!(out, "{line}");
                if let Some(doc) = prop.get("description").and_then(Value::as_str) {
                    for doc_line in doc.lines() {
                        let _ = writeln!(out, "      {doc_line}");
                    }
                }
            }
        }
        _ => {
            let _ = writeln!(out, "  (no fields)");
        }
    }
    out
}

fn type_of(schema: &Value) -> String {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values.iter().map(Value::to_string).collect();
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
