//! Configuration of the `mongo` sink (the `config:` block of a pipeline stage).

use framework::{schemars::JsonSchema, ConfigIssue, ConnectorConfig, DurationSpec};
use mongodb::options::{Acknowledgment, WriteConcern};
use serde::Deserialize;

use crate::redact::redact_uri;

fn default_uri() -> String {
    "mongodb://127.0.0.1:27017/?directConnection=true".to_string()
}
fn default_database() -> String {
    "btc".to_string()
}
fn default_collection_prefix() -> String {
    "btc-price-zscore-".to_string()
}
fn default_initial_backoff() -> DurationSpec {
    DurationSpec::from_millis(100)
}
fn default_max_backoff() -> DurationSpec {
    DurationSpec::from_secs(10)
}
fn default_server_selection_timeout() -> DurationSpec {
    DurationSpec::from_secs(5)
}
/// Upper bound of the sink's durations.
const HOUR: DurationSpec = DurationSpec::from_secs(3_600);

fn default_journal() -> bool {
    true
}

/// Writes `btc-price-zscore` records to MongoDB, one collection per window.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MongoSinkConfig {
    /// MongoDB connection string. Credentials may be given as `user:pass@`; they are
    /// redacted (`***@`) in every log line and error message.
    #[serde(default = "default_uri")]
    pub uri: String,
    /// Database that holds the per-window collections.
    #[serde(default = "default_database")]
    pub database: String,
    /// Collections are named `<collection_prefix><window>`, e.g. `btc-price-zscore-30s`.
    #[serde(default = "default_collection_prefix")]
    pub collection_prefix: String,
    /// Acknowledgement required before a batch counts as written (and its offsets are
    /// committed).
    #[serde(default)]
    pub write_concern: WriteConcernConfig,
    /// Backoff between retries of transient errors (network, server selection, primary
    /// step-down, retryable errors). Retries go on until success or shutdown.
    #[serde(default)]
    pub retry: RetryConfig,
    /// How long the driver looks for a usable server before an attempt fails (and is
    /// retried). Shorter values make outages visible sooner in logs.
    #[serde(default = "default_server_selection_timeout")]
    pub server_selection_timeout: DurationSpec,
    /// Create time-series collections (timeField `timestamp`, metaField `symbol`,
    /// granularity seconds) instead of regular ones. Time-series collections cannot have a
    /// unique index, so writes become delete-then-insert per (symbol, timestamp): still
    /// idempotent with one writer per symbol, but not guarded by the server.
    #[serde(default)]
    pub time_series: bool,
    /// Which write command carries a batch: `auto` (one client-level `bulkWrite` across
    /// all window collections on MongoDB 8.0+, per-collection commands on older servers),
    /// `bulk_write` (always `bulkWrite`), or `per_collection` (one `update`/`delete`/
    /// `insert` command per window collection, any server version).
    #[serde(default)]
    pub write_command: WriteCommand,
}

/// The write command used for a batch (see [`MongoSinkConfig::write_command`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteCommand {
    /// `bulkWrite` when the server supports it (MongoDB 8.0+), else `per_collection`.
    #[default]
    Auto,
    /// Always the client-level `bulkWrite` command (MongoDB 8.0+).
    BulkWrite,
    /// One `update`, `delete` or `insert` command per collection (any MongoDB version).
    PerCollection,
}

/// The MongoDB write concern used for every write.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteConcernConfig {
    /// Number of nodes that must acknowledge a write, or `"majority"`. Unset: the
    /// server's default. `0` (unacknowledged) is refused: the sink could not know that a
    /// batch was written before its offsets are committed.
    #[serde(default)]
    pub w: Option<WriteAcknowledgment>,
    /// Wait for the write to reach the on-disk journal.
    #[serde(default = "default_journal")]
    pub journal: bool,
    /// Give up waiting for `w` acknowledgements after this long (the attempt then fails
    /// with a write-concern error and is retried; the upserts are idempotent).
    #[serde(default)]
    pub wtimeout: Option<DurationSpec>,
}

impl Default for WriteConcernConfig {
    fn default() -> Self {
        WriteConcernConfig {
            w: None,
            journal: default_journal(),
            wtimeout: None,
        }
    }
}

/// `w`: a number of nodes or `"majority"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum WriteAcknowledgment {
    /// Acknowledged by this many nodes (at least 1).
    Nodes(u32),
    /// Acknowledged by a majority of the replica set.
    Majority(MajorityLiteral),
}

/// The literal string `"majority"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum MajorityLiteral {
    #[serde(rename = "majority")]
    Majority,
}

/// Exponential backoff with jitter between retries of transient errors.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Delay before the first retry; doubled after every failed attempt.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: DurationSpec,
    /// Upper bound of the delay between two attempts.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: DurationSpec,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

impl MongoSinkConfig {
    /// The driver write concern for this config.
    pub fn driver_write_concern(&self) -> WriteConcern {
        let mut wc = WriteConcern::default();
        wc.w = self.write_concern.w.map(|w| match w {
            WriteAcknowledgment::Nodes(n) => Acknowledgment::Nodes(n),
            WriteAcknowledgment::Majority(_) => Acknowledgment::Majority,
        });
        wc.journal = Some(self.write_concern.journal);
        wc.w_timeout = self.write_concern.wtimeout.map(DurationSpec::as_std);
        wc
    }

    /// The collection of a window.
    pub fn collection_for(&self, window: &str) -> String {
        format!("{}{}", self.collection_prefix, window)
    }
}

/// MongoDB's rules for database names (the characters that are invalid on any platform).
fn database_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.len() >= 64 {
        Some("must be shorter than 64 bytes")
    } else if name.contains([
        '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
    ]) {
        Some("must not contain any of / \\ . space \" $ * < > : | ? or NUL")
    } else {
        None
    }
}

/// Longest namespace (`<database>.<collection>`) MongoDB accepts, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 255;

/// Why `<database>.<collection>` cannot be a MongoDB collection (a window name from the
/// input makes the collection name, so this is checked per record).
pub fn namespace_problem(database: &str, collection: &str) -> Option<String> {
    if collection.is_empty() {
        return Some("collection name is empty".into());
    }
    if let Some(problem) = collection_name_problem(collection) {
        return Some(format!("collection names {problem}"));
    }
    let length = database.len() + 1 + collection.len();
    (length > MAX_NAMESPACE_BYTES).then(|| {
        format!("namespace of {length} bytes is longer than MongoDB's {MAX_NAMESPACE_BYTES}")
    })
}

/// MongoDB's rules for collection names, applied to a prefix or a full name.
pub(crate) fn collection_name_problem(name: &str) -> Option<&'static str> {
    if name.contains('$') || name.contains('\0') {
        Some("must not contain `$` or NUL")
    } else if name.starts_with("system.") {
        Some("must not start with `system.`")
    } else {
        None
    }
}

impl ConnectorConfig for MongoSinkConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if !(self.uri.starts_with("mongodb://") || self.uri.starts_with("mongodb+srv://")) {
            issues.push(ConfigIssue::new(
                "uri",
                format!(
                    "{} is not a MongoDB connection string (expected mongodb:// or mongodb+srv://)",
                    redact_uri(&self.uri)
                ),
            ));
        } else if let Err(e) = mongodb::options::ConnectionString::parse(&self.uri) {
            issues.push(ConfigIssue::new(
                "uri",
                format!("invalid connection string: {}", redact_uri(&e.to_string())),
            ));
        }
        if let Some(problem) = database_name_problem(&self.database) {
            issues.push(ConfigIssue::new(
                "database",
                format!("database name {problem}"),
            ));
        }
        if self.collection_prefix.is_empty() {
            issues.push(ConfigIssue::new(
                "collection_prefix",
                "must not be empty (collections would be named after windows only)",
            ));
        } else if let Some(problem) = collection_name_problem(&self.collection_prefix) {
            issues.push(ConfigIssue::new(
                "collection_prefix",
                format!("collection names {problem}"),
            ));
        }
        if self.write_concern.w == Some(WriteAcknowledgment::Nodes(0)) {
            issues.push(ConfigIssue::new(
                "write_concern.w",
                "w: 0 (unacknowledged) cannot confirm a batch before its offsets are committed; use 1 or more, or \"majority\"",
            ));
        }
        if self
            .write_concern
            .wtimeout
            .is_some_and(|t| t.as_millis() == 0)
        {
            issues.push(ConfigIssue::new(
                "write_concern.wtimeout",
                "must be positive (omit it to wait without a limit)",
            ));
        }
        if self.retry.initial_backoff.as_millis() <= 0 {
            issues.push(ConfigIssue::new(
                "retry.initial_backoff",
                "must be positive",
            ));
        }
        if self.retry.max_backoff < self.retry.initial_backoff {
            issues.push(ConfigIssue::new(
                "retry.max_backoff",
                format!(
                    "must be at least retry.initial_backoff ({})",
                    self.retry.initial_backoff
                ),
            ));
        }
        if self.server_selection_timeout.as_millis() <= 0 {
            issues.push(ConfigIssue::new(
                "server_selection_timeout",
                "must be positive",
            ));
        }
        // Upper bounds: beyond them a setting only hides an outage or a typo.
        for (path, value, max) in [
            ("retry.initial_backoff", self.retry.initial_backoff, HOUR),
            ("retry.max_backoff", self.retry.max_backoff, HOUR),
            (
                "server_selection_timeout",
                self.server_selection_timeout,
                HOUR,
            ),
        ]
        .into_iter()
        .chain(
            self.write_concern
                .wtimeout
                .map(|t| ("write_concern.wtimeout", t, HOUR)),
        ) {
            if value > max {
                issues.push(ConfigIssue::new(path, format!("must be at most {max}")));
            }
        }
        if let Some(WriteAcknowledgment::Nodes(n)) = self.write_concern.w {
            if n > 50 {
                issues.push(ConfigIssue::new(
                    "write_concern.w",
                    "a replica set has at most 50 members: use 1 to 50, or \"majority\"",
                ));
            }
        }
        if self.collection_prefix.len() + self.database.len() + 1 >= MAX_NAMESPACE_BYTES {
            issues.push(ConfigIssue::new(
                "collection_prefix",
                format!(
                    "database and prefix leave no room for a window name in MongoDB's \
                     {MAX_NAMESPACE_BYTES}-byte namespaces"
                ),
            ));
        }
        issues
    }
}
