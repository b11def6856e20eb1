//! Observability of a running pipeline: the Prometheus recorder and the `/metrics`,
//! `/health` and `/ready` endpoints ([`server`]), a parser of the Prometheus text format
//! for `pipeline top` and tests ([`prom`]), consumer lag from librdkafka statistics
//! ([`lag`]), progress reporting of bounded replays ([`progress`]), the recent records of
//! each topic ([`tap`]) and the web view of a running pipeline ([`live`]).

pub mod lag;
pub mod live;
pub mod progress;
pub mod prom;
pub mod server;
pub mod status;
pub mod tap;

pub use live::LiveView;
pub use progress::Progress;
pub use server::{install_prometheus, serve, serve_live, ObserveError, ObserveServer};
