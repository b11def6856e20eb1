//! In-process throughput of `moving_stats` through the `Transform` trait: JSON bytes in,
//! JSON bytes out, no Kafka.
//!
//! `cargo run --release -p connector-moving-stats --example bench_moving_stats [events] [mode]`
//!
//! Default: 10 M events of one symbol, 10 events per second of event time (100 ms apart
//! with jitter), random-walk prices in cents, the default 6 windows and 1 s slide. Input
//! is generated in chunks outside the timed section; prints events/s and peak RSS.
//!
//! Mode `digest`: prints a hash of every output record, and one of what a second instance
//! writes and refuses for 100,000 hostile records (`digest::hostile`), to show that two
//! builds write the same bytes (the throughput then includes the hashing).

use std::time::{Duration, Instant};

use connector_moving_stats::{MovingStats, MovingStatsConfig};
use framework::{event_time::write_millis, Emitter, InputRecord, Transform};

// Not examples/digest.rs: cargo would take that for an example of its own.
#[path = "bench_moving_stats/digest.rs"]
mod digest;

const CHUNK: usize = 65_536;
/// Hostile records fed in `digest` mode after the events.
const HOSTILE: usize = 100_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 10_000_000,
    };
    // `metrics` as second argument: also do the runtime's metric accounting (batched
    // counters, watermark gauges) with the Prometheus recorder installed, to measure what
    // metrics add to this benchmark. The runtime's tap hooks (`pipeline tap`, the web view)
    // run too: idle with `metrics`, filling their rings with `tapped` (a client is watching).
    let mode = std::env::args().nth(2).unwrap_or_default();
    let with_metrics = mode == "metrics" || mode == "tapped";
    let _prometheus = if with_metrics {
        let topics = ["btc-price".to_string(), "btc-price-moving".to_string()];
        framework::observe::tap::install(topics.clone(), topics[1..].to_vec());
        Some(framework::observe::install_prometheus()?)
    } else {
        None
    };
    if mode == "tapped" {
        framework::observe::tap::fetch("btc-price", 0, 1)?;
    }
    let tap = framework::observe::tap::is_active();
    let mut digest = (mode == "digest").then(digest::Digest::new);
    let metrics = framework::metrics::StageMetrics::new("moving", "moving_stats");
    let mut tally = framework::metrics::Tally::default();
    let config = MovingStatsConfig::default();
    let mut transform = MovingStats::new(&config)?;
    let mut out = Emitter::new();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut t_ms: i64 = 1_746_631_831_891;
    let mut cents: i64 = 9_700_902;
    let mut payloads: Vec<u8> = Vec::with_capacity(CHUNK * 96);
    let mut bounds: Vec<(usize, usize, i64)> = Vec::with_capacity(CHUNK);
    let mut floats = ryu::Buffer::new();

    let (mut busy, mut produced, mut out_bytes, mut rejected) = (Duration::ZERO, 0u64, 0u64, 0u64);
    let mut done = 0usize;
    while done < events {
        let n = CHUNK.min(events - done);
        payloads.clear();
        bounds.clear();
        for _ in 0..n {
            let r = rng.next();
            t_ms += 90 + (r % 21) as i64; // ~10 events/s, never out of order by much
            cents = (cents + (r >> 8) as i64 % 7 - 3).max(1);
            let start = payloads.len();
            payloads.extend_from_slice(br#"{"symbol":"BTCUSDT","price":"#);
            payloads.extend_from_slice(floats.format_finite(cents as f64 / 100.0).as_bytes());
            payloads.extend_from_slice(br#","timestamp":""#);
            write_millis(&mut payloads, t_ms);
            payloads.extend_from_slice(br#""}"#);
            bounds.push((start, payloads.len(), t_ms));
        }
        let started = Instant::now();
        for (i, &(start, end, ts)) in bounds.iter().enumerate() {
            let record = InputRecord {
                port: 0,
                key: Some(b"BTCUSDT"),
                payload: &payloads[start..end],
                timestamp_ms: Some(ts),
                partition: 0,
                offset: (done + i) as i64,
            };
            transform.process(&record, &mut out);
            if with_metrics {
                tally.record_in(end - start, &metrics);
                framework::observe::tap::read("btc-price", record.key, record.payload, Some(ts));
            }
            if out.records.len() >= 256 {
                if with_metrics {
                    for r in &out.records {
                        tally.record_out(r.payload.len());
                        let key = r.key.as_deref();
                        let topic = "btc-price-moving";
                        framework::observe::tap::written(
                            topic,
                            key,
                            &r.payload,
                            Some(r.timestamp_ms),
                        );
                    }
                }
                if let Some(digest) = &mut digest {
                    digest.emitted(&out);
                }
                produced += out.records.len() as u64;
                out_bytes += out
                    .records
                    .iter()
                    .map(|r| r.payload.len() as u64)
                    .sum::<u64>();
                rejected += out.rejected.len() as u64;
                out.clear();
            }
        }
        if with_metrics {
            // What the runtime does at each commit tick.
            tally.flush(&metrics);
            let now_ms = t_ms;
            for (key, watermark) in transform.watermarks() {
                metrics.watermark(&key, watermark, now_ms);
            }
        }
        busy += started.elapsed();
        done += n;
    }
    let started = Instant::now();
    transform.end_of_input(&mut out);
    busy += started.elapsed();
    if let Some(digest) = &mut digest {
        digest.emitted(&out);
        println!("digest:        {:016x} (the events' output)", digest.0);
        // A fixed wall clock, an hour past the events: `max_future_skew` refusals (whose
        // detail names the clock) are then the same in every run.
        let now_ms = t_ms + 3_600_000;
        let mut transform = MovingStats::with_clock(&config, std::sync::Arc::new(move || now_ms))?;
        let mut digest = digest::Digest::new();
        let mut hostile = Emitter::new();
        let (mut written, mut refused) = (0, 0);
        for i in 0..=HOSTILE {
            if i == HOSTILE {
                transform.end_of_input(&mut hostile);
            } else {
                let payload = digest::hostile(&mut rng, t_ms);
                let record = InputRecord {
                    port: 0,
                    key: None,
                    payload: &payload,
                    timestamp_ms: None,
                    partition: 0,
                    offset: (events + i) as i64,
                };
                transform.process(&record, &mut hostile);
            }
            digest.emitted(&hostile);
            (written, refused) = (
                written + hostile.records.len(),
                refused + hostile.rejected.len(),
            );
            hostile.clear();
        }
        println!(
            "digest:        {:016x} ({HOSTILE} hostile records: {written} out, {refused} rejected)",
            digest.0
        );
    }
    produced += out.records.len() as u64;
    out_bytes += out
        .records
        .iter()
        .map(|r| r.payload.len() as u64)
        .sum::<u64>();
    rejected += out.rejected.len() as u64;

    let secs = busy.as_secs_f64();
    println!("events:        {events}");
    println!(
        "metrics/tap:   {with_metrics} / {}",
        if tap { "tapped" } else { "idle" }
    );
    println!(
        "records out:   {produced} ({:.1} MB of JSON)",
        out_bytes as f64 / 1e6
    );
    println!("rejected:      {rejected}");
    println!("time:          {secs:.3} s (transform only; input generation excluded)");
    println!(
        "throughput:    {:.2} M events/s",
        events as f64 / secs / 1e6
    );
    match peak_rss_kib() {
        Some(kib) => println!("peak RSS:      {:.1} MB (VmHWM)", kib as f64 / 1024.0),
        None => println!("peak RSS:      unavailable (no /proc/self/status)"),
    }
    Ok(())
}
