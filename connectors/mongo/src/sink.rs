//! The sink: state, and one batch from records to acknowledged documents. The steps live
//! in their own modules: `plan` (records to documents), `setup` (client, collections),
//! `write` and `commands` (the two wire protocols), `retry` (transient errors).

use std::{collections::HashSet, sync::atomic::AtomicBool, time::Duration};

use async_trait::async_trait;
use framework::{
    connector::StageContext, metrics::RateLimitedLog, retry::RetryPolicy, ConnectorError,
    InputRecord, Sink, SinkContext, WriteOutcome,
};
use mongodb::{options::WriteConcern, Client};

use crate::{
    config::MongoSinkConfig,
    counters::SinkCounters,
    documents::{reason, Layout},
    error::MongoSinkError,
    redact::{redact_uri, redact_with_secret, uri_password},
};

/// The `mongo` sink: see the crate documentation.
pub struct MongoSink {
    pub(crate) config: MongoSinkConfig,
    pub(crate) layout: Layout,
    pub(crate) stage: StageContext,
    secret: Option<String>,
    pub(crate) client: Option<Client>,
    pub(crate) write_concern: WriteConcern,
    /// Collections whose index (and time-series options) are known to exist.
    pub(crate) ready: HashSet<String>,
    pub(crate) counters: SinkCounters,
    pub(crate) retry_log: RateLimitedLog,
    pub(crate) retry_policy: RetryPolicy,
    /// `retry.max_elapsed`, for the error that names it.
    pub(crate) retry_budget: Option<framework::DurationSpec>,
    /// Set once `bulkWrite` was refused as unsupported (`write_command: auto`).
    pub(crate) legacy_server: AtomicBool,
}

impl MongoSink {
    /// Checks the config and prepares the sink; connects lazily on the first write (so
    /// that `build` does no I/O).
    pub fn new(config: MongoSinkConfig, stage: &StageContext) -> Result<Self, MongoSinkError> {
        if let Err(invalid) = framework::connector::require_valid(&config) {
            return Err(MongoSinkError::InvalidConfig {
                uri: redact_uri(&config.uri),
                message: redact_with_secret(
                    &invalid.to_string(),
                    uri_password(&config.uri).as_deref(),
                ),
            });
        }
        Self::from_checked(config, stage)
    }

    /// Prepares the sink from a config the registry already checked.
    pub(crate) fn from_checked(
        config: MongoSinkConfig,
        stage: &StageContext,
    ) -> Result<Self, MongoSinkError> {
        let secret = uri_password(&config.uri);
        let layout = config.layout().map_err(|e| MongoSinkError::InvalidConfig {
            uri: redact_uri(&config.uri),
            message: format!("collection: {e}"),
        })?;
        let invalid = |e: framework::retry::RetryPolicyError| MongoSinkError::InvalidConfig {
            uri: redact_uri(&config.uri),
            message: format!("retry: {e}"),
        };
        let mut retry_policy =
            RetryPolicy::from_specs(config.retry.initial_backoff, config.retry.max_backoff)
                .map_err(invalid)?;
        if let Some(budget) = config.retry.max_elapsed {
            retry_policy = retry_policy
                .with_max_elapsed(budget.as_std())
                .map_err(invalid)?;
        }
        Ok(MongoSink {
            write_concern: config.driver_write_concern(),
            layout,
            stage: stage.clone(),
            secret,
            client: None,
            ready: HashSet::new(),
            counters: SinkCounters::new(stage),
            retry_log: RateLimitedLog::new(Duration::from_secs(5)),
            retry_policy,
            retry_budget: config.retry.max_elapsed,
            legacy_server: AtomicBool::new(false),
            config,
        })
    }

    /// The live counters of this sink (also exported as stage metrics).
    pub fn counters(&self) -> &SinkCounters {
        &self.counters
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        redact_with_secret(text, self.secret.as_deref())
    }

    pub(crate) fn target(&self, collection: &str) -> String {
        format!("{}.{}", self.config.database, collection)
    }

    async fn write_batch(
        &mut self,
        batch: &[InputRecord<'_>],
        ctx: &SinkContext,
    ) -> Result<WriteOutcome, MongoSinkError> {
        let mut plan = self.plan(batch);
        if !plan.ops.is_empty() {
            let client = self.client(ctx).await?;
            let refused = self
                .ensure_collections(&client, &plan.collections, ctx)
                .await?;
            if !refused.is_empty() {
                // Records with a refused collection are dead-lettered whole; the rest of
                // the batch is written.
                for op in plan
                    .ops
                    .iter()
                    .filter(|op| refused.contains_key(&op.collection))
                {
                    let detail = format!(
                        "{}: {}",
                        self.target(&op.collection),
                        refused[&op.collection]
                    );
                    plan.rejected
                        .insert(op.record, (reason::WRITE_ERROR, detail));
                }
                let rejected = &plan.rejected;
                plan.ops.retain(|op| !rejected.contains_key(&op.record));
            }
            for (op, problem) in self.write_ops(&client, &plan.ops, ctx).await? {
                let record = plan.ops[op].record;
                let detail = format!("{}: {problem}", self.target(&plan.ops[op].collection));
                plan.rejected
                    .entry(record)
                    .and_modify(|(_, existing)| {
                        existing.push_str("; ");
                        existing.push_str(&detail);
                    })
                    .or_insert((reason::WRITE_ERROR, detail));
            }
        }
        // The runtime counts, logs (rate-limited) and dead-letters rejections.
        Ok(WriteOutcome {
            rejected: plan
                .rejected
                .into_iter()
                .map(|(index, (reason, detail))| (index, reason, detail))
                .collect(),
        })
    }
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
