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
//! one sampled symbol), and at the end whether every price's z-scores reached MongoDB.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use binance_mock::{MockBinance, MockConfig};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};

const WINDOWS: [&str; 6] = ["30s", "1m", "5m", "15m", "30m", "1h"];
const STAGES: [&str; 4] = ["extract", "moving", "zscore", "load"];
/// The first seconds hold the start-up backlog (group joins, first windows).
const WARM_UP: Duration = Duration::from_secs(20);

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let symbol_count: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let split = args.get(3).is_some_and(|m| m == "split");
    let brokers = std::env::var("KAFKA_BROKERS")?;
    let mongo_uri = std::env::var("MONGO_URI")?;
    let symbols: Vec<String> = (0..symbol_count)
        .map(|i| {
            if i == 0 {
                "BTCUSDT".to_string()
            } else {
                format!("S{i:03}USDT")
            }
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
    // BENCH_FETCH_WAIT_MS compares consumer fetch waits (the runtime's default is 10 ms).
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
    let spawn = |stages: &[&str]| -> Result<Child, Error> {
        let mut command = Command::new("target/release/pipeline");
        command.args(["run", file.to_str().unwrap_or_default()]);
        for s in stages {
            command.args(["--stage", s]);
        }
        Ok(command
            .env("KAFKA_BROKERS", &brokers)
            .env("MONGO_URI", &mongo_uri)
            .env("MONGO_DATABASE", &id)
            .env("BINANCE_BASE_URLS", format!("[{}]", mock.base_url()))
            .stderr(Stdio::null())
            .spawn()?)
    };
    let mut children: Vec<(String, Child)> = if split {
        STAGES
            .iter()
            .map(|s| Ok((s.to_string(), spawn(&[s])?)))
            .collect::<Result<_, Error>>()?
    } else {
        vec![("all stages".to_string(), spawn(&[])?)]
    };
    let mut others: Vec<(String, u32)> = Vec::new();
    for (name, var) in [
        ("broker", "BENCH_BROKER_PID"),
        ("mongodb", "BENCH_MONGO_PID"),
    ] {
        if let Some(pid) = std::env::var(var).ok().and_then(|p| p.parse().ok()) {
            others.push((name.to_string(), pid));
        }
    }

    let client = mongodb::Client::with_uri_str(&mongo_uri).await?;
    let db = client.database(&id);
    let sampled = db.collection::<Document>("btc-price-zscore-30s");
    let started = Instant::now();
    let mut extra_ms: Vec<i64> = Vec::new();
    let mut last_seen = 0i64;
    let mut cpu_start: Option<(Instant, Vec<u64>)> = None;
    let mut peak_rss_kib: Vec<u64> = vec![0; children.len()];
    let mut polls = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let docs: Vec<Document> = sampled
            .find(doc! {"symbol": "BTCUSDT", "timestamp": {"$gt": mongodb::bson::DateTime::from_millis(last_seen)}})
            .await?
            .try_collect()
            .await?;
        let now = chrono::Utc::now().timestamp_millis();
        for d in docs {
            let t = d.get_datetime("timestamp")?.timestamp_millis();
            last_seen = last_seen.max(t);
            if started.elapsed() > WARM_UP {
                let earliest = t.div_euclid(1000) * 1000 + 10_000;
                extra_ms.push(now - earliest);
            }
        }
        if started.elapsed() > WARM_UP && cpu_start.is_none() {
            cpu_start = Some((Instant::now(), cpu_ticks(&children, &others)));
        }
        polls += 1;
        if polls.is_multiple_of(20) {
            for (i, (_, child)) in children.iter().enumerate() {
                peak_rss_kib[i] = peak_rss_kib[i].max(vm_hwm_kib(child.id()).unwrap_or(0));
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu_end = cpu_ticks(&children, &others);
    for (i, (_, child)) in children.iter().enumerate() {
        peak_rss_kib[i] = peak_rss_kib[i].max(vm_hwm_kib(child.id()).unwrap_or(0));
    }
    // Stop the source first, so that every price it wrote can reach MongoDB.
    let stop_at_ms = chrono::Utc::now().timestamp_millis();
    for (name, child) in children.iter().rev() {
        if name == "extract" || !split {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
    }
    if split {
        let (_, extract) = children.remove(0);
        wait(extract);
    }
    let prices = read_prices(stop_at_ms)?;
    let completeness = check_complete(&db, &symbols, &prices, stop_at_ms).await;
    for (_, child) in children {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        wait(child);
    }
    mock.shutdown().await;

    extra_ms.sort_unstable();
    if extra_ms.is_empty() {
        return Err("no documents observed".into());
    }
    let pct = |p: usize| percentile(&extra_ms, p);
    let mode = if split {
        "one stage per process"
    } else {
        "all stages in one process"
    };
    println!("{symbol_count} symbol(s) at 10 prices/s each, {mode}, {seconds} s (release build)");
    println!("  load (uptime):                     {}", load_average());
    println!(
        "  consumer fetch.wait.max.ms:        {}",
        std::env::var("BENCH_FETCH_WAIT_MS").unwrap_or_else(|_| "10 (default)".into())
    );
    println!(
        "  BTCUSDT documents sampled (30s):   {} (MongoDB polled every 5 ms)",
        extra_ms.len()
    );
    println!(
        "  latency beyond e + lateness:       p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        pct(50),
        pct(90),
        pct(99),
        extra_ms[extra_ms.len() - 1]
    );
    if let Some((at, start)) = cpu_start {
        let elapsed = at.elapsed().as_secs_f64();
        let ticks = clock_ticks_per_second();
        let processes = process_names(split);
        let names = processes
            .iter()
            .map(|s| s.to_string())
            .chain(others.iter().map(|(n, _)| n.clone()));
        for (i, name) in names.enumerate() {
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
    }
    let gaps = poll_gap_deviations(&prices);
    let jitter = |p: usize| percentile(&gaps, p);
    println!("  poll-gap jitter (|gap - 100 ms| of each symbol's receipts): p50 {} ms, p99 {} ms, max {} ms ({} gaps)", jitter(50), jitter(99), jitter(100), gaps.len());
    match completeness {
        Ok(line) => println!("  completeness:                      {line}"),
        Err(e) => println!("  completeness:                      NOT complete: {e}"),
    }
    let raw = raw_bulk_upserts(&client, &format!("{id}-raw"), 18_000).await?;
    let sink = sink_rate(&mongo_uri, &format!("{id}-sink"), 10_000).await?;
    println!("  MongoDB server, same run: raw driver unordered bulk upserts {raw:.0} docs/s; mongo sink {sink:.0} docs/s (batches of 500 prices x 6 windows)");
    Ok(())
}

fn process_names(split: bool) -> Vec<&'static str> {
    if split {
        STAGES.to_vec()
    } else {
        vec!["pipeline"]
    }
}

fn wait(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Every price the source wrote up to `stop - 15 s` (later ones may still be in their
/// windows' lateness) has its document in every window collection: counts per window of
/// documents vs prices, both from MongoDB's point of view of the 30s collection's symbols.
async fn check_complete(
    db: &mongodb::Database,
    symbols: &[String],
    prices: &BTreeMap<Vec<u8>, Vec<i64>>,
    stop_at_ms: i64,
) -> Result<String, Error> {
    // Prices are counted from the topic the source wrote.
    let from = prices
        .values()
        .flatten()
        .copied()
        .min()
        .ok_or("no prices")?
        + 15_000;
    let until = stop_at_ms - 15_000;
    let expected: usize = prices
        .values()
        .map(|ts| ts.iter().filter(|t| **t >= from && **t < until).count())
        .sum();
    // Give the stages time to drain what was in flight when the source stopped.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut counts = Vec::new();
        for window in WINDOWS {
            let n = db
                .collection::<Document>(&format!("btc-price-zscore-{window}"))
                .count_documents(doc! {"timestamp": {
                "$gte": mongodb::bson::DateTime::from_millis(from),
                "$lt": mongodb::bson::DateTime::from_millis(until)}})
                .await? as usize;
            counts.push(n);
        }
        if counts.iter().all(|n| *n == expected) {
            return Ok(format!(
                "every price of {} symbols in [start + 15 s, stop - 15 s) has its 6 z-scores ({expected} prices, {} documents)",
                symbols.len(),
                expected * 6
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("{expected} prices, documents per window {counts:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// |gap - 100 ms| between consecutive receipts (event times) of each symbol, sorted.
fn poll_gap_deviations(prices: &BTreeMap<Vec<u8>, Vec<i64>>) -> Vec<i64> {
    let mut deviations: Vec<i64> = Vec::new();
    for times in prices.values() {
        let mut times = times.clone();
        times.sort_unstable();
        deviations.extend(times.windows(2).map(|w| (w[1] - w[0] - 100).abs()));
    }
    deviations.sort_unstable();
    deviations
}

/// The `p`th percentile of sorted values (0 when there are none).
fn percentile(sorted: &[i64], p: usize) -> i64 {
    let i = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or(0)
}

/// Event times of the prices in the run's price topic, per symbol.
fn read_prices(stop_at_ms: i64) -> Result<BTreeMap<Vec<u8>, Vec<i64>>, Error> {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        ClientConfig, Message, Offset, TopicPartitionList,
    };
    let topic = format!("latency{}-btc-price", std::process::id());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", std::env::var("KAFKA_BROKERS")?)
        .set("group.id", format!("{topic}-bench-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let mut list = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            list.add_partition_offset(&topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&list)?;
    let mut out: BTreeMap<Vec<u8>, Vec<i64>> = BTreeMap::new();
    let mut quiet = Instant::now();
    let started = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) && started.elapsed() < Duration::from_secs(90) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            quiet = Instant::now();
            if let (Some(key), Some(_), Some(ts)) =
                (m.key(), m.payload(), m.timestamp().to_millis())
            {
                if ts <= stop_at_ms {
                    out.entry(key.to_vec()).or_default().push(ts);
                }
            }
        }
    }
    Ok(out)
}

/// Documents/s of the raw driver: unordered bulk upserts of `n` z-score documents in
/// batches of 3,000 (500 prices x 6 windows, what one sink batch holds).
async fn raw_bulk_upserts(
    client: &mongodb::Client,
    database: &str,
    n: usize,
) -> Result<f64, Error> {
    use mongodb::options::{UpdateOneModel, WriteModel};
    let db = client.database(database);
    let namespaces: Vec<_> = WINDOWS
        .iter()
        .map(|w| db.collection::<Document>(&format!("z-{w}")).namespace())
        .collect();
    // The same unique index the sink creates: without it every upsert scans the collection.
    for w in WINDOWS {
        db.collection::<Document>(&format!("z-{w}"))
            .create_index(
                mongodb::IndexModel::builder()
                    .keys(doc! {"symbol": 1, "timestamp": 1})
                    .options(
                        mongodb::options::IndexOptions::builder()
                            .unique(true)
                            .build(),
                    )
                    .build(),
            )
            .await?;
    }
    let started = Instant::now();
    let base = 1_746_631_860_000i64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(3_000) {
        let models: Vec<WriteModel> = chunk
            .iter()
            .map(|&i| {
                let ts = mongodb::bson::DateTime::from_millis(base + (i / 6) as i64 * 100);
                WriteModel::UpdateOne(
                    UpdateOneModel::builder()
                        .namespace(namespaces[i % 6].clone())
                        .filter(doc! {"symbol": "BTCUSDT", "timestamp": ts})
                        .update(doc! {"$set": {"symbol": "BTCUSDT", "timestamp": ts, "window": WINDOWS[i % 6], "zscore_price": 0.5, "price": 97000.0}})
                        .upsert(true)
                        .build(),
                )
            })
            .collect();
        client.bulk_write(models).ordered(false).await?;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    db.drop().await?;
    Ok(rate)
}

/// Documents/s of the `mongo` sink itself on `prices` records x 6 windows.
async fn sink_rate(uri: &str, database: &str, prices: usize) -> Result<f64, Error> {
    use framework::{connector::StageContext, InputRecord, Sink, SinkContext};
    let config: connector_mongo::MongoSinkConfig = serde_json::from_value(serde_json::json!({
        "uri": uri, "database": database, "collection": "z-{window}",
        "explode": "zscores", "key": ["symbol", "timestamp"], "date_fields": ["timestamp"],
    }))?;
    let stage = StageContext {
        pipeline: "bench".into(),
        stage: "load".into(),
        connector: "mongo",
    };
    let mut sink = connector_mongo::MongoSink::new(config, &stage)?;
    let payloads: Vec<Vec<u8>> = (0..prices)
        .map(|i| {
            let zscores: Vec<_> = WINDOWS
                .iter()
                .map(|w| serde_json::json!({"window": w, "zscore_price": 0.5}))
                .collect();
            serde_json::to_vec(&serde_json::json!({
                "timestamp": framework::event_time::format_millis(1_746_631_860_000 + i as i64 * 100),
                "symbol": "BTCUSDT", "price": 97000.0, "zscores": zscores}))
        })
        .collect::<Result<_, _>>()?;
    let ctx = SinkContext::new(tokio_util::sync::CancellationToken::new());
    let started = Instant::now();
    for (b, chunk) in payloads.chunks(500).enumerate() {
        let records: Vec<InputRecord<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(i, payload)| InputRecord {
                port: 0,
                key: Some(b"BTCUSDT"),
                payload,
                timestamp_ms: None,
                partition: 0,
                offset: (b * 500 + i) as i64,
            })
            .collect();
        sink.write(&records, &ctx).await?;
    }
    let rate = (prices * 6) as f64 / started.elapsed().as_secs_f64();
    mongodb::Client::with_uri_str(uri)
        .await?
        .database(database)
        .drop()
        .await?;
    Ok(rate)
}

/// utime + stime of each child, then of each other process (clock ticks).
fn cpu_ticks(children: &[(String, Child)], others: &[(String, u32)]) -> Vec<u64> {
    children
        .iter()
        .map(|(_, c)| c.id())
        .chain(others.iter().map(|(_, p)| *p))
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
                    Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
                })
                .unwrap_or(0)
        })
        .collect()
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
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
