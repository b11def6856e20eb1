//! MongoDB write rates on the run's server, after the run: the raw driver's unordered
//! writes (`bulkWrite` of inserts or upserts, `insertMany` per collection) and the `mongo`
//! sink, all on the same z-score documents (the run's symbols interleaved, as the
//! pipeline's batches hold them).

use std::time::Instant;

use mongodb::{
    bson::{doc, DateTime, Document},
    options::{IndexOptions, InsertOneModel, ReplaceOneModel, WriteModel},
};

use crate::{Error, WINDOWS};

const BASE_MS: i64 = 1_746_631_860_000;
/// Prices per batch: what one sink batch of the pipeline holds (`max_records: 500`).
const BATCH: usize = 500;

fn symbol(i: usize, symbols: &[String]) -> &str {
    &symbols[i % symbols.len()]
}

fn timestamp(i: usize, symbols: &[String]) -> DateTime {
    DateTime::from_millis(BASE_MS + (i / symbols.len()) as i64 * 100)
}

/// How the raw driver writes.
#[derive(Debug, Clone, Copy)]
pub enum Raw {
    /// One unordered client-level `bulkWrite` of inserts per request.
    BulkInserts,
    /// One unordered client-level `bulkWrite` of replace-one upserts per request.
    BulkUpserts,
    /// One unordered `insertMany` (`insert` command) per collection and request.
    InsertMany,
}

/// Documents/s of the raw driver on `prices` prices x 6 windows, in requests of `BATCH`
/// prices, into collections with the sink's unique index.
pub async fn raw(
    client: &mongodb::Client,
    database: &str,
    symbols: &[String],
    prices: usize,
    how: Raw,
) -> Result<f64, Error> {
    let db = client.database(database);
    let collections: Vec<_> = WINDOWS
        .iter()
        .map(|w| db.collection::<Document>(&format!("z-{w}")))
        .collect();
    for collection in &collections {
        collection
            .create_index(
                mongodb::IndexModel::builder()
                    .keys(doc! {"symbol": 1, "timestamp": 1})
                    .options(IndexOptions::builder().unique(true).build())
                    .build(),
            )
            .await?;
    }
    let started = Instant::now();
    let indexes: Vec<usize> = (0..prices).collect();
    for chunk in indexes.chunks(BATCH) {
        let mut per_window: Vec<Vec<Document>> = (0..WINDOWS.len())
            .map(|_| Vec::with_capacity(chunk.len()))
            .collect();
        for &i in chunk {
            let (s, ts) = (symbol(i, symbols), timestamp(i, symbols));
            for (w, window) in WINDOWS.iter().enumerate() {
                per_window[w].push(doc! {"timestamp": ts, "symbol": s, "window": *window,
                "zscore_price": 0.5, "price": 97000.0});
            }
        }
        if let Raw::InsertMany = how {
            for (collection, documents) in collections.iter().zip(per_window) {
                collection.insert_many(documents).ordered(false).await?;
            }
            continue;
        }
        let mut models: Vec<WriteModel> = Vec::with_capacity(chunk.len() * WINDOWS.len());
        for (collection, documents) in collections.iter().zip(per_window) {
            for document in documents {
                let namespace = collection.namespace();
                models.push(match how {
                    Raw::BulkUpserts => ReplaceOneModel::builder()
                        .namespace(namespace)
                        .filter(doc! {"symbol": document.get("symbol").cloned(),
                        "timestamp": document.get("timestamp").cloned()})
                        .replacement(document)
                        .upsert(true)
                        .build()
                        .into(),
                    _ => InsertOneModel::builder()
                        .namespace(namespace)
                        .document(document)
                        .build()
                        .into(),
                });
            }
        }
        client.bulk_write(models).ordered(false).await?;
    }
    let rate = (prices * WINDOWS.len()) as f64 / started.elapsed().as_secs_f64();
    db.drop().await?;
    Ok(rate)
}

/// Documents/s of the `mongo` sink with `write_command` on `prices` records x 6 windows
/// in batches of `BATCH` records: first delivery, then the same records again
/// (re-delivery).
pub async fn sink_rates(
    uri: &str,
    database: &str,
    symbols: &[String],
    prices: usize,
    write_command: &str,
) -> Result<(f64, f64), Error> {
    use framework::{connector::StageContext, InputRecord, Sink, SinkContext};
    let config: connector_mongo::MongoSinkConfig = serde_json::from_value(serde_json::json!({
        "uri": uri, "database": database, "collection": "z-{window}",
        "explode": "zscores", "key": ["symbol", "timestamp"], "date_fields": ["timestamp"],
        "write_command": write_command,
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
            let ms = timestamp(i, symbols).timestamp_millis();
            serde_json::to_vec(&serde_json::json!({
                "timestamp": framework::event_time::format_millis(ms),
                "symbol": symbol(i, symbols), "price": 97000.0, "zscores": zscores}))
        })
        .collect::<Result<_, _>>()?;
    let ctx = SinkContext::new(tokio_util::sync::CancellationToken::new());
    let mut rates = [0.0; 2];
    for rate in &mut rates {
        let started = Instant::now();
        for (b, chunk) in payloads.chunks(BATCH).enumerate() {
            let records: Vec<InputRecord<'_>> = chunk
                .iter()
                .enumerate()
                .map(|(i, payload)| InputRecord {
                    port: 0,
                    key: None,
                    payload,
                    timestamp_ms: None,
                    partition: 0,
                    offset: (b * BATCH + i) as i64,
                })
                .collect();
            sink.write(&records, &ctx).await?;
        }
        *rate = (prices * WINDOWS.len()) as f64 / started.elapsed().as_secs_f64();
    }
    sink.close().await?;
    mongodb::Client::with_uri_str(uri)
        .await?
        .database(database)
        .drop()
        .await?;
    Ok((rates[0], rates[1]))
}
