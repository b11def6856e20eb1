//! JSON Schema checks of a pipeline file and of each connector's config, and how their
//! violations are worded.

use serde_json::Value;

use super::{At, Validator};
use crate::{
    duration::{DurationSpec, DURATION_FORMAT},
    schema_text::{describe_type, describe_value, instance_path, schema_at},
    suggest::did_you_mean,
    yaml::child_key,
};

impl Validator {
    /// Validates `instance` (found at `base` in the file) against `schema`, reporting every
    /// violation at its own path.
    pub(super) fn check_schema(&mut self, schema: &Value, instance: &Value, base: &str) {
        let validator = match jsonschema::options()
            .should_validate_formats(true)
            .with_format(DURATION_FORMAT, |s: &str| s.parse::<DurationSpec>().is_ok())
            .build(schema)
        {
            Ok(v) => v,
            Err(e) => {
                self.report(
                    base,
                    At::Value,
                    format!("internal error: connector schema is invalid: {e}"),
                );
                return;
            }
        };
        let mut found = Vec::new();
        for error in validator.iter_errors(instance) {
            let path = instance_path(base, error.instance_path());
            let schema_path = error.schema_path().as_str().to_string();
            use jsonschema::error::ValidationErrorKind as K;
            match error.kind() {
                K::AdditionalProperties { unexpected }
                | K::UnevaluatedProperties { unexpected } => {
                    let allowed = allowed_properties(schema, &schema_path);
                    for name in unexpected {
                        let hint = did_you_mean(name, allowed.iter().map(String::as_str));
                        let allowed_list = if hint.is_empty() && !allowed.is_empty() {
                            format!(" (allowed: {})", allowed.join(", "))
                        } else {
                            hint
                        };
                        found.push((
                            child_key(&path, name),
                            At::Key,
                            format!("unknown field {name:?}{allowed_list}"),
                        ));
                    }
                }
                K::Required { property } => {
                    let name = property
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| property.to_string());
                    found.push((path, At::Value, format!("missing required field {name:?}")));
                }
                K::Format { format } if format == DURATION_FORMAT => {
                    let text = error.instance().as_str().unwrap_or_default().to_string();
                    let message = text
                        .parse::<DurationSpec>()
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| error.to_string());
                    found.push((path, At::Value, message));
                }
                K::Type { .. } => {
                    let expected = schema_at(schema, &schema_path)
                        .and_then(|s| s.get("type"))
                        .map(describe_type)
                        .unwrap_or_else(|| "another type".into());
                    found.push((
                        path,
                        At::Value,
                        format!(
                            "expected {expected}, found {}",
                            describe_value(error.instance())
                        ),
                    ));
                }
                K::Enum { options } => {
                    let given = error.instance().as_str().unwrap_or_default().to_string();
                    let names: Vec<String> = options
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let hint = did_you_mean(&given, names.iter().map(String::as_str));
                    found.push((
                        path,
                        At::Value,
                        format!(
                            "{} is not one of {}{hint}",
                            describe_value(error.instance()),
                            options
                        ),
                    ));
                }
                other => found.push((
                    path,
                    At::Value,
                    crate::schema_text::explain(other, schema, &schema_path, error.instance()),
                )),
            }
        }
        for (path, at, message) in found {
            self.report(&path, at, message);
        }
    }
}

/// Property names allowed where an `additionalProperties` error was raised.
fn allowed_properties(schema: &Value, schema_path: &str) -> Vec<String> {
    schema_at(schema, schema_path)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}
