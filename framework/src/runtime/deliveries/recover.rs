//! Recovery from a refused batch (see the parent module): settle, replace a fatal
//! producer, resend in order, dead-letter the refused records.

use std::time::Duration;

use rdkafka::{
    error::KafkaError,
    message::{Message, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord, Producer},
    types::RDKafkaErrorCode,
};
use tracing::{debug, warn};

use super::{build, check_delivery, Deliveries, Failed, SEND_ALONE_TIMEOUT};
use crate::{
    error::FrameworkError,
    runtime::{
        markers,
        refusal::{self, Failure, Refusal},
    },
};

impl Deliveries {
    /// Settles every delivery in flight after `first` failed, then resends what failed:
    /// one at a time up to the last refused record (the culprits are dead-lettered), the
    /// rest together, in the order they were first sent.
    pub(super) async fn recover(&mut self, first: Failed) -> Result<(), FrameworkError> {
        let mut failed = vec![first];
        while let Some((seq, result)) = self.in_flight.next().await {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((error, message))) => failed.push(Failed {
                    seq,
                    error,
                    message,
                }),
                Err(_) => return check_delivery(result),
            }
        }
        failed.sort_by_key(|f| f.seq);
        if let Some(other) = failed
            .iter()
            .find(|f| refusal::classify(&f.error) == Failure::Other)
        {
            let context = format!("delivering a record to {}", other.message.topic());
            return Err(FrameworkError::kafka(context, other.error.clone()));
        }
        // Without a refused record in sight, resend everything alone: progress is then
        // certain whatever made the producer fail.
        let alone = failed
            .iter()
            .rposition(|f| matches!(refusal::classify(&f.error), Failure::Refused(_)))
            .map_or(failed.len(), |last| last + 1);
        warn!(
            failed = failed.len(),
            resent_alone = alone,
            "the broker refused a batch: resending its records one at a time to find the refused ones"
        );
        self.replace_if_fatal()?;
        let mut rest = failed.split_off(alone);
        for record in failed {
            self.resend_alone(&record.message).await?;
        }
        for record in rest.drain(..) {
            self.requeue(&record.message).await?;
        }
        Ok(())
    }

    /// Sends `message` again and waits for it; dead-letters it if the broker refuses it.
    async fn resend_alone(&mut self, message: &OwnedMessage) -> Result<(), FrameworkError> {
        let mut replaced = false;
        loop {
            let error = match self.send_and_await(message).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            match refusal::classify(&error) {
                // Dropping a marker would stall every reader of the topic for good.
                Failure::Refused(_) if markers::control_of(message).is_some() => {
                    let context = format!(
                        "the broker refused a control marker (headers, no value) for {}: \
                         the topic's validation must accept records without a value",
                        message.topic()
                    );
                    return Err(FrameworkError::kafka(context, error));
                }
                Failure::Refused(refusal) => {
                    self.replace_if_fatal()?;
                    let payload = message.payload().unwrap_or_default();
                    let refused = (
                        message.topic(),
                        message.key(),
                        payload,
                        message.timestamp().to_millis(),
                        message.headers(),
                    );
                    self.dead_letter(refusal, refused, &error.to_string()).await;
                    return self.replace_if_fatal();
                }
                // Fenced or fatal: librdkafka may not call it fatal yet (an epoch bump the
                // broker refused), but it will not deliver again.
                Failure::Collateral if !replaced => {
                    replaced = true;
                    self.replace(&error.to_string())?;
                }
                _ => {
                    let context = format!("delivering a record to {}", message.topic());
                    return Err(FrameworkError::kafka(context, error));
                }
            }
        }
    }

    /// Sends `message` again without waiting for it.
    async fn requeue(&mut self, message: &OwnedMessage) -> Result<(), FrameworkError> {
        loop {
            match self.producer.send_result(resend_of(message)) {
                Ok(future) => {
                    self.push(future);
                    return Ok(());
                }
                // Waiting on acknowledgements here would recurse into `recover`; the
                // queue drains in the background.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => {
                    let context = format!("producing to {}", message.topic());
                    return Err(FrameworkError::kafka(context, error));
                }
            }
        }
    }

    async fn send_and_await(&self, message: &OwnedMessage) -> Result<(), KafkaError> {
        match self
            .producer
            .send(resend_of(message), SEND_ALONE_TIMEOUT)
            .await
        {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error),
        }
    }

    /// Replaces the producer when librdkafka made it fatal (it refuses everything then).
    fn replace_if_fatal(&mut self) -> Result<(), FrameworkError> {
        match self.producer.client().fatal_error() {
            Some((code, reason)) => self.replace(&format!("{code:?}: {reason}")),
            None => Ok(()),
        }
    }

    /// Replaces the producer with a new one (nothing is in flight on it).
    pub(super) fn replace(&mut self, why: &str) -> Result<(), FrameworkError> {
        let Some((config, shared)) = &self.recreate else {
            return Ok(());
        };
        warn!("the producer cannot deliver any more ({why}): replacing it");
        let producer: FutureProducer = config
            .create()
            .map_err(|e| FrameworkError::kafka("recreating the producer", e))?;
        *shared.lock().unwrap_or_else(|p| p.into_inner()) = producer.clone();
        self.producer = producer;
        Ok(())
    }

    /// Dead-letters a copy of a refused record (truncated if it would not fit), or counts
    /// and drops it. Never fails: the stage keeps running. The copy is waited for, so a
    /// refused copy is counted as dropped rather than refused again.
    pub(super) async fn dead_letter(
        &mut self,
        refusal: Refusal,
        (topic, key, payload, timestamp_ms, headers): Refused<'_>,
        error: &str,
    ) {
        let Some(policy) = self.refusals.clone() else {
            return;
        };
        let dead_letter = match &policy.dead_letter {
            Some(dlq) if dlq != topic && !refusal::is_truncated_copy(headers) => dlq,
            _ => return policy.count(refusal, topic, payload.len(), false),
        };
        let copy = policy.copy(refusal, topic, key, payload, headers, error);
        let mut replaced = false;
        let delivered = loop {
            let record = build(
                dead_letter,
                None,
                copy.key.as_deref(),
                Some(&copy.payload),
                timestamp_ms,
                Some(&copy.headers),
            );
            match self.producer.send(record, SEND_ALONE_TIMEOUT).await {
                Ok(_) => break true,
                // The refusal fenced the producer: the copy goes through a new one.
                Err((e, _)) if refusal::classify(&e) == Failure::Collateral && !replaced => {
                    replaced = true;
                    if let Err(e) = self.replace(&e.to_string()) {
                        debug!("replacing the producer for a dead-letter copy: {e}");
                        break false;
                    }
                }
                Err((e, _)) => {
                    debug!(topic = %dead_letter, "the dead-letter copy was refused too: {e}");
                    break false;
                }
            }
        };
        policy.count(refusal, topic, payload.len(), delivered);
    }
}

/// A refused record: topic, key, payload, timestamp, headers.
type Refused<'a> = (
    &'a str,
    Option<&'a [u8]>,
    &'a [u8],
    Option<i64>,
    Option<&'a OwnedHeaders>,
);

/// The record a failed delivery handed back, to the partition it was bound for (the
/// partitioner would pick the same one; markers name theirs).
fn resend_of(message: &OwnedMessage) -> FutureRecord<'_, [u8], [u8]> {
    let partition = Some(message.partition()).filter(|p| *p >= 0);
    build(
        message.topic(),
        partition,
        message.key(),
        message.payload(),
        message.timestamp().to_millis(),
        message.headers(),
    )
}
