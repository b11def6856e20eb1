//! The deliveries a stage has in flight, shared with its rebalance hooks (issue 10): a
//! revoke must not commit past a record whose delivery failed and that the stage has not
//! resent or dead-lettered yet. The hooks run inside `recv()` on the stage's own task, so
//! the lock is taken for one poll at a time and never held across an await.

use std::{
    collections::VecDeque,
    future::poll_fn,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use futures::{stream::FuturesUnordered, task::noop_waker_ref, Stream};

use super::{DeliveryResult, Tagged};

#[derive(Default)]
struct State {
    pending: FuturesUnordered<Tagged>,
    /// Outcomes a hook took out of `pending`; the stage handles them before the others.
    arrived: VecDeque<(u64, DeliveryResult)>,
    /// The waker of the stage's last poll. A hook polls with a waker of its own, which
    /// replaces it in `pending`: waking it afterwards makes a waiting stage poll again.
    waker: Option<Waker>,
}

/// The stage's deliveries in flight: the delivery futures and the outcomes a rebalance
/// hook collected from them.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<State>>);

/// What a rebalance hook found among the deliveries in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Deliveries that failed (refused, or failed with the producer) and that the stage
    /// has not resent or dead-lettered yet.
    pub failed: usize,
    /// Deliveries whose outcome has not arrived.
    pub unsettled: usize,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn push(&self, delivery: Tagged) {
        self.lock().pending.push(delivery);
    }

    pub(super) fn len(&self) -> usize {
        let state = self.lock();
        state.pending.len() + state.arrived.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next outcome: those a hook collected first, then whichever settles next;
    /// `None` when nothing is in flight.
    pub(super) async fn next(&self) -> Option<(u64, DeliveryResult)> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<(u64, DeliveryResult)>> {
        let mut state = self.lock();
        if let Some(outcome) = state.arrived.pop_front() {
            return Poll::Ready(Some(outcome));
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        Pin::new(&mut state.pending).poll_next(cx)
    }

    /// For a rebalance hook, after the producer was flushed: takes every outcome that has
    /// arrived (kept for the stage, which still recovers them in send order) and counts
    /// the failed and the unsettled ones.
    pub fn collect(&self) -> Outcomes {
        let mut state = self.lock();
        let mut cx = Context::from_waker(noop_waker_ref());
        while let Poll::Ready(Some(outcome)) = Pin::new(&mut state.pending).poll_next(&mut cx) {
            state.arrived.push_back(outcome);
        }
        let failed = state
            .arrived
            .iter()
            .filter(|(_, result)| !matches!(result, Ok(Ok(_))))
            .count();
        let outcomes = Outcomes {
            failed,
            unsettled: state.pending.len(),
        };
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        outcomes
    }
}
