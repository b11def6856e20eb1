//! The keyed probe/table join state machine.

use std::{
    borrow::Borrow,
    collections::{hash_map::RandomState, BTreeMap, HashMap, VecDeque},
    hash::{BuildHasher, Hash},
};

use crate::event_time::{
    guard::{IdleSweep, KeyLimits},
    Watermark,
};

use super::{
    checkpoint::JoinCheckpoint,
    events::{
        bucket_of, Buffered, JoinConfigError, JoinEvent, Refusal, TableOutcome, UnmatchedCause,
    },
};

mod evict;
mod pending;

struct Pending<P> {
    bucket: i64,
    time_ms: i64,
    probe: P,
}

struct KeyState<K, P, T> {
    key: K,
    probe_wm: Watermark,
    table_wm: Watermark,
    latest_table: Option<i64>,
    /// Accepted table records, strictly increasing in time (only newer ones are accepted).
    table: VecDeque<(i64, T)>,
    /// Undecided probes, sorted by bucket, in arrival order within a bucket.
    pending: VecDeque<Pending<P>>,
    /// Probes below this time were decided before a restart.
    fence: Option<i64>,
}

impl<K, P, T> KeyState<K, P, T> {
    fn new(key: K, lateness_ms: i64) -> Self {
        KeyState {
            key,
            probe_wm: Watermark::new(lateness_ms),
            table_wm: Watermark::new(lateness_ms),
            latest_table: None,
            table: VecDeque::new(),
            pending: VecDeque::new(),
            fence: None,
        }
    }

    fn push_probe<F>(&mut self, slide_ms: i64, time_ms: i64, probe: P, on_event: &mut F)
    where
        F: FnMut(JoinEvent<'_, K, P, T>),
    {
        let key = &self.key;
        if self.fence.is_some_and(|fence| time_ms < fence) {
            // Still observed: it is a real record of the input, and the watermark it gives
            // can only be at or below the uninterrupted run's at this point.
            self.probe_wm.observe(time_ms);
            on_event(JoinEvent::Fenced {
                key,
                time_ms,
                probe,
            });
            return;
        }
        if self.probe_wm.is_late(time_ms) {
            let watermark_ms = self.probe_wm.current().unwrap_or(i64::MIN);
            on_event(JoinEvent::Late {
                key,
                time_ms,
                probe,
                watermark_ms,
            });
            return;
        }
        self.probe_wm.observe(time_ms);
        let bucket = bucket_of(time_ms, slide_ms);
        if let Ok(i) = self.table.binary_search_by_key(&bucket, |(e, _)| *e) {
            let (table_ms, table) = &self.table[i];
            on_event(JoinEvent::Matched {
                key,
                time_ms,
                probe,
                table_ms: *table_ms,
                table,
            });
        } else if let Some(latest) = self.latest_table.filter(|&latest| latest > bucket) {
            on_event(JoinEvent::Unmatched {
                key,
                time_ms,
                probe,
                cause: UnmatchedCause::Superseded {
                    latest_table_ms: latest,
                },
            });
        } else {
            let at = self.pending.partition_point(|p| p.bucket <= bucket);
            let pending = Pending {
                bucket,
                time_ms,
                probe,
            };
            if at == self.pending.len() {
                self.pending.push_back(pending);
            } else {
                self.pending.insert(at, pending);
            }
        }
        self.evict_table(slide_ms);
    }

    /// Drops table records every future probe at their time would be late for.
    fn evict_table(&mut self, slide_ms: i64) {
        while let Some((e, _)) = self.table.front() {
            if self.probe_wm.has_passed(e.saturating_add(slide_ms)) {
                self.table.pop_front();
            } else {
                break;
            }
        }
    }

    /// Stores an accepted table record; the probes it decides come from `resolve`. Without
    /// `keep` (the probe input ended, nothing is held) every record at or before the latest
    /// is taken for a re-delivery: no probe can need it.
    fn push_table(&mut self, e: i64, table: T, max_table: usize, keep: bool) -> TableOutcome {
        if let Some(latest) = self.latest_table.filter(|&latest| e <= latest) {
            if e == latest || !keep || self.table.binary_search_by_key(&e, |(t, _)| *t).is_ok() {
                return TableOutcome::Duplicate;
            }
            if self.table_wm.is_late(e) {
                return TableOutcome::Late {
                    watermark_ms: self.table_wm.current().unwrap_or(i64::MIN),
                };
            }
            return TableOutcome::Superseded {
                latest_table_ms: latest,
            };
        }
        if self.table.len() >= max_table {
            return TableOutcome::TableFull {
                max_per_key: max_table,
            };
        }
        self.table_wm.observe(e);
        self.latest_table = Some(e);
        // Stored first so that a paused `resolve` still has it; `resolve` drops it again
        // when every probe that could match it is already late.
        self.table.push_back((e, table));
        TableOutcome::Accepted
    }

    /// Decides the pending probes the table record just stored at `e` (the newest) can
    /// decide, unless `on_event` asks to pause (returns `false`): then returns `false`, and
    /// calling it again continues. Without `keep` (no probe can come any more) the record
    /// is dropped once it has decided the waiting probes.
    fn resolve<F>(&mut self, slide_ms: i64, e: i64, keep: bool, on_event: &mut F) -> bool
    where
        F: FnMut(JoinEvent<'_, K, P, T>) -> bool,
    {
        let key = &self.key;
        let Some((_, table)) = self.table.back().filter(|(t, _)| *t == e) else {
            return true;
        };
        // Pending probes are sorted by bucket: older buckets can no longer be matched,
        // this one is matched now, newer ones keep waiting.
        while let Some(front) = self.pending.front() {
            if front.bucket > e {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let go_on = if p.bucket < e {
                on_event(JoinEvent::Unmatched {
                    key,
                    time_ms: p.time_ms,
                    probe: p.probe,
                    cause: UnmatchedCause::Superseded { latest_table_ms: e },
                })
            } else {
                on_event(JoinEvent::Matched {
                    key,
                    time_ms: p.time_ms,
                    probe: p.probe,
                    table_ms: e,
                    table,
                })
            };
            if !go_on {
                return false;
            }
        }
        if !keep || self.probe_wm.has_passed(e.saturating_add(slide_ms)) {
            self.table.pop_back();
        }
        true
    }

    /// Every pending probe is unmatched, unless `on_event` pauses (returns `false`).
    fn end_of_input<F>(&mut self, on_event: &mut F) -> bool
    where
        F: FnMut(JoinEvent<'_, K, P, T>) -> bool,
    {
        self.probe_wm.end();
        self.table_wm.end();
        self.table.clear();
        report_unmatched(
            &self.key,
            &mut self.pending,
            UnmatchedCause::EndOfInput,
            on_event,
        )
    }

    /// `P_c`: every probe below it has been decided. `None` when no probe was seen and no
    /// fence is set.
    fn decided_before(&self) -> Option<i64> {
        let oldest_pending = self.pending.front().map(|front| {
            self.pending
                .iter()
                .take_while(|p| p.bucket == front.bucket)
                .map(|p| p.time_ms)
                .min()
                .unwrap_or(front.time_ms)
        });
        let own = self
            .probe_wm
            .current()
            .map(|w| oldest_pending.map_or(w, |o| o.min(w)));
        match (own, self.fence) {
            (Some(own), Some(fence)) => Some(own.max(fence)),
            (own, fence) => own.or(fence),
        }
    }
}

/// Reports `probes` unmatched for `cause`, from the front, until `on_event` pauses
/// (`false`; the rest stay) or none is left (`true`).
fn report_unmatched<K, P, T, F>(
    key: &K,
    probes: &mut VecDeque<Pending<P>>,
    cause: UnmatchedCause,
    on_event: &mut F,
) -> bool
where
    F: FnMut(JoinEvent<'_, K, P, T>) -> bool,
{
    while let Some(p) = probes.pop_front() {
        let go_on = on_event(JoinEvent::Unmatched {
            key,
            time_ms: p.time_ms,
            probe: p.probe,
            cause,
        });
        if !go_on {
            return false;
        }
    }
    true
}

/// A keyed two-input event-time join; see the [module docs](super).
///
/// Generic over the key `K`, the probe payload `P` and the table payload `T`. Every
/// decision is reported through the `on_event` callback of the call that made it.
pub struct KeyedJoin<K, P, T, S = RandomState> {
    slide_ms: i64,
    lateness_ms: i64,
    keys: HashMap<K, KeyState<K, P, T>, S>,
    limits: KeyLimits,
    sweep: IdleSweep,
    paused: Option<pending::Paused<K>>,
    /// Most table records held per key.
    max_table: usize,
    /// Set once the probe input ended: table records are then no longer stored.
    probes_ended: bool,
    /// Waiting probes of evicted keys, not reported yet.
    evicted: evict::Outbox<K, P>,
}

impl<K, P, T, S> KeyedJoin<K, P, T, S>
where
    K: Hash + Eq + Ord + Clone,
    S: BuildHasher + Default,
{
    /// A join matching probes with table records aligned to `slide_ms`, with `lateness_ms`
    /// allowed lateness on both inputs.
    pub fn new(slide_ms: i64, lateness_ms: i64) -> Result<Self, JoinConfigError> {
        if slide_ms <= 0 {
            return Err(JoinConfigError::NonPositiveSlide(slide_ms));
        }
        if lateness_ms < 0 {
            return Err(JoinConfigError::NegativeLateness(lateness_ms));
        }
        Ok(KeyedJoin {
            slide_ms,
            lateness_ms,
            keys: HashMap::default(),
            limits: KeyLimits::UNBOUNDED,
            sweep: IdleSweep::default(),
            paused: None,
            max_table: usize::MAX,
            probes_ended: false,
            evicted: evict::Outbox::new(),
        })
    }

    /// Bounds the keys held (see [`KeyLimits`]): an evicted key's pending probes are
    /// reported unmatched ([`UnmatchedCause::Evicted`]).
    pub fn with_limits(mut self, limits: KeyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Bounds the table records held per key: a newer table record of a key holding
    /// `max_per_key` of them is not taken ([`TableOutcome::TableFull`]). The table of a key
    /// only grows while its probes trail its table input (every record a probe could still
    /// match is kept), so which records hit the bound depends on how the inputs interleave.
    pub fn with_max_table_per_key(mut self, max_per_key: usize) -> Self {
        self.max_table = max_per_key.max(1);
        self
    }

    /// Number of keys with state.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub fn slide_ms(&self) -> i64 {
        self.slide_ms
    }

    pub fn lateness_ms(&self) -> i64 {
        self.lateness_ms
    }

    /// Runs `f` on the state of `key`, creating it on first use (one hash lookup when the
    /// key exists, which is the hot path).
    fn with_state<Q, R>(&mut self, key: &Q, f: impl FnOnce(&mut KeyState<K, P, T>) -> R) -> R
    where
        K: Borrow<Q> + for<'q> From<&'q Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(state) = self.keys.get_mut(key) {
            return f(state);
        }
        let owned = K::from(key);
        let mut state = KeyState::new(owned.clone(), self.lateness_ms);
        let result = f(&mut state);
        self.keys.insert(owned, state);
        result
    }

    /// One probe of `key` at event time `time_ms`, in its input's order.
    pub fn push_probe<Q, F>(&mut self, key: &Q, time_ms: i64, probe: P, on_event: &mut F)
    where
        K: Borrow<Q> + for<'q> From<&'q Q>,
        Q: Hash + Eq + ?Sized,
        F: FnMut(JoinEvent<'_, K, P, T>),
    {
        let admitted = self.admit(key, time_ms);
        self.report_evicted(&mut |event| {
            on_event(event);
            true
        });
        if let Err(cause) = admitted {
            let key = K::from(key);
            on_event(JoinEvent::Refused {
                key: &key,
                time_ms,
                probe,
                cause,
            });
            return;
        }
        let slide_ms = self.slide_ms;
        self.with_state(key, |state| {
            state.push_probe(slide_ms, time_ms, probe, on_event)
        });
    }

    /// Every key's probe watermark (keys still at minus infinity are left out).
    pub fn probe_watermarks(&self) -> impl Iterator<Item = (&K, i64)> + '_ {
        self.keys
            .iter()
            .filter_map(|(k, state)| state.probe_wm.current().map(|w| (k, w)))
    }

    /// Buffered probes and table records, over all keys.
    pub fn buffered(&self) -> Buffered {
        let held = self
            .keys
            .values()
            .fold(Buffered::default(), |acc, s| Buffered {
                probes: acc.probes + s.pending.len(),
                table_records: acc.table_records + s.table.len(),
            });
        let evicted: usize = self.evicted.iter().map(|(_, p)| p.len()).sum();
        Buffered {
            probes: held.probes + evicted,
            ..held
        }
    }

    /// The restart summary of the current state; see [`JoinCheckpoint`].
    pub fn checkpoint(&self) -> JoinCheckpoint<K> {
        let mut checkpoint = JoinCheckpoint {
            decided_before: BTreeMap::new(),
            table_only: BTreeMap::new(),
        };
        for state in self.keys.values() {
            if let Some(p_c) = state.decided_before() {
                checkpoint.decided_before.insert(state.key.clone(), p_c);
            } else if let Some((e, _)) = state.table.front() {
                checkpoint.table_only.insert(state.key.clone(), *e);
            }
        }
        checkpoint
    }

    /// Prepares a fresh join to receive the replay of a restarted run: probes of a key in
    /// `checkpoint.decided_before` below its `P_c` are reported as [`JoinEvent::Fenced`].
    pub fn resume(&mut self, checkpoint: &JoinCheckpoint<K>) {
        for (key, &p_c) in &checkpoint.decided_before {
            let lateness_ms = self.lateness_ms;
            let state = self
                .keys
                .entry(key.clone())
                .or_insert_with(|| KeyState::new(key.clone(), lateness_ms));
            state.fence = Some(state.fence.map_or(p_c, |f| f.max(p_c)));
        }
    }
}
