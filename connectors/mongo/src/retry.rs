//! Which MongoDB errors are transient, and the retry loop with backoff. Every retry is
//! counted in the stage's `pipeline_sink_write_retries_total` by `framework::retry::Retry`
//! (`SinkContext::retry_counter`).

use std::future::IntoFuture;

use framework::{retry::Retry, SinkContext};
use mongodb::error::{
    Error as DriverError, ErrorKind, WriteFailure, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR,
    SYSTEM_OVERLOADED_ERROR, TRANSIENT_TRANSACTION_ERROR,
};
use tracing::warn;

use crate::{error::MongoSinkError, sink::MongoSink};

/// Server error codes that go away by retrying: network trouble, elections, shutdowns,
/// write conflicts, write-concern timeouts.
pub(crate) const TRANSIENT_CODES: &[i32] = &[
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
pub(crate) fn driver_source(error: &DriverError) -> Option<&DriverError> {
    std::error::Error::source(error)?.downcast_ref::<DriverError>()
}

/// Duplicate key (11000; 11001 on old servers).
pub(crate) const DUPLICATE_KEY_CODES: &[i32] = &[11000, 11001];

/// Why one model of a request failed.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// Retrying may succeed (write conflict, the command failed on the network...).
    Transient(String),
    /// A unique index already holds the document's key: an insert-first write then
    /// replaces the document; anywhere else this is permanent.
    DuplicateKey(String),
    /// The server refuses this document for good.
    Permanent(String),
}

impl Failure {
    pub(crate) fn from_code(code: i32, text: String) -> Self {
        if TRANSIENT_CODES.contains(&code) {
            Failure::Transient(text)
        } else if DUPLICATE_KEY_CODES.contains(&code) {
            Failure::DuplicateKey(text)
        } else {
            Failure::Permanent(text)
        }
    }
}

impl MongoSink {
    /// Runs `operation` until it succeeds, fails permanently, or shutdown is requested,
    /// sleeping with exponential backoff and jitter between attempts.
    pub(crate) async fn retry_transient<T, F, Fut>(
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
        let mut retry = Retry::new(self.retry_policy, ctx.retry_counter());
        let mut last_error = String::from("attempt in flight");
        loop {
            attempts += 1;
            let result = tokio::select! {
                biased;
                _ = ctx.shutdown().cancelled() => {
                    return Err(interrupted(name, target, attempts, &last_error));
                }
                result = operation().into_future() => result,
            };
            match result {
                Ok(value) => return Ok(value),
                Err(e) if is_transient(&e) => {
                    last_error = self.redact(&e.to_string());
                    self.back_off(name, target, &mut retry, &last_error, ctx)
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

    /// Counts (stage metric through `retry`, and own counter) and logs a failed
    /// attempt, then sleeps before the next one (or returns `Interrupted` when shutdown is
    /// requested meanwhile).
    pub(crate) async fn back_off(
        &mut self,
        operation: &'static str,
        target: &str,
        retry: &mut Retry,
        message: &str,
        ctx: &SinkContext,
    ) -> Result<(), MongoSinkError> {
        let attempts = retry.failures().saturating_add(1);
        // Without `retry.max_elapsed` this retries until shutdown (nothing is dropped).
        let Some(delay) = retry.failed() else {
            return Err(MongoSinkError::RetryBudgetSpent {
                operation,
                target: target.to_string(),
                attempts,
                budget: self.retry_budget.map(|b| b.to_string()).unwrap_or_default(),
                last_error: message.to_string(),
            });
        };
        self.counters.add_retry();
        if let Some(suppressed) = self.retry_log.allow("retry") {
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
            _ = ctx.shutdown().cancelled() => Err(interrupted(operation, target, attempts, message)),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }
}

/// The error of a retry loop stopped by shutdown (the batch stays uncommitted).
pub(crate) fn interrupted(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_conflicts_are_transient_and_validation_failures_permanent() {
        assert!(matches!(
            Failure::from_code(112, String::new()),
            Failure::Transient(_)
        ));
        assert!(matches!(
            Failure::from_code(121, String::new()),
            Failure::Permanent(_)
        ));
        assert!(matches!(
            Failure::from_code(11000, String::new()),
            Failure::DuplicateKey(_)
        ));
    }
}
