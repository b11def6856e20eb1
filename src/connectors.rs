//! The connectors linked into the `pipeline` binary.
//!
//! Connectors register themselves with `inventory::submit!`, but rustc only links a crate
//! that is referenced, so each built-in connector crate is named here once. Adding a
//! connector to the binary: a `connector-<name>` line in Cargo.toml's `[dependencies]`
//! and one line below (`tests/connectors_linked.rs` fails when one is missing).

use connector_binance as _;
use connector_binance_ws as _;
use connector_file as _;
use connector_mongo as _;
use connector_moving_stats as _;
use connector_zscore as _;
