//! A parser of the Prometheus text exposition format (version 0.0.4), enough for
//! `pipeline top` and tests: samples with labels, `# ...` lines skipped, optional
//! timestamps ignored.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// Whether every `(label, value)` pair of `wanted` is on this sample.
    pub fn matches(&self, wanted: &[(&str, &str)]) -> bool {
        wanted.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses a whole exposition.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(parse_line(line).map_err(|message| ParseError {
            line: i + 1,
            message,
        })?);
    }
    Ok(samples)
}

/// Sum of the samples named `name` that carry every label of `wanted` (0 when none).
pub fn sum(samples: &[Sample], name: &str, wanted: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.matches(wanted))
        .map(|s| s.value)
        .sum()
}

/// Largest of the samples named `name` that carry every label of `wanted`.
pub fn max(samples: &[Sample], name: &str, wanted: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.name == name && s.matches(wanted))
        .map(|s| s.value)
        .reduce(f64::max)
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or_else(|| format!("no value after {line:?}"))?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("missing metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let value_text = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| format!("{name}: missing value"))?;
    let value = match value_text {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other
            .parse()
            .map_err(|_| format!("{name}: value {other:?} is not a number"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("label without value in {rest:?}"))?;
        let key = rest[..eq].trim().to_string();
        let after_eq = rest[eq + 1..].trim_start();
        let quoted = after_eq
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key}: value is not quoted"))?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label {key}: unterminated escape")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("label {key}: unterminated value")),
            }
        };
        labels.insert(key, value);
        rest = quoted[end + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_escapes_special_values_and_skips_comments() {
        let text = "# TYPE pipeline_records_in_total counter\n\
            pipeline_records_in_total{stage=\"write\",connector=\"file_sink\"} 42\n\
            pipeline_stage_up 1 1700000000000\n\
            odd{detail=\"a \\\"quoted\\\" \\\\ path\\nnext\",} +Inf\n\
            missing{a=\"b\"} NaN\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].name, "pipeline_records_in_total");
        assert_eq!(samples[0].label("stage"), Some("write"));
        assert_eq!(samples[0].value, 42.0);
        assert!(samples[1].labels.is_empty());
        assert_eq!(samples[1].value, 1.0);
        assert_eq!(
            samples[2].label("detail"),
            Some("a \"quoted\" \\ path\nnext")
        );
        assert_eq!(samples[2].value, f64::INFINITY);
        assert!(samples[3].value.is_nan());
    }

    #[test]
    fn sum_and_max_select_by_labels() {
        let samples = parse(
            "lag{stage=\"a\",partition=\"0\"} 3\nlag{stage=\"a\",partition=\"1\"} 4\nlag{stage=\"b\",partition=\"0\"} 10\n",
        )
        .unwrap();
        assert_eq!(sum(&samples, "lag", &[("stage", "a")]), 7.0);
        assert_eq!(max(&samples, "lag", &[("stage", "a")]), Some(4.0));
        assert_eq!(max(&samples, "lag", &[("stage", "c")]), None);
    }

    #[test]
    fn reports_the_line_of_a_malformed_sample() {
        let error = parse("ok 1\nbroken{a=\"x} 2\n").unwrap_err();
        assert_eq!(error.line, 2);
        let error = parse("name notanumber\n").unwrap_err();
        assert!(error.message.contains("not a number"), "{error}");
    }
}
