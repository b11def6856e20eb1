//! Whether a rebalance may commit the partitions it revokes (issue 10): only when
//! everything produced from them is durable. A flush that succeeds is not enough: a
//! delivery the broker refused has settled, but the stage loop has not resent or
//! dead-lettered it yet, and the next owner would start past it. Then the commit is
//! skipped and the next owner processes again from the last safe commit (at-least-once);
//! this process still recovers the failed records, in send order.

use std::time::Duration;

use rdkafka::producer::Producer;

use super::deliveries::{HookView, Outcomes};

/// How long a rebalance waits for the producer to deliver what is queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the offsets of revoked partitions stay uncommitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotDurable {
    #[error("flushing the producer failed: {0}")]
    Flush(String),
    #[error("the producer failed for good: {0}")]
    Fatal(String),
    #[error("{0} deliveries failed and are not resent or dead-lettered yet")]
    Unrecovered(usize),
    #[error("{0} deliveries are still unacknowledged after the flush")]
    Unsettled(usize),
}

/// The commit-or-skip decision: commit only after a successful flush, with a producer
/// that is not fatal (it failed what was queued, which the stage resends) and no delivery
/// failed or still pending.
pub fn commit_allowed(
    flushed: Result<(), String>,
    fatal: Option<String>,
    in_flight: Outcomes,
) -> Result<(), NotDurable> {
    flushed.map_err(NotDurable::Flush)?;
    if let Some(reason) = fatal {
        return Err(NotDurable::Fatal(reason));
    }
    if in_flight.failed > 0 {
        return Err(NotDurable::Unrecovered(in_flight.failed));
    }
    if in_flight.unsettled > 0 {
        return Err(NotDurable::Unsettled(in_flight.unsettled));
    }
    Ok(())
}

/// Flushes the stage's producer, collects the outcomes that arrived, and decides.
/// Blocking: it runs in a rebalance callback.
pub fn flush_and_check(view: &HookView) -> Result<(), NotDurable> {
    let producer = view
        .producer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let flushed = producer.flush(FLUSH_TIMEOUT).map_err(|e| e.to_string());
    let fatal = producer.client().fatal_error().map(|(_, reason)| reason);
    commit_allowed(flushed, fatal, view.in_flight.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(failed: usize, unsettled: usize) -> Outcomes {
        Outcomes { failed, unsettled }
    }

    #[test]
    fn a_flushed_producer_with_every_delivery_acknowledged_commits() {
        assert_eq!(commit_allowed(Ok(()), None, outcomes(0, 0)), Ok(()));
    }

    #[test]
    fn a_failed_delivery_not_yet_recovered_skips_the_commit_even_after_a_clean_flush() {
        assert_eq!(
            commit_allowed(Ok(()), None, outcomes(1, 0)),
            Err(NotDurable::Unrecovered(1))
        );
        assert_eq!(
            commit_allowed(Ok(()), None, outcomes(3, 2)),
            Err(NotDurable::Unrecovered(3))
        );
    }

    #[test]
    fn a_delivery_without_an_outcome_skips_the_commit() {
        assert_eq!(
            commit_allowed(Ok(()), None, outcomes(0, 1)),
            Err(NotDurable::Unsettled(1))
        );
    }

    #[test]
    fn a_failed_flush_or_a_fatal_producer_skips_the_commit() {
        assert_eq!(
            commit_allowed(Err("timed out".into()), None, outcomes(0, 0)),
            Err(NotDurable::Flush("timed out".into()))
        );
        assert_eq!(
            commit_allowed(Ok(()), Some("fenced".into()), outcomes(0, 0)),
            Err(NotDurable::Fatal("fenced".into()))
        );
    }

    #[test]
    fn the_reason_names_what_is_not_durable() {
        let skip = commit_allowed(Ok(()), None, outcomes(2, 0));
        let message = skip.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            message,
            "2 deliveries failed and are not resent or dead-lettered yet"
        );
    }
}
