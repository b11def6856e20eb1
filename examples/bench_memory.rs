//! Peak memory of each transform stage alone, driven through the `Transform` trait the
//! way the runtime drives it: an emitter full at `EMIT_CHUNK` records, produced (here:
//! counted and dropped) before the transform is asked for more. Input is generated on the
//! fly, so the peak RSS printed is the transform's own (plus ~2 MB of process).
//!
//! ```text
//! cargo run --release --example bench_memory -- moving keys 20000     # 1 price per symbol
//! cargo run --release --example bench_memory -- moving ticks 100 24   # 100 symbols x 24 h at 10 Hz
//! cargo run --release --example bench_memory -- zscore keys 100000
//! cargo run --release --example bench_memory -- zscore ticks 100 24
//! ... -- moving keys 1000 unbounded   # the old behaviour: every output of a call at once
//! ```
//!
//! `keys` runs use the issue's windows (30s and 1h, slide 1s); `ticks` runs the BTCUSDT
//! pipeline's six windows. scripts/bench-memory.sh runs the whole table.

use std::time::Instant;

use connector_moving_stats::{MovingStats, MovingStatsConfig};
use connector_zscore::{ZScoreConfig, ZScoreTransform, PRICES, STATS};
use framework::{
    event_time::{write_millis, KeyGuards},
    runtime::EMIT_CHUNK,
    DurationSpec, Emitter, InputRecord, Transform,
};

/// 2025-05-07T15:30:30.000Z
const T0: i64 = 1_746_631_830_000;
const WINDOWS: [&str; 6] = ["30s", "1m", "5m", "15m", "30m", "1h"];

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Feeds records and produces what comes out as the runtime does.
struct Driver {
    transform: Box<dyn Transform>,
    out: Emitter,
    offset: i64,
    records: u64,
    bytes: u64,
    rejected: u64,
    most_held: usize,
}

impl Driver {
    fn new(transform: Box<dyn Transform>, unbounded: bool) -> Self {
        Driver {
            transform,
            out: if unbounded {
                Emitter::new()
            } else {
                Emitter::with_limit(EMIT_CHUNK)
            },
            offset: 0,
            records: 0,
            bytes: 0,
            rejected: 0,
            most_held: 0,
        }
    }

    fn produce(&mut self) {
        loop {
            self.most_held = self.most_held.max(self.out.len());
            let full = self.out.is_full();
            self.records += self.out.records.len() as u64;
            self.bytes += self
                .out
                .records
                .iter()
                .map(|r| r.payload.len() as u64)
                .sum::<u64>();
            self.rejected += self.out.rejected.len() as u64;
            self.out.clear();
            if !full {
                return;
            }
            self.transform.emit_pending(&mut self.out);
        }
    }

    fn feed(&mut self, port: usize, key: &[u8], payload: &[u8], t_ms: i64) {
        let record = InputRecord {
            port,
            key: Some(key),
            payload,
            timestamp_ms: Some(t_ms),
            partition: 0,
            offset: self.offset,
        };
        self.offset += 1;
        self.transform.process(&record, &mut self.out);
        self.produce();
    }

    fn end(&mut self) {
        self.transform.end_of_input(&mut self.out);
        self.produce();
    }
}

fn price(buf: &mut Vec<u8>, symbol: &str, price: f64, t_ms: i64) {
    buf.clear();
    buf.extend_from_slice(br#"{"symbol":""#);
    buf.extend_from_slice(symbol.as_bytes());
    buf.extend_from_slice(br#"","price":"#);
    buf.extend_from_slice(price.to_string().as_bytes());
    buf.extend_from_slice(br#","timestamp":""#);
    write_millis(buf, t_ms);
    buf.extend_from_slice(br#""}"#);
}

fn stats(buf: &mut Vec<u8>, symbol: &str, e_ms: i64) {
    buf.clear();
    buf.extend_from_slice(br#"{"timestamp":""#);
    write_millis(buf, e_ms);
    buf.extend_from_slice(br#"","symbol":""#);
    buf.extend_from_slice(symbol.as_bytes());
    buf.extend_from_slice(br#"","stats":["#);
    for (i, w) in WINDOWS.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(
            format!(r#"{{"window":"{w}","avg_price":97000.5,"std_price":12.25}}"#).as_bytes(),
        );
    }
    buf.extend_from_slice(b"]}");
}

fn durations(list: &[&str]) -> Vec<DurationSpec> {
    list.iter().map(|w| w.parse().expect("duration")).collect()
}

fn moving(windows: &[&str]) -> Box<dyn Transform> {
    let config = MovingStatsConfig {
        windows: durations(windows),
        slide: DurationSpec::from_secs(1),
        lateness: DurationSpec::from_secs(10),
        // The benchmark measures memory against the number of keys: no cap.
        guards: KeyGuards {
            max_keys: framework::event_time::guard::MAX_KEYS_MAX,
            ..KeyGuards::default()
        },
        ..MovingStatsConfig::default()
    };
    Box::new(MovingStats::new(&config).expect("config"))
}

fn zscore() -> Box<dyn Transform> {
    let config = ZScoreConfig {
        guards: KeyGuards {
            max_keys: framework::event_time::guard::MAX_KEYS_MAX,
            ..KeyGuards::default()
        },
        ..ZScoreConfig::default()
    };
    Box::new(ZScoreTransform::new(&config, "bench").expect("config"))
}

fn symbol(k: usize) -> String {
    format!("S{k:06}")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench_memory (moving|zscore) (keys N | ticks KEYS HOURS) [unbounded]";
    let stage = args.first().ok_or(usage)?.as_str();
    let shape = args.get(1).ok_or(usage)?.as_str();
    let n: usize = args.get(2).ok_or(usage)?.parse()?;
    let hours: i64 = if shape == "ticks" {
        args.get(3).ok_or(usage)?.parse()?
    } else {
        0
    };
    let unbounded = args.iter().any(|a| a == "unbounded");
    let transform = match (stage, shape) {
        ("moving", "keys") => moving(&["30s", "1h"]),
        ("moving", "ticks") => moving(&WINDOWS),
        ("zscore", _) => zscore(),
        _ => return Err(usage.into()),
    };
    let mut d = Driver::new(transform, unbounded);
    let symbols: Vec<String> = (0..n).map(symbol).collect();
    let mut buf = Vec::with_capacity(512);
    let started = Instant::now();
    let mut inputs = 0u64;
    match shape {
        "keys" => {
            // One price per symbol (zscore: and its statistics record), a few ms apart.
            for (k, s) in symbols.iter().enumerate() {
                let t = T0 + 123 + k as i64 % 1_000;
                price(&mut buf, s, 100.0 + (k % 1_000) as f64 / 8.0, t);
                d.feed(PRICES, s.as_bytes(), &buf, t);
                if stage == "zscore" {
                    stats(&mut buf, s, T0);
                    d.feed(STATS, s.as_bytes(), &buf, T0);
                    inputs += 1;
                }
                inputs += 1;
            }
        }
        _ => {
            // 10 prices per second per symbol; zscore also gets each symbol's statistics
            // record for every second, 10 s (the lateness) after it, as moving_stats emits.
            let ticks = hours * 36_000;
            for tick in 0..ticks {
                let base = T0 + tick * 100;
                for (k, s) in symbols.iter().enumerate() {
                    let t = base + (k as i64 * 7 + tick * 13) % 100;
                    price(
                        &mut buf,
                        s,
                        97_000.0 + ((tick + k as i64) % 200) as f64 / 4.0,
                        t,
                    );
                    d.feed(PRICES, s.as_bytes(), &buf, t);
                    inputs += 1;
                }
                if stage == "zscore" && tick % 10 == 0 && tick >= 110 {
                    let e = T0 + (tick / 10 - 11) * 1_000;
                    for s in &symbols {
                        stats(&mut buf, s, e);
                        d.feed(STATS, s.as_bytes(), &buf, e);
                        inputs += 1;
                    }
                }
            }
        }
    }
    d.end();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{stage} {shape} keys={n}{} emitter={}: inputs {inputs}, outputs {} ({:.1} MB), rejected {}, most held {}, {secs:.1} s, peak RSS {:.1} MB",
        if shape == "ticks" { format!(" hours={hours}") } else { String::new() },
        if unbounded { "unbounded".to_string() } else { format!("{EMIT_CHUNK}") },
        d.records,
        d.bytes as f64 / 1e6,
        d.rejected,
        d.most_held,
        peak_rss_mb()
    );
    Ok(())
}
