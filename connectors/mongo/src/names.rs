//! MongoDB's naming rules, checked on the config (database, template literals, field
//! names) and per record (a rendered collection name).

/// Longest namespace (`<database>.<collection>`) MongoDB accepts, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 255;

/// MongoDB's rules for database names (the characters that are invalid on any platform).
pub(crate) fn database_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.len() >= 64 {
        Some("must be shorter than 64 bytes")
    } else if name.contains([
        '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
    ]) {
        Some("must not contain any of / \\ . space \" $ * < > : | ? or NUL")
    } else {
        None
    }
}

/// Why `<database>.<collection>` cannot be a MongoDB collection (record values make the
/// collection name, so this is checked per record).
pub fn namespace_problem(database: &str, collection: &str) -> Option<String> {
    if collection.is_empty() {
        return Some("collection name is empty".into());
    }
    if let Some(problem) = collection_name_problem(collection) {
        return Some(format!("collection names {problem}"));
    }
    let length = database.len() + 1 + collection.len();
    (length > MAX_NAMESPACE_BYTES).then(|| {
        format!("namespace of {length} bytes is longer than MongoDB's {MAX_NAMESPACE_BYTES}")
    })
}

/// MongoDB's rules for collection names, applied to literal text or a full name.
pub(crate) fn collection_name_problem(name: &str) -> Option<&'static str> {
    if name.contains('$') || name.contains('\0') {
        Some("must not contain `$` or NUL")
    } else if name.starts_with("system.") {
        Some("must not start with `system.`")
    } else {
        None
    }
}

/// Why `name` cannot be a field the sink reads by name (key, date field, explode,
/// template placeholder). Only top-level fields are addressed: a `.` would be ambiguous
/// between a nested path and MongoDB's dotted field names, so it is refused.
pub fn field_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("field name is empty")
    } else if name.contains('.') {
        Some("dotted paths are not supported: name a top-level field")
    } else if name.starts_with('$') {
        Some("field names must not start with `$`")
    } else if name == "_id" {
        Some("`_id` is assigned by MongoDB; the sink never reads or writes it")
    } else if name.contains(['{', '}', '\0']) {
        Some("field names must not contain `{`, `}` or NUL")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_rules_refuse_dollar_nul_system_and_long_names() {
        assert!(namespace_problem("btc", "z-1m").is_none());
        assert!(namespace_problem("btc", "").is_some());
        assert!(namespace_problem("btc", "z$").is_some());
        assert!(namespace_problem("btc", "system.x").is_some());
        assert!(namespace_problem("btc", &"x".repeat(252)).is_some());
        assert!(namespace_problem("btc", &"x".repeat(251)).is_none());
    }

    #[test]
    fn field_names_are_top_level_and_not_id() {
        assert!(field_name_problem("symbol").is_none());
        for bad in ["", "a.b", "$x", "_id", "a{"] {
            assert!(field_name_problem(bad).is_some(), "{bad}");
        }
    }
}
