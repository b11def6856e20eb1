//! Retries with equal-jitter exponential backoff, shared by every connector so that all
//! of them back off the same way and every retry shows in the stage metrics: a sink's
//! through [`crate::SinkContext::retry_counter`] (`pipeline_sink_write_retries_total`), a
//! source's or transform's through [`crate::connector::StageContext::counter`].
//!
//! The policy is pure (the jitter is an argument); [`Retry`] adds the attempt count, the
//! optional budget and the counter.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::{ConfigIssue, DurationSpec};

/// The counter of a source's or transform's retries (`StageContext::counter`); a sink's
/// are `pipeline_sink_write_retries_total`.
pub const SOURCE_RETRIES_METRIC: &str = "pipeline_source_retries_total";

/// A policy the retry helper refuses (the connector's `check` reports it first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryPolicyError {
    #[error("initial backoff must be positive")]
    NonPositiveInitial,
    #[error("maximum backoff ({max:?}) must be at least the initial backoff ({initial:?})")]
    MaxBelowInitial { initial: Duration, max: Duration },
    #[error("an attempt budget must allow at least one retry")]
    EmptyAttemptBudget,
    #[error("an elapsed-time budget must be positive")]
    EmptyElapsedBudget,
}

/// Delays between attempts: `initial` doubled per consecutive failure up to `max`, with
/// "equal jitter" (half fixed, half random), so many clients never retry in lockstep and
/// none retries sooner than half the nominal delay. Optionally a budget of retries or of
/// time since the first failure, after which [`Retry::failed`] gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    initial: Duration,
    max: Duration,
    max_retries: Option<u32>,
    max_elapsed: Option<Duration>,
}

impl RetryPolicy {
    /// A policy retrying without a budget.
    pub fn new(initial: Duration, max: Duration) -> Result<Self, RetryPolicyError> {
        if initial.is_zero() {
            return Err(RetryPolicyError::NonPositiveInitial);
        }
        if max < initial {
            return Err(RetryPolicyError::MaxBelowInitial { initial, max });
        }
        Ok(RetryPolicy {
            initial,
            max,
            max_retries: None,
            max_elapsed: None,
        })
    }

    /// From a connector's duration settings (already range-checked by its `check`).
    pub fn from_specs(initial: DurationSpec, max: DurationSpec) -> Result<Self, RetryPolicyError> {
        Self::new(initial.as_std(), max.as_std())
    }

    /// Gives up after `retries` retries in a row.
    pub fn with_max_retries(mut self, retries: u32) -> Result<Self, RetryPolicyError> {
        if retries == 0 {
            return Err(RetryPolicyError::EmptyAttemptBudget);
        }
        self.max_retries = Some(retries);
        Ok(self)
    }

    /// Gives up once `elapsed` has passed since the first failure in a row.
    pub fn with_max_elapsed(mut self, elapsed: Duration) -> Result<Self, RetryPolicyError> {
        if elapsed.is_zero() {
            return Err(RetryPolicyError::EmptyElapsedBudget);
        }
        self.max_elapsed = Some(elapsed);
        Ok(self)
    }

    /// The nominal delay before retry number `retry` (1-based), before jitter.
    pub fn nominal(&self, retry: u32) -> Duration {
        // 2^30 × the smallest positive initial already exceeds any sane cap.
        let exponent = retry.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << exponent).min(self.max)
    }

    /// The delay before retry number `retry` with `jitter` in [0, 1]: half the nominal
    /// delay plus `jitter` times the other half. Pure, for tests and replays.
    pub fn delay_with_jitter(&self, retry: u32, jitter: f64) -> Duration {
        let half = self.nominal(retry) / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// The delay before retry number `retry` (1-based) with random jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with_jitter(retry, rand::rng().random_range(0.0..=1.0))
    }
}

/// `max` must not be below `initial`: the issue a connector's `check` reports, under the
/// connector's own setting names (`retry.max_backoff`, `backoff_max`...).
pub fn max_below_initial_issue(
    initial_key: &str,
    initial: DurationSpec,
    max_key: &str,
    max: DurationSpec,
) -> Option<ConfigIssue> {
    (max < initial).then(|| {
        ConfigIssue::new(
            max_key,
            format!("must be at least {initial_key} ({initial})"),
        )
    })
}

/// One run of consecutive failures of an operation: counts each retry in the stage's
/// counter and hands out the delays of its [`RetryPolicy`].
#[derive(Debug, Clone)]
pub struct Retry {
    policy: RetryPolicy,
    retries_total: metrics::Counter,
    failures: u32,
    first_failure: Option<Instant>,
}

impl Retry {
    pub fn new(policy: RetryPolicy, retries_total: metrics::Counter) -> Self {
        Retry {
            policy,
            retries_total,
            failures: 0,
            first_failure: None,
        }
    }

    /// Records a failed attempt: `Some(delay)` to wait before retrying (the retry is
    /// counted), or `None` when the budget is spent (not counted: nothing is retried).
    pub fn failed(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let first = *self.first_failure.get_or_insert(now);
        let failures = self.failures.saturating_add(1);
        if self.policy.max_retries.is_some_and(|m| failures > m)
            || self
                .policy
                .max_elapsed
                .is_some_and(|m| now.duration_since(first) >= m)
        {
            return None;
        }
        self.failures = failures;
        self.retries_total.increment(1);
        Some(self.policy.delay(failures))
    }

    /// [`Retry::failed`] for a policy without a budget (a live connector retries until it
    /// is stopped): the delay before the next attempt, never `None`.
    pub fn next_delay(&mut self) -> Duration {
        self.failed().unwrap_or(self.policy.max)
    }

    /// The operation succeeded: the next failure starts from the initial delay again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.first_failure = None;
    }

    /// Consecutive failures so far (retries handed out).
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_up_to_the_cap_and_keep_at_least_half() {
        let policy = RetryPolicy::new(ms(100), ms(1_000)).unwrap();
        assert_eq!(policy.delay_with_jitter(1, 0.0), ms(50));
        assert_eq!(policy.delay_with_jitter(1, 1.0), ms(100));
        assert_eq!(policy.delay_with_jitter(3, 0.0), ms(200));
        assert_eq!(policy.delay_with_jitter(3, 1.0), ms(400));
        assert_eq!(policy.delay_with_jitter(40, 0.0), ms(500));
        assert_eq!(policy.delay_with_jitter(u32::MAX, 1.0), ms(1_000));
        for _ in 0..100 {
            assert!((ms(200)..=ms(400)).contains(&policy.delay(3)));
        }
    }

    #[test]
    fn invalid_policies_are_refused_with_a_reason() {
        assert_eq!(
            RetryPolicy::new(Duration::ZERO, ms(1)),
            Err(RetryPolicyError::NonPositiveInitial)
        );
        assert!(matches!(
            RetryPolicy::new(ms(10), ms(5)),
            Err(RetryPolicyError::MaxBelowInitial { .. })
        ));
        let policy = RetryPolicy::new(ms(1), ms(1)).unwrap();
        assert_eq!(
            policy.with_max_retries(0),
            Err(RetryPolicyError::EmptyAttemptBudget)
        );
        assert_eq!(
            policy.with_max_elapsed(Duration::ZERO),
            Err(RetryPolicyError::EmptyElapsedBudget)
        );
    }

    #[test]
    fn a_retry_budget_gives_up_after_that_many_retries_and_success_resets_it() {
        let policy = RetryPolicy::new(ms(1), ms(2))
            .unwrap()
            .with_max_retries(2)
            .unwrap();
        let mut retry = Retry::new(policy, metrics::Counter::noop());
        assert!(retry.failed().is_some());
        assert!(retry.failed().is_some());
        assert_eq!(retry.failed(), None);
        assert_eq!(retry.failures(), 2);
        retry.succeeded();
        assert_eq!(retry.failures(), 0);
        assert!(retry.failed().is_some());
    }

    #[test]
    fn an_elapsed_budget_gives_up_once_the_time_since_the_first_failure_has_passed() {
        let policy = RetryPolicy::new(ms(1), ms(1))
            .unwrap()
            .with_max_elapsed(ms(30))
            .unwrap();
        let mut retry = Retry::new(policy, metrics::Counter::noop());
        assert!(retry.failed().is_some());
        std::thread::sleep(ms(40));
        assert_eq!(retry.failed(), None);
    }

    #[test]
    fn the_order_issue_names_the_connectors_own_settings() {
        let issue = max_below_initial_issue(
            "retry.initial_backoff",
            DurationSpec::from_secs(2),
            "retry.max_backoff",
            DurationSpec::from_secs(1),
        )
        .unwrap();
        assert_eq!(issue.path, "retry.max_backoff");
        assert_eq!(issue.message, "must be at least retry.initial_backoff (2s)");
        assert!(max_below_initial_issue(
            "a",
            DurationSpec::from_secs(1),
            "b",
            DurationSpec::from_secs(1)
        )
        .is_none());
    }
}
