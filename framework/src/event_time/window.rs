//! Sliding-window assignment: windows `[e - L, e)` whose ends `e` are multiples of the
//! slide `S` since the Unix epoch (Spark's `window(ts, L, S)` alignment).
//!
//! Time is cut into panes `[k*S, (k+1)*S)`; a window of length `L = n*S` ending at
//! `e = E*S` is exactly the panes `E-n .. E-1`. Everything is integer arithmetic with
//! floor division, so negative (pre-1970) times are assigned like positive ones.

/// `floor(a / b)` for `b > 0`, correct for negative `a` (Rust's `/` truncates toward zero).
pub fn floor_div(a: i64, b: i64) -> i64 {
    let q = a / b;
    if (a % b != 0) && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

/// Why a set of window lengths and a slide cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowSpecError {
    #[error("the slide must be positive, got {slide_ms} ms")]
    NonPositiveSlide { slide_ms: i64 },
    #[error("at least one window length is required")]
    NoWindows,
    #[error(
        "window #{index} ({length_ms} ms) is not a positive multiple of the slide ({slide_ms} ms)"
    )]
    NotAMultipleOfSlide {
        index: usize,
        length_ms: i64,
        slide_ms: i64,
    },
    #[error("window #{index} spans {panes} slides; at most {max} are supported (memory is proportional to it)")]
    TooManyPanes { index: usize, panes: i64, max: i64 },
}

/// Window lengths (in configured order) sharing one slide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlidingWindows {
    slide_ms: i64,
    lengths_ms: Vec<i64>,
    /// Length of each window in panes (`L / S`).
    panes: Vec<i64>,
    max_panes: i64,
}

impl SlidingWindows {
    /// Upper bound on `L / S`: each key keeps state proportional to it.
    pub const MAX_PANES: i64 = 1_000_000;

    pub fn new(slide_ms: i64, lengths_ms: &[i64]) -> Result<Self, WindowSpecError> {
        if slide_ms <= 0 {
            return Err(WindowSpecError::NonPositiveSlide { slide_ms });
        }
        if lengths_ms.is_empty() {
            return Err(WindowSpecError::NoWindows);
        }
        let mut panes = Vec::with_capacity(lengths_ms.len());
        for (index, &length_ms) in lengths_ms.iter().enumerate() {
            if length_ms <= 0 || length_ms % slide_ms != 0 {
                return Err(WindowSpecError::NotAMultipleOfSlide {
                    index,
                    length_ms,
                    slide_ms,
                });
            }
            let n = length_ms / slide_ms;
            if n > Self::MAX_PANES {
                return Err(WindowSpecError::TooManyPanes {
                    index,
                    panes: n,
                    max: Self::MAX_PANES,
                });
            }
            panes.push(n);
        }
        let max_panes = panes.iter().copied().max().unwrap_or(1);
        Ok(SlidingWindows {
            slide_ms,
            lengths_ms: lengths_ms.to_vec(),
            panes,
            max_panes,
        })
    }

    pub fn slide_ms(&self) -> i64 {
        self.slide_ms
    }

    /// Window lengths in configured order.
    pub fn lengths_ms(&self) -> &[i64] {
        &self.lengths_ms
    }

    /// Window lengths in panes, in configured order.
    pub fn lengths_in_panes(&self) -> &[i64] {
        &self.panes
    }

    pub fn longest_ms(&self) -> i64 {
        self.max_panes * self.slide_ms
    }

    pub fn longest_in_panes(&self) -> i64 {
        self.max_panes
    }

    pub fn len(&self) -> usize {
        self.lengths_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths_ms.is_empty()
    }

    /// Index `k` of the pane `[k*S, (k+1)*S)` holding `t`.
    pub fn pane_of(&self, t_ms: i64) -> i64 {
        floor_div(t_ms, self.slide_ms)
    }

    /// Epoch milliseconds of the pane boundary `k*S` (saturating far outside real times).
    pub fn pane_start_ms(&self, pane: i64) -> i64 {
        pane.saturating_mul(self.slide_ms)
    }

    /// Ends `e` of the windows of length `lengths_ms()[window]` that contain `t`, ascending:
    /// every multiple of `S` in `(t, t + L]`.
    pub fn window_ends(&self, window: usize, t_ms: i64) -> impl Iterator<Item = i64> + '_ {
        let first = self.pane_of(t_ms) + 1;
        let n = self.panes.get(window).copied().unwrap_or(0);
        (first..first + n).map(move |e| e * self.slide_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_div_rounds_toward_minus_infinity_for_negative_times() {
        assert_eq!(floor_div(7, 2), 3);
        assert_eq!(floor_div(-7, 2), -4);
        assert_eq!(floor_div(-8, 2), -4);
        assert_eq!(floor_div(0, 1000), 0);
        assert_eq!(floor_div(-1, 1000), -1);
        assert_eq!(floor_div(i64::MIN, 1000), -9_223_372_036_854_776);
    }

    #[test]
    fn windows_are_half_open_and_aligned_to_the_epoch() {
        let w = SlidingWindows::new(1_000, &[3_000]).unwrap();
        // t = 5.5 s is in [3,6), [4,7), [5,8): ends 6 s, 7 s, 8 s.
        let ends: Vec<_> = w.window_ends(0, 5_500).collect();
        assert_eq!(ends, vec![6_000, 7_000, 8_000]);
        // A record exactly at a boundary belongs to the window starting there, not ending.
        let ends: Vec<_> = w.window_ends(0, 6_000).collect();
        assert_eq!(ends, vec![7_000, 8_000, 9_000]);
    }

    #[test]
    fn negative_times_are_assigned_with_floor_division() {
        let w = SlidingWindows::new(1_000, &[2_000]).unwrap();
        assert_eq!(w.pane_of(-1), -1);
        assert_eq!(w.pane_of(-1_000), -1);
        assert_eq!(w.pane_of(-1_001), -2);
        let ends: Vec<_> = w.window_ends(0, -500).collect();
        assert_eq!(ends, vec![0, 1_000]);
    }

    #[test]
    fn rejects_lengths_that_are_not_positive_multiples_of_the_slide() {
        assert_eq!(
            SlidingWindows::new(1_000, &[30_000, 1_500]),
            Err(WindowSpecError::NotAMultipleOfSlide {
                index: 1,
                length_ms: 1_500,
                slide_ms: 1_000
            })
        );
        assert!(SlidingWindows::new(1_000, &[0]).is_err());
        assert!(SlidingWindows::new(0, &[1_000]).is_err());
        assert_eq!(
            SlidingWindows::new(1_000, &[]),
            Err(WindowSpecError::NoWindows)
        );
        assert!(matches!(
            SlidingWindows::new(1, &[86_400_000]),
            Err(WindowSpecError::TooManyPanes { .. })
        ));
    }
}
