//! Record builders and a small driver for the z-score transform.
#![allow(dead_code)]

use connector_zscore::{ZScoreConfig, ZScoreTransform, PRICES, STATS};
use framework::{
    event_time::{format_millis, parse_millis},
    record::Rejected,
    testing::{self, TransformDriver},
    DurationSpec, Emitter, InputRecord, Transform,
};

pub const T0: i64 = 1_746_631_860_000; // 2025-05-07T15:31:00.000Z

pub fn config(slide_ms: i64, lateness_ms: i64) -> ZScoreConfig {
    ZScoreConfig {
        slide: DurationSpec::from_millis(slide_ms),
        lateness: DurationSpec::from_millis(lateness_ms),
        ..ZScoreConfig::default()
    }
}

pub fn transform() -> ZScoreTransform {
    ZScoreTransform::new(&ZScoreConfig::default(), "test").unwrap()
}

pub fn price_json(symbol: &str, t: i64, price: f64) -> Vec<u8> {
    testing::price_json(symbol, price, t)
}

/// A `btc-price-moving` record as the moving-statistics stage writes it.
pub fn stats_json(symbol: &str, e: i64, windows: &[(&str, f64, f64)]) -> Vec<u8> {
    let stats: Vec<_> = windows
        .iter()
        .map(|(name, avg, std)| {
            let length = name.parse::<DurationSpec>().unwrap().as_millis();
            serde_json::json!({
                "window": name, "window_start": format_millis(e - length),
                "count": 10, "avg_price": avg, "std_price": std
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "timestamp": format_millis(e), "symbol": symbol, "stats": stats
    }))
    .unwrap()
}

/// Kafka timestamp of a record, as the runtime would see it: the record's event time.
pub fn kafka_ts(payload: &[u8]) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    parse_millis(v.get("timestamp")?.as_str()?).ok()
}

pub fn input<'a>(port: usize, symbol: &'a str, payload: &'a [u8], offset: i64) -> InputRecord<'a> {
    testing::input(port, symbol.as_bytes(), payload, kafka_ts(payload), offset)
}

/// Feeds records and collects everything emitted: the framework's transform driver,
/// with the z-score inputs as methods.
pub struct Driver(pub TransformDriver<ZScoreTransform>);

impl std::ops::Deref for Driver {
    type Target = TransformDriver<ZScoreTransform>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Driver {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Driver {
    pub fn new(transform: ZScoreTransform) -> Self {
        Driver(TransformDriver::new(transform))
    }

    pub fn feed(&mut self, port: usize, symbol: &str, payload: &[u8]) {
        self.0
            .feed(port, symbol.as_bytes(), payload, kafka_ts(payload));
    }

    pub fn price(&mut self, symbol: &str, t: i64, price: f64) {
        self.feed(PRICES, symbol, &price_json(symbol, t, price));
    }

    pub fn stats(&mut self, symbol: &str, e: i64, windows: &[(&str, f64, f64)]) {
        self.feed(STATS, symbol, &stats_json(symbol, e, windows));
    }
}

/// Output taken the way the runtime takes it from an emitter with a limit: after each
/// call, and again through `emit_pending` while the call left it full.
#[derive(Default)]
pub struct Chunked {
    pub records: Vec<Vec<u8>>,
    pub rejected: Vec<Rejected>,
    /// The most records and rejections held at once.
    pub most: usize,
}

impl Chunked {
    pub fn drain(&mut self, t: &mut impl Transform, out: &mut Emitter) {
        loop {
            self.most = self.most.max(out.len());
            let full = out.is_full();
            self.records
                .extend(out.records.drain(..).map(|r| r.payload));
            self.rejected.append(&mut out.rejected);
            if !full {
                break;
            }
            t.emit_pending(out);
        }
    }
}
