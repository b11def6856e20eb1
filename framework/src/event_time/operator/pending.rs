//! End of input and paused output of [`KeyedWindowOperator`]: reporting a large amount
//! of closed windows in chunks, as the caller's output accepts them.

use std::{collections::VecDeque, hash::Hash};

use super::{ClosedWindows, KeyedWindowOperator};
use crate::event_time::{aggregate::Aggregate, sliding::AlignedSlidingWindow};

/// Output a bounded call paused in, continued by [`KeyedWindowOperator::emit_pending`].
#[derive(Debug, Clone)]
pub(super) enum Paused<K> {
    /// The windows one record closed, of this key.
    Key(K),
    /// End of input: the keys by index in ascending key order, from `next` on.
    EndOfInput { order: Vec<usize>, next: usize },
    /// A progress marker: every key's watermark moves up to `event_ms` (keys in ascending
    /// order, from `next` on).
    Advance {
        order: Vec<K>,
        next: usize,
        event_ms: i64,
    },
}

impl<K, A> KeyedWindowOperator<K, A>
where
    K: Eq + Hash + Ord + Clone,
    A: Aggregate,
{
    /// Bounded input ended: every key's watermark becomes plus infinity and every window
    /// is reported (keys in ascending order).
    pub fn end_of_input<F>(&mut self, mut emit: F)
    where
        F: FnMut(&K, &ClosedWindows<'_, A>),
    {
        self.end_of_input_bounded(|k, c| {
            emit(k, c);
            true
        });
    }

    /// [`end_of_input`](Self::end_of_input) with backpressure, like
    /// [`process_bounded`](Self::process_bounded). Returns whether everything was reported.
    pub fn end_of_input_bounded<F>(&mut self, emit: F) -> bool
    where
        F: FnMut(&K, &ClosedWindows<'_, A>) -> bool,
    {
        let mut order: Vec<usize> = (0..self.keys.len()).collect();
        order.sort_by(|&a, &b| self.keys[a].cmp(&self.keys[b]));
        self.paused = Some(Paused::EndOfInput { order, next: 0 });
        self.emit_pending(emit)
    }

    /// Continues the output a bounded call paused in; `true` once nothing is pending.
    pub fn emit_pending<F>(&mut self, mut emit: F) -> bool
    where
        F: FnMut(&K, &ClosedWindows<'_, A>) -> bool,
    {
        match self.paused.take() {
            None => {}
            // Continued below.
            Some(advance @ Paused::Advance { .. }) => self.paused = Some(advance),
            Some(Paused::Key(key)) => {
                if let Some(&i) = self.index.get(&key) {
                    if !self.states[i].advance(&self.keys[i], &self.windows, &mut emit) {
                        self.paused = Some(Paused::Key(key));
                        return false;
                    }
                }
            }
            Some(Paused::EndOfInput { order, mut next }) => {
                while let Some(&i) = order.get(next) {
                    let state = &mut self.states[i];
                    state.watermark.end();
                    if !state.advance(&self.keys[i], &self.windows, &mut emit) {
                        self.paused = Some(Paused::EndOfInput { order, next });
                        return false;
                    }
                    // An ended key takes nothing more (every record is late): free its
                    // panes and window buffers, O(longest window / slide) each.
                    state.panes = VecDeque::new();
                    for slider in &mut state.sliders {
                        *slider = AlignedSlidingWindow::new(slider.panes());
                    }
                    next += 1;
                }
            }
        }
        if let Some(Paused::Advance {
            order,
            mut next,
            event_ms,
        }) = self.paused.take()
        {
            while let Some(key) = order.get(next) {
                if let Some(&i) = self.index.get(key) {
                    let state = &mut self.states[i];
                    if state.watermark.max_event_ms().is_none_or(|m| m < event_ms) {
                        state.watermark.observe(event_ms);
                    }
                    // Resumable: a paused key continues where it stopped.
                    if !state.advance(&self.keys[i], &self.windows, &mut emit) {
                        self.paused = Some(Paused::Advance {
                            order,
                            next,
                            event_ms,
                        });
                        return false;
                    }
                }
                next += 1;
            }
        }
        // Keys evicted as idle wait behind any paused output.
        self.drain_evictions(&mut emit)
    }

    /// Whether a bounded call paused with output still to report.
    pub fn has_pending(&self) -> bool {
        self.paused.is_some() || !self.evicting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Admission, ClosedWindows, KeyedWindowOperator};
    use crate::event_time::{aggregate::MomentStats, window::SlidingWindows};

    /// (key, window end, per window: (index, start, count, mean bits)).
    type Report = (String, i64, Vec<(usize, i64, u64, u64)>);

    fn report(k: &str, c: &ClosedWindows<'_, MomentStats>) -> Report {
        let stats = c
            .non_empty()
            .map(|(i, start, a)| (i, start, a.count(), a.mean().unwrap_or(f64::NAN).to_bits()))
            .collect();
        (k.to_string(), c.end_ms, stats)
    }

    fn operator() -> KeyedWindowOperator<String, MomentStats> {
        // 30 s and 1 h windows, slide 1 s: one record closes up to 3,600 ends.
        KeyedWindowOperator::new(SlidingWindows::new(1_000, &[30_000, 3_600_000]).unwrap(), 0)
    }

    /// Keys, each with a few records and a gap, so that records, watermark jumps and end of
    /// input all close many windows.
    fn input() -> Vec<(String, i64, f64)> {
        let mut records = Vec::new();
        for step in 0..4_i64 {
            for k in 0..25 {
                let t = 1_746_630_000_000 + step * 1_900_000 + k * 37;
                records.push((format!("K{k:03}"), t, 100.0 + (k * 7 + step) as f64));
            }
        }
        records
    }

    fn unbounded() -> Vec<Report> {
        let mut o = operator();
        let mut out = Vec::new();
        for (k, t, v) in input() {
            o.process(k.as_str(), t, &v, |k, c| out.push(report(k, c)));
        }
        o.end_of_input(|k, c| out.push(report(k, c)));
        out
    }

    /// Runs the operator as the runtime does with an output of `limit` reports: after each
    /// call that filled it, empty it and ask for the rest. Returns every report and the
    /// most the output ever held.
    fn chunked(limit: usize) -> (Vec<Report>, usize) {
        let mut o = operator();
        let (mut all, mut chunk, mut most) = (Vec::new(), Vec::new(), 0);
        let emit = |chunk: &mut Vec<Report>, k: &String, c: &ClosedWindows<'_, MomentStats>| {
            chunk.push(report(k, c));
            chunk.len() < limit
        };
        let flush = |chunk: &mut Vec<Report>, all: &mut Vec<Report>, most: &mut usize| {
            *most = (*most).max(chunk.len());
            let full = chunk.len() >= limit;
            all.append(chunk);
            full
        };
        for (k, t, v) in input() {
            let admission = o.process_bounded(k.as_str(), t, &v, |k, c| emit(&mut chunk, k, c));
            assert_eq!(admission, Admission::Accepted);
            while flush(&mut chunk, &mut all, &mut most) {
                o.emit_pending(|k, c| emit(&mut chunk, k, c));
            }
            assert!(!o.has_pending());
        }
        o.end_of_input_bounded(|k, c| emit(&mut chunk, k, c));
        while flush(&mut chunk, &mut all, &mut most) {
            o.emit_pending(|k, c| emit(&mut chunk, k, c));
        }
        assert!(!o.has_pending());
        (all, most)
    }

    #[test]
    fn output_paused_whenever_the_caller_is_full_is_identical_to_the_unbounded_output() {
        let want = unbounded();
        assert!(
            want.len() > 25 * 3_600,
            "end of input alone closes 3,600 ends per key"
        );
        for limit in [1, 7, 1_024] {
            let (got, most) = chunked(limit);
            assert_eq!(got.len(), want.len(), "limit {limit}");
            assert!(got == want, "limit {limit}: same reports in the same order");
            assert_eq!(most, limit, "never more than the limit held at once");
        }
    }
}
