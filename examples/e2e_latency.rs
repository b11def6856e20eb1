//! End-to-end latency of the BTCUSDT pipeline: from a price's receipt to its z-score
//! document being readable in MongoDB, beyond the wait the semantics impose.
//!
//! Run with scripts/bench-e2e.sh (release build, local servers, the Binance mock).
//!
//! A price at `t` is compared with the statistics of the windows ending at
//! `e = floor(t / 1 s)`, which close once the watermark passes `e`, i.e. when a price at
//! `e + 10 s` (the lateness) has been received. So a document cannot exist before
//! `e + 10 s`; what is measured is how long after that it becomes readable (it includes up
//! to one 100 ms poll until the price that moves the watermark is fetched).

use std::{
    collections::HashSet,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use connector_binance::mock::{MockBinance, MockConfig};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let brokers = std::env::var("KAFKA_BROKERS")?;
    let mongo_uri = std::env::var("MONGO_URI")?;
    let mock = MockBinance::start(MockConfig {
        symbols: vec!["BTCUSDT".into()],
        change_probability: 0.3,
        ..MockConfig::default()
    })
    .await?;
    let id = format!("latency{}", std::process::id());
    let text = std::fs::read_to_string("pipelines/btcusdt.yaml")?
        .replace("name: btcusdt", &format!("name: {id}"))
        .replace("btc-price", &format!("{id}-btc-price"))
        .replace(
            &format!("collection_prefix: {id}-btc-price-zscore-"),
            "collection_prefix: btc-price-zscore-",
        );
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("btcusdt.yaml");
    std::fs::write(&file, text)?;
    let database = id.clone();
    let mut child = Command::new("target/release/pipeline")
        .args(["run", file.to_str().unwrap_or_default()])
        .env("KAFKA_BROKERS", &brokers)
        .env("MONGO_URI", &mongo_uri)
        .env("MONGO_DATABASE", &database)
        .env("BINANCE_BASE_URLS", format!("[{}]", mock.base_url()))
        .stderr(Stdio::null())
        .spawn()?;

    let client = mongodb::Client::with_uri_str(&mongo_uri).await?;
    let collection = client
        .database(&database)
        .collection::<Document>("btc-price-zscore-30s");
    let mut seen: HashSet<i64> = HashSet::new();
    let mut extra_ms: Vec<i64> = Vec::new();
    let started = Instant::now();
    let mut peak_rss_kib = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let docs: Vec<Document> = collection.find(doc! {}).await?.try_collect().await?;
        let now = chrono::Utc::now().timestamp_millis();
        for d in docs {
            let t = d.get_datetime("timestamp")?.timestamp_millis();
            if seen.insert(t) && started.elapsed() > Duration::from_secs(20) {
                // Documents seen in the first 20 s include the start-up backlog.
                let earliest = t.div_euclid(1000) * 1000 + 10_000;
                extra_ms.push(now - earliest);
            }
        }
        peak_rss_kib = peak_rss_kib.max(vm_hwm_kib(child.id()).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    mock.shutdown().await;
    extra_ms.sort_unstable();
    if extra_ms.is_empty() {
        return Err("no documents observed".into());
    }
    let pct = |p: usize| extra_ms[(extra_ms.len() * p / 100).min(extra_ms.len() - 1)];
    println!("BTCUSDT pipeline, all stages in one process, mock Binance at 10 prices/s, {seconds} s (release build)");
    println!("  documents observed (30s window):   {}", extra_ms.len());
    println!(
        "  latency beyond e + lateness:       p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        pct(50),
        pct(90),
        pct(99),
        extra_ms[extra_ms.len() - 1]
    );
    println!(
        "  (the 50 ms polling of MongoDB adds up to 50 ms; the next price arrives within 100 ms)"
    );
    println!(
        "  peak RSS of the pipeline process:  {} MiB",
        peak_rss_kib / 1024
    );
    Ok(())
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
