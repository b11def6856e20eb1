//! `pipeline validate`: pure checks of a pipeline file, no I/O beyond reading it.
//!
//! Every problem is reported at once, each with `file:line:col`, the field path and a
//! "did you mean" where one fits. Checks, in order: YAML syntax; `${VAR}` interpolation;
//! the file's structure (JSON Schema of [`PipelineSpec`]); each stage's connector type
//! and config (the connector's JSON Schema, then its typed checks); ports; the topic
//! graph (unknown inputs, two writers, cycles) and record types between writers and
//! readers, including facts writers publish (e.g. a window slide).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    path::Path,
};

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::{
    connector::{Attributes, ConnectorKind, ConnectorRegistration, ValidationContext},
    duration::{DurationSpec, DURATION_FORMAT},
    error::FrameworkError,
    interpolate::{interpolate, is_single_reference, InterpolationError},
    record::RecordType,
    spec::{PipelineSpec, StageSpec},
    suggest::did_you_mean,
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

impl fmt::Debug for ConnectorRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorRegistration")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
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

/// The JSON Schema of `T` with every subschema inlined, so that error locations are plain
/// JSON pointers into it (used for "did you mean" on unknown fields).
pub fn inline_schema_for<T: JsonSchema>() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// Validates the pipeline file at `path` with the process environment.
pub fn validate_file(
    path: &Path,
) -> Result<Result<ValidatedPipeline, Vec<Diagnostic>>, FrameworkError> {
    let text =
        crate::yaml_limits::read_bounded(path).map_err(|source| FrameworkError::ReadPipeline {
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
/// (see [`crate::lint`]) and the unset variables allowed by `options`.
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
        warnings.extend(crate::lint::warnings(file, &v.positions, pipeline));
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

    /// Validates `instance` (found at `base` in the file) against `schema`, reporting every
    /// violation at its own path.
    fn check_schema(&mut self, schema: &Value, instance: &Value, base: &str) {
        let validator = match jsonschema::options()
            .should_validate_formats(true)
            .with_format(DURATION_FORMAT, |s: &str| s.parse::<DurationSpec>().is_ok())
            .build(schema)
        {
            Ok(v) => v,
            Err(e) => {
                self.report(
                    base,
                    At::Value,
                    format!("internal error: connector schema is invalid: {e}"),
                );
                return;
            }
        };
        let mut found = Vec::new();
        for error in validator.iter_errors(instance) {
            let path = instance_path(base, error.instance_path());
            let schema_path = error.schema_path().as_str().to_string();
            use jsonschema::error::ValidationErrorKind as K;
            match error.kind() {
                K::AdditionalProperties { unexpected }
                | K::UnevaluatedProperties { unexpected } => {
                    let allowed = allowed_properties(schema, &schema_path);
                    for name in unexpected {
                        let hint = did_you_mean(name, allowed.iter().map(String::as_str));
                        let allowed_list = if hint.is_empty() && !allowed.is_empty() {
                            format!(" (allowed: {})", allowed.join(", "))
                        } else {
                            hint
                        };
                        found.push((
                            child_key(&path, name),
                            At::Key,
                            format!("unknown field {name:?}{allowed_list}"),
                        ));
                    }
                }
                K::Required { property } => {
                    let name = property
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| property.to_string());
                    found.push((path, At::Value, format!("missing required field {name:?}")));
                }
                K::Format { format } if format == DURATION_FORMAT => {
                    let text = error.instance().as_str().unwrap_or_default().to_string();
                    let message = text
                        .parse::<DurationSpec>()
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| error.to_string());
                    found.push((path, At::Value, message));
                }
                K::Type { .. } => {
                    let expected = schema_at(schema, &schema_path)
                        .and_then(|s| s.get("type"))
                        .map(describe_type)
                        .unwrap_or_else(|| "another type".into());
                    found.push((
                        path,
                        At::Value,
                        format!(
                            "expected {expected}, found {}",
                            describe_value(error.instance())
                        ),
                    ));
                }
                K::Enum { options } => {
                    let given = error.instance().as_str().unwrap_or_default().to_string();
                    let names: Vec<String> = options
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let hint = did_you_mean(&given, names.iter().map(String::as_str));
                    found.push((
                        path,
                        At::Value,
                        format!(
                            "{} is not one of {}{hint}",
                            describe_value(error.instance()),
                            options
                        ),
                    ));
                }
                other => found.push((
                    path,
                    At::Value,
                    crate::schema_text::explain(other, schema, &schema_path, error.instance()),
                )),
            }
        }
        for (path, at, message) in found {
            self.report(&path, at, message);
        }
    }

    /// Stage-level checks for a file whose overall structure is broken: every stage that
    /// parses on its own gets its connector, ports and config checked.
    fn check_stages_leniently(&mut self, document: &Value) {
        let Some(stages) = document.get("stages").and_then(Value::as_array) else {
            return;
        };
        let parsed: Vec<(usize, StageSpec)> = stages
            .iter()
            .enumerate()
            .filter_map(|(i, v)| serde_json::from_value(v.clone()).ok().map(|s| (i, s)))
            .collect();
        for (i, stage) in self.check_stages(&parsed) {
            let check =
                (stage.registration.check)(&stage.spec.config, &ValidationContext::default());
            self.report_config_issues(i, check.issues);
        }
    }

    /// Names, connector types, ports and config schemas of stages; returns the stages whose
    /// connector exists and whose config satisfies its schema.
    fn check_stages(&mut self, stages: &[(usize, StageSpec)]) -> Vec<(usize, ValidatedStage)> {
        let mut valid = Vec::new();
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, stage) in stages {
            let path = child_index("stages", *i);
            if let Some(first) = names.insert(&stage.name, *i) {
                self.report(
                    &child_key(&path, "name"),
                    At::Value,
                    format!(
                        "duplicate stage name {:?} (first used by stages[{first}])",
                        stage.name
                    ),
                );
            }
            if let Some(registration) = self.check_connector_exists(&path, &stage.connector) {
                let input_topics = self.check_ports(&path, stage, registration);
                let before = self.diagnostics.len();
                self.check_schema(
                    &(registration.schema)(),
                    &stage.config,
                    &child_key(&path, "config"),
                );
                if self.diagnostics.len() == before {
                    valid.push((
                        *i,
                        ValidatedStage {
                            spec: stage.clone(),
                            registration,
                            input_topics,
                        },
                    ));
                }
            }
        }
        valid
    }

    fn report_config_issues(
        &mut self,
        stage_index: usize,
        issues: Vec<crate::connector::ConfigIssue>,
    ) {
        let config_path = child_key(&child_index("stages", stage_index), "config");
        for issue in issues {
            let issue_path = if issue.path.is_empty() {
                config_path.clone()
            } else if issue.path.starts_with('[') {
                format!("{config_path}{}", issue.path)
            } else {
                child_key(&config_path, &issue.path)
            };
            self.report(&issue_path, At::Value, issue.message);
        }
    }

    fn check_connector_exists(
        &mut self,
        stage_path: &str,
        connector: &str,
    ) -> Option<&'static ConnectorRegistration> {
        let found = ConnectorRegistration::find(connector);
        if found.is_none() {
            let all = ConnectorRegistration::all();
            let hint = did_you_mean(connector, all.iter().map(|r| r.name));
            let names: Vec<&str> = all.iter().map(|r| r.name).collect();
            let help = if hint.is_empty() {
                format!(" (registered: {})", names.join(", "))
            } else {
                hint
            };
            self.report(
                &child_key(stage_path, "type"),
                At::Value,
                format!("unknown connector type {connector:?}{help}"),
            );
        }
        found
    }

    fn check_pipeline(&mut self, spec: PipelineSpec) -> Option<ValidatedPipeline> {
        if spec.kafka.brokers.trim().is_empty() {
            self.report(
                "kafka.brokers",
                At::Value,
                "no brokers: give at least one host:port",
            );
        }
        for issue in crate::settings::issues(&spec) {
            let at = if issue.at_key { At::Key } else { At::Value };
            self.report(&issue.path, at, issue.message);
        }
        for (name, topic) in &spec.topics {
            if topic.record_type.is_some() && !topic.external {
                self.report(&child_key(&child_key("topics", name), "record_type"), At::Key, "record_type is only for external topics: a pipeline topic's type is its writer's");
            }
        }

        let indexed: Vec<(usize, StageSpec)> = spec.stages.iter().cloned().enumerate().collect();
        let stages = self.check_stages(&indexed);
        self.check_graph(&spec, &stages);
        if self.diagnostics.is_empty() {
            Some(ValidatedPipeline {
                spec,
                stages: stages.into_iter().map(|(_, s)| s).collect(),
            })
        } else {
            None
        }
    }

    /// Resolves `input`/`inputs`/`output` against the connector's declared ports.
    fn check_ports(
        &mut self,
        path: &str,
        stage: &StageSpec,
        registration: &ConnectorRegistration,
    ) -> Vec<String> {
        let kind = registration.kind;
        let ports = registration.inputs;
        let mut inputs: BTreeMap<String, (String, String)> = stage
            .inputs
            .iter()
            .map(|(port, topic)| {
                (
                    port.clone(),
                    (topic.clone(), child_key(&child_key(path, "inputs"), port)),
                )
            })
            .collect();
        if let Some(topic) = &stage.input {
            let input_path = child_key(path, "input");
            if !stage.inputs.is_empty() {
                self.report(
                    &input_path,
                    At::Key,
                    "give either `input` or `inputs`, not both",
                );
            } else if ports.len() == 1 {
                inputs.insert(ports[0].name.to_string(), (topic.clone(), input_path));
            } else if kind != ConnectorKind::Source {
                let names: Vec<&str> = ports.iter().map(|p| p.name).collect();
                self.report(&input_path, At::Key, format!("connector {:?} has {} input ports ({}): map each with `inputs: {{port: topic}}`", registration.name, ports.len(), names.join(", ")));
            }
        }
        match kind {
            ConnectorKind::Source => {
                if let Some(topic) = &stage.input {
                    let _ = topic;
                    self.report(
                        &child_key(path, "input"),
                        At::Key,
                        format!("{:?} is a source: it reads no topic", registration.name),
                    );
                }
                if !stage.inputs.is_empty() {
                    self.report(
                        &child_key(path, "inputs"),
                        At::Key,
                        format!("{:?} is a source: it reads no topic", registration.name),
                    );
                }
            }
            ConnectorKind::Transform | ConnectorKind::Sink => {
                for (port, (_, port_path)) in &inputs {
                    if !ports.iter().any(|p| p.name == port) {
                        let hint = did_you_mean(port, ports.iter().map(|p| p.name));
                        let names: Vec<&str> = ports.iter().map(|p| p.name).collect();
                        self.report(
                            port_path,
                            At::Key,
                            format!(
                                "connector {:?} has no input port {port:?}{} (ports: {})",
                                registration.name,
                                hint,
                                names.join(", ")
                            ),
                        );
                    }
                }
                for port in ports {
                    if !inputs.contains_key(port.name)
                        && (stage.input.is_none() || ports.len() != 1)
                    {
                        self.report(path, At::Value, format!("input port {:?} of connector {:?} is not connected: add `inputs: {{{}: <topic>}}`", port.name, registration.name, port.name));
                    }
                }
            }
        }
        match (kind, &stage.output) {
            (ConnectorKind::Sink, Some(_)) => self.report(
                &child_key(path, "output"),
                At::Key,
                format!("{:?} is a sink: it writes no topic", registration.name),
            ),
            (ConnectorKind::Source | ConnectorKind::Transform, None) => self.report(
                path,
                At::Value,
                format!(
                    "missing `output`: name the topic this {} ({}) writes",
                    registration.name,
                    kind.as_str()
                ),
            ),
            _ => {}
        }
        ports
            .iter()
            .map(|p| {
                inputs
                    .get(p.name)
                    .map(|(topic, _)| topic.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    fn check_graph(&mut self, spec: &PipelineSpec, stages: &[(usize, ValidatedStage)]) {
        // Writers of each topic: (stage index, record type if known, path of the field).
        // Every stage counts, even one whose connector or config is wrong, so that a
        // mistake in a writer is not reported again at each of its readers.
        let mut writers: HashMap<String, (usize, Option<RecordType>, String)> = HashMap::new();
        for (i, stage_spec) in spec.stages.iter().enumerate() {
            let path = child_index("stages", i);
            let registration = stages
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, s)| s.registration);
            let outputs = [
                (
                    stage_spec.output.clone(),
                    registration.and_then(|r| r.output),
                    "output",
                ),
                (
                    stage_spec.dead_letter.clone(),
                    Some(RecordType::DEAD_LETTER),
                    "dead_letter",
                ),
            ];
            for (topic, record_type, field) in outputs {
                let Some(topic) = topic else {
                    continue;
                };
                let field_path = child_key(&path, field);
                if spec.topics.get(&topic).is_some_and(|t| t.external) {
                    self.report(
                        &field_path,
                        At::Value,
                        format!(
                            "topic {topic:?} is declared external but stage {:?} writes it",
                            stage_spec.name
                        ),
                    );
                    continue;
                }
                if let Some((other, _, _)) = writers.get(&topic) {
                    let other_name = &spec.stages[*other].name;
                    self.report(&field_path, At::Value, format!("topic {topic:?} is already written by stage {other_name:?}: a topic has one writer"));
                    continue;
                }
                writers.insert(topic, (i, record_type, field_path));
            }
        }

        // Published attributes of each stage (for readers' cross-checks).
        let mut attributes: HashMap<usize, Attributes> = HashMap::new();
        for (i, stage) in stages {
            let check =
                (stage.registration.check)(&stage.spec.config, &ValidationContext::default());
            attributes.insert(*i, check.output_attributes);
        }

        let known_topics: Vec<String> = writers
            .keys()
            .cloned()
            .chain(
                spec.topics
                    .iter()
                    .filter(|(_, t)| t.external)
                    .map(|(n, _)| n.clone()),
            )
            .collect();
        let mut edges: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, stage) in stages {
            let path = child_index("stages", *i);
            let mut context = ValidationContext::default();
            for (port, topic) in stage.registration.inputs.iter().zip(&stage.input_topics) {
                if topic.is_empty() {
                    context.input_attributes.push(None);
                    continue;
                }
                let port_path =
                    if stage.spec.input.as_ref() == Some(topic) && stage.spec.inputs.is_empty() {
                        child_key(&path, "input")
                    } else {
                        child_key(&child_key(&path, "inputs"), port.name)
                    };
                let written = if let Some((writer, record_type, _)) = writers.get(topic) {
                    edges.entry(*writer).or_default().push(*i);
                    context
                        .input_attributes
                        .push(attributes.get(writer).cloned());
                    record_type.map(|t| (t, format!("stage {:?}", spec.stages[*writer].name)))
                } else if let Some(t) = spec.topics.get(topic).filter(|t| t.external) {
                    context.input_attributes.push(None);
                    let declared = t
                        .record_type
                        .clone()
                        .unwrap_or_else(|| RecordType::ANY_JSON.0.to_string());
                    Some((
                        RecordType(leak_type_name(&declared)),
                        "its external declaration".to_string(),
                    ))
                } else {
                    context.input_attributes.push(None);
                    let hint = did_you_mean(topic, known_topics.iter().map(String::as_str));
                    self.report(&port_path, At::Value, format!("unknown topic {topic:?}: no stage writes it and `topics` does not declare it external{hint}"));
                    None
                };
                if let Some((written_type, by)) = written {
                    if !port.record_type.accepts(written_type) {
                        self.report(&port_path, At::Value, format!("record type mismatch: port {:?} of {:?} expects {} records, but topic {topic:?} carries {} records (written by {by})", port.name, stage.registration.name, port.record_type, written_type));
                    }
                }
            }
            let check = (stage.registration.check)(&stage.spec.config, &context);
            self.report_config_issues(*i, check.issues);
        }
        self.check_co_partitioning(spec, stages);
        self.check_cycles(spec, stages, &edges);
    }

    /// Inputs of one stage must have the same partition count: keyed state is kept per
    /// partition number. External topics are not known here and are checked at start-up.
    fn check_co_partitioning(&mut self, spec: &PipelineSpec, stages: &[(usize, ValidatedStage)]) {
        for (i, stage) in stages {
            let known: Vec<(&String, i32)> = stage
                .input_topics
                .iter()
                .filter(|t| !t.is_empty() && !spec.topics.get(*t).is_some_and(|t| t.external))
                .map(|t| {
                    (
                        t,
                        spec.topics
                            .get(t)
                            .and_then(|t| t.partitions)
                            .unwrap_or(spec.kafka.partitions),
                    )
                })
                .collect();
            if known.windows(2).any(|w| w[0].1 != w[1].1) {
                let listed: Vec<String> =
                    known.iter().map(|(t, n)| format!("{t} has {n}")).collect();
                self.report(
                    &child_key(&child_index("stages", *i), "inputs"),
                    At::Key,
                    format!(
                        "input topics must have the same number of partitions ({}): a key's records must meet in one partition",
                        listed.join(", ")
                    ),
                );
            }
        }
    }

    fn check_cycles(
        &mut self,
        spec: &PipelineSpec,
        stages: &[(usize, ValidatedStage)],
        edges: &HashMap<usize, Vec<usize>>,
    ) {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut marks: HashMap<usize, Mark> = stages.iter().map(|(i, _)| (*i, Mark::New)).collect();
        let mut reported: HashSet<Vec<usize>> = HashSet::new();
        fn visit(
            node: usize,
            edges: &HashMap<usize, Vec<usize>>,
            marks: &mut HashMap<usize, Mark>,
            stack: &mut Vec<usize>,
            cycles: &mut Vec<Vec<usize>>,
        ) {
            marks.insert(node, Mark::Active);
            stack.push(node);
            for next in edges.get(&node).into_iter().flatten() {
                match marks.get(next).copied().unwrap_or(Mark::Done) {
                    Mark::New => visit(*next, edges, marks, stack, cycles),
                    Mark::Active => {
                        let start = stack.iter().position(|n| n == next).unwrap_or(0);
                        cycles.push(stack[start..].to_vec());
                    }
                    Mark::Done => {}
                }
            }
            stack.pop();
            marks.insert(node, Mark::Done);
        }
        let mut cycles = Vec::new();
        for (i, _) in stages {
            if marks.get(i) == Some(&Mark::New) {
                visit(*i, edges, &mut marks, &mut Vec::new(), &mut cycles);
            }
        }
        for cycle in cycles {
            let mut key = cycle.clone();
            key.sort_unstable();
            if !reported.insert(key) {
                continue;
            }
            let names: Vec<&str> = cycle
                .iter()
                .chain(cycle.first())
                .map(|i| spec.stages[*i].name.as_str())
                .collect();
            let first = cycle.iter().min().copied().unwrap_or(0);
            self.report(
                &child_key(&child_index("stages", first), "name"),
                At::Value,
                format!(
                    "stages form a cycle through their topics: {}",
                    names.join(" -> ")
                ),
            );
        }
    }
}

/// Record type names of external topics live as long as the process (a handful per file).
fn leak_type_name(name: &str) -> &'static str {
    match name {
        "json" => RecordType::ANY_JSON.0,
        other => Box::leak(other.to_string().into_boxed_str()),
    }
}

pub(crate) fn instance_path(base: &str, location: &jsonschema::paths::Location) -> String {
    use jsonschema::paths::LocationSegment;
    let mut path = base.to_string();
    for segment in location.segments() {
        path = match segment {
            LocationSegment::Property(key) => child_key(&path, &key),
            LocationSegment::Index(i) => child_index(&path, i),
        };
    }
    path
}

pub(crate) fn schema_at<'a>(schema: &'a Value, pointer: &str) -> Option<&'a Value> {
    let parent = pointer.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    schema.pointer(parent)
}

/// Property names allowed where an `additionalProperties` error was raised.
fn allowed_properties(schema: &Value, schema_path: &str) -> Vec<String> {
    schema_at(schema, schema_path)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

pub(crate) fn describe_type(types: &Value) -> String {
    let one = |t: &str| match t {
        "integer" => "an integer".to_string(),
        "number" => "a number".to_string(),
        "string" => "a string".to_string(),
        "boolean" => "true or false".to_string(),
        "array" => "a list".to_string(),
        "object" => "a mapping".to_string(),
        "null" => "nothing (null)".to_string(),
        other => other.to_string(),
    };
    match types {
        Value::String(t) => one(t),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .map(one)
            .collect::<Vec<_>>()
            .join(" or "),
        other => other.to_string(),
    }
}

pub(crate) fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}
