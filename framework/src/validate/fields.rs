//! Field contracts between writers and readers: every field a reader's config names (its
//! `value_field`, a sink's `{window}` template) must be one its topic's writer writes, or
//! that the topic's `fields:` declare, with a type the reader accepts. When neither the
//! writer nor the topic says what the records hold, nothing is checked.

use std::collections::HashMap;

use super::{At, ValidatedStage, Validator};
use crate::{
    connector::ConfigIssue,
    contract::{split_last, FieldContract, JsonType, NeededField, OutputFields, WrittenField},
    spec::PipelineSpec,
    suggest::closest,
    yaml::child_key,
};

/// Most field names listed when a missing field has no close match.
const MAX_LISTED: usize = 12;

/// An input port whose topic is known and whose record type matches its writer's.
pub(super) struct FieldRead {
    pub stage: usize,
    pub port: usize,
    pub topic: String,
}

/// The fields of one topic's records, and who says so (for messages).
struct Carried {
    fields: Vec<WrittenField>,
    by: String,
}

impl Validator {
    pub(super) fn check_fields(
        &mut self,
        spec: &PipelineSpec,
        stages: &[(usize, ValidatedStage)],
        reads: &[FieldRead],
    ) {
        let contracts: HashMap<usize, FieldContract> = stages
            .iter()
            .filter_map(|(i, s)| {
                (s.registration.contract)(&s.spec.config, s.registration.inputs).map(|c| (*i, c))
            })
            .collect();
        let mut carried: HashMap<String, Carried> = HashMap::new();
        for (i, stage) in stages {
            let (Some(topic), Some(OutputFields::Known(fields))) =
                (&stage.spec.output, contracts.get(i).map(|c| &c.writes))
            else {
                continue;
            };
            let by = format!("written by stage {:?}", stage.spec.name);
            carried.insert(
                topic.clone(),
                Carried {
                    fields: fields.clone(),
                    by,
                },
            );
        }
        for (name, topic) in &spec.topics {
            if topic.fields.is_empty() {
                continue;
            }
            let declared: Vec<WrittenField> = topic
                .fields
                .iter()
                .map(|(path, json_type)| WrittenField::new(path.clone(), *json_type))
                .collect();
            match carried.get(name) {
                // The writer knows its fields: the declaration must agree with them.
                Some(writer) => self.check_declaration(name, &declared, writer),
                None => {
                    let by = format!("declared in topics.{name}.fields");
                    carried.insert(
                        name.clone(),
                        Carried {
                            fields: declared,
                            by,
                        },
                    );
                }
            }
        }
        for read in reads {
            let (Some(topic), Some(needs)) = (
                carried.get(&read.topic),
                contracts
                    .get(&read.stage)
                    .and_then(|c| c.needs.get(read.port)),
            ) else {
                continue;
            };
            let issues: Vec<ConfigIssue> = needs
                .iter()
                .filter_map(|need| unmet(need, &read.topic, topic))
                .collect();
            self.report_config_issues(read.stage, issues);
        }
    }

    fn check_declaration(&mut self, topic: &str, declared: &[WrittenField], writer: &Carried) {
        let fields_path = child_key(&child_key("topics", topic), "fields");
        for field in declared {
            let message = match writer.fields.iter().find(|w| w.path == field.path) {
                None => format!(
                    "field {:?} is declared, but the records of topic {topic:?} ({}) never hold it{}",
                    field.path,
                    writer.by,
                    close_match(&field.path, &writer.fields)
                        .unwrap_or_else(|| listing(&field.path, &writer.fields))
                ),
                Some(w) if !same_type(w.json_type, field.json_type) => format!(
                    "field {:?} is declared as {}, but it is {} in the records of topic {topic:?} ({})",
                    field.path, field.json_type, w.json_type, writer.by
                ),
                Some(_) => continue,
            };
            self.report(&child_key(&fields_path, &field.path), At::Key, message);
        }
    }
}

fn same_type(a: JsonType, b: JsonType) -> bool {
    a == b || a == JsonType::Any || b == JsonType::Any
}

/// The problem with `need` on `topic`, if any, as an issue at the setting that named it.
fn unmet(need: &NeededField, topic: &str, carried: &Carried) -> Option<ConfigIssue> {
    let shown = need.paths.first()?;
    let found = need
        .paths
        .iter()
        .find_map(|path| carried.fields.iter().find(|w| w.path == *path));
    let message = match found {
        Some(w) if need.accepts(w.json_type) => return None,
        Some(w) => format!(
            "{} {shown:?} is {} in the records of topic {topic:?} ({}), but {} must be {}",
            need.role,
            w.json_type,
            carried.by,
            need.setting,
            need.describe_types()
        ),
        None => {
            // A close name at any place the field may be, else what the first place holds.
            let close = need
                .paths
                .iter()
                .find_map(|p| close_match(p, &carried.fields));
            let hint = close.unwrap_or_else(|| listing(shown, &carried.fields));
            format!(
                "{} {shown:?} is not in the records of topic {topic:?} ({}){hint}",
                need.role, carried.by
            )
        }
    };
    Some(ConfigIssue::new(need.setting.clone(), message))
}

/// The fields beside `path` (same parent) and its own name.
fn siblings<'a>(path: &'a str, fields: &'a [WrittenField]) -> (&'a str, &'a str, Vec<&'a str>) {
    let (parent, name) = split_last(path);
    let names = fields
        .iter()
        .filter_map(|w| {
            let (p, n) = split_last(&w.path);
            (p == parent).then_some(n)
        })
        .collect();
    (parent, name, names)
}

/// ` (did you mean "price"?)`, written as the setting would name it: a nested path whole,
/// an array element's field (a sink's exploded document) by its own name.
fn close_match(path: &str, fields: &[WrittenField]) -> Option<String> {
    let (parent, name, names) = siblings(path, fields);
    let close = closest(name, names)?;
    Some(if parent.is_empty() || parent.ends_with("[]") {
        format!(" (did you mean {close:?}?)")
    } else {
        format!(" (did you mean \"{parent}.{close}\"?)")
    })
}

/// ` (it has: a, b, c)`: the fields beside `path`; empty when there are none.
fn listing(path: &str, fields: &[WrittenField]) -> String {
    let (_, _, names) = siblings(path, fields);
    if names.is_empty() {
        return String::new();
    }
    let mut listed: Vec<&str> = names.iter().copied().take(MAX_LISTED).collect();
    if names.len() > MAX_LISTED {
        listed.push("...");
    }
    format!(" (it has: {})", listed.join(", "))
}
