//! Errors of the MongoDB sink. Every message is built from redacted text.

use framework::ConnectorError;

/// Why the sink could not start or finish a batch.
#[derive(Debug, thiserror::Error)]
pub enum MongoSinkError {
    /// The config does not pass `check()` (message already redacted).
    #[error("invalid MongoDB sink config (uri {uri}): {message}")]
    InvalidConfig { uri: String, message: String },
    /// The driver client could not be created from the options.
    #[error("cannot create MongoDB client for {uri}: {message}")]
    Client { uri: String, message: String },
    /// A server error retrying cannot fix (authentication, authorization, bad options...).
    #[error("MongoDB {operation} on {target} failed permanently: {message}")]
    Permanent {
        operation: &'static str,
        target: String,
        message: String,
    },
    /// Shutdown was requested while transient errors were being retried: the batch is
    /// left uncommitted so that it is re-delivered after the restart.
    #[error("shutdown requested during MongoDB {operation} on {target} after {attempts} attempt(s); batch left uncommitted (last error: {last_error})")]
    Interrupted {
        operation: &'static str,
        target: String,
        attempts: u32,
        last_error: String,
    },
    /// Transient errors went on for longer than `retry.max_elapsed`: MongoDB is taken as
    /// unreachable and the stage stops (the batch stays uncommitted).
    #[error("MongoDB {operation} on {target} still failing after {attempts} attempt(s) over the retry budget of {budget} (retry.max_elapsed); stopping, batch left uncommitted (last error: {last_error})")]
    RetryBudgetSpent {
        operation: &'static str,
        target: String,
        attempts: u32,
        budget: String,
        last_error: String,
    },
}

impl From<MongoSinkError> for ConnectorError {
    fn from(error: MongoSinkError) -> Self {
        match error {
            MongoSinkError::InvalidConfig { .. } => ConnectorError::Config(error.to_string()),
            _ => ConnectorError::Fatal(error.to_string()),
        }
    }
}
