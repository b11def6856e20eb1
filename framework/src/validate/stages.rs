//! Per-stage checks: names, connector types, ports, config schemas and typed config checks.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{At, ValidatedPipeline, ValidatedStage, Validator};
use crate::{
    connector::{ConnectorKind, ConnectorRegistration, ValidationContext},
    spec::{PipelineSpec, StageSpec},
    suggest::did_you_mean,
    yaml::{child_index, child_key},
};

impl Validator {
    /// Stage-level checks for a file whose overall structure is broken: every stage that
    /// parses on its own gets its connector, ports and config checked.
    pub(super) fn check_stages_leniently(&mut self, document: &Value) {
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
    pub(super) fn check_stages(
        &mut self,
        stages: &[(usize, StageSpec)],
    ) -> Vec<(usize, ValidatedStage)> {
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

    pub(super) fn report_config_issues(
        &mut self,
        stage_index: usize,
        issues: Vec<crate::connector::ConfigIssue>,
    ) {
        let config_path = child_key(&child_index("stages", stage_index), "config");
        for issue in issues {
            let issue_path = super::config_issue_path(&config_path, &issue.path);
            self.report(&issue_path, At::Value, issue.message);
        }
    }

    pub(super) fn check_connector_exists(
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

    pub(super) fn check_pipeline(&mut self, spec: PipelineSpec) -> Option<ValidatedPipeline> {
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
    pub(super) fn check_ports(
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
}
