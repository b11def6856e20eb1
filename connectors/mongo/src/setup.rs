//! Connecting, and preparing each collection once (key index; time-series collection).

use std::{collections::HashMap, sync::Arc};

use framework::SinkContext;
use mongodb::{
    bson::Document,
    error::{Error as DriverError, ErrorKind},
    options::{ClientOptions, IndexOptions, TimeseriesGranularity, TimeseriesOptions},
    Client, IndexModel,
};
use tracing::{debug, info};

use crate::{error::MongoSinkError, redact::redact_uri, retry::is_transient, sink::MongoSink};

/// `createCollection` on an existing collection.
const NAMESPACE_EXISTS: i32 = 48;

/// Server error codes that concern the client, not a collection: every record would fail
/// the same way, so the stage stops with a clear error instead of dead-lettering them all.
const EVERY_RECORD_CODES: &[i32] = &[
    11,   // UserNotFound
    13,   // Unauthorized
    18,   // AuthenticationFailed
    8000, // AtlasError (authentication on Atlas)
];

/// MongoDB's default name of an ascending index on `key` (`symbol_1_timestamp_1`).
pub fn key_index_name(key: &[String]) -> String {
    key.iter()
        .map(|field| format!("{field}_1"))
        .collect::<Vec<_>>()
        .join("_")
}

impl MongoSink {
    pub(crate) async fn client(&mut self, ctx: &SinkContext) -> Result<Client, MongoSinkError> {
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
    pub(crate) async fn ensure_collections(
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
            let time_series = self
                .config
                .time_series_fields()
                .map(|(time, meta)| (time.to_string(), meta.map(str::to_string)));
            if let Some((time_field, meta_field)) = time_series {
                let db = database.clone();
                let coll_name = name.to_string();
                let created = self
                    .retry_transient("time-series collection creation", &target, ctx, || {
                        let db = db.clone();
                        let coll_name = coll_name.clone();
                        let options = TimeseriesOptions::builder()
                            .time_field(time_field.clone())
                            .meta_field(meta_field.clone())
                            .granularity(Some(TimeseriesGranularity::Seconds))
                            .build();
                        async move {
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
            let keys: Document = self
                .config
                .key
                .iter()
                .map(|field| (field.clone(), 1i32.into()))
                .collect();
            let index = IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .name(key_index_name(&self.config.key))
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
}

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

pub(crate) fn command_code(error: &DriverError) -> Option<i32> {
    match error.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_index_has_mongodbs_default_name() {
        let key = ["symbol".to_string(), "timestamp".to_string()];
        assert_eq!(key_index_name(&key), "symbol_1_timestamp_1");
    }
}
