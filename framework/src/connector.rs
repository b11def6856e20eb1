//! The connector model: `Source`, `Transform` and `Sink` traits, their typed
//! registration twins, and the compile-time registry.
//!
//! A connector implements one of [`SourceConnector`], [`TransformConnector`] or
//! [`SinkConnector`] (typed config, declared record types) and registers with one line:
//!
//! ```ignore
//! framework::register_source!(MySource);
//! ```
//!
//! The registry stores erased function pointers ([`ConnectorRegistration`]) so that the
//! runtime and `pipeline validate` handle every connector the same way, while connector
//! authors only ever see their own typed config.

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    contract::{NeededField, OutputFields},
    error::ConnectorError,
    record::{Emitter, InputRecord, OutputRecord, RecordType},
};

/// What a connector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorKind {
    Source,
    Transform,
    Sink,
}

impl ConnectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Source => "source",
            ConnectorKind::Transform => "transform",
            ConnectorKind::Sink => "sink",
        }
    }
}

/// A named input of a transform or sink, and the record type it expects.
#[derive(Debug, Clone, Copy)]
pub struct InputPort {
    pub name: &'static str,
    pub record_type: RecordType,
}

/// Facts a stage publishes about the records it writes (e.g. `slide=1s`), so that readers
/// can check at validation time that they agree with their writer.
pub type Attributes = BTreeMap<String, String>;

/// A problem in a connector's config, at a path relative to the stage's `config`
/// (`windows[2].length`; empty for the config itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// What validation knows about a stage's inputs: per input port (declared order), the
/// attributes published by the stage that writes that topic, if any.
#[derive(Debug, Default)]
pub struct ValidationContext {
    pub input_attributes: Vec<Option<Attributes>>,
}

/// A connector's typed configuration. The JSON Schema derived from it drives
/// `pipeline validate` and `pipeline connectors describe`, so document every field.
pub trait ConnectorConfig: DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// Checks the schema cannot express: ranges, relations between fields.
    fn check(&self) -> Vec<ConfigIssue> {
        Vec::new()
    }
    /// Facts about the written records that readers may rely on.
    fn output_attributes(&self) -> Attributes {
        Attributes::new()
    }
    /// Checks against what the writers of the input topics publish.
    fn check_inputs(&self, _inputs: &ValidationContext) -> Vec<ConfigIssue> {
        Vec::new()
    }
    /// Settings that work but are probably not meant (`pipeline validate` warnings).
    fn warnings(&self) -> Vec<ConfigIssue> {
        Vec::new()
    }
    /// The fields of the records this stage writes; unknown by default (no check).
    fn output_fields(&self) -> OutputFields {
        OutputFields::Unknown
    }
    /// The fields this stage needs in the records of input port `port`; none by default.
    /// `pipeline validate` reports each one its topic's writer never writes.
    fn needed_fields(&self, _port: &str) -> Vec<NeededField> {
        Vec::new()
    }
}

/// Identity of a running stage, given to connectors when they are built.
#[derive(Debug, Clone)]
pub struct StageContext {
    pub pipeline: String,
    pub stage: String,
    pub connector: &'static str,
}

impl StageContext {
    /// A connector-specific counter of this stage, exported with the stage metrics
    /// (labels `stage` and `connector`, then `labels`), e.g. the MongoDB sink's
    /// `pipeline_mongo_documents_written_total{outcome}`.
    pub fn counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> metrics::Counter {
        let mut all = vec![
            metrics::Label::new("stage", self.stage.clone()),
            metrics::Label::new("connector", self.connector),
        ];
        all.extend(labels.iter().map(|&(k, v)| metrics::Label::new(k, v)));
        metrics::counter!(name, all)
    }

    /// Like [`StageContext::counter`], also readable in process
    /// ([`crate::metrics::LiveCounter::get`]).
    pub fn live_counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> crate::metrics::LiveCounter {
        crate::metrics::LiveCounter::exported(self.counter(name, labels))
    }
}

// ---------------------------------------------------------------------------------------
// Sources

/// How a source's `run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEnd {
    /// A bounded input is exhausted: the runtime signals end of input downstream, so that
    /// windows close and the pipeline can finish.
    Exhausted,
    /// The pipeline is shutting down: nothing is signalled downstream.
    Stopped,
}

/// An event from a source to the runtime.
#[derive(Debug)]
pub enum SourceEvent {
    Record(OutputRecord),
    /// Input the source refused: counted per reason and dead-lettered when configured.
    Rejected {
        reason: &'static str,
        detail: String,
        payload: Vec<u8>,
    },
    /// No record with an event time before this (ms since the epoch) will follow: the
    /// runtime writes a progress marker so readers' watermarks advance without waiting
    /// for the next record.
    Progress(i64),
}

/// Told when a source pauses on purpose (reason, how long) and when it runs again.
pub type WaitHook = Arc<dyn Fn(Option<(&'static str, std::time::Duration)>) + Send + Sync>;

/// The runtime's side of a running source: where it emits, and when it must stop.
pub struct SourceContext {
    events: mpsc::Sender<SourceEvent>,
    shutdown: CancellationToken,
    wait_hook: Option<WaitHook>,
}

impl SourceContext {
    /// A context whose events arrive on the returned receiver. The runtime uses it, and so
    /// can a connector's own tests.
    pub fn channel(
        capacity: usize,
        shutdown: CancellationToken,
    ) -> (SourceContext, mpsc::Receiver<SourceEvent>) {
        let (events, receiver) = mpsc::channel(capacity);
        let ctx = SourceContext {
            events,
            shutdown,
            wait_hook: None,
        };
        (ctx, receiver)
    }

    /// Where [`SourceContext::report_wait`] goes (the runtime shows it in `/ready`).
    pub fn with_wait_hook(mut self, hook: WaitHook) -> Self {
        self.wait_hook = Some(hook);
        self
    }

    /// Reports that the source deliberately sends nothing for a while (e.g. a rate-limit
    /// `Retry-After`), so operators see why it is silent; `None` once it runs again.
    pub fn report_wait(&self, wait: Option<(&'static str, std::time::Duration)>) {
        if let Some(hook) = &self.wait_hook {
            hook(wait);
        }
    }

    /// Emits a record; waits while the output is congested (backpressure).
    pub async fn emit(&mut self, record: OutputRecord) -> Result<(), ConnectorError> {
        self.events
            .send(SourceEvent::Record(record))
            .await
            .map_err(|_| ConnectorError::OutputClosed("source output channel closed".into()))
    }

    /// Reports refused input (counted under `reason`, dead-lettered when configured).
    pub async fn reject(
        &mut self,
        reason: &'static str,
        detail: String,
        payload: Vec<u8>,
    ) -> Result<(), ConnectorError> {
        self.events
            .send(SourceEvent::Rejected {
                reason,
                detail,
                payload,
            })
            .await
            .map_err(|_| ConnectorError::OutputClosed("source output channel closed".into()))
    }

    /// Promises that every record emitted from now on has an event time at or after
    /// `event_ms`. A live source calls it at the end of each poll cycle (issue 14), so
    /// windows close as soon as their lateness has passed instead of at the next record.
    pub async fn progress(&mut self, event_ms: i64) -> Result<(), ConnectorError> {
        self.events
            .send(SourceEvent::Progress(event_ms))
            .await
            .map_err(|_| ConnectorError::OutputClosed("source output channel closed".into()))
    }

    /// Cancelled when the pipeline stops (SIGINT/SIGTERM); `run` must then return soon.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

/// A running source. `run` loops until its input is exhausted or shutdown is requested.
#[async_trait]
pub trait Source: Send {
    async fn run(&mut self, ctx: &mut SourceContext) -> Result<SourceEnd, ConnectorError>;
}

/// Typed description of a source connector.
pub trait SourceConnector: 'static {
    type Config: ConnectorConfig;
    const NAME: &'static str;
    const SUMMARY: &'static str;
    const OUTPUT: RecordType;
    fn build(config: Self::Config, stage: &StageContext)
        -> Result<Box<dyn Source>, ConnectorError>;
}

// ---------------------------------------------------------------------------------------
// Transforms

/// Where a restarted transform wants its input to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// At the committed offsets (stateless transforms).
    FromCommitted,
    /// Earlier: at the first record whose Kafka timestamp is at or after this event time,
    /// so that the transform can rebuild its state. It must then not emit anything that
    /// differs from what it emitted before the restart.
    ReplayFrom { event_time_ms: i64 },
}

/// A transform instance owns the state of one input partition (the records of a key are
/// always in one partition, so keyed state never spans instances).
///
/// Unlike `Source` and `Sink`, a transform is synchronous on purpose: it is pure,
/// deterministic computation on the hot path, and an async call per record would cost an
/// allocation and make replay harder to reason about. The runtime does all the I/O.
pub trait Transform: Send {
    /// One input record, in partition order.
    fn process(&mut self, record: &InputRecord<'_>, out: &mut Emitter);
    /// Every input of this partition has ended (bounded input): emit what is pending.
    fn end_of_input(&mut self, _out: &mut Emitter) {}
    /// Input `port` of this partition has ended (every writer of it has written its end
    /// marker, docs/semantics.md §8) while another input is still open. Called once per
    /// such port, before the records of the other inputs that follow; the last input to
    /// end gets [`end_of_input`](Self::end_of_input) instead. Output works as in
    /// `process` (a full `out` continues in `emit_pending`). It lets a transform free the
    /// state only that input could still have needed (the z-score join drops its
    /// statistics once no price can come); what it emits must not depend on whether it is
    /// called.
    fn input_ended(&mut self, _port: usize, _out: &mut Emitter) {}
    /// Continues output that `process`, `end_of_input` or a previous call left pending
    /// because `out` was full ([`Emitter::is_full`]). The runtime calls it, after producing
    /// what `out` holds, whenever the previous call left `out` full, and hands the
    /// transform nothing else (no record, no checkpoint) until a call leaves `out` not
    /// full. Transforms that never emit more than one record per call need not implement
    /// it.
    fn emit_pending(&mut self, _out: &mut Emitter) {}
    /// Whether the transform's buffer for records of input `port` is full: while it says
    /// so, the runtime stops fetching that input's partition (the other inputs keep
    /// flowing) and asks again after every call, resuming once it no longer is. This is
    /// backpressure instead of dropping records, e.g. the z-score join holding as many
    /// prices as it may while their statistics lag. A few records can still arrive after
    /// `true` (a runtime that cannot pause, or a rebalance), so keep a hard bound above it.
    fn input_full(&self, _port: usize) -> bool {
        false
    }
    /// The writers of input `port` promise that no record with an event time before
    /// `event_ms` will follow on this partition (a progress marker, docs/semantics.md §8):
    /// an event-time transform may advance its watermarks and emit what that closes. It
    /// must not change *what* is emitted, only when: replays without markers give the
    /// same records.
    fn advance(&mut self, _port: usize, _event_ms: i64, _out: &mut Emitter) {}
    /// Small state stored with every offset commit, handed to `resume` after a restart.
    fn checkpoint(&self) -> Option<String> {
        None
    }
    /// Called once, before the first record, with the checkpoint of the last commit.
    fn resume(&mut self, _checkpoint: Option<&str>) -> Result<Resume, ConnectorError> {
        Ok(Resume::FromCommitted)
    }
    /// What `resume(Some(checkpoint))` would return, computed without building or
    /// changing a transform: the runtime calls it at every commit to record where a
    /// restart would replay from. A transform that overrides `resume` overrides this too,
    /// and `resume` should return it, so the two cannot disagree.
    fn replay_from(&self, _checkpoint: &str) -> Result<Resume, ConnectorError> {
        Ok(Resume::FromCommitted)
    }
    /// Current event-time watermark per key (ms since the epoch), for metrics; event-time
    /// transforms report it so operators can see how far behind each key is.
    fn watermarks(&self) -> Vec<(String, i64)> {
        Vec::new()
    }
}

/// Builds one [`Transform`] per input partition.
pub type TransformFactory =
    Arc<dyn Fn(i32) -> Result<Box<dyn Transform>, ConnectorError> + Send + Sync>;

/// Typed description of a transform connector.
pub trait TransformConnector: 'static {
    type Config: ConnectorConfig + Clone;
    const NAME: &'static str;
    const SUMMARY: &'static str;
    const INPUTS: &'static [InputPort];
    const OUTPUT: RecordType;
    fn build(
        config: &Self::Config,
        stage: &StageContext,
    ) -> Result<Box<dyn Transform>, ConnectorError>;
}

// ---------------------------------------------------------------------------------------
// Sinks

/// The runtime's side of a running sink.
#[derive(Clone)]
pub struct SinkContext {
    shutdown: CancellationToken,
    retries: metrics::Counter,
}

impl SinkContext {
    pub fn new(shutdown: CancellationToken) -> Self {
        SinkContext {
            shutdown,
            retries: metrics::Counter::noop(),
        }
    }

    /// A context whose retries are counted in `retries`.
    pub fn with_retry_counter(shutdown: CancellationToken, retries: metrics::Counter) -> Self {
        SinkContext { shutdown, retries }
    }

    /// The stage's retry counter (`pipeline_sink_write_retries_total`), for
    /// [`crate::retry::Retry`], which counts every retry in it.
    pub fn retry_counter(&self) -> metrics::Counter {
        self.retries.clone()
    }
    /// Cancelled when the pipeline stops: a sink retrying a transient error gives up then
    /// (returning an error leaves the batch uncommitted, so nothing is lost).
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

/// Records of a batch a sink could not write for a permanent reason: the runtime counts
/// and dead-letters them, and the rest of the batch counts as written.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    /// (index in the batch, reason label, details).
    pub rejected: Vec<(usize, &'static str, String)>,
}

/// A running sink. Offsets of a batch are committed only after `write` returns `Ok`.
#[async_trait]
pub trait Sink: Send {
    /// Writes a batch durably, retrying transient errors itself (the runtime does not
    /// consume more meanwhile: backpressure). An `Err` stops the stage uncommitted.
    async fn write(
        &mut self,
        batch: &[InputRecord<'_>],
        ctx: &SinkContext,
    ) -> Result<WriteOutcome, ConnectorError>;
    /// Called once on a clean stop, after the last write.
    async fn close(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Typed description of a sink connector.
pub trait SinkConnector: 'static {
    type Config: ConnectorConfig;
    const NAME: &'static str;
    const SUMMARY: &'static str;
    const INPUTS: &'static [InputPort];
    fn build(config: Self::Config, stage: &StageContext) -> Result<Box<dyn Sink>, ConnectorError>;
}

mod registry;
pub use registry::{require_valid, Builder, ConfigCheck, ConnectorRegistration, InvalidConfig};
