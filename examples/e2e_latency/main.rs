//! End-to-end latency and load of the BTCUSDT pipeline: from the moment a price's
//! z-score may exist to its document being readable in MongoDB, for 1 or many symbols,
//! with all stages in one process or one stage per process.
//!
//! Run with scripts/bench-e2e.sh (release build, local servers, the Binance mock):
//! `e2e_latency SECONDS [SYMBOLS] [one|split]`.
//!
//! A price at `t` is compared with the statistics of the windows ending at
//! `e = floor(t / 1 s)`, which close once the watermark passes `e`, i.e. at `e + 10 s`
//! (the lateness): the source polls on the 100 ms grid and says at each poll that nothing
//! older will follow (a progress marker), so that is the earliest moment the document can
//! exist. Measured is how long after it the document is readable (polling every 5 ms, for
//! one sampled symbol), split into hops by the benchmark's own reader of the topics
//! (`hops`), and at the end whether every price's z-scores reached MongoDB.
//!
//! Environment: KAFKA_BROKERS, MONGO_URI; BENCH_BROKER_PID / BENCH_MONGO_PID (CPU of the
//! servers); BENCH_FETCH_WAIT_MS (the stages' consumer fetch wait, default the runtime's);
//! BENCH_HOPS=0 (no hop notes, to see what the 1 ms reader costs); BENCH_POLL_MS (MongoDB
//! polling interval, default 5, to see what polling costs the sink); PIPELINE_BIN (default
//! $CARGO_TARGET_DIR/release/pipeline).

mod check;
mod hops;
mod procs;
mod rates;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use binance_mock::{MockBinance, MockConfig};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};

use procs::{now_us, SinkWrites};

pub const WINDOWS: [&str; 6] = ["30s", "1m", "5m", "15m", "30m", "1h"];
const STAGES: [&str; 4] = ["extract", "moving", "zscore", "load"];
/// The first seconds hold the start-up backlog (group joins, first windows).
const WARM_UP: Duration = Duration::from_secs(20);
/// Prices per symbol-count of the write-rate comparison after the run.
const RATE_PRICES: usize = 5_000;

pub type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let symbol_count: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let split = args.get(3).is_some_and(|m| m == "split");
    let brokers = std::env::var("KAFKA_BROKERS")?;
    let mongo_uri = std::env::var("MONGO_URI")?;
    let pipeline_bin = std::env::var("PIPELINE_BIN").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        format!("{target}/release/pipeline")
    });
    let symbols: Vec<String> = (0..symbol_count)
        .map(|i| match i {
            0 => "BTCUSDT".to_string(),
            _ => format!("S{i:03}USDT"),
        })
        .collect();
    let mock = MockBinance::start(MockConfig {
        symbols: symbols.clone(),
        change_probability: 0.3,
        weight_limit: 1_000_000,
        ..MockConfig::default()
    })
    .await?;
    let id = format!("latency{}", std::process::id());
    let text = std::fs::read_to_string("pipelines/btcusdt.yaml")?
        .replace("name: btcusdt", &format!("name: {id}"))
        .replace("btc-price", &format!("{id}-btc-price"))
        .replace(
            &format!("collection: \"{id}-btc-price-zscore-{{window}}\""),
            "collection: \"btc-price-zscore-{window}\"",
        )
        .replace(
            "symbols: [BTCUSDT]",
            &format!("symbols: [{}]", symbols.join(", ")),
        );
    let text = match std::env::var("BENCH_FETCH_WAIT_MS") {
        Ok(ms) => text.replace(
            "  commit_interval: 1s\n",
            &format!("  commit_interval: 1s\n  properties:\n    fetch.wait.max.ms: {ms}\n"),
        ),
        Err(_) => text,
    };
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("btcusdt.yaml");
    std::fs::write(&file, text)?;
    // The process that runs `load` serves metrics: the sink's write count and time.
    let metrics_port = procs::free_port()?;
    let spawn = |stages: &[&str]| -> Result<Child, Error> {
        let mut command = Command::new(&pipeline_bin);
        command.arg("run").arg(&file);
        for s in stages {
            command.args(["--stage", s]);
        }
        if stages.is_empty() || stages.contains(&"load") {
            command.args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")]);
        }
        Ok(command
            .env("KAFKA_BROKERS", &brokers)
            .env("MONGO_URI", &mongo_uri)
            .env("MONGO_DATABASE", &id)
            .env("BINANCE_BASE_URLS", format!("[{}]", mock.base_url()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?)
    };
    let mut children: Vec<(String, Child)> = if split {
        STAGES
            .iter()
            .map(|s| Ok((s.to_string(), spawn(&[s])?)))
            .collect::<Result<_, Error>>()?
    } else {
        vec![("pipeline".to_string(), spawn(&[])?)]
    };
    let notes = (std::env::var("BENCH_HOPS").as_deref() != Ok("0"))
        .then(|| hops::Notes::start(brokers.clone(), id.clone()));
    let mut names: Vec<String> = children.iter().map(|(n, _)| n.clone()).collect();
    let mut pids: Vec<u32> = children.iter().map(|(_, c)| c.id()).collect();
    for (name, var) in [
        ("broker", "BENCH_BROKER_PID"),
        ("mongodb", "BENCH_MONGO_PID"),
    ] {
        if let Some(pid) = std::env::var(var).ok().and_then(|p| p.parse().ok()) {
            names.push(name.to_string());
            pids.push(pid);
        }
    }

    let poll_ms: u64 = std::env::var("BENCH_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let client = mongodb::Client::with_uri_str(&mongo_uri).await?;
    let db = client.database(&id);
    let sampled = db.collection::<Document>("btc-price-zscore-30s");
    let started = Instant::now();
    // (t in ms, first seen in µs) of each sampled document after the warm-up.
    let mut seen: Vec<(i64, i64)> = Vec::new();
    let mut last_seen = 0i64;
    let mut measure_start: Option<(Instant, i64, Vec<u64>, Option<SinkWrites>)> = None;
    let mut peak_rss_kib: Vec<u64> = vec![0; children.len()];
    let mut polls = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let docs: Vec<Document> = sampled
            .find(doc! {"symbol": "BTCUSDT", "timestamp": {"$gt": mongodb::bson::DateTime::from_millis(last_seen)}})
            .await?
            .try_collect()
            .await?;
        let now = now_us();
        for d in docs {
            let t = d.get_datetime("timestamp")?.timestamp_millis();
            last_seen = last_seen.max(t);
            if started.elapsed() > WARM_UP {
                seen.push((t, now));
            }
        }
        if started.elapsed() > WARM_UP && measure_start.is_none() {
            let writes = SinkWrites::scrape(metrics_port).await;
            measure_start = Some((Instant::now(), now_us(), procs::cpu_ticks(&pids), writes));
        }
        polls += 1;
        if polls.is_multiple_of(20) {
            for (i, (_, child)) in children.iter().enumerate() {
                peak_rss_kib[i] = peak_rss_kib[i].max(procs::vm_hwm_kib(child.id()).unwrap_or(0));
            }
        }
        tokio::time::sleep(Duration::from_millis(poll_ms)).await;
    }
    // The measurement window ends here: CPU and write shares are over it alone, not
    // over the drain and checks below.
    let measured_until = Instant::now();
    let cpu_end = procs::cpu_ticks(&pids);
    let writes_end = SinkWrites::scrape(metrics_port).await;
    for (i, (_, child)) in children.iter().enumerate() {
        peak_rss_kib[i] = peak_rss_kib[i].max(procs::vm_hwm_kib(child.id()).unwrap_or(0));
    }
    let load = procs::load_average();
    // Stop the source first, so that every price it wrote can reach MongoDB. In one
    // process SIGTERM stops the sink too, so its backlog is never written.
    let stop_at_ms = chrono::Utc::now().timestamp_millis();
    for (name, child) in children.iter().rev() {
        if name == "extract" || !split {
            procs::terminate(child.id());
        }
    }
    if split {
        let (_, extract) = children.remove(0);
        procs::wait(extract);
    }
    let prices = check::read_prices(&format!("{id}-btc-price"), stop_at_ms)?;
    let completeness = check::check_complete(&db, symbols.len(), &prices, stop_at_ms).await;
    for (_, child) in children {
        procs::terminate(child.id());
        procs::wait(child);
    }
    let arrivals = notes.map(hops::Notes::finish);
    mock.shutdown().await;

    let mut extra: Vec<i64> = seen
        .iter()
        .map(|&(t, at)| at - hops::watermark_us(t))
        .collect();
    if extra.is_empty() {
        return Err("no documents observed".into());
    }
    let mode = if split {
        "one stage per process"
    } else {
        "all stages in one process"
    };
    println!("{symbol_count} symbol(s) at 10 prices/s each, {mode}, {seconds} s (release build)");
    println!("  load (uptime) at the end:          {load}");
    println!(
        "  consumer fetch.wait.max.ms:        {}",
        std::env::var("BENCH_FETCH_WAIT_MS").unwrap_or_else(|_| "runtime default".into())
    );
    println!(
        "  BTCUSDT documents sampled (30s), latency beyond e + lateness (MongoDB polled every {poll_ms} ms):\n    {}",
        hops::summary(&mut extra)
    );
    match (&arrivals, &measure_start) {
        (Some(Ok(arrivals)), Some((_, from_us, _, _))) => {
            println!("{}", hops::report(arrivals, "BTCUSDT", &seen, *from_us));
        }
        (Some(Err(e)), _) => println!("  hops: not noted: {e}"),
        _ => println!("  hops: not noted (BENCH_HOPS=0)"),
    }
    if let Some((at, _, start, writes_start)) = &measure_start {
        let elapsed = measured_until.duration_since(*at).as_secs_f64();
        let ticks = procs::clock_ticks_per_second();
        for (i, name) in names.iter().enumerate() {
            let used = cpu_end.get(i).copied().unwrap_or(0) - start.get(i).copied().unwrap_or(0);
            let rss = peak_rss_kib
                .get(i)
                .map(|k| format!(", peak RSS {} MiB", k / 1024))
                .unwrap_or_default();
            println!(
                "  CPU {name:<12} {:>5.1} % of a core{rss}",
                100.0 * used as f64 / ticks / elapsed
            );
        }
        if let (Some(a), Some(b)) = (writes_start, writes_end) {
            println!(
                "  load stage after the warm-up:      {}",
                b.since(a, elapsed)
            );
        }
    }
    let gaps = check::poll_gap_deviations(&prices);
    let jitter = |p: usize| check::percentile(&gaps, p);
    println!("  poll-gap jitter (|gap - 100 ms| of each symbol's receipts): p50 {} ms, p99 {} ms, max {} ms ({} gaps)", jitter(50), jitter(99), jitter(100), gaps.len());
    match completeness {
        Ok(line) => println!("  completeness:                      {line}"),
        Err(e) => println!("  completeness:                      NOT complete: {e}"),
    }
    let mut raw_rates = Vec::new();
    for (label, how) in [
        ("bulkWrite inserts", rates::Raw::BulkInserts),
        ("bulkWrite upserts", rates::Raw::BulkUpserts),
        ("insertMany per collection", rates::Raw::InsertMany),
    ] {
        let database = format!("{id}-raw");
        let rate = rates::raw(&client, &database, &symbols, RATE_PRICES, how).await?;
        raw_rates.push(format!("{label} {rate:.0}"));
    }
    let mut sink_rates = Vec::new();
    for command in ["per_collection", "bulk_write"] {
        let database = format!("{id}-sink");
        let (first, again) =
            rates::sink_rates(&mongo_uri, &database, &symbols, RATE_PRICES, command).await?;
        sink_rates.push(format!(
            "{command}: first delivery {first:.0}, re-delivery {again:.0}"
        ));
    }
    println!(
        "  MongoDB server, same run ({} docs each, {symbol_count} symbol(s) interleaved, requests of 500 prices x 6 windows), docs/s:\n    raw driver: {}\n    mongo sink: {}",
        RATE_PRICES * WINDOWS.len(),
        raw_rates.join(", "),
        sink_rates.join("; ")
    );
    client.database(&id).drop().await?;
    Ok(())
}
