//! Collection-name templates: literal text with `{field}` placeholders filled from the
//! document being written (`"btc-price-zscore-{window}"`).

use serde_json::{Map, Value};

/// Why a template cannot be parsed (a config error, reported by `pipeline validate`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{` at byte {at} is never closed by `}}`")]
    Unclosed { at: usize },
    #[error("`}}` at byte {at} closes no `{{`")]
    UnopenedClose { at: usize },
    #[error("`{{` at byte {at} opens inside another placeholder")]
    Nested { at: usize },
    #[error("empty placeholder `{{}}` at byte {at}: name a field")]
    EmptyName { at: usize },
    #[error("placeholder `{{{name}}}`: {problem}")]
    BadName { name: String, problem: &'static str },
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(String),
}

/// A parsed collection template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a record's values cannot fill a template (a per-record rejection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The document has no such field.
    Missing(String),
    /// The field's value cannot be part of a name (null, object, array, empty string).
    Unusable { field: String, problem: String },
}

impl Template {
    /// Parses `text`: `{name}` is a field of the document; braces must be balanced, names
    /// non-empty top-level field names (see [`crate::names::field_name_problem`]).
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut open: Option<usize> = None;
        let mut name = String::new();
        for (at, c) in text.char_indices() {
            match (c, open) {
                ('{', Some(_)) => return Err(TemplateError::Nested { at }),
                ('{', None) => {
                    open = Some(at);
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                }
                ('}', None) => return Err(TemplateError::UnopenedClose { at }),
                ('}', Some(start)) => {
                    if name.is_empty() {
                        return Err(TemplateError::EmptyName { at: start });
                    }
                    if let Some(problem) = crate::names::field_name_problem(&name) {
                        return Err(TemplateError::BadName { name, problem });
                    }
                    parts.push(Part::Field(std::mem::take(&mut name)));
                    open = None;
                }
                (c, Some(_)) => name.push(c),
                (c, None) => literal.push(c),
            }
        }
        if let Some(at) = open {
            return Err(TemplateError::Unclosed { at });
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The fields the template reads, in order of appearance (repeats kept once).
    pub fn fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = Vec::new();
        for part in &self.parts {
            if let Part::Field(name) = part {
                if !fields.contains(&name.as_str()) {
                    fields.push(name);
                }
            }
        }
        fields
    }

    /// The literal text of the template (what every rendered name contains).
    pub fn literal_text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Literal(text) => Some(text.as_str()),
                Part::Field(_) => None,
            })
            .collect()
    }

    /// The literal prefix before the first placeholder.
    pub fn literal_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(text)) => text,
            _ => "",
        }
    }

    /// Fills the placeholders from `document`'s top-level fields: strings as they are,
    /// numbers and booleans as their JSON text.
    pub fn render(&self, document: &Map<String, Value>) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(name) => {
                    let value = document
                        .get(name)
                        .ok_or_else(|| RenderError::Missing(name.clone()))?;
                    let unusable = |problem: &str| RenderError::Unusable {
                        field: name.clone(),
                        problem: problem.to_string(),
                    };
                    match value {
                        Value::String(s) if s.is_empty() => return Err(unusable("is empty")),
                        Value::String(s) => out.push_str(s),
                        Value::Number(n) => out.push_str(&n.to_string()),
                        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                        Value::Null => return Err(unusable("is null")),
                        Value::Array(_) => return Err(unusable("is an array")),
                        Value::Object(_) => return Err(unusable("is an object")),
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The field names a collection template reads, for `pipeline validate`'s field checks
/// (a `{windw}` that no upstream stage writes).
pub fn template_fields(template: &str) -> Result<Vec<String>, TemplateError> {
    Ok(Template::parse(template)?
        .fields()
        .into_iter()
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn parses_literals_and_placeholders_and_lists_the_fields_once() {
        let t = Template::parse("z-{window}-{symbol}-{window}").unwrap();
        assert_eq!(t.fields(), vec!["window", "symbol"]);
        assert_eq!(t.literal_prefix(), "z-");
        assert_eq!(t.literal_text(), "z---");
        assert_eq!(template_fields("plain").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn refuses_unbalanced_braces_empty_names_and_dotted_paths() {
        assert_eq!(
            Template::parse("a-{window"),
            Err(TemplateError::Unclosed { at: 2 })
        );
        assert_eq!(
            Template::parse("a-}"),
            Err(TemplateError::UnopenedClose { at: 2 })
        );
        assert_eq!(
            Template::parse("{a{b}}"),
            Err(TemplateError::Nested { at: 2 })
        );
        assert_eq!(
            Template::parse("x{}"),
            Err(TemplateError::EmptyName { at: 1 })
        );
        assert!(matches!(
            Template::parse("{data.window}"),
            Err(TemplateError::BadName { .. })
        ));
    }

    #[test]
    fn renders_strings_numbers_and_booleans_and_refuses_other_values() {
        let t = Template::parse("c-{a}").unwrap();
        let render = |v: Value| t.render(&object(json!({ "a": v })));
        assert_eq!(render(json!("1m")).unwrap(), "c-1m");
        assert_eq!(render(json!(42)).unwrap(), "c-42");
        assert_eq!(render(json!(1.5)).unwrap(), "c-1.5");
        assert_eq!(render(json!(true)).unwrap(), "c-true");
        for bad in [json!(""), json!(null), json!([1]), json!({"x": 1})] {
            assert!(matches!(render(bad), Err(RenderError::Unusable { .. })));
        }
        assert_eq!(
            t.render(&object(json!({"b": 1}))),
            Err(RenderError::Missing("a".into()))
        );
    }
}
