//! Comparing JSON the way a test author means it, and showing the difference: numbers by
//! value (`0` equals `0.0`, optionally within a tolerance), objects with sorted keys,
//! and a line diff of the two pretty-printed records.

use serde_json::Value;

/// Whether `actual` matches `expected`; numbers may differ by `tolerance` (absolute).
pub fn json_matches(expected: &Value, actual: &Value, tolerance: f64) -> bool {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => match (e.as_f64(), a.as_f64()) {
            (Some(e), Some(a)) => e == a || (e - a).abs() <= tolerance,
            _ => e == a,
        },
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| json_matches(e, a, tolerance))
        }
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len()
                && e.iter().all(|(k, v)| {
                    a.get(k)
                        .is_some_and(|actual| json_matches(v, actual, tolerance))
                })
        }
        (e, a) => e == a,
    }
}

/// Pretty JSON with sorted keys and numbers written by value, so that equal records
/// print equal lines.
pub fn render(value: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    render_into(value, 0, None, true, &mut lines);
    lines
}

fn render_into(
    value: &Value,
    indent: usize,
    name: Option<&str>,
    last: bool,
    lines: &mut Vec<String>,
) {
    let pad = "  ".repeat(indent);
    let label = name
        .map(|n| format!("{}: ", Value::String(n.to_string())))
        .unwrap_or_default();
    let comma = if last { "" } else { "," };
    match value {
        Value::Object(map) if !map.is_empty() => {
            lines.push(format!("{pad}{label}{{"));
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, k) in keys.iter().enumerate() {
                render_into(
                    &map[k.as_str()],
                    indent + 1,
                    Some(k),
                    i + 1 == keys.len(),
                    lines,
                );
            }
            lines.push(format!("{pad}}}{comma}"));
        }
        Value::Array(items) if !items.is_empty() => {
            lines.push(format!("{pad}{label}["));
            for (i, item) in items.iter().enumerate() {
                render_into(item, indent + 1, None, i + 1 == items.len(), lines);
            }
            lines.push(format!("{pad}]{comma}"));
        }
        other => lines.push(format!("{pad}{label}{}{comma}", scalar(other))),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Longest lines compared by the line diff; longer records are shown whole.
const MAX_DIFF_LINES: usize = 400;

/// A unified-style line diff: `  ` same, `- ` expected only, `+ ` actual only.
pub fn line_diff(expected: &[String], actual: &[String]) -> Vec<String> {
    if expected.len() > MAX_DIFF_LINES || actual.len() > MAX_DIFF_LINES {
        let mut out: Vec<String> = expected.iter().map(|l| format!("- {l}")).collect();
        out.extend(actual.iter().map(|l| format!("+ {l}")));
        return out;
    }
    // Longest common subsequence table, from the end.
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            out.push(format!("  {}", expected[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", expected[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", actual[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_match_by_value_and_within_tolerance() {
        assert!(json_matches(&json!({"a": 0}), &json!({"a": 0.0}), 0.0));
        assert!(!json_matches(&json!({"a": 1}), &json!({"a": 1.5}), 0.1));
        assert!(json_matches(&json!([1.0]), &json!([1.05]), 0.1));
        assert!(!json_matches(
            &json!({"a": 1}),
            &json!({"a": 1, "b": 2}),
            0.0
        ));
    }

    #[test]
    fn diff_marks_only_the_changed_line() {
        let e = render(&json!({"price": 1, "symbol": "BTCUSDT"}));
        let a = render(&json!({"price": 2.5, "symbol": "BTCUSDT"}));
        let diff = line_diff(&e, &a);
        assert_eq!(
            diff,
            vec![
                "  {",
                "-   \"price\": 1,",
                "+   \"price\": 2.5,",
                "    \"symbol\": \"BTCUSDT\"",
                "  }"
            ]
        );
    }

    #[test]
    fn equal_numbers_written_differently_render_the_same() {
        assert_eq!(render(&json!({"a": 0})), render(&json!({"a": 0.0})));
    }
}
