//! Per-stream sequence ids: duplicates (after a reconnect or during a rotation's overlap)
//! are dropped, jumps in consecutive ids (trade and aggregate-trade ids) are gaps.
//! Memory is one id per subscribed stream.

/// What one id means for its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: emit it. `missed` ids were skipped before it (0 unless a gap).
    New { missed: u64 },
    /// At or before the last emitted id: already emitted, drop it.
    Duplicate,
}

/// The last emitted id of every stream.
#[derive(Debug, Clone)]
pub struct Sequences {
    last: Vec<Option<u64>>,
    consecutive: Vec<bool>,
}

impl Sequences {
    /// `consecutive[i]`: whether stream `i`'s ids increase by exactly one per message.
    pub fn new(consecutive: Vec<bool>) -> Sequences {
        Sequences {
            last: vec![None; consecutive.len()],
            consecutive,
        }
    }

    pub fn last(&self, stream: usize) -> Option<u64> {
        self.last.get(stream).copied().flatten()
    }

    /// Records `id` on `stream` (out-of-range streams are treated as new, never stored).
    pub fn observe(&mut self, stream: usize, id: u64) -> Verdict {
        let Some(slot) = self.last.get_mut(stream) else {
            return Verdict::New { missed: 0 };
        };
        match *slot {
            Some(last) if id <= last => Verdict::Duplicate,
            previous => {
                *slot = Some(id);
                let missed = match previous {
                    Some(last) if self.consecutive[stream] => id - last - 1,
                    _ => 0,
                };
                Verdict::New { missed }
            }
        }
    }

    /// Whether a connection whose first id on `stream` is `first` has everything after
    /// the last emitted one: then switching to it loses nothing on that stream.
    pub fn covered_by(&self, stream: usize, first: Option<u64>) -> bool {
        match (self.last(stream), first) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(last), Some(first)) => {
                let next = if self.consecutive[stream] {
                    last.saturating_add(1)
                } else {
                    last
                };
                first <= next
            }
        }
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_ids_are_duplicates_and_jumps_are_gaps_on_consecutive_streams() {
        let mut s = Sequences::new(vec![true, false]);
        assert_eq!(s.observe(0, 10), Verdict::New { missed: 0 });
        assert_eq!(s.observe(0, 11), Verdict::New { missed: 0 });
        assert_eq!(s.observe(0, 11), Verdict::Duplicate);
        assert_eq!(s.observe(0, 9), Verdict::Duplicate);
        assert_eq!(s.observe(0, 15), Verdict::New { missed: 3 });
        // Update ids of bookTicker only increase: a jump is no gap.
        assert_eq!(s.observe(1, 100), Verdict::New { missed: 0 });
        assert_eq!(s.observe(1, 250), Verdict::New { missed: 0 });
        assert_eq!(s.observe(1, 250), Verdict::Duplicate);
    }

    #[test]
    fn a_new_connection_covers_a_stream_when_it_starts_at_or_before_the_next_id() {
        let mut s = Sequences::new(vec![true, false]);
        assert!(
            s.covered_by(0, None),
            "nothing emitted yet: nothing to lose"
        );
        s.observe(0, 10);
        s.observe(1, 100);
        assert!(!s.covered_by(0, None));
        assert!(s.covered_by(0, Some(8)));
        assert!(s.covered_by(0, Some(11)));
        assert!(!s.covered_by(0, Some(12)));
        assert!(s.covered_by(1, Some(100)));
        assert!(!s.covered_by(1, Some(101)));
    }
}
