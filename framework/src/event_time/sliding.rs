//! Sliding aggregation over panes in O(1) amortized merges per step, with a combination
//! order that depends only on the window's position (van Herk / Gil-Werman).
//!
//! Pane indices are cut into blocks of `n` panes aligned at multiples of `n`. A window of
//! `n` panes `[start, start + n)` is either exactly one block, or the suffix of one block
//! (`start ..` its end) followed by the prefix of the next (`..= start + n - 1`). Prefixes
//! are folded left to right, suffixes right to left, both from the block boundary, so the
//! result for a window is the same bits however the operator got there (in particular
//! in a replay that started elsewhere), unlike a two-stack queue whose flips depend on
//! history. Each pane is merged once into a prefix and once into a suffix.

use super::aggregate::Aggregate;
use super::window::floor_div;

/// Aggregates of the windows of `n` panes, queried at non-decreasing window ends.
#[derive(Debug, Clone)]
pub struct AlignedSlidingWindow<A> {
    n: i64,
    /// Block whose prefix is cached, and the next pane index to fold into it.
    prefix_block: i64,
    prefix_next: i64,
    prefix: A,
    /// Block whose suffixes are cached: `suffix[i - suffix_from]` folds panes `i ..` block end.
    suffix_block: i64,
    suffix_from: i64,
    suffix: Vec<A>,
}

impl<A: Aggregate> AlignedSlidingWindow<A> {
    /// Windows of `n >= 1` panes.
    pub fn new(n: i64) -> Self {
        let n = n.max(1);
        AlignedSlidingWindow {
            n,
            prefix_block: i64::MIN,
            prefix_next: i64::MIN,
            prefix: A::empty(),
            suffix_block: i64::MIN,
            suffix_from: i64::MIN,
            suffix: Vec::new(),
        }
    }

    pub fn panes(&self) -> i64 {
        self.n
    }

    /// The aggregate of panes `[end - n, end)`. `pane(i)` must return pane `i` (empty when
    /// it holds nothing); panes before `end` must no longer change.
    pub fn window<'p>(&mut self, end: i64, pane: impl Fn(i64) -> &'p A) -> A
    where
        A: 'p,
    {
        let n = self.n;
        let last = end - 1;
        let block = floor_div(last, n);
        let block_start = block * n;
        if self.prefix_block != block || self.prefix_next > end {
            self.prefix_block = block;
            self.prefix_next = block_start;
            self.prefix = A::empty();
        }
        while self.prefix_next < end {
            self.prefix = self.prefix.merge(pane(self.prefix_next));
            self.prefix_next += 1;
        }
        let start = end - n;
        if start == block_start {
            return self.prefix.clone();
        }
        let previous = block - 1;
        if self.suffix_block != previous || start < self.suffix_from {
            self.fill_suffix(previous, start, block_start, &pane);
        }
        let index = usize::try_from(start - self.suffix_from).unwrap_or(usize::MAX);
        match self.suffix.get(index) {
            Some(suffix) => suffix.merge(&self.prefix),
            // Unreachable: `fill_suffix` covered `start ..` the block end just above.
            None => self.prefix.clone(),
        }
    }

    fn fill_suffix<'p>(
        &mut self,
        block: i64,
        from: i64,
        block_end: i64,
        pane: &impl Fn(i64) -> &'p A,
    ) where
        A: 'p,
    {
        let len = usize::try_from(block_end - from).unwrap_or(0);
        self.suffix.clear();
        self.suffix.resize(len, A::empty());
        let mut acc = A::empty();
        for (slot, i) in self.suffix.iter_mut().rev().zip((from..block_end).rev()) {
            acc = pane(i).merge(&acc);
            *slot = acc.clone();
        }
        self.suffix_block = block;
        self.suffix_from = from;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_time::aggregate::MomentStats;

    fn panes(values: &[&[f64]]) -> Vec<MomentStats> {
        values.iter().map(|v| MomentStats::of(v)).collect()
    }

    /// Pane `i` of `panes`, or `empty` outside them.
    fn pane_at<'a>(panes: &'a [MomentStats], i: i64, empty: &'a MomentStats) -> &'a MomentStats {
        usize::try_from(i)
            .ok()
            .and_then(|i| panes.get(i))
            .unwrap_or(empty)
    }

    #[test]
    fn every_window_matches_a_direct_fold_of_its_panes() {
        let data: Vec<Vec<f64>> = (0..40)
            .map(|i| (0..(i % 4)).map(|j| (i * 10 + j) as f64).collect())
            .collect();
        let refs: Vec<&[f64]> = data.iter().map(Vec::as_slice).collect();
        let ps = panes(&refs);
        let empty = MomentStats::empty();
        let get = |i: i64| pane_at(&ps, i, &empty);
        for n in [1, 3, 5, 7] {
            let mut w = AlignedSlidingWindow::new(n);
            for end in 0..45 {
                let got = w.window(end, get);
                let values: Vec<f64> = (end - n..end)
                    .filter_map(|i| usize::try_from(i).ok())
                    .filter_map(|i| data.get(i))
                    .flatten()
                    .copied()
                    .collect();
                let want = MomentStats::of(&values);
                assert_eq!(got.count(), want.count(), "n={n} end={end}");
                if let (Some(a), Some(b)) = (got.mean(), want.mean()) {
                    assert!((a - b).abs() < 1e-9, "n={n} end={end}");
                }
            }
        }
    }

    #[test]
    fn results_are_bit_identical_whatever_the_query_history() {
        let data: Vec<Vec<f64>> = (0..64)
            .map(|i| vec![1.0 + (i as f64) * 0.1, 3.7 / (i as f64 + 1.0)])
            .collect();
        let refs: Vec<&[f64]> = data.iter().map(Vec::as_slice).collect();
        let ps = panes(&refs);
        let empty = MomentStats::empty();
        let get = |i: i64| pane_at(&ps, i, &empty);
        let mut full = AlignedSlidingWindow::new(6);
        let all: Vec<_> = (0..64).map(|end| full.window(end, get)).collect();
        for first in 0..64 {
            let mut late_start = AlignedSlidingWindow::new(6);
            for end in (first..64).step_by(1 + first as usize % 3) {
                let got = late_start.window(end, get);
                assert_eq!(got, all[end as usize], "start={first} end={end}");
            }
        }
    }
}
