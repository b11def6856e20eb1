//! Which input the join stops reading (`Transform::input_full`), so that neither of its
//! buffers overflows while one input runs ahead of the other (a replay whose topics are
//! both there before the join starts, a backlog being caught up):
//! - prices, while `max_pending_prices` wait for their statistics;
//! - statistics, while they run more than half of `max_stats_per_key` slides ahead of the
//!   newest price (each symbol would hold that many), unless prices are paused.
//!
//! At most one input pauses at a time: each side waits only for the other, so pausing both
//! could wait forever.

/// Event-time positions of the two inputs of one partition.
#[derive(Debug)]
pub(crate) struct InputBalance {
    max_pending: usize,
    /// How far statistics may run ahead of the newest price.
    max_stats_lead_ms: i64,
    newest_price_ms: Option<i64>,
    newest_stats_ms: Option<i64>,
    first_stats_ms: Option<i64>,
    prices_ended: bool,
}

impl InputBalance {
    pub(crate) fn new(max_pending: usize, max_stats_per_key: usize, slide_ms: i64) -> Self {
        let half = i64::try_from(max_stats_per_key / 2)
            .unwrap_or(i64::MAX)
            .max(1);
        InputBalance {
            max_pending,
            max_stats_lead_ms: half.saturating_mul(slide_ms.max(1)),
            newest_price_ms: None,
            newest_stats_ms: None,
            first_stats_ms: None,
            prices_ended: false,
        }
    }

    pub(crate) fn price_seen(&mut self, event_ms: i64) {
        self.newest_price_ms = self.newest_price_ms.max(Some(event_ms));
    }

    pub(crate) fn stats_seen(&mut self, event_ms: i64) {
        self.newest_stats_ms = self.newest_stats_ms.max(Some(event_ms));
        self.first_stats_ms.get_or_insert(event_ms);
    }

    /// No price can come: statistics are no longer held, so they never pause.
    pub(crate) fn prices_ended(&mut self) {
        self.prices_ended = true;
    }

    pub(crate) fn prices_full(&self, pending: usize) -> bool {
        pending >= self.max_pending
    }

    /// Statistics run too far ahead of prices (and prices are not paused themselves).
    pub(crate) fn stats_full(&self, pending: usize) -> bool {
        if self.prices_ended || self.prices_full(pending) {
            return false;
        }
        // Before the first price, statistics may run as far ahead of their first record.
        match (
            self.newest_stats_ms,
            self.newest_price_ms.or(self.first_stats_ms),
        ) {
            (Some(stats), Some(behind)) => stats.saturating_sub(behind) > self.max_stats_lead_ms,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_pause_when_far_ahead_of_prices_but_never_while_prices_are_paused() {
        let mut balance = InputBalance::new(3, 10, 1_000);
        balance.price_seen(100_000);
        balance.stats_seen(105_000);
        assert!(!balance.stats_full(0), "5 slides ahead: at the limit");
        balance.stats_seen(105_001);
        assert!(balance.stats_full(0), "more than 5 slides ahead");
        assert!(
            !balance.stats_full(3),
            "prices paused: statistics must flow"
        );
        assert!(balance.prices_full(3));
        balance.price_seen(101_000);
        assert!(!balance.stats_full(0), "prices caught up");
        balance.stats_seen(200_000);
        balance.prices_ended();
        assert!(!balance.stats_full(0), "no price can come: nothing is held");
    }

    #[test]
    fn before_the_first_price_statistics_pause_that_far_ahead_of_their_first_record() {
        let mut balance = InputBalance::new(3, 10, 1_000);
        balance.stats_seen(100_000);
        balance.stats_seen(105_000);
        assert!(!balance.stats_full(0));
        balance.stats_seen(106_000);
        assert!(balance.stats_full(0));
    }
}
