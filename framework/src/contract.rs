//! Field contracts: which fields a stage writes into its output records and which fields
//! it needs in the records of each input port, both derived from its config.
//! `pipeline validate` checks every reader's needs against what its topic's writer
//! writes (or what `topics: {t: {fields: ..}}` declares); when neither side is known
//! (a `file_source` without declared fields), nothing is checked.
//!
//! Paths are dotted (`data.p`); `[]` steps into the elements of a list (`stats[].window`).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The JSON type of a field: `string`, `number`, `boolean`, `array` (a list), `object`
/// (a mapping) or `any` (present, type not promised).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JsonType {
    String,
    Number,
    Boolean,
    Array,
    Object,
    Any,
}

impl JsonType {
    /// The type in words, as `validate` messages use them.
    pub fn describe(self) -> &'static str {
        match self {
            JsonType::String => "a string",
            JsonType::Number => "a number",
            JsonType::Boolean => "true or false",
            JsonType::Array => "a list",
            JsonType::Object => "a mapping",
            JsonType::Any => "any JSON value",
        }
    }
}

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A field a stage writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenField {
    pub path: String,
    pub json_type: JsonType,
}

impl WrittenField {
    pub fn new(path: impl Into<String>, json_type: JsonType) -> Self {
        WrittenField {
            path: path.into(),
            json_type,
        }
    }
}

/// What a stage writes: its fields, or unknown (records pass through, or come from a file
/// whose shape the config does not name). Unknown turns the field check off for readers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OutputFields {
    #[default]
    Unknown,
    /// Every field any record may carry (the union over record kinds).
    Known(Vec<WrittenField>),
}

/// A field a stage needs in the records of one input port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededField {
    /// Where the field may be: any one of these paths (e.g. a MongoDB key field may be in
    /// the record or in each exploded element, `window` or `zscores[].window`).
    pub paths: Vec<String>,
    /// Types it may have; empty: any.
    pub types: Vec<JsonType>,
    /// Config setting that named it, relative to the stage's `config` (`value_field`,
    /// `key[1]`): the diagnostic points there.
    pub setting: String,
    /// How the setting names it, for messages: `field`, `template field`.
    pub role: &'static str,
}

impl NeededField {
    /// A field at one path, named by `setting`.
    pub fn new(path: impl Into<String>, types: &[JsonType], setting: impl Into<String>) -> Self {
        NeededField {
            paths: vec![path.into()],
            types: types.to_vec(),
            setting: setting.into(),
            role: "field",
        }
    }

    /// The field may also be found at `path`.
    pub fn or_at(mut self, path: impl Into<String>) -> Self {
        self.paths.push(path.into());
        self
    }

    pub fn role(mut self, role: &'static str) -> Self {
        self.role = role;
        self
    }

    /// Whether a field written with `written` satisfies this need.
    pub fn accepts(&self, written: JsonType) -> bool {
        self.types.is_empty() || written == JsonType::Any || self.types.contains(&written)
    }

    /// The accepted types in words (`a number or a string`).
    pub fn describe_types(&self) -> String {
        self.types
            .iter()
            .map(|t| t.describe())
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// A stage's field contract, derived from its config.
#[derive(Debug, Clone, Default)]
pub struct FieldContract {
    pub writes: OutputFields,
    /// Needs per input port, in the connector's declared port order.
    pub needs: Vec<Vec<NeededField>>,
}

/// Splits `a.b[].c` into its parent (`a.b[]`) and its last name (`c`).
pub fn split_last(path: &str) -> (&str, &str) {
    match path.rfind('.') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_need_accepts_listed_types_and_any_written_value() {
        let need = NeededField::new(
            "price",
            &[JsonType::Number, JsonType::String],
            "value_field",
        );
        assert!(need.accepts(JsonType::Number));
        assert!(need.accepts(JsonType::Any));
        assert!(!need.accepts(JsonType::Array));
        assert_eq!(need.describe_types(), "a number or a string");
        assert!(NeededField::new("k", &[], "key[0]").accepts(JsonType::Object));
    }

    #[test]
    fn paths_split_at_their_last_dot() {
        assert_eq!(split_last("zscores[].window"), ("zscores[]", "window"));
        assert_eq!(split_last("price"), ("", "price"));
    }
}
