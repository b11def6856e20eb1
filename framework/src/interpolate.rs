//! `${VAR}` and `${VAR:-default}` in pipeline files.

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolationError {
    #[error("environment variable {name} is not set (set it, or write ${{{name}:-default}})")]
    Unset { name: String },
    #[error("unterminated \"${{\": close it with \"}}\" (write \"$$\" for a literal \"$\")")]
    Unterminated,
    #[error("invalid variable name {name:?}: use letters, digits and underscores")]
    InvalidName { name: String },
}

/// Expands `${NAME}` and `${NAME:-default}` (default used when NAME is unset or empty);
/// `$$` is a literal `$`. Returns every problem found, not only the first.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<InterpolationError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(idx) = rest.find('$') {
        out.push_str(&rest[..idx]);
        let after = &rest[idx + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let Some(end) = body_start.find('}') else {
                errors.push(InterpolationError::Unterminated);
                break;
            };
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (body, None),
            };
            if !is_valid_name(name) {
                errors.push(InterpolationError::InvalidName {
                    name: name.to_string(),
                });
            } else {
                match (lookup(name).filter(|v| !v.is_empty()), default) {
                    (Some(value), _) => out.push_str(&value),
                    (None, Some(default)) => out.push_str(default),
                    (None, None) => errors.push(InterpolationError::Unset {
                        name: name.to_string(),
                    }),
                }
            }
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `text` is exactly one `${...}` reference. Its result is then re-typed as YAML
/// when it is a number, a boolean or a flow list, so `partitions: ${PARTITIONS:-3}` is a
/// number and `base_urls: ${URLS:-[http://a, http://b]}` a list.
pub fn is_single_reference(text: &str) -> bool {
    text.starts_with("${") && text.ends_with('}') && text[2..].find('}') == Some(text.len() - 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("kafka:9092".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        assert_eq!(interpolate("${HOST}", &env).unwrap(), "kafka:9092");
        assert_eq!(interpolate("x=${MISSING:-d}", &env).unwrap(), "x=d");
        assert_eq!(interpolate("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("$$5 and $x", &env).unwrap(), "$5 and $x");
    }

    #[test]
    fn reports_every_unset_variable_by_name() {
        let errors = interpolate("${A}/${B:-ok}/${C}", &env).unwrap_err();
        assert_eq!(
            errors,
            vec![
                InterpolationError::Unset { name: "A".into() },
                InterpolationError::Unset { name: "C".into() }
            ]
        );
    }

    #[test]
    fn rejects_unterminated_and_invalid_names() {
        assert_eq!(
            interpolate("${HOST", &env).unwrap_err(),
            vec![InterpolationError::Unterminated]
        );
        assert!(matches!(
            interpolate("${1X}", &env).unwrap_err()[0],
            InterpolationError::InvalidName { .. }
        ));
    }

    #[test]
    fn recognises_single_references() {
        assert!(is_single_reference("${A:-3}"));
        assert!(!is_single_reference("${A}${B}"));
        assert!(!is_single_reference("x${A}"));
    }
}
