//! Deterministic keyed stream-stream joins in event time.
//!
//! [`KeyedJoin`] joins a *probe* stream (e.g. prices) with a *table-like* stream (e.g. the
//! moving statistics: one record per key and slide-aligned time `e`, in increasing `e`).
//! A probe at event time `t` matches the table record of its key at
//! `e = floor(t / S) * S` ([`bucket_of`]), whichever of the two arrives first.
//!
//! Rules (semantics.md §4), per key:
//! * Each input has its own [`Watermark`](crate::event_time::Watermark); a probe with
//!   `t < W` (W as it was before the probe) is *late*; so is a table record.
//! * A probe is *matched* as soon as both it and its table record have arrived.
//! * A probe whose table record can no longer arrive — a table record with a later `e`
//!   was accepted and `e(t)` was not — is *unmatched*; at end of input every pending probe
//!   is unmatched.
//! * Table records are accepted only in increasing `e`: a re-delivered record is a
//!   *duplicate* (first wins) and an older, never-seen one is *superseded*. Accepting it
//!   would make the outcome of probes depend on how the two inputs interleave.
//! * State is bounded: a table record is dropped once the probe watermark passes `e + S`
//!   (every probe that could still match it would be late), or once the probe input has
//!   ended ([`KeyedJoin::probe_input_ended`]: no probe can come); a probe once decided. A
//!   key holds at most [`KeyedJoin::with_max_table_per_key`] table records.
//!
//! Given each input's own order, the *set* of decisions does not depend on how the two
//! inputs interleave: a probe's fate depends only on whether its table record is in the
//! (order-determined) set of accepted table records, and on the probe order for lateness.
//!
//! Restart support: [`KeyedJoin::checkpoint`] summarises, per key, the probe time
//! `P_c` below which every probe has been decided; [`JoinCheckpoint::replay_from`] gives the
//! event time to replay both inputs from, and [`KeyedJoin::resume`] fences off the probes
//! that were decided before the restart (they are reported as [`JoinEvent::Fenced`]).

mod checkpoint;
mod events;
mod keyed;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bounds;

pub use checkpoint::JoinCheckpoint;
pub use events::{
    bucket_of, Buffered, JoinConfigError, JoinEvent, Refusal, TableOutcome, UnmatchedCause,
};
pub use keyed::KeyedJoin;
