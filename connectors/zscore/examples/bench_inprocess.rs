//! In-process throughput of the z-score join: JSON in, JSON out, through `Transform`.
//!
//! Prices at 10/s of event time per symbol; statistics records (6 windows) arrive as the
//! moving-statistics stage emits them, once its watermark (newest price - lateness) passes
//! the window end, so nearly every price waits ~10 s in the join before it is matched.
//!
//! ```sh
//! cargo run --release -p connector-zscore --example bench_inprocess -- [prices] [symbols]
//! ```

use std::time::Instant;

use connector_zscore::{ZScoreConfig, ZScoreTransform, PRICES, STATS};
use framework::{event_time::format_millis, Emitter, InputRecord, Transform};

const T0: i64 = 1_746_631_800_000;
const LATENESS_MS: i64 = 10_000;
const WINDOWS: [(&str, i64); 6] = [
    ("30s", 30_000),
    ("1m", 60_000),
    ("5m", 300_000),
    ("15m", 900_000),
    ("30m", 1_800_000),
    ("1h", 3_600_000),
];

struct Message {
    port: usize,
    key: Vec<u8>,
    payload: Vec<u8>,
    timestamp_ms: i64,
}

fn stats_payload(symbol: &str, e: i64, base: f64) -> Vec<u8> {
    let stats: Vec<String> = WINDOWS
        .iter()
        .enumerate()
        .map(|(i, (name, length))| {
            format!(
                r#"{{"window":"{name}","window_start":"{}","count":{},"avg_price":{},"std_price":{}}}"#,
                format_millis(e - length),
                length / 100,
                base + i as f64 * 0.37,
                0.5 + i as f64 * 1.25
            )
        })
        .collect();
    format!(
        r#"{{"timestamp":"{}","symbol":"{symbol}","stats":[{}]}}"#,
        format_millis(e),
        stats.join(",")
    )
    .into_bytes()
}

/// The partition's messages in a realistic order: prices of all symbols in time order,
/// each symbol's statistics interleaved as soon as moving_stats would have emitted them.
/// Generated in chunks so that the input does not dominate the peak RSS.
struct Generator {
    names: Vec<String>,
    next_e: Vec<i64>,
    step: i64,
}

impl Generator {
    fn new(symbols: usize) -> Self {
        Generator {
            names: (0..symbols).map(|i| format!("SYM{i}USDT")).collect(),
            next_e: vec![T0; symbols],
            step: 0,
        }
    }

    /// Appends the messages of `steps` price ticks (one price per symbol each).
    fn fill(&mut self, steps: i64, messages: &mut Vec<Message>) {
        for i in self.step..self.step + steps {
            for (s, name) in self.names.iter().enumerate() {
                let t = T0 + i * 100 + (i * 7_919 + s as i64 * 13) % 97;
                let price = 97_000.0 + ((i * 31 + s as i64) % 2_000) as f64 / 100.0;
                messages.push(Message {
                    port: PRICES,
                    key: name.as_bytes().to_vec(),
                    payload: format!(
                        r#"{{"symbol":"{name}","price":{price},"timestamp":"{}"}}"#,
                        format_millis(t)
                    )
                    .into_bytes(),
                    timestamp_ms: t,
                });
                while self.next_e[s] <= t - LATENESS_MS {
                    let e = self.next_e[s];
                    messages.push(Message {
                        port: STATS,
                        key: name.as_bytes().to_vec(),
                        payload: stats_payload(name, e, 97_005.0),
                        timestamp_ms: e,
                    });
                    self.next_e[s] += 1_000;
                }
            }
        }
        self.step += steps;
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let prices: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5_000_000);
    let symbols: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1);
    let symbols = symbols.max(1);
    let mut generator = Generator::new(symbols);
    let mut messages = Vec::new();
    let (mut price_count, mut stats_count) = (0usize, 0usize);

    let mut transform = ZScoreTransform::new(&ZScoreConfig::default(), "bench")?;
    let mut out = Emitter::new();
    let (mut joined, mut rejected, mut bytes_out) = (0usize, 0usize, 0usize);
    let mut elapsed = 0.0;
    let mut offset = 0i64;
    let steps = (prices / symbols) as i64;
    const CHUNK: i64 = 100_000;
    for chunk_start in (0..steps).step_by(CHUNK as usize) {
        messages.clear();
        generator.fill(CHUNK.min(steps - chunk_start), &mut messages);
        let start = Instant::now();
        for m in &messages {
            let record = InputRecord {
                port: m.port,
                key: Some(&m.key),
                payload: &m.payload,
                timestamp_ms: Some(m.timestamp_ms),
                partition: 0,
                offset,
            };
            offset += 1;
            transform.process(&record, &mut out);
            // The runtime drains the emitter after every call: so does the benchmark.
            joined += out.records.len();
            rejected += out.rejected.len();
            bytes_out += out.records.iter().map(|r| r.payload.len()).sum::<usize>();
            out.clear();
        }
        elapsed += start.elapsed().as_secs_f64();
        let p = messages.iter().filter(|m| m.port == PRICES).count();
        price_count += p;
        stats_count += messages.len() - p;
    }
    let start = Instant::now();
    transform.end_of_input(&mut out);
    elapsed += start.elapsed().as_secs_f64();
    joined += out.records.len();
    rejected += out.rejected.len();

    println!("prices: {price_count}, statistics records: {stats_count}, symbols: {symbols}");
    println!("joined: {joined}, rejected: {rejected} (unmatched at end of input)");
    println!(
        "time: {elapsed:.3} s, {:.0} joined prices/s, {:.0} input records/s, {:.1} MB/s out",
        joined as f64 / elapsed,
        (price_count + stats_count) as f64 / elapsed,
        bytes_out as f64 / elapsed / 1e6
    );
    match peak_rss_kib() {
        Some(peak) => println!(
            "peak RSS (VmHWM): {:.1} MiB (includes one {CHUNK}-tick input chunk)",
            peak as f64 / 1024.0
        ),
        None => println!("peak RSS: unavailable"),
    }
    Ok(())
}
