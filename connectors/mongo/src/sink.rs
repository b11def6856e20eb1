//! The sink: decoding, per-window documents, bulk upserts and the retry loop.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::IntoFuture,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use framework::{
    connector::StageContext, ConnectorConfig, ConnectorError, InputRecord, Sink, SinkContext,
    WriteOutcome,
};
use mongodb::{
    bson::{doc, Bson, DateTime, Document},
    error::{
        BulkWriteError, Error as DriverError, ErrorKind, PartialBulkWriteResult, WriteError,
        WriteFailure, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR, SYSTEM_OVERLOADED_ERROR,
        TRANSIENT_TRANSACTION_ERROR,
    },
    options::{
        ClientOptions, DeleteManyModel, IndexOptions, InsertOneModel, ReplaceOneModel,
        TimeseriesGranularity, TimeseriesOptions, WriteConcern, WriteModel,
    },
    results::SummaryBulkWriteResult,
    Client, IndexModel, Namespace,
};
use rand::Rng;
use tracing::{debug, info, warn};

use crate::{
    config::{namespace_problem, MongoSinkConfig, WriteCommand},
    counters::SinkCounters,
    decode::decode,
    error::MongoSinkError,
    redact::{redact_uri, redact_with_secret, uri_password},
};

/// Name of the unique index on `{symbol: 1, timestamp: 1}` (non-unique on time-series
/// collections, where the server forbids unique indexes).
pub const KEY_INDEX_NAME: &str = "symbol_1_timestamp_1";

/// Server error codes that go away by retrying: network trouble, elections, shutdowns,
/// write conflicts, write-concern timeouts.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    64,    // WriteConcernFailed (wtimeout)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// `createCollection` on an existing collection.
const NAMESPACE_EXISTS: i32 = 48;

/// Whether retrying `error` (unchanged) can succeed.
pub fn is_transient(error: &DriverError) -> bool {
    if [
        RETRYABLE_WRITE_ERROR,
        RETRYABLE_ERROR,
        SYSTEM_OVERLOADED_ERROR,
        TRANSIENT_TRANSACTION_ERROR,
    ]
    .iter()
    .any(|label| error.contains_label(label))
    {
        return true;
    }
    match error.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::DnsResolve { .. } => true,
        ErrorKind::Command(command) => TRANSIENT_CODES.contains(&command.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        ErrorKind::Write(WriteFailure::WriteError(write)) => TRANSIENT_CODES.contains(&write.code),
        ErrorKind::BulkWrite(bulk) => {
            !bulk.write_concern_errors.is_empty() || driver_source(error).is_some_and(is_transient)
        }
        _ => false,
    }
}

/// The error behind a bulk-write error that is neither a write error nor a write-concern
/// error (e.g. the connection dropped after some batches were written).
fn driver_source(error: &DriverError) -> Option<&DriverError> {
    std::error::Error::source(error)?.downcast_ref::<DriverError>()
}

/// Logs at most once per interval, counting what it suppressed in between.
#[derive(Debug)]
struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(number of suppressed messages)` when this one may be logged.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// One document to write: one z-score of one input record.
#[derive(Debug, Clone)]
struct DocOp {
    /// Index of the input record in the batch.
    record: usize,
    collection: Arc<str>,
    symbol: Arc<str>,
    timestamp: DateTime,
    window: Arc<str>,
    zscore_price: f64,
    price: f64,
}

impl DocOp {
    fn filter(&self) -> Document {
        doc! { "symbol": self.symbol.as_ref(), "timestamp": self.timestamp }
    }

    fn document(&self) -> Document {
        doc! {
            "timestamp": self.timestamp,
            "symbol": self.symbol.as_ref(),
            "window": self.window.as_ref(),
            "zscore_price": self.zscore_price,
            "price": self.price,
        }
    }
}

/// What one attempt over the pending documents left to do.
#[derive(Debug, Default)]
struct Attempt {
    /// Documents the server refused for good, with the reason.
    permanent: Vec<(usize, String)>,
    /// Documents to try again.
    retry: Vec<usize>,
    /// Why they must be tried again.
    last_error: Option<String>,
}

/// Why one model of a request failed.
#[derive(Debug, Clone)]
enum Failure {
    /// Retrying may succeed (write conflict, the command failed on the network...).
    Transient(String),
    /// The server refuses this document for good.
    Permanent(String),
}

impl Failure {
    fn from_code(code: i32, text: String) -> Self {
        if TRANSIENT_CODES.contains(&code) {
            Failure::Transient(text)
        } else {
            Failure::Permanent(text)
        }
    }
}

/// How one phase's request(s) ended, per model position.
struct PhaseResult {
    counts: SummaryBulkWriteResult,
    /// Failed models by position in `pending`.
    failed: HashMap<usize, Failure>,
    /// The request as a whole failed transiently: models without an entry in `failed`
    /// have an unknown fate and are retried (the writes are idempotent).
    transient: Option<String>,
}

impl PhaseResult {
    fn ok(counts: SummaryBulkWriteResult) -> Self {
        PhaseResult {
            counts,
            failed: HashMap::new(),
            transient: None,
        }
    }
}

/// The writes of one phase of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Replace-one upserts filtered on (symbol, timestamp).
    Upsert,
    /// Time-series: delete what an earlier delivery wrote...
    Delete,
    /// ...then insert.
    Insert,
}

/// Statements per per-collection command: far below the server's 100,000 and keeps
/// commands well under 16 MB.
const STATEMENTS_PER_COMMAND: usize = 10_000;

/// The `mongo` sink: see the crate documentation.
pub struct MongoSink {
    config: MongoSinkConfig,
    stage: StageContext,
    secret: Option<String>,
    client: Option<Client>,
    write_concern: WriteConcern,
    /// Collections whose index (and time-series options) are known to exist.
    ready: HashSet<String>,
    counters: Arc<SinkCounters>,
    retry_log: LogLimiter,
    reject_log: LogLimiter,
    /// Set once `bulkWrite` was refused as unsupported (`write_command: auto`).
    legacy_server: AtomicBool,
}

impl MongoSink {
    /// Checks the config and prepares the sink; connects lazily on the first write (so
    /// that `build` does no I/O).
    pub fn new(config: MongoSinkConfig, stage: &StageContext) -> Result<Self, MongoSinkError> {
        let secret = uri_password(&config.uri);
        let issues = config.check();
        if !issues.is_empty() {
            let message = issues
                .iter()
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(MongoSinkError::InvalidUri {
                uri: redact_uri(&config.uri),
                message: redact_with_secret(&message, secret.as_deref()),
            });
        }
        Ok(MongoSink {
            write_concern: config.driver_write_concern(),
            stage: stage.clone(),
            secret,
            client: None,
            ready: HashSet::new(),
            counters: Arc::new(SinkCounters::default()),
            retry_log: LogLimiter::new(Duration::from_secs(5)),
            reject_log: LogLimiter::new(Duration::from_secs(10)),
            legacy_server: AtomicBool::new(false),
            config,
        })
    }

    /// The live counters of this sink.
    pub fn counters(&self) -> Arc<SinkCounters> {
        Arc::clone(&self.counters)
    }

    fn redact(&self, text: &str) -> String {
        redact_with_secret(text, self.secret.as_deref())
    }

    fn target(&self, collection: &str) -> String {
        format!("{}.{}", self.config.database, collection)
    }

    /// Runs `operation` until it succeeds, fails permanently, or shutdown is requested,
    /// sleeping with exponential backoff and jitter between attempts.
    async fn retry_transient<T, F, Fut>(
        &mut self,
        name: &'static str,
        target: &str,
        ctx: &SinkContext,
        mut operation: F,
    ) -> Result<T, MongoSinkError>
    where
        F: FnMut() -> Fut,
        Fut: IntoFuture<Output = Result<T, DriverError>>,
    {
        let mut attempts = 0u32;
        let mut last_error = String::from("attempt in flight");
        loop {
            attempts += 1;
            let result = tokio::select! {
                biased;
                _ = ctx.shutdown().cancelled() => {
                    return Err(self.interrupted(name, target, attempts, &last_error));
                }
                result = operation().into_future() => result,
            };
            match result {
                Ok(value) => return Ok(value),
                Err(e) if is_transient(&e) => {
                    last_error = self.redact(&e.to_string());
                    self.back_off(name, target, attempts, &last_error, ctx)
                        .await?;
                }
                Err(e) => {
                    return Err(MongoSinkError::Permanent {
                        operation: name,
                        target: target.to_string(),
                        message: self.redact(&e.to_string()),
                    })
                }
            }
        }
    }

    fn interrupted(
        &self,
        operation: &'static str,
        target: &str,
        attempts: u32,
        last_error: &str,
    ) -> MongoSinkError {
        MongoSinkError::Interrupted {
            operation,
            target: target.to_string(),
            attempts,
            last_error: last_error.to_string(),
        }
    }

    /// Counts and logs a failed attempt, then sleeps before the next one (or returns
    /// `Interrupted` when shutdown is requested meanwhile).
    async fn back_off(
        &mut self,
        operation: &'static str,
        target: &str,
        attempts: u32,
        message: &str,
        ctx: &SinkContext,
    ) -> Result<(), MongoSinkError> {
        self.counters.add_retry();
        let delay = backoff_delay(
            self.config.retry.initial_backoff.as_std(),
            self.config.retry.max_backoff.as_std(),
            attempts,
        );
        if let Some(suppressed) = self.retry_log.allow() {
            warn!(
                stage = %self.stage.stage,
                operation,
                target,
                attempt = attempts,
                retry_in_ms = delay.as_millis() as u64,
                suppressed,
                error = %message,
                "transient MongoDB error, retrying (the batch waits, nothing is dropped)"
            );
        }
        tokio::select! {
            biased;
            _ = ctx.shutdown().cancelled() => Err(self.interrupted(operation, target, attempts, message)),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }

    async fn client(&mut self, ctx: &SinkContext) -> Result<Client, MongoSinkError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let uri = self.config.uri.clone();
        let redacted = redact_uri(&uri);
        // Parsing resolves SRV records for `mongodb+srv://`, which may fail transiently.
        let mut options = self
            .retry_transient("connection-string parsing", &redacted, ctx, || {
                ClientOptions::parse(uri.as_str())
            })
            .await?;
        options.server_selection_timeout = Some(self.config.server_selection_timeout.as_std());
        if options.app_name.is_none() {
            options.app_name = Some(format!(
                "pipeline/{}/{}",
                self.stage.pipeline, self.stage.stage
            ));
        }
        let client = Client::with_options(options).map_err(|e| MongoSinkError::Client {
            uri: redacted.clone(),
            message: self.redact(&e.to_string()),
        })?;
        info!(stage = %self.stage.stage, uri = %redacted, database = %self.config.database, "MongoDB client created");
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Creates the key index (and, in time-series mode, the collection) of every
    /// collection not seen before. Returns the collections the server refused for good
    /// (their records are dead-lettered, the others written); only errors that affect
    /// every record (authentication, authorization) fail the batch.
    async fn ensure_collections(
        &mut self,
        client: &Client,
        names: &[Arc<str>],
        ctx: &SinkContext,
    ) -> Result<HashMap<Arc<str>, String>, MongoSinkError> {
        let database = client.database(&self.config.database);
        let mut refused = HashMap::new();
        for name in names {
            if self.ready.contains(name.as_ref()) {
                continue;
            }
            let target = self.target(name);
            if self.config.time_series {
                let db = database.clone();
                let coll_name = name.to_string();
                let created = self
                    .retry_transient("time-series collection creation", &target, ctx, || {
                        let db = db.clone();
                        let coll_name = coll_name.clone();
                        async move {
                            let options = TimeseriesOptions::builder()
                                .time_field("timestamp".to_string())
                                .meta_field(Some("symbol".to_string()))
                                .granularity(Some(TimeseriesGranularity::Seconds))
                                .build();
                            let result = db.create_collection(coll_name).timeseries(options).await;
                            match result {
                                Err(e) if command_code(&e) == Some(NAMESPACE_EXISTS) => Ok(Ok(())),
                                other => per_collection_outcome(other),
                            }
                        }
                    })
                    .await?;
                if let Err(message) = created {
                    refused.insert(Arc::clone(name), self.redact(&message));
                    continue;
                }
            }
            let collection = database.collection::<Document>(name);
            // The server forbids unique indexes on time-series collections; there the
            // index only speeds up the delete-then-insert.
            let unique = !self.config.time_series;
            let index = IndexModel::builder()
                .keys(doc! { "symbol": 1, "timestamp": 1 })
                .options(
                    IndexOptions::builder()
                        .name(KEY_INDEX_NAME.to_string())
                        .unique(unique.then_some(true))
                        .build(),
                )
                .build();
            let indexed = self
                .retry_transient("key index creation", &target, ctx, || {
                    let collection = collection.clone();
                    let index = index.clone();
                    async move { per_collection_outcome(collection.create_index(index).await) }
                })
                .await?;
            if let Err(message) = indexed {
                refused.insert(Arc::clone(name), self.redact(&message));
                continue;
            }
            debug!(stage = %self.stage.stage, collection = %target, unique, "collection ready");
            self.ready.insert(name.to_string());
        }
        Ok(refused)
    }

    fn namespace(&self, op: &DocOp) -> Namespace {
        Namespace {
            db: self.config.database.clone(),
            coll: op.collection.to_string(),
        }
    }

    fn model(&self, phase: Phase, op: &DocOp) -> WriteModel {
        match phase {
            Phase::Upsert => ReplaceOneModel::builder()
                .namespace(self.namespace(op))
                .filter(op.filter())
                .replacement(op.document())
                .upsert(true)
                .build()
                .into(),
            Phase::Delete => DeleteManyModel::builder()
                .namespace(self.namespace(op))
                .filter(op.filter())
                .build()
                .into(),
            Phase::Insert => InsertOneModel::builder()
                .namespace(self.namespace(op))
                .document(op.document())
                .build()
                .into(),
        }
    }

    /// Runs `future`, or gives up (uncommitted) when shutdown is requested.
    async fn or_shutdown<T>(
        &self,
        ctx: &SinkContext,
        attempts: u32,
        future: impl IntoFuture<Output = T>,
    ) -> Result<T, MongoSinkError> {
        tokio::select! {
            biased;
            _ = ctx.shutdown().cancelled() => Err(self.interrupted(
                "bulk write",
                &self.config.database,
                attempts,
                "attempt in flight",
            )),
            result = future.into_future() => Ok(result),
        }
    }

    fn permanent(&self, error: &DriverError) -> MongoSinkError {
        MongoSinkError::Permanent {
            operation: "bulk write",
            target: self.config.database.clone(),
            message: self.redact(&error.to_string()),
        }
    }

    /// Writes `pending` ops of one phase with the configured write command.
    async fn run_phase(
        &self,
        client: &Client,
        phase: Phase,
        ops: &[DocOp],
        pending: &[usize],
        ctx: &SinkContext,
        attempts: u32,
    ) -> Result<PhaseResult, MongoSinkError> {
        if pending.is_empty() {
            return Ok(PhaseResult::ok(SummaryBulkWriteResult::default()));
        }
        if self.config.write_command == WriteCommand::PerCollection
            || self.legacy_server.load(Ordering::Relaxed)
        {
            return self
                .per_collection(client, phase, ops, pending, ctx, attempts)
                .await;
        }
        match self
            .bulk_write(client, phase, ops, pending, ctx, attempts)
            .await?
        {
            Some(result) => Ok(result),
            None => {
                info!(
                    stage = %self.stage.stage,
                    "server does not support bulkWrite (MongoDB < 8.0): using per-collection write commands"
                );
                self.legacy_server.store(true, Ordering::Relaxed);
                self.per_collection(client, phase, ops, pending, ctx, attempts)
                    .await
            }
        }
    }

    /// One unordered client-level `bulkWrite` across every collection; `None` when the
    /// server is too old for it and `write_command` is `auto`.
    async fn bulk_write(
        &self,
        client: &Client,
        phase: Phase,
        ops: &[DocOp],
        pending: &[usize],
        ctx: &SinkContext,
        attempts: u32,
    ) -> Result<Option<PhaseResult>, MongoSinkError> {
        let models: Vec<WriteModel> = pending
            .iter()
            .map(|&i| self.model(phase, &ops[i]))
            .collect();
        let request = client
            .bulk_write(models)
            .ordered(false)
            .write_concern(self.write_concern.clone());
        let error = match self.or_shutdown(ctx, attempts, request).await? {
            Ok(summary) => return Ok(Some(PhaseResult::ok(summary))),
            Err(error) => error,
        };
        match error.kind.as_ref() {
            ErrorKind::IncompatibleServer { .. }
                if self.config.write_command == WriteCommand::Auto =>
            {
                Ok(None)
            }
            ErrorKind::BulkWrite(BulkWriteError {
                write_errors,
                partial_result,
                write_concern_errors,
                ..
            }) => {
                let counts = match partial_result {
                    Some(PartialBulkWriteResult::Summary(summary)) => summary.clone(),
                    _ => SummaryBulkWriteResult::default(),
                };
                let transient = match driver_source(&error) {
                    Some(source) if is_transient(source) => Some(self.redact(&source.to_string())),
                    Some(source) => return Err(self.permanent(source)),
                    None => write_concern_errors.first().map(|wc| {
                        self.redact(&format!(
                            "write concern error {} ({}): {}",
                            wc.code, wc.code_name, wc.message
                        ))
                    }),
                };
                let failed = write_errors
                    .iter()
                    .map(|(&position, e)| {
                        (
                            position,
                            Failure::from_code(e.code, self.redact(&write_error_text(e))),
                        )
                    })
                    .collect();
                Ok(Some(PhaseResult {
                    counts,
                    failed,
                    transient,
                }))
            }
            _ if is_transient(&error) => Ok(Some(PhaseResult {
                counts: SummaryBulkWriteResult::default(),
                failed: HashMap::new(),
                transient: Some(self.redact(&error.to_string())),
            })),
            _ => Err(self.permanent(&error)),
        }
    }

    /// Classic `update` / `delete` / `insert` commands, unordered, one per collection
    /// (and per [`STATEMENTS_PER_COMMAND`]): for servers without `bulkWrite`.
    async fn per_collection(
        &self,
        client: &Client,
        phase: Phase,
        ops: &[DocOp],
        pending: &[usize],
        ctx: &SinkContext,
        attempts: u32,
    ) -> Result<PhaseResult, MongoSinkError> {
        let database = client.database(&self.config.database);
        let write_concern = mongodb::bson::to_document(&self.write_concern).map_err(|e| {
            MongoSinkError::Permanent {
                operation: "write concern encoding",
                target: self.config.database.clone(),
                message: e.to_string(),
            }
        })?;
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (position, &op) in pending.iter().enumerate() {
            groups
                .entry(&ops[op].collection)
                .or_default()
                .push(position);
        }
        let mut result = PhaseResult::ok(SummaryBulkWriteResult::default());
        for (collection, positions) in groups {
            for chunk in positions.chunks(STATEMENTS_PER_COMMAND) {
                let statements = chunk.iter().map(|&p| {
                    let op = &ops[pending[p]];
                    match phase {
                        Phase::Upsert => {
                            doc! { "q": op.filter(), "u": op.document(), "upsert": true }
                        }
                        Phase::Delete => doc! { "q": op.filter(), "limit": 0 },
                        Phase::Insert => op.document(),
                    }
                });
                let statements: Vec<Document> = statements.collect();
                let mut command = match phase {
                    Phase::Upsert => doc! { "update": collection, "updates": statements },
                    Phase::Delete => doc! { "delete": collection, "deletes": statements },
                    Phase::Insert => doc! { "insert": collection, "documents": statements },
                };
                command.insert("ordered", false);
                command.insert("writeConcern", write_concern.clone());
                let reply = match self
                    .or_shutdown(ctx, attempts, database.run_command(command))
                    .await?
                {
                    Ok(reply) => reply,
                    Err(e) if is_transient(&e) => {
                        let message = self.redact(&e.to_string());
                        for &p in chunk {
                            result.failed.insert(p, Failure::Transient(message.clone()));
                        }
                        continue;
                    }
                    Err(e) => return Err(self.permanent(&e)),
                };
                self.read_reply(phase, &reply, chunk, &mut result);
            }
        }
        Ok(result)
    }

    /// Folds a write command's reply (`n`, `upserted`, `writeErrors`,
    /// `writeConcernError`) into `result`.
    fn read_reply(
        &self,
        phase: Phase,
        reply: &Document,
        chunk: &[usize],
        result: &mut PhaseResult,
    ) {
        let number = |key: &str| match reply.get(key) {
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Double(n)) => *n as i64,
            _ => 0,
        };
        let n = number("n");
        let upserted = reply.get_array("upserted").map_or(0, |u| u.len() as i64);
        match phase {
            Phase::Upsert => {
                result.counts.upserted_count += upserted;
                result.counts.matched_count += n - upserted;
            }
            Phase::Delete => result.counts.deleted_count += n,
            Phase::Insert => result.counts.inserted_count += n,
        }
        if let Ok(errors) = reply.get_array("writeErrors") {
            for error in errors.iter().filter_map(Bson::as_document) {
                let index = match error.get("index") {
                    Some(Bson::Int32(i)) => usize::try_from(*i).ok(),
                    Some(Bson::Int64(i)) => usize::try_from(*i).ok(),
                    _ => None,
                };
                let code = error.get_i32("code").unwrap_or(0);
                let text = format!(
                    "write error {code} ({}): {}",
                    error.get_str("codeName").unwrap_or("unknown"),
                    error.get_str("errmsg").unwrap_or("")
                );
                match index.and_then(|i| chunk.get(i)) {
                    Some(&p) => {
                        result
                            .failed
                            .insert(p, Failure::from_code(code, self.redact(&text)));
                    }
                    // An error the server did not tie to a statement: retry the chunk.
                    None => result.transient = Some(self.redact(&text)),
                }
            }
        }
        if let Ok(wc) = reply.get_document("writeConcernError") {
            result.transient = Some(self.redact(&format!(
                "write concern error {}: {}",
                wc.get_i32("code").unwrap_or(0),
                wc.get_str("errmsg").unwrap_or("")
            )));
        }
    }

    /// Sorts a phase's outcome into `attempt`; returns the ops that were written.
    fn settle(&self, pending: &[usize], result: PhaseResult, attempt: &mut Attempt) -> Vec<usize> {
        let mut done = Vec::with_capacity(pending.len());
        for (position, &op) in pending.iter().enumerate() {
            match result.failed.get(&position) {
                Some(Failure::Transient(message)) => {
                    attempt.retry.push(op);
                    attempt.last_error.get_or_insert_with(|| message.clone());
                }
                Some(Failure::Permanent(message)) => attempt.permanent.push((op, message.clone())),
                None if result.transient.is_some() => attempt.retry.push(op),
                None => done.push(op),
            }
        }
        if let Some(message) = result.transient {
            attempt.last_error = Some(message);
        }
        done
    }

    /// One attempt at writing `pending` ops.
    async fn attempt(
        &self,
        client: &Client,
        ops: &[DocOp],
        pending: &[usize],
        ctx: &SinkContext,
        attempts: u32,
    ) -> Result<Attempt, MongoSinkError> {
        let mut attempt = Attempt::default();
        if !self.config.time_series {
            let result = self
                .run_phase(client, Phase::Upsert, ops, pending, ctx, attempts)
                .await?;
            self.counters.add_written(
                result.counts.upserted_count as u64,
                result.counts.matched_count as u64,
            );
            self.settle(pending, result, &mut attempt);
            return Ok(attempt);
        }
        // Time-series: no unique index, so delete what an earlier delivery wrote, then
        // insert. Both phases are redone for every document of a failed attempt.
        let result = self
            .run_phase(client, Phase::Delete, ops, pending, ctx, attempts)
            .await?;
        let deleted_count = result.counts.deleted_count as u64;
        let deleted = self.settle(pending, result, &mut attempt);
        let result = self
            .run_phase(client, Phase::Insert, ops, &deleted, ctx, attempts)
            .await?;
        let inserted = result.counts.inserted_count as u64;
        let replaced = deleted_count.min(inserted);
        self.counters.add_written(inserted - replaced, replaced);
        self.settle(&deleted, result, &mut attempt);
        Ok(attempt)
    }

    /// Writes every op, retrying transient failures; returns the permanent failures.
    async fn write_ops(
        &mut self,
        client: &Client,
        ops: &[DocOp],
        ctx: &SinkContext,
    ) -> Result<Vec<(usize, String)>, MongoSinkError> {
        let mut permanent = Vec::new();
        let mut pending: Vec<usize> = (0..ops.len()).collect();
        let mut attempts = 0u32;
        let mut last_error: Option<String> = None;
        while !pending.is_empty() {
            attempts += 1;
            let attempt = match self.attempt(client, ops, &pending, ctx, attempts).await {
                Ok(attempt) => attempt,
                // Interrupted in flight: report why the earlier attempts failed.
                Err(MongoSinkError::Interrupted {
                    operation,
                    target,
                    attempts,
                    last_error: in_flight,
                }) => {
                    return Err(MongoSinkError::Interrupted {
                        operation,
                        target,
                        attempts,
                        last_error: last_error.unwrap_or(in_flight),
                    })
                }
                Err(e) => return Err(e),
            };
            permanent.extend(attempt.permanent);
            pending = attempt.retry;
            if !pending.is_empty() {
                let message = attempt
                    .last_error
                    .unwrap_or_else(|| "transient write errors".to_string());
                last_error = Some(message.clone());
                let target = format!(
                    "{} ({} document(s) left)",
                    self.config.database,
                    pending.len()
                );
                self.back_off("bulk write", &target, attempts, &message, ctx)
                    .await?;
            }
        }
        Ok(permanent)
    }

    async fn write_batch(
        &mut self,
        batch: &[InputRecord<'_>],
        ctx: &SinkContext,
    ) -> Result<WriteOutcome, MongoSinkError> {
        let started = Instant::now();
        let mut rejected: BTreeMap<usize, (&'static str, String)> = BTreeMap::new();
        let mut collections: Vec<Arc<str>> = Vec::new();
        // Window -> its collection, or why the window cannot name one.
        let mut interned: HashMap<String, Result<Arc<str>, String>> = HashMap::new();
        let mut ops: Vec<DocOp> = Vec::with_capacity(batch.len() * 6);
        // (collection, symbol, timestamp) -> op: a later record of the batch replaces an
        // earlier one, as a later write would (and two upserts of one key in one
        // unordered bulk could race).
        let mut by_key: HashMap<(Arc<str>, Arc<str>, i64), usize> = HashMap::new();

        for (index, record) in batch.iter().enumerate() {
            let decoded = match decode(record.payload) {
                Ok(decoded) => decoded,
                Err(e) => {
                    rejected.insert(index, (e.reason, e.detail));
                    continue;
                }
            };
            // Every window of the record must name a valid collection, or none is written.
            let mut names = Vec::with_capacity(decoded.zscores.len());
            for score in &decoded.zscores {
                let name = interned.entry(score.window.clone()).or_insert_with(|| {
                    let name = self.config.collection_for(&score.window);
                    match namespace_problem(&self.config.database, &name) {
                        Some(problem) => Err(format!(
                            "window {:?} makes an invalid collection name: {problem}",
                            truncate_chars(&score.window, 80)
                        )),
                        None => {
                            let name: Arc<str> = Arc::from(name);
                            collections.push(Arc::clone(&name));
                            Ok(name)
                        }
                    }
                });
                names.push(name.clone());
            }
            if let Some(Err(problem)) = names.iter().find(|n| n.is_err()) {
                rejected.insert(index, ("invalid_collection", problem.clone()));
                continue;
            }
            let largest_window = decoded.zscores.iter().map(|z| z.window.len()).max();
            let document_bytes = decoded.symbol.len() + largest_window.unwrap_or(0) + 256;
            if document_bytes > MAX_DOCUMENT_BYTES {
                rejected.insert(
                    index,
                    (
                        "too_large",
                        format!(
                            "a document of about {document_bytes} bytes exceeds MongoDB's \
                             {MAX_DOCUMENT_BYTES}-byte limit"
                        ),
                    ),
                );
                continue;
            }
            let symbol: Arc<str> = Arc::from(decoded.symbol.as_str());
            let timestamp = DateTime::from_millis(decoded.timestamp_ms);
            for (score, collection) in decoded.zscores.into_iter().zip(names) {
                let Ok(collection) = collection else {
                    continue;
                };
                let op = DocOp {
                    record: index,
                    collection: Arc::clone(&collection),
                    symbol: Arc::clone(&symbol),
                    timestamp,
                    window: Arc::from(score.window.as_str()),
                    zscore_price: score.zscore_price,
                    price: decoded.price,
                };
                match by_key.entry((collection, Arc::clone(&symbol), decoded.timestamp_ms)) {
                    std::collections::hash_map::Entry::Occupied(slot) => ops[*slot.get()] = op,
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(ops.len());
                        ops.push(op);
                    }
                }
            }
        }

        if !ops.is_empty() {
            let client = self.client(ctx).await?;
            let refused = self.ensure_collections(&client, &collections, ctx).await?;
            if !refused.is_empty() {
                // Records with a refused collection are dead-lettered whole; the rest of
                // the batch is written.
                for op in ops.iter().filter(|op| refused.contains_key(&op.collection)) {
                    let detail = format!(
                        "{}: {}",
                        self.target(&op.collection),
                        refused[&op.collection]
                    );
                    rejected.insert(op.record, ("write_error", detail));
                }
                ops.retain(|op| !rejected.contains_key(&op.record));
            }
            for (op, reason) in self.write_ops(&client, &ops, ctx).await? {
                let record = ops[op].record;
                let detail = format!("{}: {reason}", self.target(&ops[op].collection));
                rejected
                    .entry(record)
                    .and_modify(|(_, existing)| {
                        existing.push_str("; ");
                        existing.push_str(&detail);
                    })
                    .or_insert(("write_error", detail));
            }
        }

        for (&index, (reason, detail)) in &rejected {
            self.counters.add_rejected(reason);
            if let Some(suppressed) = self.reject_log.allow() {
                let record = &batch[index];
                warn!(
                    stage = %self.stage.stage,
                    partition = record.partition,
                    offset = record.offset,
                    reason,
                    suppressed,
                    detail = %detail,
                    "record rejected by the MongoDB sink"
                );
            }
        }
        self.counters.finish_batch(started.elapsed());
        Ok(WriteOutcome {
            rejected: rejected
                .into_iter()
                .map(|(index, (reason, detail))| (index, reason, detail))
                .collect(),
        })
    }
}

/// Largest BSON document the server accepts.
const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// Server error codes that concern the client, not a collection: every record would fail
/// the same way, so the stage stops with a clear error instead of dead-lettering them all.
const EVERY_RECORD_CODES: &[i32] = &[
    11,   // UserNotFound
    13,   // Unauthorized
    18,   // AuthenticationFailed
    8000, // AtlasError (authentication on Atlas)
];

/// Whether a permanent error is the client's (authentication, authorization, no usable
/// server) rather than one collection's.
fn affects_every_record(error: &DriverError) -> bool {
    match command_code(error) {
        Some(code) => EVERY_RECORD_CODES.contains(&code),
        None => true,
    }
}

/// A collection-level operation's result for `retry_transient`: transient and
/// every-record errors stay errors; others refuse only this collection (`Ok(Err)`).
fn per_collection_outcome<T>(
    result: Result<T, DriverError>,
) -> Result<Result<(), String>, DriverError> {
    match result {
        Ok(_) => Ok(Ok(())),
        Err(e) if is_transient(&e) || affects_every_record(&e) => Err(e),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// `text` cut to `max` characters, for details that quote input.
fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

fn command_code(error: &DriverError) -> Option<i32> {
    match error.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        _ => None,
    }
}

fn write_error_text(error: &WriteError) -> String {
    match &error.code_name {
        Some(name) => format!("write error {} ({name}): {}", error.code, error.message),
        None => format!("write error {}: {}", error.code, error.message),
    }
}

/// Exponential backoff with "equal jitter": half the delay is fixed, half random, so
/// retries of many sinks spread out but never hammer the server.
fn backoff_delay(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let delay = initial.saturating_mul(1u32 << exponent).min(max);
    let half = delay / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis().min(u64::MAX as u128) as u64);
    half + Duration::from_millis(jitter_ms)
}

#[async_trait]
impl Sink for MongoSink {
    async fn write(
        &mut self,
        batch: &[InputRecord<'_>],
        ctx: &SinkContext,
    ) -> Result<WriteOutcome, ConnectorError> {
        Ok(self.write_batch(batch, ctx).await?)
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        if let Some(client) = self.client.take() {
            client.shutdown().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_bounded_jitter() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for _ in 0..50 {
            let first = backoff_delay(initial, max, 1);
            assert!(
                first >= Duration::from_millis(50) && first <= initial,
                "{first:?}"
            );
            let third = backoff_delay(initial, max, 3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff_delay(initial, max, 40);
            assert!(late >= Duration::from_secs(1) && late <= max, "{late:?}");
        }
    }

    #[test]
    fn log_limiter_lets_one_message_through_per_interval_and_counts_the_rest() {
        let mut limiter = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), None);
        assert_eq!(limiter.allow(), None);
        limiter.last = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(limiter.allow(), Some(2));
    }
}
