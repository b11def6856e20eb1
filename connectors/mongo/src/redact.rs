//! Keeps credentials out of every message this crate builds.

/// Replaces the user-info part (`user:pass@`) of every URI in `text` with `***@`.
///
/// Applied to every error and log message that may contain the configured URI or a
/// driver error quoting it, so that passwords never reach logs or dead-letter headers.
pub fn redact_uri(text: &str) -> String {
    framework::redact::redact(text)
}

/// Redacts URIs in `text` and, on top of that, any verbatim occurrence of `secret`
/// (a password quoted by a driver message outside of a URI).
pub fn redact_with_secret(text: &str, secret: Option<&str>) -> String {
    let redacted = redact_uri(text);
    match secret {
        // Very short secrets would mangle unrelated words; the URI rule still covers them.
        Some(secret) if secret.len() >= 4 => redacted.replace(secret, "***"),
        _ => redacted,
    }
}

/// The password of a `mongodb://user:pass@host` URI, raw and percent-decoded.
pub fn uri_password(uri: &str) -> Option<String> {
    let after = &uri[uri.find("://")? + 3..];
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..end];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    Some(password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_user_and_password_of_every_uri() {
        let text = "cannot reach mongodb://alice:s3cr%40t@db1:27017,db2/?authSource=admin and mongodb+srv://bob:pw@x.example";
        let redacted = redact_uri(text);
        assert_eq!(
            redacted,
            "cannot reach mongodb://***@db1:27017,db2/?authSource=admin and mongodb+srv://***@x.example"
        );
        assert!(!redacted.contains("s3cr"));
        assert!(!redacted.contains("alice"));
    }

    #[test]
    fn leaves_uris_without_credentials_and_plain_text_alone() {
        let text = "mongodb://127.0.0.1:27017/?directConnection=true: connection refused";
        assert_eq!(redact_uri(text), text);
        assert_eq!(redact_uri("no uri here"), "no uri here");
    }

    #[test]
    fn redacts_a_bare_password_quoted_outside_a_uri() {
        let out = redact_with_secret("auth failed for password hunter22", Some("hunter22"));
        assert_eq!(out, "auth failed for password ***");
    }

    #[test]
    fn extracts_the_password_of_a_uri() {
        assert_eq!(
            uri_password("mongodb://u:p%40ss@h/db").as_deref(),
            Some("p%40ss")
        );
        assert_eq!(uri_password("mongodb://h:27017"), None);
        assert_eq!(uri_password("mongodb://u@h"), None);
    }
}
