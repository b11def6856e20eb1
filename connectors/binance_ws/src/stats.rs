//! Counters of a running `binance_ws` source, shared through an `Arc` for tests and the
//! stop summary; the gap, duplicate, reconnect and rotation counts are also exported as
//! Prometheus counters (`binance_ws_*_total{stage, connector}`).

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use connector_binance::stats::{bump, ReasonCounts};
use serde::Serialize;

use crate::event::reason;

#[derive(Debug)]
struct Exported {
    gaps: metrics::Counter,
    missed_ids: metrics::Counter,
    duplicates: metrics::Counter,
    reconnects: metrics::Counter,
    rotations: metrics::Counter,
}

/// Live counters.
#[derive(Debug)]
pub struct WsStats {
    connections: AtomicU64,
    connect_failures: AtomicU64,
    disconnects: AtomicU64,
    rotations: AtomicU64,
    records: AtomicU64,
    duplicates: AtomicU64,
    gaps: AtomicU64,
    missed_ids: AtomicU64,
    pings: AtomicU64,
    rejected: ReasonCounts,
    exported: Exported,
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WsStatsSnapshot {
    /// Connections opened (handshake done).
    pub connections: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Open connections lost (closed by the server, network error, idle, too large a message).
    pub disconnects: u64,
    /// Planned replacements of the connection (before the 24 h cut-off, or on a
    /// `serverShutdown` notice) that completed.
    pub rotations: u64,
    /// Records emitted.
    pub records: u64,
    /// Messages dropped because their id was already emitted.
    pub duplicates: u64,
    /// Jumps in consecutive ids (trade, aggTrade): each is one gap.
    pub gaps: u64,
    /// Ids skipped by those jumps, in total.
    pub missed_ids: u64,
    /// Pings received (each answered with a pong carrying the same payload).
    pub pings: u64,
    /// Refused frames by reason.
    pub rejected: BTreeMap<&'static str, u64>,
}

impl WsStatsSnapshot {
    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected.get(reason).copied().unwrap_or(0)
    }
}

impl WsStats {
    pub fn new(stage: &framework::connector::StageContext) -> WsStats {
        let c = |name: &'static str| stage.counter(name, &[]);
        WsStats {
            connections: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            rotations: AtomicU64::new(0),
            records: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            missed_ids: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            rejected: ReasonCounts::new(&reason::ALL),
            exported: Exported {
                gaps: c("binance_ws_trade_id_gaps_total"),
                missed_ids: c("binance_ws_missed_trade_ids_total"),
                duplicates: c("binance_ws_duplicates_dropped_total"),
                reconnects: c("binance_ws_reconnects_total"),
                rotations: c("binance_ws_rotations_total"),
            },
        }
    }

    pub(crate) fn connected(&self) {
        bump(&self.connections, 1);
    }
    pub(crate) fn connect_failed(&self) {
        bump(&self.connect_failures, 1);
        self.exported.reconnects.increment(1);
    }
    pub(crate) fn disconnected(&self) {
        bump(&self.disconnects, 1);
        self.exported.reconnects.increment(1);
    }
    pub(crate) fn rotated(&self) {
        bump(&self.rotations, 1);
        self.exported.rotations.increment(1);
    }
    pub(crate) fn record(&self) {
        bump(&self.records, 1);
    }
    pub(crate) fn duplicate(&self) {
        bump(&self.duplicates, 1);
        self.exported.duplicates.increment(1);
    }
    pub(crate) fn gap(&self, missed: u64) {
        bump(&self.gaps, 1);
        bump(&self.missed_ids, missed);
        self.exported.gaps.increment(1);
        self.exported.missed_ids.increment(missed);
    }
    pub(crate) fn ping(&self) {
        bump(&self.pings, 1);
    }
    pub(crate) fn rejected(&self, reason_label: &str) {
        self.rejected.add(reason_label);
    }

    pub fn snapshot(&self) -> WsStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WsStatsSnapshot {
            connections: get(&self.connections),
            connect_failures: get(&self.connect_failures),
            disconnects: get(&self.disconnects),
            rotations: get(&self.rotations),
            records: get(&self.records),
            duplicates: get(&self.duplicates),
            gaps: get(&self.gaps),
            missed_ids: get(&self.missed_ids),
            pings: get(&self.pings),
            rejected: self.rejected.snapshot(),
        }
    }
}
