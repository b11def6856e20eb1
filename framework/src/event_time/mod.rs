//! Deterministic event-time building blocks: timestamps, watermarks, windows.
//!
//! Everything here is pure and synchronous: no clocks, no I/O. Time is whatever the
//! records say, so tests drive it with a virtual clock and replays give identical results.

pub mod timestamp;
pub mod watermark;

pub use timestamp::{format_millis, parse_millis, TimestampError};
pub use watermark::{KeyedWatermarks, Watermark};
