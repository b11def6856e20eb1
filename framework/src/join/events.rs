//! The join's vocabulary: its decisions about probes ([`JoinEvent`]), what happens to a
//! table record ([`TableOutcome`]), why a key is refused, and its parameters' errors.

// Named in the docs only.
#[cfg(doc)]
use super::KeyedJoin;
#[cfg(doc)]
use crate::event_time::guard::KeyLimits;

/// The slide-aligned time a probe at `time_ms` joins: `floor(time / slide) * slide`
/// (floor, also for negative times). Saturates at the bottom of the `i64` range.
pub fn bucket_of(time_ms: i64, slide_ms: i64) -> i64 {
    time_ms.saturating_sub(time_ms.rem_euclid(slide_ms))
}

/// Invalid join parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinConfigError {
    #[error("join slide must be positive, got {0} ms")]
    NonPositiveSlide(i64),
    #[error("join lateness must not be negative, got {0} ms")]
    NegativeLateness(i64),
}

/// Why a probe can never be matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmatchedCause {
    /// A table record with this later time was accepted, and none at the probe's bucket.
    Superseded { latest_table_ms: i64 },
    /// The inputs ended before the probe's table record arrived.
    EndOfInput,
    /// The key was evicted as idle (see [`KeyLimits`]) before its table record arrived.
    Evicted,
}

/// Why a record of a key without state was refused (see [`KeyLimits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The partition already holds the most keys allowed.
    TooManyKeys { max_keys: usize },
    /// The record trails the partition's newest event time by more than the idle timeout:
    /// its key may have been evicted with decisions this record could contradict.
    BeforeIdleHorizon { horizon_ms: i64 },
}

/// A decision about one probe, handed to the caller's callback.
#[derive(Debug)]
pub enum JoinEvent<'a, K, P, T> {
    /// The probe and its table record (at `table_ms`) have both arrived.
    Matched {
        key: &'a K,
        time_ms: i64,
        probe: P,
        table_ms: i64,
        table: &'a T,
    },
    /// The probe's table record can no longer arrive.
    Unmatched {
        key: &'a K,
        time_ms: i64,
        probe: P,
        cause: UnmatchedCause,
    },
    /// The probe was behind the key's probe watermark when it arrived.
    Late {
        key: &'a K,
        time_ms: i64,
        probe: P,
        watermark_ms: i64,
    },
    /// The probe is below the fence set by [`KeyedJoin::resume`]: it was decided (and its
    /// result emitted or counted) before the restart, so it must be neither emitted nor
    /// counted again.
    Fenced { key: &'a K, time_ms: i64, probe: P },
    /// The probe's key has no state and cannot get any (see [`Refusal`]).
    Refused {
        key: &'a K,
        time_ms: i64,
        probe: P,
        cause: Refusal,
    },
}

/// What happened to a table record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableOutcome {
    /// Stored (or, when every probe that could match it is already late, only used to
    /// resolve pending probes).
    Accepted,
    /// `e` is not a multiple of the slide: no probe could ever match it.
    Misaligned,
    /// The same `(key, e)` was accepted before; the first one is kept.
    Duplicate,
    /// Behind the key's table watermark.
    Late { watermark_ms: i64 },
    /// Older than the latest accepted table record of the key and never seen: probes at its
    /// time were (or will be) declared unmatched already, so it is ignored.
    Superseded { latest_table_ms: i64 },
    /// The key has no state and cannot get any (see [`Refusal`]).
    Refused(Refusal),
    /// Newer than every record of the key, but the key already holds `max_per_key` table
    /// records (see [`KeyedJoin::with_max_table_per_key`]): not taken, as if never sent.
    TableFull { max_per_key: usize },
}

/// How much the join holds, for metrics and tests of bounded state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Buffered {
    pub probes: usize,
    pub table_records: usize,
}

impl Buffered {
    pub fn total(self) -> usize {
        self.probes + self.table_records
    }
}
