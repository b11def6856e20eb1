//! `pipeline test`: tests beside a pipeline, run in process through the very `Transform`
//! code the runtime uses, with no broker and no network.
//!
//! Tests of `pipelines/x.yaml` live in `pipelines/x_test.yaml` (see [`spec::TestFile`]):
//! a separate file keeps the pipeline file what the runtime reads, and lets a pipeline
//! have tests without the runtime knowing about them. Each test builds fresh stages from
//! the connector registry, feeds its input records one by one in arrival order (the
//! virtual clock is the records' event time; transforms have no other clock), optionally
//! ends the input, and checks what came out: records per topic, fields, rejections.

mod diff;
pub mod engine;
mod expect;
pub mod report;
pub mod spec;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Instant,
};

use serde_json::Value;

use crate::{
    event_time::parse_millis,
    validate::{self, Diagnostic, Options, ValidatedPipeline},
    yaml::{child_index, child_key, Positions},
};
use engine::Chain;
use expect::Mismatch;
use spec::{TestCase, TestFile, TestInput, Time};

pub use report::{Failure, FileReport, TestReport};

/// Why tests could not be run at all (a usage error, exit 2).
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{pipeline} has no tests: write them in {expected}")]
    NoTests {
        pipeline: PathBuf,
        expected: PathBuf,
    },
}

/// The test file of a pipeline file (`x.yaml` → `x_test.yaml`); a test file is its own.
pub fn test_file_for(path: &Path) -> PathBuf {
    if is_test_file(path) {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}_test.yaml"))
}

/// Whether `path` names a test file (`*_test.yaml`).
pub fn is_test_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with("_test.yaml") || n.ends_with("_test.yml"))
}

/// Runs the tests of a pipeline file, or of a test file.
pub fn run_path(path: &Path) -> Result<FileReport, TestError> {
    let test_path = test_file_for(path);
    let text = match crate::yaml::limits::read_bounded(&test_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && test_path != path => {
            // A missing pipeline file is reported as such, not as missing tests.
            if !path.exists() {
                return Err(TestError::Read {
                    path: path.to_path_buf(),
                    source: e,
                });
            }
            return Err(TestError::NoTests {
                pipeline: path.to_path_buf(),
                expected: test_path,
            });
        }
        Err(source) => {
            return Err(TestError::Read {
                path: test_path,
                source,
            })
        }
    };
    let label = test_path.display().to_string();
    let mut report = FileReport {
        test_file: label.clone(),
        pipeline: String::new(),
        problems: Vec::new(),
        tests: Vec::new(),
    };
    let Some((tests, positions)) = load_tests(&label, &text, &mut report.problems) else {
        return Ok(report);
    };
    let pipeline_path = match &tests.pipeline {
        Some(relative) => test_path
            .parent()
            .unwrap_or_else(|| Path::new(""))
            .join(relative),
        None => {
            let name = test_path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            test_path.with_file_name(name.replacen("_test.y", ".y", 1))
        }
    };
    report.pipeline = pipeline_path.display().to_string();
    let pipeline_text =
        crate::yaml::limits::read_bounded(&pipeline_path).map_err(|source| TestError::Read {
            path: pipeline_path.clone(),
            source,
        })?;
    let env: HashMap<String, String> = tests.env.clone().into_iter().collect();
    let lookup = |name: &str| env.get(name).cloned();
    let options = Options {
        allow_unset_env: true,
    };
    let validation =
        validate::validate_source_with(&report.pipeline, &pipeline_text, &lookup, &options);
    let pipeline = match validation.result {
        Ok(pipeline) => pipeline,
        Err(problems) => {
            report.problems = problems;
            return Ok(report);
        }
    };
    for (i, case) in tests.tests.iter().enumerate() {
        report
            .tests
            .push(run_case(&label, &positions, &pipeline, case, i));
    }
    Ok(report)
}

/// Parses and schema-checks a test file; problems are reported like `pipeline validate`'s.
fn load_tests(
    label: &str,
    text: &str,
    problems: &mut Vec<Diagnostic>,
) -> Option<(TestFile, Positions)> {
    let (document, positions) = match crate::yaml::load(text) {
        Ok(loaded) => loaded,
        Err(e) => {
            problems.push(Diagnostic {
                file: label.to_string(),
                line: e.position.line,
                column: e.position.column,
                path: String::new(),
                message: e.message,
            });
            return None;
        }
    };
    let schema = crate::inline_schema::inline_schema_for::<TestFile>();
    problems.extend(validate::schema_diagnostics(
        label, &positions, &schema, &document,
    ));
    if !problems.is_empty() {
        return None;
    }
    match serde_json::from_value::<TestFile>(document) {
        Ok(tests) => Some((tests, positions)),
        Err(e) => {
            problems.push(Diagnostic {
                file: label.to_string(),
                line: 1,
                column: 1,
                path: String::new(),
                message: format!("invalid test file: {e}"),
            });
            None
        }
    }
}

fn run_case(
    label: &str,
    positions: &Positions,
    pipeline: &ValidatedPipeline,
    case: &TestCase,
    index: usize,
) -> TestReport {
    let started = Instant::now();
    let path = child_index("tests", index);
    let mismatches = match execute(pipeline, case, &path) {
        Ok(chain) => {
            let mut found = Vec::new();
            for (i, expectation) in case.expect.iter().enumerate() {
                let expectation_path = child_index(&child_key(&path, "expect"), i);
                found.extend(expect::check(expectation, &expectation_path, &chain));
            }
            found
        }
        Err(mismatch) => vec![mismatch],
    };
    let failures = mismatches
        .into_iter()
        .map(|m| {
            let position = positions.value(&m.path);
            Failure {
                file: label.to_string(),
                line: position.line,
                column: position.column,
                path: m.path,
                message: crate::redact::redact(&m.message),
                diff: m.diff,
            }
        })
        .collect();
    TestReport {
        name: case.name.clone(),
        failures,
        duration_us: started.elapsed().as_micros() as u64,
    }
}

/// Builds the stages and feeds them the test's input.
fn execute(pipeline: &ValidatedPipeline, case: &TestCase, path: &str) -> Result<Chain, Mismatch> {
    let mut chain = Chain::build(pipeline, &case.stages)
        .map_err(|e| Mismatch::new(child_key(path, "stages"), e))?;
    let inputs = chain.input_topics();
    let mut ended = false;
    for (j, item) in case.input.iter().enumerate() {
        let item_path = child_index(&child_key(path, "input"), j);
        let fail = |message: String| Mismatch::new(item_path.clone(), message);
        if ended {
            return Err(fail(
                "input after `end_of_input: true`: the input has ended".into(),
            ));
        }
        if item.end_of_input {
            if item.value.is_some() || item.raw.is_some() {
                return Err(fail(
                    "`end_of_input: true` stands alone: give the record in the item before".into(),
                ));
            }
            chain.end_of_input().map_err(fail)?;
            ended = true;
            continue;
        }
        let topic = input_topic(item, &chain, &inputs).map_err(&fail)?;
        let (payload, value) =
            match (&item.value, &item.raw) {
                (Some(value), None) => (serde_json::to_vec(value).unwrap_or_default(), Some(value)),
                (None, Some(raw)) => (raw.clone().into_bytes(), None),
                _ => return Err(fail(
                    "give the record as `value` (JSON) or `raw` (text), or `end_of_input: true`"
                        .into(),
                )),
            };
        let timestamp = match &item.at {
            Some(at) => {
                Some(time_millis(at).map_err(|e| Mismatch::new(child_key(&item_path, "at"), e))?)
            }
            None => value
                .and_then(|v| v.get("timestamp"))
                .and_then(Value::as_str)
                .and_then(|t| parse_millis(t).ok()),
        };
        let key = item.key.clone().map(String::into_bytes);
        chain.feed(&topic, key, payload, timestamp).map_err(fail)?;
    }
    Ok(chain)
}

/// The topic an input item arrives on.
fn input_topic(item: &TestInput, chain: &Chain, inputs: &[String]) -> Result<String, String> {
    match (&item.topic, &item.port) {
        (Some(_), Some(_)) => Err("give `topic` or `port`, not both".into()),
        (Some(topic), None) => {
            if inputs.contains(topic) {
                Ok(topic.clone())
            } else {
                let hint = crate::suggest::did_you_mean(topic, inputs.iter().map(String::as_str));
                Err(format!(
                    "topic {topic:?} is not an input of the stages under test{hint} (inputs: {})",
                    inputs.join(", ")
                ))
            }
        }
        (None, Some(port)) => {
            let Some((stage, ports)) = chain.first_stage() else {
                return Err("no stage under test has ports".into());
            };
            let names = chain.first_stage_ports();
            match names.iter().position(|p| p == port) {
                Some(i) => Ok(ports[i].clone()),
                None => {
                    let hint = crate::suggest::did_you_mean(port, names.iter().copied());
                    Err(format!(
                        "stage {stage:?} has no input port {port:?}{hint} (ports: {})",
                        names.join(", ")
                    ))
                }
            }
        }
        (None, None) => match inputs {
            [only] => Ok(only.clone()),
            _ => Err(format!(
                "give the `topic` (or `port`) of this record: the stages under test read {}",
                inputs.join(", ")
            )),
        },
    }
}

/// An event time in ms since the epoch.
pub(crate) fn time_millis(time: &Time) -> Result<i64, String> {
    match time {
        Time::Millis(ms) => Ok(*ms),
        Time::Text(text) => parse_millis(text).map_err(|e| format!("invalid time {text:?}: {e}")),
    }
}
