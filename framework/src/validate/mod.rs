//! `pipeline validate`: pure checks of a pipeline file, no I/O beyond reading it.
//!
//! Every problem is reported at once, each with `file:line:col`, the field path and a
//! "did you mean" where one fits. Checks, in order: YAML syntax; `${VAR}` interpolation;
//! the file's structure (JSON Schema of [`PipelineSpec`]); each stage's connector type
//! and config (the connector's JSON Schema, then its typed checks); ports; the topic
//! graph (unknown inputs, two writers, cycles) and record types between writers and
//! readers, including facts writers publish (e.g. a window slide).

mod fields;
mod graph;
pub mod lint;
mod schema;
mod stages;

use std::{collections::HashMap, fmt, path::Path};

use serde::Serialize;
use serde_json::Value;

use crate::{
    connector::ConnectorRegistration,
    error::FrameworkError,
    interpolate::{interpolate, is_single_reference, InterpolationError},
    spec::{PipelineSpec, StageSpec},
    yaml::{child_index, child_key, Position, Positions},
};

/// One problem, located in the pipeline file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Field path such as `stages[1].config.windows[0]`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// A stage whose connector and ports were resolved.
#[derive(Debug, Clone)]
pub struct ValidatedStage {
    pub spec: StageSpec,
    pub registration: &'static ConnectorRegistration,
    /// Topic of each input port, in the connector's declared port order.
    pub input_topics: Vec<String>,
}

/// A pipeline that passed every check.
#[derive(Debug, Clone)]
pub struct ValidatedPipeline {
    pub spec: PipelineSpec,
    pub stages: Vec<ValidatedStage>,
}

impl ValidatedPipeline {
    /// Partitions of `topic` when the runtime has to create it.
    pub fn partitions_of(&self, topic: &str) -> i32 {
        self.spec
            .topics
            .get(topic)
            .and_then(|t| t.partitions)
            .unwrap_or(self.spec.kafka.partitions)
    }
}

/// Validates the pipeline file at `path` with the process environment.
pub fn validate_file(
    path: &Path,
) -> Result<Result<ValidatedPipeline, Vec<Diagnostic>>, FrameworkError> {
    let text =
        crate::yaml::limits::read_bounded(path).map_err(|source| FrameworkError::ReadPipeline {
            path: path.to_path_buf(),
            source,
        })?;
    let lookup = |name: &str| std::env::var(name).ok();
    Ok(validate_source(&path.display().to_string(), &text, &lookup))
}

/// Validates pipeline text. `file` labels the diagnostics; `env` resolves `${VAR}`.
pub fn validate_source(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ValidatedPipeline, Vec<Diagnostic>> {
    validate_source_with(file, text, env, &Options::default()).result
}

/// How lenient validation is (`pipeline validate --allow-unset-env`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// An unset `${VAR}` without default is a warning instead of an error; the value keeps
    /// its `${VAR}` text and problems found in it are not reported (it has no real value).
    pub allow_unset_env: bool,
}

/// Problems (the result) and warnings of one file.
#[derive(Debug)]
pub struct Validation {
    pub result: Result<ValidatedPipeline, Vec<Diagnostic>>,
    /// Suspicious but runnable (`pipeline validate --deny-warnings` makes them fatal).
    pub warnings: Vec<Diagnostic>,
}

/// Validates pipeline text with `options`; also returns the warnings of a valid pipeline
/// (see [`lint`]) and the unset variables allowed by `options`.
pub fn validate_source_with(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    options: &Options,
) -> Validation {
    let mut v = Validator {
        file: file.to_string(),
        positions: Positions::default(),
        diagnostics: Vec::new(),
        options: *options,
        warnings: Vec::new(),
        unset_paths: Vec::new(),
        retyped: HashMap::new(),
        secrets: Vec::new(),
    };
    let result = v.run(text, env);
    // Every later message of this process (logs, errors, /health) masks them too.
    crate::redact::register_secrets(v.secrets.iter().cloned());
    let mut warnings = std::mem::take(&mut v.warnings);
    if let Some(pipeline) = &result {
        warnings.extend(lint::warnings(file, &v.positions, pipeline));
    }
    let unset_paths = std::mem::take(&mut v.unset_paths);
    // Values that hold an unset variable have no real value: what is found in them is
    // not a problem of the file.
    v.diagnostics
        .retain(|d| !unset_paths.iter().any(|u| is_within(&d.path, u)));
    for w in &mut warnings {
        w.message = crate::redact::redact(&w.message);
    }
    let result = match result {
        Some(pipeline) if v.diagnostics.is_empty() => Ok(pipeline),
        _ if v.diagnostics.is_empty() => {
            // Only problems inside unset values were found, but the pipeline could not be
            // built from them: say so rather than report nothing.
            v.report(
                "",
                At::Value,
                "the pipeline cannot be checked further until its unset variables are set",
            );
            finish(v.diagnostics, None)
        }
        other => finish(v.diagnostics, other),
    };
    Validation { result, warnings }
}

/// `path` is `ancestor` or inside it.
fn is_within(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Checks `instance` (a document loaded with [`crate::yaml::load`]) against `schema` and
/// words every violation like `pipeline validate` does. Other YAML files (pipeline tests)
/// use it.
pub fn schema_diagnostics(
    file: &str,
    positions: &Positions,
    schema: &Value,
    instance: &Value,
) -> Vec<Diagnostic> {
    let mut v = Validator {
        file: file.to_string(),
        positions: positions.clone(),
        diagnostics: Vec::new(),
        options: Options::default(),
        warnings: Vec::new(),
        unset_paths: Vec::new(),
        retyped: HashMap::new(),
        secrets: Vec::new(),
    };
    v.check_schema(schema, instance, "");
    tidy(v.diagnostics)
}

/// The pipeline when there is no problem, else the problems.
fn finish(
    diagnostics: Vec<Diagnostic>,
    pipeline: Option<ValidatedPipeline>,
) -> Result<ValidatedPipeline, Vec<Diagnostic>> {
    let diagnostics = tidy(diagnostics);
    match pipeline {
        Some(pipeline) if diagnostics.is_empty() => Ok(pipeline),
        _ => Err(diagnostics),
    }
}

/// Sorts, deduplicates and redacts diagnostics.
fn tidy(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics.sort_by(|a, b| {
        (a.line, a.column, &a.path, &a.message).cmp(&(b.line, b.column, &b.path, &b.message))
    });
    diagnostics.dedup();
    // Messages quote values from the file, which may hold credentials.
    for d in &mut diagnostics {
        d.message = crate::redact::redact(&d.message);
    }
    diagnostics
}

struct Validator {
    file: String,
    positions: Positions,
    diagnostics: Vec<Diagnostic>,
    options: Options,
    warnings: Vec<Diagnostic>,
    /// Paths of values left unexpanded because a variable is unset (allowed by options).
    unset_paths: Vec<String>,
    /// Paths of `${VAR}` values re-typed as numbers, booleans or lists, with their text
    /// (restored where the schema wants a string).
    retyped: HashMap<String, String>,
    /// Values of secret settings, masked in every diagnostic.
    secrets: Vec<String>,
}

/// Where in a node a diagnostic points.
#[derive(Clone, Copy)]
enum At {
    Value,
    Key,
}

impl Validator {
    fn report(&mut self, path: &str, at: At, message: impl Into<String>) {
        let Position { line, column } = match at {
            At::Value => self.positions.value(path),
            At::Key => self.positions.key(path),
        };
        self.diagnostics.push(Diagnostic {
            file: self.file.clone(),
            line,
            column,
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn run(
        &mut self,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<ValidatedPipeline> {
        let (mut document, positions) = match crate::yaml::load(text) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.diagnostics.push(Diagnostic {
                    file: self.file.clone(),
                    line: e.position.line,
                    column: e.position.column,
                    path: String::new(),
                    message: e.message,
                });
                return None;
            }
        };
        self.positions = positions;
        if !document.is_object() {
            self.report(
                "",
                At::Value,
                "a pipeline file must be a mapping with `name`, `kafka` and `stages`",
            );
            return None;
        }
        self.interpolate_all(&mut document, "", env);
        crate::retype::restore_strings(&mut document, &self.retyped);
        self.secrets = crate::redact::secret_values(&document);

        let pipeline_schema = PipelineSpec::json_schema();
        self.check_schema(&pipeline_schema, &document, "");
        if !self.diagnostics.is_empty() {
            // The file's structure is wrong, so the topic graph cannot be trusted; still
            // check every stage that parses, so that all its problems show at once.
            self.check_stages_leniently(&document);
            return None;
        }
        let spec: PipelineSpec = match serde_json::from_value(document.clone()) {
            Ok(spec) => spec,
            Err(e) => {
                self.report("", At::Value, format!("invalid pipeline: {e}"));
                return None;
            }
        };
        self.check_pipeline(spec)
    }

    fn interpolate_all(
        &mut self,
        value: &mut Value,
        path: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) {
        match value {
            Value::String(text) if text.contains('$') => match interpolate(text, env) {
                Ok(expanded) => {
                    let retyped = is_single_reference(text)
                        .then(|| crate::retype::retype(&expanded))
                        .flatten();
                    *value = match retyped {
                        Some(typed) => {
                            self.retyped.insert(path.to_string(), expanded);
                            typed
                        }
                        None => Value::String(expanded),
                    };
                }
                Err(errors) => {
                    let only_unset = errors
                        .iter()
                        .all(|e| matches!(e, InterpolationError::Unset { .. }));
                    for e in errors {
                        if self.options.allow_unset_env && only_unset {
                            let Position { line, column } = self.positions.value(path);
                            self.warnings.push(Diagnostic {
                                file: self.file.clone(),
                                line,
                                column,
                                path: path.to_string(),
                                message: e.to_string(),
                            });
                        } else {
                            self.report(path, At::Value, e.to_string());
                        }
                    }
                    if self.options.allow_unset_env && only_unset {
                        self.unset_paths.push(path.to_string());
                    }
                }
            },
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.interpolate_all(item, &child_index(path, i), env);
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    self.interpolate_all(item, &child_key(path, key), env);
                }
            }
            _ => {}
        }
    }
}

/// Where a connector's config issue is, given the stage's `config` path: the config
/// itself, an index (`[2]`), or a field below it.
pub(crate) fn config_issue_path(config_path: &str, issue_path: &str) -> String {
    if issue_path.is_empty() {
        config_path.to_string()
    } else if issue_path.starts_with('[') {
        format!("{config_path}{issue_path}")
    } else {
        crate::yaml::child_key(config_path, issue_path)
    }
}
