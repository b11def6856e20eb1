//! What the join lets go of: idle keys (their waiting probes reported unmatched, in chunks
//! like any other output) and, once the probe input has ended, every table record.

use std::{
    borrow::Borrow,
    collections::VecDeque,
    hash::{BuildHasher, Hash},
};

use super::{JoinEvent, KeyedJoin, Pending, Refusal, UnmatchedCause};

/// Probes of evicted keys not reported yet, per key (keys in ascending order).
pub(super) type Outbox<K, P> = VecDeque<(K, VecDeque<Pending<P>>)>;

impl<K, P, T, S> KeyedJoin<K, P, T, S>
where
    K: Hash + Eq + Ord + Clone,
    S: BuildHasher + Default,
{
    /// Evicts the keys that are idle at a record's time `time_ms` and reports their waiting
    /// probes as unmatched ([`UnmatchedCause::Evicted`]), with backpressure: `false` when
    /// `on_event` paused, and [`emit_pending`](Self::emit_pending) continues. Call it
    /// before [`push_probe`](Self::push_probe) or
    /// [`push_table_bounded`](Self::push_table_bounded) of that record so that an eviction
    /// of many waiting probes goes out in chunks (those calls otherwise report what they
    /// evict themselves).
    pub fn evict_due<F>(&mut self, time_ms: i64, on_event: &mut F) -> bool
    where
        F: FnMut(JoinEvent<'_, K, P, T>) -> bool,
    {
        if let Some(cutoff) = self.sweep.observe(time_ms, &self.limits) {
            self.evict_idle(cutoff);
        }
        if self.report_evicted(on_event) {
            return true;
        }
        self.paused = Some(super::pending::Paused::Evicted { then: None });
        false
    }

    /// Notes a record's time and evicts idle keys when a sweep is due (their probes wait
    /// in the outbox). Then, for a key without state, whether it may get one.
    pub(super) fn admit<Q>(&mut self, key: &Q, time_ms: i64) -> Result<(), Refusal>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(cutoff) = self.sweep.observe(time_ms, &self.limits) {
            self.evict_idle(cutoff);
        }
        if self.keys.contains_key(key) {
            return Ok(());
        }
        if let Some(horizon_ms) = self.sweep.cutoff(&self.limits) {
            if time_ms < horizon_ms {
                return Err(Refusal::BeforeIdleHorizon { horizon_ms });
            }
        }
        if self.keys.len() >= self.limits.max_keys {
            return Err(Refusal::TooManyKeys {
                max_keys: self.limits.max_keys,
            });
        }
        Ok(())
    }

    /// Evicts every key whose newest record (probe or table) is older than `cutoff`; its
    /// pending probes go to the outbox (keys in ascending order).
    fn evict_idle(&mut self, cutoff: i64) {
        let mut idle: Vec<K> = self
            .keys
            .values()
            .filter(|s| {
                let newest = s.probe_wm.max_event_ms().max(s.table_wm.max_event_ms());
                newest.is_some_and(|m| m < cutoff)
            })
            .map(|s| s.key.clone())
            .collect();
        idle.sort();
        for key in idle {
            if let Some(state) = self.keys.remove(&key) {
                if !state.pending.is_empty() {
                    self.evicted.push_back((state.key, state.pending));
                }
            }
        }
    }

    /// Reports the outbox's probes until `on_event` pauses (`false`) or it is empty.
    pub(super) fn report_evicted<F>(&mut self, on_event: &mut F) -> bool
    where
        F: FnMut(JoinEvent<'_, K, P, T>) -> bool,
    {
        while let Some((key, probes)) = self.evicted.front_mut() {
            if !super::report_unmatched(key, probes, UnmatchedCause::Evicted, on_event) {
                return false;
            }
            self.evicted.pop_front();
        }
        true
    }

    /// The probe input has ended: no probe will come any more, so no table record can be
    /// matched except by the probes already waiting, which wait for table records not yet
    /// arrived. Drops every table record now, and stores none from now on: a table record
    /// that arrives later still decides the probes waiting for it (matched or unmatched,
    /// exactly as before) and is then dropped. Decides nothing itself.
    pub fn probe_input_ended(&mut self) {
        self.probes_ended = true;
        for state in self.keys.values_mut() {
            state.table = VecDeque::new();
        }
    }

    /// Whether [`probe_input_ended`](Self::probe_input_ended) was called.
    pub fn probes_ended(&self) -> bool {
        self.probes_ended
    }
}
