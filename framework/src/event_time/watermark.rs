//! Watermarks: `W = max event time seen - allowed lateness`, starting at minus infinity.

use std::collections::HashMap;
use std::hash::Hash;

/// The watermark of one key (or of one input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    lateness_ms: i64,
    max_event_ms: Option<i64>,
    ended: bool,
}

impl Watermark {
    pub fn new(lateness_ms: i64) -> Self {
        Watermark {
            lateness_ms,
            max_event_ms: None,
            ended: false,
        }
    }

    /// The current watermark; `None` is minus infinity, `Some(i64::MAX)` plus infinity.
    pub fn current(&self) -> Option<i64> {
        if self.ended {
            return Some(i64::MAX);
        }
        self.max_event_ms
            .map(|max| max.saturating_sub(self.lateness_ms))
    }

    /// Whether a record at `event_ms` is late: strictly before the watermark as it is now.
    pub fn is_late(&self, event_ms: i64) -> bool {
        self.current().is_some_and(|w| event_ms < w)
    }

    /// Advances with a record's event time (never moves backwards).
    pub fn observe(&mut self, event_ms: i64) {
        self.max_event_ms = Some(self.max_event_ms.map_or(event_ms, |m| m.max(event_ms)));
    }

    /// Bounded input ended: the watermark becomes plus infinity.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Whether everything before `t` is complete (`W >= t`).
    pub fn has_passed(&self, t: i64) -> bool {
        self.current().is_some_and(|w| w >= t)
    }

    pub fn max_event_ms(&self) -> Option<i64> {
        self.max_event_ms
    }

    pub fn lateness_ms(&self) -> i64 {
        self.lateness_ms
    }
}

/// One watermark per key (per symbol), as semantics.md §2 requires.
#[derive(Debug, Clone)]
pub struct KeyedWatermarks<K> {
    lateness_ms: i64,
    by_key: HashMap<K, Watermark>,
}

impl<K: Eq + Hash + Clone> KeyedWatermarks<K> {
    pub fn new(lateness_ms: i64) -> Self {
        KeyedWatermarks {
            lateness_ms,
            by_key: HashMap::new(),
        }
    }

    pub fn get(&self, key: &K) -> Option<&Watermark> {
        self.by_key.get(key)
    }

    pub fn entry(&mut self, key: &K) -> &mut Watermark {
        if !self.by_key.contains_key(key) {
            self.by_key
                .insert(key.clone(), Watermark::new(self.lateness_ms));
        }
        // The key was inserted just above when missing.
        self.by_key
            .get_mut(key)
            .unwrap_or_else(|| unreachable!("key inserted above"))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &Watermark)> {
        self.by_key.iter()
    }

    /// Ends every key's input (bounded input): all watermarks become plus infinity.
    pub fn end_all(&mut self) {
        for w in self.by_key.values_mut() {
            w.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_minus_infinity_so_nothing_is_late() {
        let w = Watermark::new(10_000);
        assert_eq!(w.current(), None);
        assert!(!w.is_late(i64::MIN));
        assert!(!w.has_passed(i64::MIN));
    }

    #[test]
    fn trails_the_max_event_time_by_the_lateness_and_never_regresses() {
        let mut w = Watermark::new(10_000);
        w.observe(100_000);
        w.observe(50_000);
        assert_eq!(w.current(), Some(90_000));
        assert!(w.is_late(89_999));
        assert!(!w.is_late(90_000));
        assert!(w.has_passed(90_000));
        assert!(!w.has_passed(90_001));
    }

    #[test]
    fn end_of_input_passes_everything() {
        let mut w = Watermark::new(10_000);
        w.observe(5);
        w.end();
        assert!(w.has_passed(i64::MAX));
    }

    #[test]
    fn keys_are_independent() {
        let mut ws = KeyedWatermarks::new(1_000);
        ws.entry(&"A").observe(10_000);
        ws.entry(&"B").observe(2_000);
        assert_eq!(ws.get(&"A").and_then(Watermark::current), Some(9_000));
        assert_eq!(ws.get(&"B").and_then(Watermark::current), Some(1_000));
        assert!(ws.get(&"C").is_none());
    }
}
