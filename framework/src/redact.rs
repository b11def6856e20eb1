//! Keeps credentials out of logs and errors.

/// Replaces the user-info part of every URI in `text` (`scheme://user:pass@host`) with
/// `***`, so connection strings can be logged and shown in errors.
pub fn redact(text: &str) -> String {
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

/// Whether a client property holds a secret (its value is never printed).
pub fn is_secret_property(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "sasl.jaas",
        "key.pem",
        "keystore",
        "credential",
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
            Ok(text) if text.contains("://") => {
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
        assert!(!is_secret_property("security.protocol"));
    }
}
