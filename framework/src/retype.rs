//! Types of `${VAR}` values. A value that is exactly one reference is re-typed as YAML
//! (so `partitions: ${PARTITIONS:-3}` is a number), but only when the text is the
//! canonical form of that number or boolean (`007`, `0x1A`, `1e3`, `yes` stay text), and
//! never where the schema wants a string.

use std::collections::HashMap;

use serde_json::Value;

use crate::{
    connector::ConnectorRegistration,
    spec::PipelineSpec,
    yaml::{child_index, child_key},
};

/// The typed value of an interpolated text, or `None` when it stays a string.
pub fn retype(expanded: &str) -> Option<Value> {
    // An environment variable is outside input too: bound what its aliases expand to.
    crate::yaml::limits::check(expanded).ok()?;
    let value: Value = serde_yaml::from_str(expanded).ok()?;
    let canonical = match &value {
        Value::Bool(b) => b.to_string() == expanded,
        Value::Number(n) => n.to_string() == expanded,
        Value::Array(_) => true,
        _ => false,
    };
    canonical.then_some(value)
}

/// Puts back the text of re-typed values (paths in `retyped`) where the pipeline schema or
/// the stage's connector schema expects a string.
pub fn restore_strings(document: &mut Value, retyped: &HashMap<String, String>) {
    if retyped.is_empty() {
        return;
    }
    let mut targets: Vec<(Value, String, String)> =
        vec![(PipelineSpec::json_schema(), String::new(), String::new())];
    let stages = document.get("stages").and_then(Value::as_array);
    for (i, stage) in stages.into_iter().flatten().enumerate() {
        let registration = stage
            .get("type")
            .and_then(Value::as_str)
            .and_then(ConnectorRegistration::find);
        if let Some(registration) = registration {
            targets.push((
                (registration.schema)(),
                child_key(&child_index("stages", i), "config"),
                format!("/stages/{i}/config"),
            ));
        }
    }
    for (schema, base, pointer) in targets {
        let Ok(validator) = jsonschema::options().build(&schema) else {
            continue;
        };
        let Some(instance) = document.pointer(&pointer) else {
            continue;
        };
        let mut restore = Vec::new();
        for error in validator.iter_errors(instance) {
            if !matches!(
                error.kind(),
                jsonschema::error::ValidationErrorKind::Type { .. }
            ) {
                continue;
            }
            let path = crate::schema_text::instance_path(&base, error.instance_path());
            let Some(text) = retyped.get(&path) else {
                continue;
            };
            let wants_string = crate::schema_text::schema_at(&schema, error.schema_path().as_str())
                .and_then(|s| s.get("type"))
                .is_some_and(|t| match t {
                    Value::String(t) => t == "string",
                    Value::Array(ts) => ts.iter().any(|t| t == "string"),
                    _ => false,
                });
            if wants_string {
                restore.push((
                    format!("{pointer}{}", error.instance_path().as_str()),
                    text.clone(),
                ));
            }
        }
        for (at, text) in restore {
            if let Some(slot) = document.pointer_mut(&at) {
                *slot = Value::String(text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_numbers_and_booleans_are_retyped() {
        assert_eq!(retype("3"), Some(Value::from(3)));
        assert_eq!(retype("-2.5"), Some(Value::from(-2.5)));
        assert_eq!(retype("true"), Some(Value::Bool(true)));
        assert_eq!(retype("[a, b]"), Some(serde_json::json!(["a", "b"])));
        for text in [
            "007", "0x1A", "0o17", "1e3", "+5", "yes", "True", "~", "a: b", "",
        ] {
            assert_eq!(retype(text), None, "{text}");
        }
    }
}

#[cfg(test)]
mod interpolation_tests {
    use crate::{spec::PropertyValue, validate::validate_source};

    const PIPELINE: &str = "name: p\nkafka:\n  brokers: b:1\n  partitions: ${PARTS}\n  properties:\n    sasl.password: ${PW}\n    client.id: ${ID}\nstages: []\n";

    fn validated(pw: &str, id: &str) -> crate::validate::ValidatedPipeline {
        let env = |name: &str| match name {
            "PARTS" => Some("6".to_string()),
            "PW" => Some(pw.to_string()),
            "ID" => Some(id.to_string()),
            _ => None,
        };
        validate_source("p.yaml", PIPELINE, &env).expect("valid")
    }

    #[test]
    fn interpolated_values_keep_their_text_unless_it_is_a_canonical_number() {
        let pipeline = validated("007", "0x1A");
        let properties = &pipeline.spec.kafka.properties;
        assert_eq!(
            properties["sasl.password"],
            PropertyValue::Text("007".into())
        );
        assert_eq!(properties["client.id"], PropertyValue::Text("0x1A".into()));
        assert_eq!(pipeline.spec.kafka.partitions, 6);
        let pipeline = validated("12", "true");
        let properties = &pipeline.spec.kafka.properties;
        assert_eq!(properties["sasl.password"], PropertyValue::Integer(12));
        assert_eq!(properties["client.id"].to_string(), "true");
    }

    #[test]
    fn a_number_is_put_back_as_text_where_the_schema_wants_a_string() {
        let text = "name: ${NAME}\nkafka:\n  brokers: ${PORT}\nstages: []\n";
        let env = |name: &str| match name {
            "NAME" => Some("2024".to_string()),
            "PORT" => Some("9092".to_string()),
            _ => None,
        };
        let pipeline = validate_source("p.yaml", text, &env).expect("valid");
        assert_eq!(pipeline.spec.name, "2024");
        assert_eq!(pipeline.spec.kafka.brokers, "9092");
    }
}
