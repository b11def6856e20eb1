//! Runs stages in process: the same `Transform` instances the runtime builds (from the
//! connector's registered factory), fed one record at a time in arrival order. No broker,
//! no network, no wall clock: event times come from the records, so a run is
//! deterministic. Every stage is one partition (partition 0).

use std::collections::{BTreeMap, HashSet};

use crate::{
    connector::{Builder, StageContext, Transform},
    record::{Emitter, InputRecord},
    validate::ValidatedPipeline,
};

/// Most records a test may produce in total (inputs, outputs and rejections): a stage
/// that emits without bound fails the test instead of exhausting memory.
pub const MAX_RECORDS: usize = 1_000_000;

/// A record on a topic, as the stages under test saw or wrote it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub timestamp_ms: Option<i64>,
    /// Emitted at the end of input (not while processing a record).
    pub at_end: bool,
}

/// A record a stage rejected.
#[derive(Debug, Clone)]
pub struct CapturedRejection {
    pub stage: String,
    pub reason: &'static str,
    pub detail: String,
    pub payload: Vec<u8>,
    pub at_end: bool,
}

struct Node {
    name: String,
    ports: Vec<&'static str>,
    transform: Box<dyn Transform>,
    /// Topic of each input port, in the connector's port order.
    inputs: Vec<String>,
    output: String,
    offsets: Vec<i64>,
    ended: bool,
}

/// Stages under test, wired by their topics.
pub struct Chain {
    nodes: Vec<Node>,
    ended_topics: HashSet<String>,
    at_end: bool,
    total: usize,
    /// Every record per topic: inputs and what the stages wrote.
    pub topics: BTreeMap<String, Vec<Captured>>,
    pub rejected: Vec<CapturedRejection>,
}

impl Chain {
    /// Builds the named transform stages of `pipeline` (all transforms when empty).
    pub fn build(pipeline: &ValidatedPipeline, names: &[String]) -> Result<Chain, String> {
        let stages: Vec<_> = if names.is_empty() {
            pipeline
                .stages
                .iter()
                .filter(|s| matches!(s.registration.builder, Builder::Transform(_)))
                .collect()
        } else {
            let mut picked = Vec::new();
            for name in names {
                let stage = pipeline
                    .stages
                    .iter()
                    .find(|s| &s.spec.name == name)
                    .ok_or_else(|| {
                        let hint = crate::suggest::did_you_mean(
                            name,
                            pipeline.stages.iter().map(|s| s.spec.name.as_str()),
                        );
                        format!("no stage named {name:?} in the pipeline{hint}")
                    })?;
                picked.push(stage);
            }
            picked
        };
        let mut nodes = Vec::new();
        for stage in stages {
            let Builder::Transform(build) = stage.registration.builder else {
                return Err(format!(
                    "stage {:?} is a {} ({}): only transforms run in tests; give its topic's records as `input` (for a source) or check them with `expect` (for a sink)",
                    stage.spec.name,
                    stage.registration.kind.as_str(),
                    stage.registration.name
                ));
            };
            let context = StageContext {
                pipeline: pipeline.spec.name.clone(),
                stage: stage.spec.name.clone(),
                connector: stage.registration.name,
            };
            let build_error =
                |e: crate::ConnectorError| format!("stage {:?}: {e}", stage.spec.name);
            let mut transform = build(&stage.spec.config, &context)
                .and_then(|f| f(0))
                .map_err(build_error)?;
            transform.resume(None).map_err(build_error)?;
            nodes.push(Node {
                name: stage.spec.name.clone(),
                ports: stage.registration.inputs.iter().map(|p| p.name).collect(),
                transform,
                inputs: stage.input_topics.clone(),
                output: stage.spec.output.clone().unwrap_or_default(),
                offsets: vec![0; stage.input_topics.len()],
                ended: false,
            });
        }
        Ok(Chain {
            nodes,
            ended_topics: HashSet::new(),
            at_end: false,
            total: 0,
            topics: BTreeMap::new(),
            rejected: Vec::new(),
        })
    }

    /// Topics the stages read that none of them writes: where test input arrives.
    pub fn input_topics(&self) -> Vec<String> {
        let written: HashSet<&str> = self.nodes.iter().map(|n| n.output.as_str()).collect();
        let mut topics: Vec<String> = Vec::new();
        for node in &self.nodes {
            for topic in &node.inputs {
                if !written.contains(topic.as_str()) && !topics.contains(topic) {
                    topics.push(topic.clone());
                }
            }
        }
        topics
    }

    /// Output topics, in stage order.
    pub fn output_topics(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.output.clone()).collect()
    }

    /// Name and port topics of the first stage.
    pub fn first_stage(&self) -> Option<(&str, &[String])> {
        self.nodes
            .first()
            .map(|n| (n.name.as_str(), n.inputs.as_slice()))
    }

    /// Port names of the first stage.
    pub fn first_stage_ports(&self) -> Vec<&'static str> {
        self.nodes
            .first()
            .map(|n| n.ports.clone())
            .unwrap_or_default()
    }

    pub fn stage_names(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    /// One record arrives on `topic`.
    pub fn feed(
        &mut self,
        topic: &str,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        timestamp_ms: Option<i64>,
    ) -> Result<(), String> {
        self.deliver(
            topic,
            Captured {
                key,
                payload,
                timestamp_ms,
                at_end: false,
            },
        )
    }

    /// Every input ends: each stage, once all its inputs have ended, emits what is pending.
    pub fn end_of_input(&mut self) -> Result<(), String> {
        self.at_end = true;
        let written: HashSet<String> = self.nodes.iter().map(|n| n.output.clone()).collect();
        for topic in self.input_topics() {
            if !written.contains(&topic) {
                self.ended_topics.insert(topic);
            }
        }
        loop {
            let ready = self
                .nodes
                .iter()
                .position(|n| !n.ended && n.inputs.iter().all(|t| self.ended_topics.contains(t)));
            let Some(i) = ready else { break };
            let mut emitter = Emitter::new();
            self.nodes[i].transform.end_of_input(&mut emitter);
            self.nodes[i].ended = true;
            self.collect(i, emitter)?;
            let output = self.nodes[i].output.clone();
            self.ended_topics.insert(output);
        }
        Ok(())
    }

    fn deliver(&mut self, topic: &str, record: Captured) -> Result<(), String> {
        self.count_one()?;
        self.topics
            .entry(topic.to_string())
            .or_default()
            .push(record.clone());
        for i in 0..self.nodes.len() {
            for port in 0..self.nodes[i].inputs.len() {
                if self.nodes[i].inputs[port] != topic || self.nodes[i].ended {
                    continue;
                }
                let node = &mut self.nodes[i];
                let offset = node.offsets[port];
                node.offsets[port] += 1;
                let input = InputRecord {
                    port,
                    key: record.key.as_deref(),
                    payload: &record.payload,
                    timestamp_ms: record.timestamp_ms,
                    partition: 0,
                    offset,
                };
                let mut emitter = Emitter::new();
                node.transform.process(&input, &mut emitter);
                self.collect(i, emitter)?;
            }
        }
        Ok(())
    }

    /// Records what node `i` emitted and passes its output on downstream.
    fn collect(&mut self, i: usize, emitter: Emitter) -> Result<(), String> {
        for r in emitter.rejected {
            self.count_one()?;
            self.rejected.push(CapturedRejection {
                stage: self.nodes[i].name.clone(),
                reason: r.reason,
                detail: r.detail,
                payload: r.payload,
                at_end: self.at_end,
            });
        }
        let output = self.nodes[i].output.clone();
        for r in emitter.records {
            self.deliver(
                &output,
                Captured {
                    key: r.key,
                    payload: r.payload,
                    timestamp_ms: Some(r.timestamp_ms),
                    at_end: self.at_end,
                },
            )?;
        }
        Ok(())
    }

    fn count_one(&mut self) -> Result<(), String> {
        self.total += 1;
        if self.total > MAX_RECORDS {
            return Err(format!(
                "the stages produced more than {MAX_RECORDS} records: stopped"
            ));
        }
        Ok(())
    }
}
