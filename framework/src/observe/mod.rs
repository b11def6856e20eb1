//! Observability of a running pipeline: the Prometheus recorder and the `/metrics`,
//! `/health` and `/ready` endpoints ([`server`]), a parser of the Prometheus text format
//! for `pipeline top` and tests ([`prom`]), consumer lag from librdkafka statistics
//! ([`lag`]), and progress reporting of bounded replays ([`progress`]).

pub mod lag;
pub mod progress;
pub mod prom;
pub mod server;

pub use progress::Progress;
pub use server::{install_prometheus, serve, ObserveError, ObserveServer};
