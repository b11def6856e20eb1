//! Helpers shared by the integration tests: drive the transform through its trait with
//! hand-made records on a virtual clock.
#![allow(dead_code)]

use connector_moving_stats::{MovingStats, MovingStatsConfig};
use framework::{testing, DurationSpec, Emitter, InputRecord, OutputRecord, Transform};

/// 2025-05-07T15:30:30.000Z
pub const T0: i64 = 1_746_631_830_000;

pub use framework::testing::price_json as price;

pub fn config(windows: &[&str], slide: &str, lateness: &str) -> MovingStatsConfig {
    MovingStatsConfig {
        windows: windows
            .iter()
            .map(|w| w.parse::<DurationSpec>().unwrap())
            .collect(),
        slide: slide.parse().unwrap(),
        lateness: lateness.parse().unwrap(),
        ..MovingStatsConfig::default()
    }
}

/// One record of the input log.
#[derive(Debug, Clone)]
pub struct Msg {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub timestamp_ms: i64,
}

impl Msg {
    pub fn price(symbol: &str, p: f64, t_ms: i64) -> Self {
        Msg {
            key: symbol.as_bytes().to_vec(),
            payload: price(symbol, p, t_ms),
            timestamp_ms: t_ms,
        }
    }

    /// This message as the input record at `offset`.
    pub fn record(&self, offset: i64) -> InputRecord<'_> {
        testing::input(0, &self.key, &self.payload, Some(self.timestamp_ms), offset)
    }
}

pub fn feed(t: &mut MovingStats, msgs: &[Msg], first_offset: i64, out: &mut Emitter) {
    for (i, m) in msgs.iter().enumerate() {
        let offset = first_offset + i as i64;
        t.process(&m.record(offset), out);
    }
}

/// Runs a whole log through a fresh transform; returns everything emitted.
pub fn run(config: &MovingStatsConfig, msgs: &[Msg], end: bool) -> Emitter {
    let mut t = MovingStats::new(config).unwrap();
    let mut out = Emitter::new();
    feed(&mut t, msgs, 0, &mut out);
    if end {
        t.end_of_input(&mut out);
    }
    out
}

pub fn payloads(records: &[OutputRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.payload.clone()).unwrap())
        .collect()
}

pub fn parsed(records: &[OutputRecord]) -> Vec<serde_json::Value> {
    records
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect()
}
