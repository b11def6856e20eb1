//! The join's calls that can decide many probes at once (a table record resolving the
//! probes that waited for it, end of input), with backpressure: the caller's callback
//! returns `false` to pause, and [`KeyedJoin::emit_pending`] continues.

use std::{
    borrow::Borrow,
    hash::{BuildHasher, Hash},
};

use super::{JoinEvent, KeyedJoin, TableOutcome};

/// Work a bounded call paused in.
pub(super) enum Paused<K> {
    /// The probes the table record of `key` at `e` decides.
    Table { key: K, e: i64 },
    /// Probes of evicted keys (the outbox), then the probes the table record `then`
    /// decides.
    Evicted { then: Option<(K, i64)> },
    /// End of input: the keys in ascending order, from `next` on.
    EndOfInput { order: Vec<K>, next: usize },
}

impl<K, P, T, S> KeyedJoin<K, P, T, S>
where
    K: Hash + Eq + Ord + Clone,
    S: BuildHasher + Default,
{
    /// One table record of `key` at time `e_ms`, in its input's order. Pending probes it
    /// decides are reported through `on_event`.
    pub fn push_table<Q, F>(
        &mut self,
        key: &Q,
        e_ms: i64,
        table: T,
        on_event: &mut F,
    ) -> TableOutcome
    where
        K: Borrow<Q> + for<'q> From<&'q Q>,
        Q: Hash + Eq + ?Sized,
        F: FnMut(JoinEvent<'_, K, P, T>),
    {
        self.push_table_bounded(key, e_ms, table, &mut |event| {
            on_event(event);
            true
        })
    }

    /// [`push_table`](Self::push_table) with backpressure: when `on_event` returns `false`
    /// the join pauses (the table record itself is taken) and the rest of the decisions
    /// come from [`emit_pending`](Self::emit_pending), which must be called until it
    /// returns `true` before anything else is given to the join.
    pub fn push_table_bounded<Q, F>(
        &mut self,
        key: &Q,
        e_ms: i64,
        table: T,
        on_event: &mut F,
    ) -> TableOutcome
    where
        K: Borrow<Q> + for<'q> From<&'q Q>,
        Q: Hash + Eq + ?Sized,
        F: FnMut(JoinEvent<'_, K, P, T>) -> bool,
    {
        if e_ms.rem_euclid(self.slide_ms) != 0 {
            return TableOutcome::Misaligned;
        }
        let admitted = self.admit(key, e_ms);
        // Probes of keys evicted as idle go first (none when the caller called
        // `evict_due`); if they fill the caller, the record's own decisions wait too.
        let evicted_done = self.report_evicted(on_event);
        if let Err(cause) = admitted {
            if !evicted_done {
                self.paused = Some(Paused::Evicted { then: None });
            }
            return TableOutcome::Refused(cause);
        }
        let (slide_ms, max_table, keep) = (self.slide_ms, self.max_table, !self.probes_ended);
        let (outcome, paused) = self.with_state(key, |state| {
            let outcome = state.push_table(e_ms, table, max_table, keep);
            let accepted = outcome == TableOutcome::Accepted;
            let done = !accepted || (evicted_done && state.resolve(slide_ms, e_ms, keep, on_event));
            (outcome, (!done).then(|| state.key.clone()))
        });
        if !evicted_done {
            self.paused = Some(Paused::Evicted {
                then: paused.map(|key| (key, e_ms)),
            });
        } else if let Some(key) = paused {
            self.paused = Some(Paused::Table { key, e: e_ms });
        }
        outcome
    }

    /// Both inputs ended: every pending probe is unmatched (keys in order, probes in bucket
    /// order) and the watermarks become plus infinity.
    pub fn end_of_input<F>(&mut self, on_event: &mut F)
    where
        F: FnMut(JoinEvent<'_, K, P, T>),
    {
        self.end_of_input_bounded(&mut |event| {
            on_event(event);
            true
        });
    }

    /// [`end_of_input`](Self::end_of_input) with backpressure, like
    /// [`push_table_bounded`](Self::push_table_bounded). Returns whether it finished.
    pub fn end_of_input_bounded<F>(&mut self, on_event: &mut F) -> bool
    where
        F: FnMut(JoinEvent<'_, K, P, T>) -> bool,
    {
        let mut order: Vec<K> = self.keys.keys().cloned().collect();
        order.sort();
        self.paused = Some(Paused::EndOfInput { order, next: 0 });
        self.emit_pending(on_event)
    }

    /// Continues the decisions a bounded call paused in; `true` once nothing is pending.
    pub fn emit_pending<F>(&mut self, on_event: &mut F) -> bool
    where
        F: FnMut(JoinEvent<'_, K, P, T>) -> bool,
    {
        let (slide_ms, keep) = (self.slide_ms, !self.probes_ended);
        match self.paused.take() {
            None => true,
            Some(Paused::Evicted { then }) => {
                if !self.report_evicted(on_event) {
                    self.paused = Some(Paused::Evicted { then });
                    return false;
                }
                match then {
                    Some((key, e)) => {
                        self.paused = Some(Paused::Table { key, e });
                        self.emit_pending(on_event)
                    }
                    None => true,
                }
            }
            Some(Paused::Table { key, e }) => {
                let done = self
                    .keys
                    .get_mut(&key)
                    .is_none_or(|state| state.resolve(slide_ms, e, keep, on_event));
                if !done {
                    self.paused = Some(Paused::Table { key, e });
                }
                done
            }
            Some(Paused::EndOfInput { order, mut next }) => {
                while let Some(key) = order.get(next) {
                    if let Some(state) = self.keys.get_mut(key) {
                        if !state.end_of_input(on_event) {
                            self.paused = Some(Paused::EndOfInput { order, next });
                            return false;
                        }
                    }
                    next += 1;
                }
                true
            }
        }
    }

    /// Whether a bounded call paused with decisions still to report.
    pub fn has_pending(&self) -> bool {
        self.paused.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{JoinEvent, KeyedJoin, UnmatchedCause};

    type Join = KeyedJoin<String, u32, u32>;

    /// (key, probe, Some(table) when matched, whether unmatched at end of input).
    type Decision = (String, u32, Option<u32>, bool);

    fn decision(event: JoinEvent<'_, String, u32, u32>) -> Option<Decision> {
        match event {
            JoinEvent::Matched {
                key, probe, table, ..
            } => Some((key.clone(), probe, Some(*table), false)),
            JoinEvent::Unmatched {
                key, probe, cause, ..
            } => Some((
                key.clone(),
                probe,
                None,
                cause == UnmatchedCause::EndOfInput,
            )),
            _ => None,
        }
    }

    /// Many prices wait per key while statistics lag; then one statistics record decides
    /// them at once (some matched, older ones unmatched), and end of input the rest.
    enum Input {
        Probe(String, i64, u32),
        Table(String, i64, u32),
    }

    fn input() -> Vec<Input> {
        let mut input = Vec::new();
        let mut n = 0;
        for k in 0..5 {
            for t in (0..60_000).step_by(100) {
                n += 1;
                input.push(Input::Probe(format!("K{k}"), t, n));
            }
        }
        for k in 0..4 {
            input.push(Input::Table(format!("K{k}"), 30_000, k));
        }
        input
    }

    fn unbounded() -> Vec<Decision> {
        let mut join = Join::new(1_000, 10_000).unwrap();
        let mut out = Vec::new();
        let mut on = |e: JoinEvent<'_, String, u32, u32>| out.extend(decision(e));
        for item in input() {
            match item {
                Input::Probe(k, t, p) => join.push_probe(k.as_str(), t, p, &mut on),
                Input::Table(k, e, v) => {
                    join.push_table(k.as_str(), e, v, &mut on);
                }
            }
        }
        join.end_of_input(&mut on);
        out
    }

    /// The join driven as the runtime drives it with an output of `limit` decisions.
    fn chunked(limit: usize) -> (Vec<Decision>, usize) {
        let mut join = Join::new(1_000, 10_000).unwrap();
        let (mut all, mut chunk, mut most) = (Vec::new(), Vec::<Decision>::new(), 0);
        let mut drain = |join: &mut Join, chunk: &mut Vec<Decision>| loop {
            most = most.max(chunk.len());
            let full = chunk.len() >= limit;
            all.append(chunk);
            if !full {
                assert!(!join.has_pending());
                break;
            }
            join.emit_pending(&mut |e| {
                chunk.extend(decision(e));
                chunk.len() < limit
            });
        };
        for item in input() {
            match item {
                Input::Probe(k, t, p) => join.push_probe(k.as_str(), t, p, &mut |e| {
                    chunk.extend(decision(e));
                }),
                Input::Table(k, e, v) => {
                    join.push_table_bounded(k.as_str(), e, v, &mut |e| {
                        chunk.extend(decision(e));
                        chunk.len() < limit
                    });
                }
            }
            drain(&mut join, &mut chunk);
        }
        join.end_of_input_bounded(&mut |e| {
            chunk.extend(decision(e));
            chunk.len() < limit
        });
        drain(&mut join, &mut chunk);
        (all, most)
    }

    #[test]
    fn decisions_paused_whenever_the_caller_is_full_are_identical_to_the_unbounded_ones() {
        let want = unbounded();
        assert_eq!(want.len(), 5 * 600, "every price decided once");
        assert!(want.iter().any(|d| d.2.is_some()) && want.iter().any(|d| d.3));
        for limit in [1, 3, 256] {
            let (got, most) = chunked(limit);
            assert_eq!(got, want, "limit {limit}");
            assert_eq!(most, limit, "never more than the limit held at once");
        }
    }
}
