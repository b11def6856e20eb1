//! Config checks of how records become documents: `collection`, `explode`, `key`,
//! `date_fields`, `meta_field`, `max_collections`.

use framework::ConfigIssue;

use crate::{
    config::{MongoSinkConfig, MAX_COLLECTIONS_RANGE},
    names::{collection_name_problem, field_name_problem, MAX_NAMESPACE_BYTES},
    template::Template,
};

/// Checks of `collection`, `explode`, `key`, `date_fields`, `meta_field`, `max_collections`.
pub(crate) fn check_layout(config: &MongoSinkConfig, issues: &mut Vec<ConfigIssue>) {
    match Template::parse(&config.collection) {
        Err(e) => issues.push(ConfigIssue::new(
            "collection",
            format!("invalid template: {e}"),
        )),
        Ok(template) => {
            let literal = template.literal_text();
            if let Some(problem) = collection_name_problem(&literal)
                .or_else(|| collection_name_problem(template.literal_prefix()))
            {
                issues.push(ConfigIssue::new(
                    "collection",
                    format!("collection names {problem}"),
                ));
            }
            if template.fields().is_empty() && literal.is_empty() {
                issues.push(ConfigIssue::new("collection", "must not be empty"));
            }
            // Each placeholder renders at least one character.
            let shortest = config.database.len() + 1 + literal.len() + template.fields().len();
            if shortest > MAX_NAMESPACE_BYTES {
                issues.push(ConfigIssue::new(
                    "collection",
                    format!(
                        "database and template leave no room in MongoDB's \
                         {MAX_NAMESPACE_BYTES}-byte namespaces"
                    ),
                ));
            }
            if let Some(explode) = &config.explode {
                if template.fields().contains(&explode.as_str()) {
                    issues.push(ConfigIssue::new(
                        "collection",
                        format!("`{{{explode}}}` names the exploded array, which documents do not contain"),
                    ));
                }
            }
        }
    }
    if config.key.is_empty() {
        issues.push(ConfigIssue::new(
            "key",
            "must name at least one field (the upsert filter and unique index)",
        ));
    }
    check_names("key", &config.key, issues);
    check_names("date_fields", &config.date_fields, issues);
    if let Some(explode) = &config.explode {
        if let Some(problem) = field_name_problem(explode) {
            issues.push(ConfigIssue::new("explode", problem));
        }
        if config.key.contains(explode) || config.date_fields.contains(explode) {
            issues.push(ConfigIssue::new(
                "explode",
                format!("`{explode}` is also a key or date field, but the exploded array is not written"),
            ));
        }
    }
    if config.time_series && config.date_fields.is_empty() {
        issues.push(ConfigIssue::new(
            "date_fields",
            "time_series needs a date field (the first one is the timeField)",
        ));
    }
    if let Some(meta) = &config.meta_field {
        if !config.time_series {
            issues.push(ConfigIssue::new(
                "meta_field",
                "only applies with time_series: true",
            ));
        } else if let Some(problem) = field_name_problem(meta) {
            issues.push(ConfigIssue::new("meta_field", problem));
        } else if config.date_fields.first() == Some(meta) {
            issues.push(ConfigIssue::new(
                "meta_field",
                "must differ from the timeField (the first date field)",
            ));
        }
    }
    if !MAX_COLLECTIONS_RANGE.contains(&config.max_collections) {
        issues.push(ConfigIssue::new(
            "max_collections",
            format!(
                "must be between {} and {}",
                MAX_COLLECTIONS_RANGE.start(),
                MAX_COLLECTIONS_RANGE.end()
            ),
        ));
    }
}

/// Each name valid and listed once.
fn check_names(path: &str, names: &[String], issues: &mut Vec<ConfigIssue>) {
    for (i, name) in names.iter().enumerate() {
        if let Some(problem) = field_name_problem(name) {
            issues.push(ConfigIssue::new(format!("{path}[{i}]"), problem));
        } else if names[..i].contains(name) {
            issues.push(ConfigIssue::new(
                format!("{path}[{i}]"),
                format!("`{name}` is listed twice"),
            ));
        }
    }
}
