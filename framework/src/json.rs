//! Small JSON helpers shared by connectors that write records by hand for speed.

use serde_json::Value;

/// Appends `text` as a JSON string literal (quotes and escapes included), byte for byte
/// what `serde_json` writes.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut clean_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[clean_from..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        clean_from = i + 1;
    }
    out.extend_from_slice(&bytes[clean_from..]);
    out.push(b'"');
}

/// "a string", "an object"...: what a JSON value is, for error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_exactly_as_serde_json_writes_them() {
        for text in [
            "BTCUSDT",
            "a\"b\\c",
            "tab\tnew\nline\r",
            "\u{1}\u{8}\u{c}\u{1f}",
            "这是测试币456",
            "",
        ] {
            let mut out = Vec::new();
            write_string(&mut out, text);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(text).unwrap()
            );
        }
    }

    #[test]
    fn kinds_read_well_in_messages() {
        assert_eq!(kind(&serde_json::json!({"a": 1})), "an object");
        assert_eq!(kind(&serde_json::json!("x")), "a string");
    }
}
