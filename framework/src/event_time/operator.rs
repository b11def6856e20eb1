//! A keyed event-time sliding-window operator (append mode), generic over the aggregate.
//!
//! Per key (semantics.md §2): a [`Watermark`](super::watermark::Watermark)
//! `W = max event time - lateness`; a record with `t < W` (before the record) is late and
//! joins nothing; otherwise it is added to its pane. The windows ending at `e` close when
//! `W >= e` and are reported once, in increasing `e`, with one aggregate per configured
//! length; nothing is reported for an `e` where every window is empty, and gaps are
//! skipped without visiting each slide.
//! End of input (watermark plus infinity) closes everything.
//!
//! Restart support: [`KeyedWindowOperator::restart_watermarks`] is what to checkpoint,
//! and [`KeyedWindowOperator::resume`] turns it into per-key fences (windows ending before
//! the fence were already reported) and the event time to replay the input from.

use std::{borrow::Borrow, collections::HashMap, hash::Hash};

use super::aggregate::Aggregate;
use super::guard::{IdleSweep, KeyLimits};
use super::window::SlidingWindows;

mod key_state;
mod pending;

use key_state::KeyState;

/// What happened to a record offered to [`KeyedWindowOperator::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    /// Earlier than the key's watermark (as it was before the record): joined nothing.
    Late {
        watermark_ms: i64,
    },
    /// A new key while the partition already holds `KeyLimits::max_keys` keys.
    TooManyKeys {
        max_keys: usize,
    },
    /// A key without state (new, or evicted as idle) whose record trails the partition's
    /// newest event time by more than the idle timeout: accepting it could re-open
    /// windows already reported when the key was evicted.
    BeforeIdleHorizon {
        horizon_ms: i64,
    },
}

/// The windows of one key that closed at one end `e`.
#[derive(Debug)]
pub struct ClosedWindows<'a, A> {
    pub end_ms: i64,
    windows: &'a SlidingWindows,
    /// One aggregate per configured window length, in configured order (possibly empty).
    pub aggregates: &'a [A],
}

impl<'a, A: Aggregate> ClosedWindows<'a, A> {
    /// The non-empty windows, in configured order: (index, `window_start` ms, aggregate).
    pub fn non_empty(&self) -> impl Iterator<Item = (usize, i64, &'a A)> + 'a {
        let end = self.end_ms;
        let lengths = self.windows.lengths_ms();
        self.aggregates
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.is_empty())
            .map(move |(i, a)| (i, end.saturating_sub(lengths[i]), a))
    }
}

/// Per-key sliding windows over one input, in event time.
#[derive(Debug, Clone)]
pub struct KeyedWindowOperator<K, A> {
    windows: SlidingWindows,
    lateness_ms: i64,
    index: HashMap<K, usize>,
    keys: Vec<K>,
    states: Vec<KeyState<A>>,
    limits: KeyLimits,
    sweep: IdleSweep,
    paused: Option<pending::Paused<K>>,
    /// Idle keys whose windows are still to be reported before they are dropped (ascending
    /// order; their watermarks already ended). Drained through `emit_pending`.
    evicting: std::collections::VecDeque<K>,
}

impl<K, A> KeyedWindowOperator<K, A>
where
    K: Eq + Hash + Ord + Clone,
    A: Aggregate,
{
    pub fn new(windows: SlidingWindows, lateness_ms: i64) -> Self {
        KeyedWindowOperator {
            windows,
            lateness_ms: lateness_ms.max(0),
            index: HashMap::new(),
            keys: Vec::new(),
            states: Vec::new(),
            limits: KeyLimits::UNBOUNDED,
            sweep: IdleSweep::default(),
            paused: None,
            evicting: std::collections::VecDeque::new(),
        }
    }

    /// Bounds the keys held (see [`KeyLimits`]). Evicting a key reports its open windows
    /// as at end of input; with an idle timeout of at least the longest window plus the
    /// lateness, the output is the same as without eviction.
    pub fn with_limits(mut self, limits: KeyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether `key` has state (seen and not evicted, or restored by `resume`).
    pub fn has_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.index.contains_key(key)
    }

    /// Marks every key but `current` whose newest event time is below `cutoff` for
    /// eviction: its watermark ends now, and its open windows are reported (keys in
    /// ascending order) by [`drain_evictions`](Self::drain_evictions) before it is dropped.
    fn start_eviction<Q>(&mut self, cutoff: i64, current: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let current = self.index.get(current).copied();
        let mut idle: Vec<usize> = (0..self.states.len())
            .filter(|&i| Some(i) != current && !self.evicting.contains(&self.keys[i]))
            .filter(|&i| {
                self.states[i]
                    .watermark
                    .max_event_ms()
                    .is_some_and(|m| m < cutoff)
            })
            .collect();
        idle.sort_by(|&a, &b| self.keys[a].cmp(&self.keys[b]));
        for i in idle {
            self.states[i].watermark.end();
            self.evicting.push_back(self.keys[i].clone());
        }
    }

    /// Reports the open windows of the keys marked for eviction and drops them, unless
    /// `emit` asks to pause: then returns `false`, and calling it again continues.
    fn drain_evictions<F>(&mut self, emit: &mut F) -> bool
    where
        F: FnMut(&K, &ClosedWindows<'_, A>) -> bool,
    {
        while let Some(key) = self.evicting.front() {
            let Some(&i) = self.index.get(key) else {
                self.evicting.pop_front();
                continue;
            };
            if !self.states[i].advance(&self.keys[i], &self.windows, emit) {
                return false;
            }
            self.evicting.pop_front();
            self.index.remove(&self.keys[i]);
            self.keys.swap_remove(i);
            self.states.swap_remove(i);
            if let Some(moved) = self.keys.get(i) {
                self.index.insert(moved.clone(), i);
            }
        }
        true
    }

    pub fn windows(&self) -> &SlidingWindows {
        &self.windows
    }

    pub fn lateness_ms(&self) -> i64 {
        self.lateness_ms
    }

    /// Number of keys with state.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The key's watermark (`None`: minus infinity or unknown key; `i64::MAX`: ended).
    pub fn watermark<Q>(&self, key: &Q) -> Option<i64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.index
            .get(key)
            .and_then(|&i| self.states[i].watermark.current())
    }

    fn slot<Q>(&mut self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        match self.index.get(key) {
            Some(&i) => i,
            None => self.insert_key(key),
        }
    }

    /// State for a key without any; returns its index.
    fn insert_key<Q>(&mut self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let i = self.states.len();
        self.states
            .push(KeyState::new(&self.windows, self.lateness_ms));
        self.keys.push(key.to_owned());
        self.index.insert(key.to_owned(), i);
        i
    }

    /// One record of `key` at `event_ms`. Windows it closes are passed to `emit`, oldest
    /// first, before this returns.
    pub fn process<Q, F>(
        &mut self,
        key: &Q,
        event_ms: i64,
        value: &A::Value,
        mut emit: F,
    ) -> Admission
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        F: FnMut(&K, &ClosedWindows<'_, A>),
    {
        self.process_bounded(key, event_ms, value, |k, c| {
            emit(k, c);
            true
        })
    }

    /// [`process`](Self::process) with backpressure: when `emit` returns `false` the
    /// operator pauses (the record itself is taken) and the rest of its windows come from
    /// [`emit_pending`](Self::emit_pending), which must be called until it returns `true`
    /// before anything else is given to the operator.
    pub fn process_bounded<Q, F>(
        &mut self,
        key: &Q,
        event_ms: i64,
        value: &A::Value,
        mut emit: F,
    ) -> Admission
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        F: FnMut(&K, &ClosedWindows<'_, A>) -> bool,
    {
        if let Some(cutoff) = self.sweep.observe(event_ms, &self.limits) {
            self.start_eviction(cutoff, key);
        }
        // One hash lookup per record of a known key.
        let i = match self.index.get(key) {
            Some(&i) => i,
            None => {
                if let Some(horizon_ms) = self.sweep.cutoff(&self.limits) {
                    if event_ms < horizon_ms {
                        return self
                            .after_record(Admission::BeforeIdleHorizon { horizon_ms }, &mut emit);
                    }
                }
                if self.keys.len() - self.evicting.len() >= self.limits.max_keys {
                    let max_keys = self.limits.max_keys;
                    return self.after_record(Admission::TooManyKeys { max_keys }, &mut emit);
                }
                self.insert_key(key)
            }
        };
        let state = &mut self.states[i];
        if state.watermark.is_late(event_ms) {
            let watermark_ms = state.watermark.current().unwrap_or(i64::MIN);
            return self.after_record(Admission::Late { watermark_ms }, &mut emit);
        }
        state.watermark.observe(event_ms);
        // The record itself never lands in a window this closes (its end is > t >= W),
        // so closing first keeps the pane buffer short across gaps; for the same reason
        // inserting it before a paused close finishes changes nothing that close reports.
        let paused = !state.advance(&self.keys[i], &self.windows, &mut emit);
        state.insert(self.windows.pane_of(event_ms), value);
        if paused {
            // Resumed by key: an eviction may move indices meanwhile.
            self.paused = Some(pending::Paused::Key(self.keys[i].clone()));
            return Admission::Accepted;
        }
        self.after_record(Admission::Accepted, &mut emit)
    }

    /// Reports what evictions started by a record left pending (they wait while a pause
    /// is pending), and returns the record's admission.
    fn after_record<F>(&mut self, admission: Admission, emit: &mut F) -> Admission
    where
        F: FnMut(&K, &ClosedWindows<'_, A>) -> bool,
    {
        if self.paused.is_none() {
            self.drain_evictions(emit);
        }
        admission
    }

    /// A progress marker: no record before `event_ms` will follow, so every key's
    /// watermark may move to `event_ms - lateness` and the windows that closes are
    /// reported (keys in ascending order). It never makes a later record late (such a
    /// record has `t >= event_ms > event_ms - lateness`), so it changes only when windows
    /// are reported, never what is reported.
    pub fn advance_to<F>(&mut self, event_ms: i64, emit: F) -> bool
    where
        F: FnMut(&K, &ClosedWindows<'_, A>) -> bool,
    {
        let mut order: Vec<K> = self.keys.clone();
        order.sort();
        self.paused = Some(pending::Paused::Advance {
            order,
            next: 0,
            event_ms,
        });
        self.emit_pending(emit)
    }

    /// Every key's current watermark (keys still at minus infinity are left out).
    pub fn watermarks(&self) -> impl Iterator<Item = (&K, i64)> + '_ {
        self.keys
            .iter()
            .zip(&self.states)
            .filter_map(|(k, s)| s.watermark.current().map(|w| (k, w)))
    }

    /// What to checkpoint, by ascending key: each key's watermark `W(K)` (never below its
    /// fence; `i64::MAX` once ended). Keys without one are omitted.
    pub fn restart_watermarks(&self) -> Vec<(&K, i64)> {
        let mut out: Vec<(&K, i64)> = self
            .keys
            .iter()
            .zip(&self.states)
            .filter_map(|(k, s)| s.restart_watermark().map(|w| (k, w)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Prepares a fresh operator to rebuild its state after a restart, from checkpointed
    /// `restart_watermarks`. Returns the event time to replay the input from, `None`
    /// when nothing needs replaying.
    ///
    /// Each key gets a fence at its checkpointed watermark `W_c`: the windows ending
    /// before it were reported before the restart and are not reported again; those ending
    /// at or after it are reported, identical to an uninterrupted run. That holds when the
    /// replay holds every record (in log order) from the first one with event time at or
    /// after `T = min W_c - longest window`: a window ending at `e >= W_c` only holds
    /// records with `t >= e - L >= T`, none of which precede that first record in the log,
    /// and such a record gets the same late decision (a watermark that differs from the
    /// uninterrupted run's is below `T - lateness`).
    pub fn resume(&mut self, watermarks: impl IntoIterator<Item = (K, i64)>) -> Option<i64> {
        let watermarks: Vec<(K, i64)> = watermarks.into_iter().collect();
        let earliest = self.replay_from(watermarks.iter().map(|(_, w)| *w));
        for (key, w) in watermarks {
            let i = self.slot(&key);
            let state = &mut self.states[i];
            state.fence_ms = Some(w);
            if w == i64::MAX {
                // The key's input had ended: like the uninterrupted run, it takes nothing more.
                state.watermark.end();
                state.next_end = Some(i64::MAX);
            }
        }
        earliest
    }

    /// What [`resume`](Self::resume) returns for these checkpointed watermarks, computed
    /// without changing anything: `min W_c - longest window` over the keys whose input had
    /// not ended.
    pub fn replay_from(&self, watermarks: impl IntoIterator<Item = i64>) -> Option<i64> {
        let longest = self.windows.longest_ms();
        watermarks
            .into_iter()
            .filter(|&w| w != i64::MAX)
            .map(|w| w.saturating_sub(longest))
            .min()
    }
}

#[cfg(test)]
mod tests;
