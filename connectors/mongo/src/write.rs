//! Writing a batch's documents: one attempt per round with the client-level `bulkWrite`,
//! and the round loop that retries what failed transiently. An attempt on regular
//! collections inserts first and upserts only the documents whose key the unique index
//! already holds (a re-delivery): inserts cost the server 4-5 times less than upserts
//! (docs/benchmarks.md, session 7). Time-series collections are delete-then-insert.

use std::{
    collections::HashMap,
    future::IntoFuture,
    sync::{atomic::Ordering, Arc},
};

use framework::{retry::Retry, SinkContext};
use mongodb::{
    bson::Document,
    error::{BulkWriteError, Error as DriverError, ErrorKind, PartialBulkWriteResult, WriteError},
    options::{DeleteManyModel, InsertOneModel, ReplaceOneModel, WriteModel},
    results::SummaryBulkWriteResult,
    Client, Namespace,
};
use tracing::info;

use crate::{
    config::WriteCommand,
    error::MongoSinkError,
    retry::{driver_source, interrupted, is_transient, Failure},
    sink::MongoSink,
};

/// One document to write.
#[derive(Debug, Clone)]
pub(crate) struct DocOp {
    /// Index of the input record in the batch.
    pub record: usize,
    pub collection: Arc<str>,
    /// The key fields' values: the upsert (or delete) filter.
    pub filter: Document,
    pub document: Document,
}

/// What one attempt over the pending documents left to do.
#[derive(Debug, Default)]
pub(crate) struct Attempt {
    /// Documents the server refused for good, with the reason.
    permanent: Vec<(usize, String)>,
    /// Documents to try again.
    retry: Vec<usize>,
    /// Why they must be tried again.
    last_error: Option<String>,
}

/// How one phase's request(s) ended, per model position.
pub(crate) struct PhaseResult {
    pub counts: SummaryBulkWriteResult,
    /// Failed models by position in `pending`.
    pub failed: HashMap<usize, Failure>,
    /// The request as a whole failed transiently: models without an entry in `failed`
    /// have an unknown fate and are retried (the writes are idempotent).
    pub transient: Option<String>,
}

impl PhaseResult {
    pub(crate) fn ok(counts: SummaryBulkWriteResult) -> Self {
        PhaseResult {
            counts,
            failed: HashMap::new(),
            transient: None,
        }
    }
}

/// What one phase of an attempt writes, and with what.
#[derive(Clone, Copy)]
pub(crate) struct PhaseRequest<'a> {
    pub(crate) client: &'a Client,
    pub(crate) phase: Phase,
    pub(crate) ops: &'a [DocOp],
    /// Indexes into `ops` still to write.
    pub(crate) pending: &'a [usize],
    pub(crate) ctx: &'a SinkContext,
    /// 1-based number of this attempt.
    pub(crate) attempts: u32,
}

/// The writes of one phase of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Regular collections: insert (the unique key index refuses what exists)...
    Insert,
    /// ...then replace-one upserts filtered on the key, for the refused only.
    Upsert,
    /// Time-series: delete what an earlier delivery wrote, then `Insert`.
    Delete,
}

impl MongoSink {
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
                .filter(op.filter.clone())
                .replacement(op.document.clone())
                .upsert(true)
                .build()
                .into(),
            Phase::Delete => DeleteManyModel::builder()
                .namespace(self.namespace(op))
                .filter(op.filter.clone())
                .build()
                .into(),
            Phase::Insert => InsertOneModel::builder()
                .namespace(self.namespace(op))
                .document(op.document.clone())
                .build()
                .into(),
        }
    }

    /// Runs `future`, or gives up (uncommitted) when shutdown is requested.
    pub(crate) async fn or_shutdown<T>(
        &self,
        ctx: &SinkContext,
        attempts: u32,
        future: impl IntoFuture<Output = T>,
    ) -> Result<T, MongoSinkError> {
        tokio::select! {
            biased;
            _ = ctx.shutdown().cancelled() => Err(interrupted(
                "bulk write",
                &self.config.database,
                attempts,
                "attempt in flight",
            )),
            result = future.into_future() => Ok(result),
        }
    }

    pub(crate) fn permanent(&self, error: &DriverError) -> MongoSinkError {
        MongoSinkError::Permanent {
            operation: "bulk write",
            target: self.config.database.clone(),
            message: self.redact(&error.to_string()),
        }
    }

    /// Writes `pending` ops of one phase with the configured write command.
    async fn run_phase(&self, request: PhaseRequest<'_>) -> Result<PhaseResult, MongoSinkError> {
        let pending = request.pending;
        if pending.is_empty() {
            return Ok(PhaseResult::ok(SummaryBulkWriteResult::default()));
        }
        if self.config.write_command == WriteCommand::PerCollection
            || self.legacy_server.load(Ordering::Relaxed)
        {
            return self.per_collection(request).await;
        }
        match self.bulk_write(request).await? {
            Some(result) => Ok(result),
            None => {
                info!(
                    stage = %self.stage.stage,
                    "server does not support bulkWrite (MongoDB < 8.0): using per-collection write commands"
                );
                self.legacy_server.store(true, Ordering::Relaxed);
                self.per_collection(request).await
            }
        }
    }

    /// One unordered client-level `bulkWrite` across every collection; `None` when the
    /// server is too old for it and `write_command` is `auto`.
    async fn bulk_write(
        &self,
        request: PhaseRequest<'_>,
    ) -> Result<Option<PhaseResult>, MongoSinkError> {
        let models: Vec<WriteModel> = request
            .pending
            .iter()
            .map(|&i| self.model(request.phase, &request.ops[i]))
            .collect();
        let bulk = request
            .client
            .bulk_write(models)
            .ordered(false)
            .write_concern(self.write_concern.clone());
        let error = match self
            .or_shutdown(request.ctx, request.attempts, bulk)
            .await?
        {
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

    /// Sorts a phase's outcome into `attempt`; returns the ops that were written. Ops
    /// refused with a duplicate key go to `existing` when given (insert-first), else they
    /// are permanent failures.
    fn settle(
        &self,
        pending: &[usize],
        result: PhaseResult,
        attempt: &mut Attempt,
        mut existing: Option<&mut Vec<usize>>,
    ) -> Vec<usize> {
        let mut done = Vec::with_capacity(pending.len());
        for (position, &op) in pending.iter().enumerate() {
            match result.failed.get(&position) {
                Some(Failure::Transient(message)) => {
                    attempt.retry.push(op);
                    attempt.last_error.get_or_insert_with(|| message.clone());
                }
                Some(Failure::DuplicateKey(message)) => match existing.as_deref_mut() {
                    Some(existing) => existing.push(op),
                    None => attempt.permanent.push((op, message.clone())),
                },
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
        let request = |phase, pending| PhaseRequest {
            client,
            phase,
            ops,
            pending,
            ctx,
            attempts,
        };
        if !self.config.time_series {
            // Insert first; the unique key index refuses (11000) exactly the documents an
            // earlier delivery wrote, and only those are upserted, in a second request
            // after the first is answered (concurrent requests lose acknowledged writes
            // on SecantusDB, docs/benchmarks.md). The end state is that of upserts alone:
            // an insert writes the same document an upsert of a new key would.
            let result = self.run_phase(request(Phase::Insert, pending)).await?;
            self.counters
                .add_written(result.counts.inserted_count as u64, 0);
            let mut existing = Vec::new();
            self.settle(pending, result, &mut attempt, Some(&mut existing));
            let result = self.run_phase(request(Phase::Upsert, &existing)).await?;
            self.counters.add_written(
                result.counts.upserted_count as u64,
                result.counts.matched_count as u64,
            );
            self.settle(&existing, result, &mut attempt, None);
            return Ok(attempt);
        }
        // Time-series: no unique index, so delete what an earlier delivery wrote, then
        // insert. Both phases are redone for every document of a failed attempt.
        let result = self.run_phase(request(Phase::Delete, pending)).await?;
        let deleted_count = result.counts.deleted_count as u64;
        let deleted = self.settle(pending, result, &mut attempt, None);
        let result = self.run_phase(request(Phase::Insert, &deleted)).await?;
        let inserted = result.counts.inserted_count as u64;
        let replaced = deleted_count.min(inserted);
        self.counters.add_written(inserted - replaced, replaced);
        self.settle(&deleted, result, &mut attempt, None);
        Ok(attempt)
    }

    /// Writes every op, retrying transient failures; returns the permanent failures.
    pub(crate) async fn write_ops(
        &mut self,
        client: &Client,
        ops: &[DocOp],
        ctx: &SinkContext,
    ) -> Result<Vec<(usize, String)>, MongoSinkError> {
        let mut permanent = Vec::new();
        let mut pending: Vec<usize> = (0..ops.len()).collect();
        let mut attempts = 0u32;
        let mut retry = Retry::new(self.retry_policy, ctx.retry_counter());
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
                self.back_off("bulk write", &target, &mut retry, &message, ctx)
                    .await?;
            }
        }
        Ok(permanent)
    }
}

pub(crate) fn write_error_text(error: &WriteError) -> String {
    match &error.code_name {
        Some(name) => format!("write error {} ({name}): {}", error.code, error.message),
        None => format!("write error {}: {}", error.code, error.message),
    }
}
