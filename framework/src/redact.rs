//! Keeps credentials out of logs and errors.
//!
//! Two kinds: the user-info of URIs (`scheme://user:pass@host`), recognised anywhere, and
//! the values of secret settings (`*.password`, `sasl.jaas.config`, `ssl.key.*`, ...),
//! which a pipeline registers when it is validated so that every later message of the
//! process (errors, logs, `/health`, dead-letter headers, panics) masks them.

use std::sync::RwLock;

/// Secret values shorter than this are not masked: hiding every "a" in a message would
/// make it unreadable and protect nothing.
const MIN_MASKED_LEN: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers secret values to mask in everything [`redact`] sees from now on.
pub fn register_secrets(values: impl IntoIterator<Item = String>) {
    let mut secrets = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    for value in values {
        if value.len() >= MIN_MASKED_LEN && !secrets.contains(&value) {
            secrets.push(value);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

fn has_secrets() -> bool {
    !SECRETS.read().unwrap_or_else(|p| p.into_inner()).is_empty()
}

/// Replaces every occurrence of each of `secrets` in `text` with `***`.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if secret.len() >= MIN_MASKED_LEN && out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

/// The values of secret settings anywhere in a pipeline document (any mapping key that
/// [`is_secret_property`] recognises, at any depth), as text.
pub fn secret_values(document: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    let mut found = Vec::new();
    // Everything under a secret key is secret, even a (wrongly) nested value.
    fn walk(value: &Value, secret: bool, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    walk(item, secret || is_secret_property(key), found);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, secret, found)),
            Value::String(s) if secret => found.push(s.clone()),
            Value::Number(n) if secret => found.push(n.to_string()),
            _ => {}
        }
    }
    walk(document, false, &mut found);
    found
}

/// Replaces the user-info part of every URI in `text` (`scheme://user:pass@host`) and
/// every registered secret value with `***`, so connection strings and configuration can
/// be logged and shown in errors.
pub fn redact(text: &str) -> String {
    let uris = redact_uris(text);
    let secrets = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    if secrets.is_empty() {
        uris
    } else {
        mask(&uris, &secrets)
    }
}

/// Prints panics like the default hook, but redacted: a panic message may quote a
/// configuration value.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "Box<dyn Any>".into());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        eprintln!(
            "thread '{}' panicked{location}:\n{}",
            thread.name().unwrap_or("<unnamed>"),
            redact(&message)
        );
    }));
}

fn redact_uris(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(idx) = rest.find("://") {
        let (head, tail) = rest.split_at(idx + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace.
        let authority_end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Whether a setting holds a secret (its value is never printed): `*.password`,
/// `sasl.jaas.config`, `ssl.key.*`, `ssl.keystore.*`, and anything named like a
/// password, secret, token or credential.
pub fn is_secret_property(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "sasl.jaas",
        "ssl.key.",
        "key.pem",
        "keystore",
        "credential",
        "private_key",
        "api_key",
    ]
    .iter()
    .any(|marker| lower.contains(marker))
}

/// An `io::Write` adapter that redacts credentials from everything written through it;
/// the log subscriber writes through it so no log line can leak a password in a URI.
pub struct RedactingWriter<W: std::io::Write>(pub W);

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) if text.contains("://") || has_secrets() => {
                self.0.write_all(redact(text).as_bytes())?;
                Ok(buf.len())
            }
            _ => self.0.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_user_info_from_every_uri() {
        assert_eq!(
            redact("connect mongodb://admin:s3cr3t@db:27017/?tls=true failed"),
            "connect mongodb://***@db:27017/?tls=true failed"
        );
        assert_eq!(
            redact("a http://u:p@h/x and sasl://x@y"),
            "a http://***@h/x and sasl://***@y"
        );
        assert_eq!(redact("plain http://host:1/p"), "plain http://host:1/p");
    }

    #[test]
    fn redacting_writer_redacts_whole_lines() {
        use std::io::Write;
        let mut out = RedactingWriter(Vec::new());
        out.write_all(b"uri=mongodb://u:pw@h:1/db\n").unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "uri=mongodb://***@h:1/db\n"
        );
    }

    #[test]
    fn recognises_secret_properties() {
        assert!(is_secret_property("sasl.password"));
        assert!(is_secret_property("ssl.key.password"));
        assert!(is_secret_property("ssl.key.pem"));
        assert!(is_secret_property("ssl.keystore.location"));
        assert!(is_secret_property("sasl.jaas.config"));
        assert!(!is_secret_property("security.protocol"));
        assert!(!is_secret_property("sasl.username"));
    }

    #[test]
    fn secret_values_are_found_at_any_depth_and_masked() {
        let document = serde_json::json!({
            "kafka": {"properties": {"sasl.password": "hunter22", "sasl.username": "bob"}},
            "stages": [{"config": {"api_secret": "s3cr3t-value", "port": 1}}]
        });
        let secrets = secret_values(&document);
        assert_eq!(secrets, vec!["hunter22", "s3cr3t-value"]);
        assert_eq!(
            mask("bad value \"hunter22\" and s3cr3t-value for bob", &secrets),
            "bad value \"***\" and *** for bob"
        );
    }
}
