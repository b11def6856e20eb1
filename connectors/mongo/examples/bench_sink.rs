//! Throughput of the `mongo` sink: documents/s for batches of 1000 `btc-price-zscore`
//! records × 6 windows, against the server in `MONGO_URI`.
//!
//! ```text
//! MONGO_URI='mongodb://127.0.0.1:27017/?directConnection=true' \
//!   cargo run --release -p connector-mongo --example bench_sink -- \
//!   [BATCHES] [--batch RECORDS] [--symbols N] [--per-collection] [--baseline] [--time-series]
//! ```
//!
//! Passes over the same records: first delivery (every document is new: inserts),
//! re-delivery (every key exists: refused inserts, then upserts) and a half re-delivery
//! (batches mixing written and new keys), with the default `bulkWrite`; optionally the
//! same with `write_command: per_collection` and with `time_series: true`, and the raw
//! driver's unordered bulk inserts and bulk upserts of the same documents (the server's
//! rates without the sink). `--symbols N` interleaves N symbols, as the pipeline's records
//! of N symbols arrive (default 1); `--batch` sets the records per batch (default 1000;
//! the live pipeline's batches of one symbol hold ~10). Databases are dropped at the end.

use std::time::{Duration, Instant};

use connector_mongo::{MongoSink, MongoSinkConfig};
use framework::{connector::StageContext, InputRecord, Sink, SinkContext};
use tokio_util::sync::CancellationToken;

const WINDOWS: [&str; 6] = ["30s", "1m", "5m", "15m", "30m", "1h"];
/// Records per batch unless `--batch` says otherwise.
const BATCH: usize = 1000;
const BASE_MS: i64 = 1_746_631_860_000;

/// Symbol and event time of record `i` of `symbols` interleaved symbols.
fn key(i: usize, symbols: usize) -> (String, i64) {
    let symbol = if symbols <= 1 {
        "BTCUSDT".to_string()
    } else {
        format!("S{:03}USDT", i % symbols)
    };
    (symbol, BASE_MS + (i / symbols.max(1)) as i64 * 100)
}

fn zscore(i: usize, w: usize) -> f64 {
    ((i * 7 + w) % 50) as f64 / 10.0 - 2.5
}

fn payload(i: usize, symbols: usize) -> Vec<u8> {
    let (symbol, ms) = key(i, symbols);
    let ts = framework::event_time::format_millis(ms);
    let zscores: Vec<_> = WINDOWS
        .iter()
        .enumerate()
        .map(|(w, window)| serde_json::json!({"window": window, "zscore_price": zscore(i, w)}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "timestamp": ts, "symbol": symbol, "price": 97_000.0 + i as f64 * 0.01, "zscores": zscores,
    }))
    .expect("a JSON value serializes")
}

async fn pass(
    label: &str,
    sink: &mut MongoSink,
    payloads: &[Vec<u8>],
    batch: usize,
    ctx: &SinkContext,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for (b, chunk) in payloads.chunks(batch).enumerate() {
        let records: Vec<InputRecord<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(i, payload)| InputRecord {
                port: 0,
                key: Some(b"BTCUSDT"),
                payload,
                timestamp_ms: None,
                partition: 0,
                offset: (b * batch + i) as i64,
            })
            .collect();
        let batch_started = Instant::now();
        let outcome = sink.write(&records, ctx).await?;
        slowest = slowest.max(batch_started.elapsed());
        if !outcome.rejected.is_empty() {
            return Err(format!("unexpected rejects: {:?}", outcome.rejected).into());
        }
    }
    let elapsed = started.elapsed();
    let documents = payloads.len() * WINDOWS.len();
    println!(
        "{label:<28} {documents:>8} docs in {:>7.3} s = {:>9.0} docs/s ({:>7.0} records/s), batch mean {:.1} ms, slowest {:.1} ms",
        elapsed.as_secs_f64(),
        documents as f64 / elapsed.as_secs_f64(),
        payloads.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3 / payloads.len().div_ceil(batch) as f64,
        slowest.as_secs_f64() * 1e3,
    );
    Ok(())
}

fn sink(
    uri: &str,
    database: &str,
    time_series: bool,
    write_command: &str,
) -> Result<MongoSink, Box<dyn std::error::Error>> {
    let config: MongoSinkConfig = serde_json::from_value(serde_json::json!({
        "uri": uri, "database": database, "time_series": time_series,
        "write_command": write_command,
        // The layout of pipelines/btcusdt.yaml.
        "collection": "btc-price-zscore-{window}", "explode": "zscores",
        "key": ["symbol", "timestamp"], "date_fields": ["timestamp"],
    }))?;
    let stage = StageContext {
        pipeline: "bench".into(),
        stage: "load".into(),
        connector: "mongo",
    };
    Ok(MongoSink::new(config, &stage)?)
}

/// The server's rates without the sink: the raw driver's unordered `bulkWrite` of the
/// same documents, plain inserts or replace-one upserts (first delivery: every key new),
/// into collections with the same unique index.
async fn baseline(
    client: &mongodb::Client,
    records: usize,
    symbols: usize,
    batch: usize,
    upsert: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    use mongodb::bson::{doc, DateTime};
    use mongodb::options::{IndexOptions, InsertOneModel, ReplaceOneModel, WriteModel};
    let database = format!("bench_sink_baseline_{}", std::process::id());
    for window in WINDOWS {
        client
            .database(&database)
            .collection::<mongodb::bson::Document>(&format!("btc-price-zscore-{window}"))
            .create_index(
                mongodb::IndexModel::builder()
                    .keys(doc! {"symbol": 1, "timestamp": 1})
                    .options(IndexOptions::builder().unique(true).build())
                    .build(),
            )
            .await?;
    }
    let started = Instant::now();
    let indexes: Vec<usize> = (0..records).collect();
    for chunk in indexes.chunks(batch) {
        let mut models: Vec<WriteModel> = Vec::with_capacity(chunk.len() * WINDOWS.len());
        for &n in chunk {
            let (symbol, ms) = key(n, symbols);
            for (w, window) in WINDOWS.iter().enumerate() {
                let namespace = mongodb::Namespace {
                    db: database.clone(),
                    coll: format!("btc-price-zscore-{window}"),
                };
                let document = doc! {
                    "timestamp": DateTime::from_millis(ms),
                    "symbol": symbol.as_str(),
                    "window": *window,
                    "zscore_price": zscore(n, w),
                    "price": 97_000.0 + n as f64 * 0.01,
                };
                models.push(if upsert {
                    ReplaceOneModel::builder()
                        .namespace(namespace)
                        .filter(doc! {"symbol": symbol.as_str(), "timestamp": DateTime::from_millis(ms)})
                        .replacement(document)
                        .upsert(true)
                        .build()
                        .into()
                } else {
                    InsertOneModel::builder()
                        .namespace(namespace)
                        .document(document)
                        .build()
                        .into()
                });
            }
        }
        client.bulk_write(models).ordered(false).await?;
    }
    let elapsed = started.elapsed();
    let documents = records * WINDOWS.len();
    let label = if upsert {
        "raw driver: bulk upserts"
    } else {
        "raw driver: bulk inserts"
    };
    println!(
        "{label:<28} {documents:>8} docs in {:>7.3} s = {:>9.0} docs/s",
        elapsed.as_secs_f64(),
        documents as f64 / elapsed.as_secs_f64(),
    );
    client.database(&database).drop().await?;
    Ok(())
}

/// Batches of half written, half new records: `batch / 2` of `written` then as many of
/// `new`, per batch.
fn half_redelivery(written: &[Vec<u8>], new: &[Vec<u8>], batch: usize) -> Vec<Vec<u8>> {
    let half = (batch / 2).max(1);
    written
        .chunks(half)
        .zip(new.chunks(half))
        .flat_map(|(old, new)| old.iter().chain(new).cloned())
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::var("MONGO_URI").map_err(|_| {
        "MONGO_URI is not set (e.g. mongodb://127.0.0.1:27017/?directConnection=true)"
    })?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--name VALUE` options; the one bare number is BATCHES.
    let option = |name: &str| -> Result<Option<usize>, Box<dyn std::error::Error>> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(Some(
                args.get(i + 1)
                    .ok_or_else(|| format!("{name} needs a number"))?
                    .parse()?,
            )),
            None => Ok(None),
        }
    };
    let symbols = option("--symbols")?.unwrap_or(1);
    let batch = option("--batch")?.unwrap_or(BATCH).max(1);
    let batches: usize = match args.iter().enumerate().find(|(i, a)| {
        !a.starts_with("--")
            && (*i == 0 || !["--symbols", "--batch"].contains(&args[i - 1].as_str()))
    }) {
        Some((_, n)) => n.parse()?,
        None => 20,
    };
    let time_series = args.iter().any(|a| a == "--time-series");
    let records = batches * batch;
    let payloads: Vec<Vec<u8>> = (0..records).map(|i| payload(i, symbols)).collect();
    // Records after the first delivery's, for the half re-delivery.
    let later: Vec<Vec<u8>> = (records..records + records / 2)
        .map(|i| payload(i, symbols))
        .collect();
    let ctx = SinkContext::new(CancellationToken::new());
    let client = mongodb::Client::with_uri_str(&uri).await?;
    println!(
        "{batches} batches of {batch} records x {} windows, {symbols} symbol(s) interleaved",
        WINDOWS.len()
    );

    let database = format!("bench_sink_{}", std::process::id());
    let mut regular = sink(&uri, &database, false, "auto")?;
    pass("first delivery", &mut regular, &payloads, batch, &ctx).await?;
    let label = "re-delivery (all exist)";
    pass(label, &mut regular, &payloads, batch, &ctx).await?;
    let half = half_redelivery(&payloads, &later, batch);
    pass(
        "half re-delivered batches",
        &mut regular,
        &half,
        batch,
        &ctx,
    )
    .await?;
    println!("counters: {:?}", regular.counters().snapshot());
    regular.close().await?;
    client.database(&database).drop().await?;

    if args.iter().any(|a| a == "--per-collection") {
        let database = format!("bench_sink_pc_{}", std::process::id());
        let mut per_collection = sink(&uri, &database, false, "per_collection")?;
        pass(
            "per-collection, first",
            &mut per_collection,
            &payloads,
            batch,
            &ctx,
        )
        .await?;
        pass(
            "per-collection, re-delivery",
            &mut per_collection,
            &payloads,
            batch,
            &ctx,
        )
        .await?;
        per_collection.close().await?;
        client.database(&database).drop().await?;
    }

    if args.iter().any(|a| a == "--baseline") {
        baseline(&client, records, symbols, batch, false).await?;
        baseline(&client, records, symbols, batch, true).await?;
    }

    if time_series {
        let database = format!("bench_sink_ts_{}", std::process::id());
        let mut ts = sink(&uri, &database, true, "auto")?;
        pass(
            "time-series, first delivery",
            &mut ts,
            &payloads,
            batch,
            &ctx,
        )
        .await?;
        pass("time-series, re-delivery", &mut ts, &payloads, batch, &ctx).await?;
        ts.close().await?;
        client.database(&database).drop().await?;
    }
    Ok(())
}
