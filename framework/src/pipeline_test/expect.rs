//! Checking a test's expectations against what the stages under test produced.

use serde_json::Value;

use super::{
    diff::{json_matches, line_diff, render},
    engine::{Captured, Chain},
    spec::{Expectation, ExpectedRecord, FieldCondition, Time, When},
    time_millis,
};
use crate::{event_time::format_millis, yaml::child_index, yaml::child_key};

/// One unmet expectation: where in the test file, what, and the record diff if any.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// Path in the test file, e.g. `tests[2].expect[0].records[1]`.
    pub path: String,
    pub message: String,
    pub diff: Vec<String>,
}

impl Mismatch {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Mismatch {
            path: path.into(),
            message: message.into(),
            diff: Vec::new(),
        }
    }
}

/// The record's JSON (its text as a string when it is not JSON).
pub fn payload_value(payload: &[u8]) -> Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
}

/// Checks one expectation (found at `path` in the test file).
pub fn check(expectation: &Expectation, path: &str, chain: &Chain) -> Vec<Mismatch> {
    if let Some(rejected) = &expectation.rejected {
        return check_rejected(expectation, rejected, path, chain);
    }
    let topic = match &expectation.topic {
        Some(topic) => topic.clone(),
        None => match chain.output_topics().last().cloned().or_else(|| {
            let inputs = chain.input_topics();
            (inputs.len() == 1).then(|| inputs[0].clone())
        }) {
            Some(topic) => topic,
            None => {
                return vec![Mismatch::new(
                    path,
                    "give `topic`: the stages under test write none",
                )]
            }
        },
    };
    let known: Vec<String> = chain
        .input_topics()
        .into_iter()
        .chain(chain.output_topics())
        .collect();
    if !known.contains(&topic) {
        let hint = crate::suggest::did_you_mean(&topic, known.iter().map(String::as_str));
        return vec![Mismatch::new(
            child_key(path, "topic"),
            format!(
                "topic {topic:?} is neither read nor written by the stages under test{hint} (topics: {})",
                known.join(", ")
            ),
        )];
    }
    let records: Vec<&Captured> = chain
        .topics
        .get(&topic)
        .into_iter()
        .flatten()
        .filter(|r| match expectation.when {
            None => true,
            Some(When::Input) => !r.at_end,
            Some(When::EndOfInput) => r.at_end,
        })
        .collect();
    let mut found = Vec::new();
    if expectation.records.is_none() && expectation.count.is_none() && expectation.fields.is_empty()
    {
        found.push(Mismatch::new(
            path,
            "this expectation checks nothing: give `records`, `count`, `fields` or `rejected`",
        ));
    }
    if let Some(count) = expectation.count {
        if records.len() != count {
            found.push(Mismatch::new(
                child_key(path, "count"),
                format!(
                    "expected {count} record(s) on topic {topic:?}, found {}",
                    records.len()
                ),
            ));
        }
    }
    if let Some(expected) = &expectation.records {
        let tolerance = expectation.tolerance.unwrap_or(0.0);
        if let Some(m) = first_difference(
            expected,
            &records,
            tolerance,
            &child_key(path, "records"),
            &topic,
        ) {
            found.push(m);
        }
    }
    for (i, condition) in expectation.fields.iter().enumerate() {
        found.extend(check_field(
            condition,
            &child_index(&child_key(path, "fields"), i),
            &records,
            &topic,
        ));
    }
    found
}

/// The first record that differs from its expectation, as a diff.
fn first_difference(
    expected: &[ExpectedRecord],
    actual: &[&Captured],
    tolerance: f64,
    path: &str,
    topic: &str,
) -> Option<Mismatch> {
    for i in 0..expected.len().max(actual.len()) {
        let shown_expected = expected.get(i).map(shown_expected);
        let shown_actual = actual.get(i).map(|a| shown_actual(a, expected.get(i)));
        let same = match (&shown_expected, &shown_actual) {
            (Some(e), Some(a)) => json_matches(e, a, tolerance),
            _ => false,
        };
        if same {
            continue;
        }
        let e_lines = shown_expected.as_ref().map(render).unwrap_or_default();
        let a_lines = shown_actual.as_ref().map(render).unwrap_or_default();
        let (at, message) = match (&shown_expected, &shown_actual) {
            (Some(_), Some(_)) => (
                child_index(path, i),
                format!("record {i} on topic {topic:?} differs (- expected, + actual)"),
            ),
            (Some(_), None) => (
                child_index(path, i),
                format!(
                    "record {i} on topic {topic:?} is missing: only {} record(s) came out (- expected)",
                    actual.len()
                ),
            ),
            _ => (
                path.to_string(),
                format!(
                    "unexpected record {i} on topic {topic:?}: {} expected, {} came out (+ actual)",
                    expected.len(),
                    actual.len()
                ),
            ),
        };
        return Some(Mismatch {
            path: at,
            message,
            diff: line_diff(&e_lines, &a_lines),
        });
    }
    None
}

/// The expected record as compared: its value, with `key`/`at` when it gives them.
fn shown_expected(e: &ExpectedRecord) -> Value {
    if e.key.is_none() && e.at.is_none() {
        return e.value.clone();
    }
    let mut shown = serde_json::Map::new();
    if let Some(key) = &e.key {
        shown.insert("key".into(), Value::String(key.clone()));
    }
    if let Some(at) = &e.at {
        let text = match time_millis(at) {
            Ok(ms) => format_millis(ms),
            Err(_) => match at {
                Time::Text(t) => t.clone(),
                Time::Millis(ms) => ms.to_string(),
            },
        };
        shown.insert("at".into(), Value::String(text));
    }
    shown.insert("value".into(), e.value.clone());
    Value::Object(shown)
}

/// The actual record in the shape of its expectation (key and time only when expected).
fn shown_actual(a: &Captured, like: Option<&ExpectedRecord>) -> Value {
    let value = payload_value(&a.payload);
    let Some(like) = like.filter(|e| e.key.is_some() || e.at.is_some()) else {
        return value;
    };
    let mut shown = serde_json::Map::new();
    if like.key.is_some() {
        let key = a
            .key
            .as_ref()
            .map(|k| Value::String(String::from_utf8_lossy(k).into_owned()))
            .unwrap_or(Value::Null);
        shown.insert("key".into(), key);
    }
    if like.at.is_some() {
        let at = a
            .timestamp_ms
            .map(|ms| Value::String(format_millis(ms)))
            .unwrap_or(Value::Null);
        shown.insert("at".into(), at);
    }
    shown.insert("value".into(), value);
    Value::Object(shown)
}

fn check_field(
    condition: &FieldCondition,
    path: &str,
    records: &[&Captured],
    topic: &str,
) -> Vec<Mismatch> {
    let given = [
        condition.equals.is_some(),
        condition.approx.is_some(),
        condition.present,
        condition.absent,
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return vec![Mismatch::new(
            path,
            "give exactly one of `equals`, `approx`, `present: true` or `absent: true`",
        )];
    }
    let selector = match parse_field_path(&condition.field) {
        Ok(s) => s,
        Err(e) => return vec![Mismatch::new(child_key(path, "field"), e)],
    };
    let indices: Vec<usize> = match condition.record {
        None if records.is_empty() => {
            return vec![Mismatch::new(
                path,
                format!(
                    "no record came out on topic {topic:?} to check {}",
                    condition.field
                ),
            )]
        }
        None => (0..records.len()).collect(),
        Some(i) => {
            let index = if i < 0 { records.len() as i64 + i } else { i };
            if index < 0 || index as usize >= records.len() {
                return vec![Mismatch::new(
                    child_key(path, "record"),
                    format!(
                        "there is no record {i} on topic {topic:?}: {} came out",
                        records.len()
                    ),
                )];
            }
            vec![index as usize]
        }
    };
    for i in indices {
        let value = payload_value(&records[i].payload);
        let found = lookup(&value, &selector);
        let field = &condition.field;
        let problem = if condition.present {
            found.is_none().then(|| format!("{field} is absent"))
        } else if condition.absent {
            found.map(|v| format!("{field} is present: {v}"))
        } else if let Some(expected) = &condition.equals {
            match found {
                Some(v) if json_matches(expected, v, 0.0) => None,
                Some(v) => Some(format!("{field} is {v}, expected {expected}")),
                None => Some(format!("{field} is absent, expected {expected}")),
            }
        } else {
            let target = condition.approx.unwrap_or_default();
            let tolerance = condition.tolerance.unwrap_or(1e-9);
            match found.and_then(Value::as_f64) {
                Some(v) if (v - target).abs() <= tolerance => None,
                Some(v) => Some(format!(
                    "{field} is {v}, expected {target} ± {tolerance} (off by {})",
                    (v - target).abs()
                )),
                None => Some(format!(
                    "{field} is {}, expected a number near {target}",
                    found
                        .map(Value::to_string)
                        .unwrap_or_else(|| "absent".into())
                )),
            }
        };
        if let Some(problem) = problem {
            let mut m = Mismatch::new(path, format!("record {i} on topic {topic:?}: {problem}"));
            m.diff = render(&value)
                .into_iter()
                .map(|l| format!("  {l}"))
                .collect();
            return vec![m];
        }
    }
    Vec::new()
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Field(String),
    Index(usize),
    /// The first array element whose field equals the text.
    Where(String, String),
}

/// `a.b[0].c[window=1m].d` → steps.
pub fn parse_field_path(text: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut rest = text;
    let bad = || {
        format!("invalid field path {text:?}: write e.g. `stats[0].std_price` or `zscores[window=1m].zscore_price`")
    };
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(bad)?;
            let inside = &after[..end];
            steps.push(match inside.split_once('=') {
                Some((field, value)) if !field.is_empty() => {
                    Step::Where(field.to_string(), value.to_string())
                }
                _ => Step::Index(inside.parse().map_err(|_| bad())?),
            });
            rest = &after[end + 1..];
        } else {
            let rest_trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_trimmed.find(['.', '[']).unwrap_or(rest_trimmed.len());
            if end == 0 {
                return Err(bad());
            }
            steps.push(Step::Field(rest_trimmed[..end].to_string()));
            rest = &rest_trimmed[end..];
        }
    }
    if steps.is_empty() {
        return Err(bad());
    }
    Ok(steps)
}

fn lookup<'a>(value: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let mut current = value;
    for step in steps {
        current = match step {
            Step::Field(name) => current.get(name)?,
            Step::Index(i) => current.get(*i)?,
            Step::Where(field, wanted) => current.as_array()?.iter().find(|item| {
                item.get(field).is_some_and(|v| match v {
                    Value::String(s) => s == wanted,
                    other => serde_json::from_str::<Value>(wanted).is_ok_and(|w| w == *other),
                })
            })?,
        };
    }
    Some(current)
}

fn check_rejected(
    expectation: &Expectation,
    rejected: &super::spec::RejectedExpectation,
    path: &str,
    chain: &Chain,
) -> Vec<Mismatch> {
    let rpath = child_key(path, "rejected");
    if expectation.topic.is_some()
        || expectation.records.is_some()
        || expectation.count.is_some()
        || !expectation.fields.is_empty()
    {
        return vec![Mismatch::new(
            path,
            "`rejected` stands alone: put `topic`, `records`, `count` and `fields` in another expectation",
        )];
    }
    if let Some(stage) = &rejected.stage {
        let names = chain.stage_names();
        if !names.contains(&stage.as_str()) {
            let hint = crate::suggest::did_you_mean(stage, names.iter().copied());
            return vec![Mismatch::new(
                child_key(&rpath, "stage"),
                format!(
                    "stage {stage:?} is not under test{hint} (stages: {})",
                    names.join(", ")
                ),
            )];
        }
    }
    let matching: Vec<_> = chain
        .rejected
        .iter()
        .filter(|r| r.reason == rejected.reason)
        .filter(|r| rejected.stage.as_ref().is_none_or(|s| *s == r.stage))
        .filter(|r| match expectation.when {
            None => true,
            Some(When::Input) => !r.at_end,
            Some(When::EndOfInput) => r.at_end,
        })
        .collect();
    let all: Vec<String> = chain
        .rejected
        .iter()
        .map(|r| format!("{} by {}: {}", r.reason, r.stage, r.detail))
        .collect();
    let summary = if all.is_empty() {
        "nothing was rejected".to_string()
    } else {
        format!("rejected: {}", all.join("; "))
    };
    let reason = &rejected.reason;
    let mut found = Vec::new();
    match rejected.count {
        Some(count) if matching.len() != count => found.push(Mismatch::new(
            child_key(&rpath, "count"),
            format!(
                "expected {count} record(s) rejected as {reason:?}, found {} ({summary})",
                matching.len()
            ),
        )),
        None if matching.is_empty() => found.push(Mismatch::new(
            &rpath,
            format!("expected records rejected as {reason:?}, found none ({summary})"),
        )),
        _ => {}
    }
    if let Some(values) = &rejected.values {
        let actual: Vec<Value> = matching.iter().map(|r| payload_value(&r.payload)).collect();
        for i in 0..values.len().max(actual.len()) {
            let same = matches!((values.get(i), actual.get(i)), (Some(e), Some(a)) if json_matches(e, a, 0.0));
            if !same {
                let e = values.get(i).map(render).unwrap_or_default();
                let a = actual.get(i).map(render).unwrap_or_default();
                found.push(Mismatch {
                    path: child_index(
                        &child_key(&rpath, "values"),
                        i.min(values.len().saturating_sub(1)),
                    ),
                    message: format!(
                        "rejected record {i} ({reason}) differs (- expected, + actual)"
                    ),
                    diff: line_diff(&e, &a),
                });
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_paths_select_by_index_and_by_field_value() {
        let record = json!({"zscores": [{"window": "30s", "z": 1}, {"window": "1m", "z": 2}]});
        let by_index = parse_field_path("zscores[1].z").expect("valid");
        let by_window = parse_field_path("zscores[window=1m].z").expect("valid");
        assert_eq!(lookup(&record, &by_index), Some(&json!(2)));
        assert_eq!(lookup(&record, &by_window), Some(&json!(2)));
        assert_eq!(
            lookup(
                &record,
                &parse_field_path("zscores[window=5m].z").expect("valid")
            ),
            None
        );
    }

    #[test]
    fn malformed_field_paths_are_refused() {
        for bad in ["", "a[", "a[x]", "a..b", "[=1]"] {
            assert!(parse_field_path(bad).is_err(), "{bad}");
        }
    }
}
