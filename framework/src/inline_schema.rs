//! JSON Schemas derived from Rust types, inlined. A leaf module: the registry, the pipeline
//! spec, `validate` and `pipeline schema` all derive schemas with it, so it imports none of
//! them.

use schemars::JsonSchema;
use serde_json::Value;

/// The JSON Schema of `T` with every subschema inlined, so that error locations are plain
/// JSON pointers into it (used for "did you mean" on unknown fields).
pub fn inline_schema_for<T: JsonSchema>() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}
