//! One key's state in [`super::KeyedWindowOperator`]: its watermark, restart fence and
//! ring of panes, and how a watermark advance closes and reports its windows.

use std::collections::VecDeque;

use super::ClosedWindows;
use crate::event_time::{
    aggregate::Aggregate,
    sliding::AlignedSlidingWindow,
    watermark::Watermark,
    window::{floor_div, SlidingWindows},
};

#[derive(Debug, Clone)]
pub(super) struct KeyState<A> {
    pub(super) watermark: Watermark,
    /// Windows ending before this were reported before a restart: computed, not reported.
    pub(super) fence_ms: Option<i64>,
    /// Pane index `E` of the next window end `E*S` not yet closed; `None` before the
    /// first record.
    pub(super) next_end: Option<i64>,
    /// Panes `base ..`: the open ones and the closed ones that open windows still need.
    pub(super) panes: VecDeque<A>,
    pub(super) base: i64,
    /// The latest closed pane holding data: when it is older than the longest window,
    /// every window is empty.
    pub(super) latest_closed_data: Option<i64>,
    pub(super) sliders: Vec<AlignedSlidingWindow<A>>,
    pub(super) results: Vec<A>,
    pub(super) empty: A,
}

impl<A: Aggregate> KeyState<A> {
    pub(super) fn new(windows: &SlidingWindows, lateness_ms: i64) -> Self {
        KeyState {
            watermark: Watermark::new(lateness_ms),
            fence_ms: None,
            next_end: None,
            panes: VecDeque::new(),
            base: 0,
            latest_closed_data: None,
            sliders: windows
                .lengths_in_panes()
                .iter()
                .map(|&n| AlignedSlidingWindow::new(n))
                .collect(),
            results: vec![A::empty(); windows.len()],
            empty: A::empty(),
        }
    }

    pub(super) fn pane(&self, index: i64) -> &A {
        index
            .checked_sub(self.base)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.panes.get(i))
            .unwrap_or(&self.empty)
    }

    pub(super) fn stored_end(&self) -> i64 {
        self.base.saturating_add(self.panes.len() as i64)
    }

    pub(super) fn insert(&mut self, pane: i64, value: &A::Value) {
        if self.panes.is_empty() {
            self.base = pane;
            self.panes.push_back(A::empty());
        } else if pane < self.base {
            for _ in pane..self.base {
                self.panes.push_front(A::empty());
            }
            self.base = pane;
        } else {
            while pane >= self.stored_end() {
                self.panes.push_back(A::empty());
            }
        }
        let slot = usize::try_from(pane - self.base)
            .ok()
            .and_then(|i| self.panes.get_mut(i));
        if let Some(slot) = slot {
            slot.add(value);
        }
    }

    /// The first stored pane at or after `from` holding data.
    pub(super) fn first_data_at_or_after(&self, from: i64) -> Option<i64> {
        let skip = usize::try_from(from.saturating_sub(self.base)).unwrap_or(0);
        self.panes
            .iter()
            .enumerate()
            .skip(skip)
            .find(|(_, p)| !p.is_empty())
            .map(|(i, _)| self.base + i as i64)
    }

    /// Closes and reports every window end `e <= W`, unless `emit` asks to pause (returns
    /// `false`): then returns `false`, and calling it again continues where it paused.
    pub(super) fn advance<K>(
        &mut self,
        key: &K,
        windows: &SlidingWindows,
        emit: &mut impl FnMut(&K, &ClosedWindows<'_, A>) -> bool,
    ) -> bool {
        let Some(w) = self.watermark.current() else {
            return true;
        };
        let ended = w == i64::MAX;
        // Every end E with E*S <= W is closed.
        let limit = if ended {
            i64::MAX
        } else {
            floor_div(w, windows.slide_ms())
        };
        let longest = windows.longest_in_panes();
        let mut e = match self.next_end {
            Some(e) => e,
            // First record: nothing is stored, so every end up to the limit is empty.
            None if ended => return true,
            None => limit.saturating_add(1),
        };
        let mut go_on = true;
        while e <= limit {
            if !self.pane(e - 1).is_empty() {
                self.latest_closed_data = Some(e - 1);
            }
            if self.latest_closed_data.is_none_or(|q| q < e - longest) {
                // Every window ending at `e` is empty: jump to the next pane with data.
                match self.first_data_at_or_after(e) {
                    Some(q) if q < limit => {
                        e = q + 1;
                        continue;
                    }
                    _ if ended => {
                        e = self.stored_end();
                        break;
                    }
                    _ => {
                        e = limit + 1;
                        break;
                    }
                }
            }
            let end_ms = windows.pane_start_ms(e);
            if self.fence_ms.is_none_or(|fence| end_ms >= fence) {
                go_on = self.report(key, e, end_ms, windows, emit);
            }
            e += 1;
            if !go_on {
                break;
            }
        }
        self.next_end = Some(e);
        let keep_from = e.saturating_sub(longest);
        while self.base < keep_from && !self.panes.is_empty() {
            self.panes.pop_front();
            self.base += 1;
        }
        if self.panes.is_empty() {
            self.base = keep_from;
        }
        go_on
    }

    pub(super) fn report<K>(
        &mut self,
        key: &K,
        e: i64,
        end_ms: i64,
        windows: &SlidingWindows,
        emit: &mut impl FnMut(&K, &ClosedWindows<'_, A>) -> bool,
    ) -> bool {
        let mut results = std::mem::take(&mut self.results);
        let mut sliders = std::mem::take(&mut self.sliders);
        let mut any = false;
        let mut go_on = true;
        for (slot, slider) in results.iter_mut().zip(sliders.iter_mut()) {
            *slot = slider.window(e, |i| self.pane(i));
            any |= !slot.is_empty();
        }
        if any {
            go_on = emit(
                key,
                &ClosedWindows {
                    end_ms,
                    windows,
                    aggregates: &results,
                },
            );
        }
        self.results = results;
        self.sliders = sliders;
        go_on
    }

    /// What a checkpoint records for the key: its watermark, never below its fence.
    pub(super) fn restart_watermark(&self) -> Option<i64> {
        match (self.watermark.current(), self.fence_ms) {
            (Some(w), Some(f)) => Some(w.max(f)),
            (w, f) => w.or(f),
        }
    }
}
