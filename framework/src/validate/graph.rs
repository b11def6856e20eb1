//! The topic graph: writers and readers of each topic, record types between them, facts
//! writers publish, co-partitioning and cycles.

use std::collections::{HashMap, HashSet};

use super::{fields::FieldRead, At, ValidatedStage, Validator};
use crate::{
    connector::{Attributes, ValidationContext},
    record::RecordType,
    spec::PipelineSpec,
    suggest::did_you_mean,
    yaml::{child_index, child_key},
};

impl Validator {
    pub(super) fn check_graph(&mut self, spec: &PipelineSpec, stages: &[(usize, ValidatedStage)]) {
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
        let mut reads = Vec::new();
        for (i, stage) in stages {
            let path = child_index("stages", *i);
            let mut context = ValidationContext::default();
            let ports = stage.registration.inputs.iter().zip(&stage.input_topics);
            for (port_index, (port, topic)) in ports.enumerate() {
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
                    } else {
                        reads.push(FieldRead {
                            stage: *i,
                            port: port_index,
                            topic: topic.clone(),
                        });
                    }
                }
            }
            let check = (stage.registration.check)(&stage.spec.config, &context);
            self.report_config_issues(*i, check.issues);
        }
        self.check_fields(spec, stages, &reads);
        self.check_co_partitioning(spec, stages);
        self.check_cycles(spec, stages, &edges);
    }

    /// Inputs of one stage must have the same partition count: keyed state is kept per
    /// partition number. External topics are not known here and are checked at start-up.
    pub(super) fn check_co_partitioning(
        &mut self,
        spec: &PipelineSpec,
        stages: &[(usize, ValidatedStage)],
    ) {
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

    pub(super) fn check_cycles(
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
