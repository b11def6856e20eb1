//! Cost of the runtime's per-record metrics, without and with the Prometheus recorder
//! that `pipeline run --metrics-addr` installs. Per record a transform stage does what
//! `handle()` and `drain()` do: records_in, bytes_in, records_out, bytes_out increments.
//!
//!     cargo run --release -p pipeline-framework --example bench_metrics

use std::{hint::black_box, time::Instant};

use framework::{metrics::StageMetrics, observe};

const RECORDS: u64 = 20_000_000;

fn per_record_ns(metrics: &StageMetrics) -> f64 {
    let start = Instant::now();
    for i in 0..RECORDS {
        let len = black_box(77 + (i & 7));
        metrics.records_in.increment(1);
        metrics.bytes_in.increment(len);
        metrics.records_out.increment(1);
        metrics.bytes_out.increment(len);
    }
    start.elapsed().as_nanos() as f64 / RECORDS as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let without = per_record_ns(&StageMetrics::new("bench", "bench"));
    let handle = observe::install_prometheus()?;
    let metrics = StageMetrics::new("bench", "bench");
    let with = per_record_ns(&metrics);
    let rendered = handle.render();
    assert!(rendered.contains(&format!(
        "pipeline_records_in_total{{stage=\"bench\",connector=\"bench\"}} {RECORDS}"
    )));
    println!("per record, 4 counter increments: {without:.2} ns without a recorder, {with:.2} ns with Prometheus");
    println!(
        "= {:.1} M records/s vs {:.1} M records/s of metrics alone",
        1e3 / without,
        1e3 / with
    );
    Ok(())
}
