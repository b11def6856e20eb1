//! Deterministic event-time building blocks: timestamps, watermarks, windows.
//!
//! Everything here is pure and synchronous: no clocks, no I/O. Time is whatever the
//! records say, so tests drive it with a virtual clock and replays give identical results.

pub mod aggregate;
pub mod exact;
pub mod guard;
mod guard_config;
pub mod operator;
pub mod sliding;
pub mod timestamp;
pub mod watermark;
pub mod window;

pub use aggregate::{Aggregate, MomentStats};
pub use exact::{Decimal, DecimalMoments};
pub use guard::{system_clock, Clock, FutureGuard, KeyLimits};
pub use guard_config::KeyGuards;
pub use operator::{Admission, ClosedWindows, KeyedWindowOperator};
pub use sliding::AlignedSlidingWindow;
pub use timestamp::{format_millis, parse_millis, write_millis, MillisWriter, TimestampError};
pub use watermark::{KeyedWatermarks, Watermark};
pub use window::{floor_div, SlidingWindows, WindowSpecError};
