//! Configuration of the `mongo` sink (the `config:` block of a pipeline stage).

use framework::{
    contract::{JsonType, NeededField},
    retry::max_below_initial_issue,
    schemars::JsonSchema,
    ConfigIssue, ConnectorConfig, DurationSpec,
};
use mongodb::options::{Acknowledgment, WriteConcern};
use serde::Deserialize;

use crate::{
    documents::Layout,
    names::database_name_problem,
    redact::redact_uri,
    template::{template_fields, Template},
};

fn default_uri() -> String {
    "mongodb://127.0.0.1:27017/?directConnection=true".to_string()
}
fn default_database() -> String {
    "btc".to_string()
}
fn default_max_collections() -> usize {
    10_000
}
/// Accepted `max_collections`: each collection costs an index creation and a few bytes of
/// memory; beyond this a template is more likely a key explosion than a design.
pub const MAX_COLLECTIONS_RANGE: std::ops::RangeInclusive<usize> = 1..=1_000_000;
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
const SECOND: DurationSpec = DurationSpec::from_secs(1);
const WEEK: DurationSpec = DurationSpec::from_secs(7 * 86_400);

fn default_journal() -> bool {
    true
}

/// Writes JSON object records to MongoDB: one document per record (or per element of an
/// `explode` array), upserted by `key` into the collection named by a template.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MongoSinkConfig {
    /// MongoDB connection string. Credentials may be given as `user:pass@`; they are
    /// redacted (`***@`) in every log line and error message.
    #[serde(default = "default_uri")]
    pub uri: String,
    /// Database that holds the collections.
    #[serde(default = "default_database")]
    pub database: String,
    /// Collection of each document: a template where `{field}` is the value of that
    /// top-level field of the document being written (after `explode`), e.g.
    /// `"btc-price-zscore-{window}"`. Strings are used as they are, numbers and booleans
    /// as their JSON text. A missing field (`missing_template_field`) or a value that makes
    /// an invalid name (`invalid_collection`: empty, null, array, object, `$`, NUL,
    /// `system.` prefix, namespace over 255 bytes) dead-letters the record.
    pub collection: String,
    /// Optional: a top-level array field; each element (an object) becomes one document,
    /// merged with the record's other fields (the element's value wins when both have a
    /// field). The array itself is not written. Missing, not an array, or a non-object
    /// element: `bad_explode`. An empty array writes nothing.
    #[serde(default)]
    pub explode: Option<String>,
    /// Fields that identify a document: the replace-one upsert filter, backed by a
    /// unique index on them (created once per collection). A document without one of
    /// them (or with null) is dead-lettered (`missing_key_field`).
    pub key: Vec<String>,
    /// Fields holding ISO 8601 / RFC 3339 timestamps, stored as BSON Dates (millisecond
    /// precision). Missing or unparsable: `bad_date`.
    #[serde(default)]
    pub date_fields: Vec<String>,
    /// Create time-series collections instead of regular ones: timeField is the first of
    /// `date_fields`, metaField is `meta_field`, or else the one `key` field that is not
    /// the timeField (none when there are several). Time-series collections cannot have
    /// a unique index, so writes become delete-then-insert per key: still idempotent with
    /// one writer per key, but not guarded by the server.
    #[serde(default)]
    pub time_series: bool,
    /// metaField of time-series collections (only with `time_series: true`).
    #[serde(default)]
    pub meta_field: Option<String>,
    /// Most collections one sink instance writes (1 to 1,000,000). A record that would
    /// add one more is dead-lettered (`too_many_collections`): a template over a field
    /// with unbounded values must not create collections without end.
    #[serde(default = "default_max_collections")]
    pub max_collections: usize,
    /// Acknowledgement required before a batch counts as written (and its offsets are
    /// committed).
    #[serde(default)]
    pub write_concern: WriteConcernConfig,
    /// Backoff between retries of transient errors (network, server selection, primary
    /// step-down, retryable errors). Retries go on until success or shutdown, or, with
    /// `retry.max_elapsed`, until MongoDB has failed that long in a row: the stage then
    /// stops with an error (the batch stays uncommitted).
    #[serde(default)]
    pub retry: RetryConfig,
    /// How long the driver looks for a usable server before an attempt fails (and is
    /// retried). Shorter values make outages visible sooner in logs.
    #[serde(default = "default_server_selection_timeout")]
    pub server_selection_timeout: DurationSpec,
    /// Which write command carries a batch: `auto` (one client-level `bulkWrite` across
    /// all collections on MongoDB 8.0+, per-collection commands on older servers),
    /// `bulk_write` (always `bulkWrite`), or `per_collection` (one `update`/`delete`/
    /// `insert` command per collection, any server version).
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
    /// Give up once an operation has failed this long in a row (1s to 7d) and stop the
    /// stage with an error naming MongoDB's last error; the batch stays uncommitted and is
    /// written after a restart. Without it, retries go on until the server is back.
    #[serde(default)]
    pub max_elapsed: Option<DurationSpec>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_elapsed: None,
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

    /// The document-shaping part of the config (`check` has validated the template).
    pub fn layout(&self) -> Result<Layout, crate::template::TemplateError> {
        Ok(Layout {
            collection: Template::parse(&self.collection)?,
            explode: self.explode.clone(),
            key: self.key.clone(),
            date_fields: self.date_fields.clone(),
        })
    }

    /// `(timeField, metaField)` of time-series collections, `None` for regular ones.
    pub fn time_series_fields(&self) -> Option<(&str, Option<&str>)> {
        if !self.time_series {
            return None;
        }
        let time = self.date_fields.first()?;
        let meta = self.meta_field.as_deref().or_else(|| {
            let mut others = self.key.iter().filter(|k| *k != time);
            match (others.next(), others.next()) {
                (Some(only), None) => Some(only.as_str()),
                _ => None,
            }
        });
        Some((time, meta))
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
        crate::layout_check::check_layout(self, &mut issues);
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
        issues.extend(max_below_initial_issue(
            "retry.initial_backoff",
            self.retry.initial_backoff,
            "retry.max_backoff",
            self.retry.max_backoff,
        ));
        if let Some(budget) = self.retry.max_elapsed {
            if budget < SECOND || budget > WEEK {
                issues.push(ConfigIssue::new(
                    "retry.max_elapsed",
                    format!("must be between {SECOND} and {WEEK} (omit it to retry until the server is back)"),
                ));
            }
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
        issues
    }

    /// Every field a document is built from: the explode array, the template's fields,
    /// the key, the dates and the metaField. Each may be in the record or, with `explode`,
    /// in the array's elements.
    fn needed_fields(&self, _port: &str) -> Vec<NeededField> {
        use JsonType::{Array, Boolean, Number, String};
        let explode = self.explode.as_deref();
        let top_or_element = |name: &str, types: &[JsonType], setting: std::string::String| {
            let need = NeededField::new(name, types, setting);
            match explode {
                Some(array) => need.or_at(format!("{array}[].{name}")),
                None => need,
            }
        };
        let mut needs = Vec::new();
        if let Some(array) = explode {
            needs.push(NeededField::new(array, &[Array], "explode"));
        }
        // A template that does not parse is reported by `check`.
        for name in template_fields(&self.collection).unwrap_or_default() {
            needs.push(
                top_or_element(&name, &[String, Number, Boolean], "collection".into())
                    .role("template field"),
            );
        }
        for (i, name) in self.key.iter().enumerate() {
            needs.push(top_or_element(name, &[], format!("key[{i}]")));
        }
        for (i, name) in self.date_fields.iter().enumerate() {
            needs.push(top_or_element(name, &[String], format!("date_fields[{i}]")));
        }
        if let Some(meta) = &self.meta_field {
            needs.push(top_or_element(meta, &[], "meta_field".into()));
        }
        needs
    }
}
