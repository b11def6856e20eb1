//! The sink against a real secantusd-rs: `MONGO_URI` (scripts/test.sh), or a server a
//! test starts and stops itself for outages.

mod common;

use std::time::{Duration, Instant};

use common::*;
use framework::Sink;
use framework::SinkContext;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use tokio_util::sync::CancellationToken;

fn ctx() -> SinkContext {
    SinkContext::new(CancellationToken::new())
}

/// Checks that `<window>` collections hold exactly records `range` of `symbol`, typed.
async fn assert_collections_hold(
    client: &mongodb::Client,
    database: &str,
    symbol: &str,
    range: std::ops::Range<i64>,
) {
    for (w, window) in WINDOWS.iter().enumerate() {
        let collection = format!("btc-price-zscore-{window}");
        let docs = documents(client, database, &collection).await;
        let docs: Vec<&Document> = docs
            .iter()
            .filter(|d| d.get_str("symbol").unwrap() == symbol)
            .collect();
        assert_eq!(docs.len() as i64, range.end - range.start, "{collection}");
        for (doc, i) in docs.iter().zip(range.clone()) {
            assert_eq!(
                doc.get("timestamp"),
                Some(&Bson::DateTime(mongodb::bson::DateTime::from_millis(
                    BASE_MS + i * 100
                ))),
                "{collection} #{i}: timestamp must be a BSON Date"
            );
            assert_eq!(doc.get("symbol"), Some(&Bson::String(symbol.into())));
            assert_eq!(doc.get("window"), Some(&Bson::String(window.to_string())));
            assert_eq!(
                doc.get("zscore_price"),
                Some(&Bson::Double(expected_zscore(i, w)))
            );
            assert_eq!(doc.get("price"), Some(&Bson::Double(expected_price(i))));
        }
    }
}

#[tokio::test]
async fn batch_lands_as_typed_documents_in_each_window_collection_with_unique_index() {
    let uri = mongo_uri();
    let database = unique_database("batch_lands");
    let mut sink = sink(config(&uri, &database, serde_json::json!({})));
    let payloads = payloads("BTCUSDT", 0..200);

    let outcome = sink.write(&records(&payloads), &ctx()).await.unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);

    let client = client(&uri).await;
    assert_collections_hold(&client, &database, "BTCUSDT", 0..200).await;
    for window in WINDOWS {
        let indexes: Vec<_> = client
            .database(&database)
            .collection::<Document>(&format!("btc-price-zscore-{window}"))
            .list_indexes()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let key_index = indexes
            .iter()
            .find(|i| i.keys == doc! {"symbol": 1, "timestamp": 1})
            .unwrap_or_else(|| panic!("no {{symbol, timestamp}} index on {window}: {indexes:?}"));
        assert_eq!(
            key_index.options.as_ref().and_then(|o| o.unique),
            Some(true)
        );
    }
    let counters = sink.counters().snapshot();
    assert_eq!(counters.documents_written, 1200);
    assert_eq!(counters.documents_inserted, 1200);
    client.database(&database).drop().await.unwrap();
}

#[tokio::test]
async fn redelivering_a_batch_overwrites_without_duplicating() {
    let uri = mongo_uri();
    let database = unique_database("redelivery");
    let mut sink = sink(config(&uri, &database, serde_json::json!({})));
    let payloads = payloads("BTCUSDT", 0..100);
    sink.write(&records(&payloads), &ctx()).await.unwrap();

    // A restarted stage re-delivers an overlapping range, from a new sink instance.
    let mut restarted = common::sink(config(&uri, &database, serde_json::json!({})));
    let overlapping = common::payloads("BTCUSDT", 50..150);
    let outcome = restarted
        .write(&records(&overlapping), &ctx())
        .await
        .unwrap();
    assert!(outcome.rejected.is_empty());
    restarted
        .write(&records(&overlapping), &ctx())
        .await
        .unwrap();

    let client = client(&uri).await;
    assert_collections_hold(&client, &database, "BTCUSDT", 0..150).await;
    let counters = restarted.counters().snapshot();
    assert_eq!(
        counters.documents_inserted,
        50 * 6,
        "only 100..150 were new"
    );
    assert_eq!(
        counters.documents_replaced,
        150 * 6,
        "50..100 once, then all of 50..150"
    );
    client.database(&database).drop().await.unwrap();
}

#[tokio::test]
async fn duplicate_keys_within_one_batch_keep_the_last_record() {
    let uri = mongo_uri();
    let database = unique_database("dup_in_batch");
    let mut sink = sink(config(&uri, &database, serde_json::json!({})));
    let ts = framework::event_time::format_millis(BASE_MS);
    let first = format!(
        r#"{{"timestamp":"{ts}","symbol":"BTCUSDT","price":1.0,"zscores":[{{"window":"30s","zscore_price":1.0}}]}}"#
    );
    let second = format!(
        r#"{{"timestamp":"{ts}","symbol":"BTCUSDT","price":2.0,"zscores":[{{"window":"30s","zscore_price":2.0}}]}}"#
    );
    let payloads = vec![first.into_bytes(), second.into_bytes()];
    sink.write(&records(&payloads), &ctx()).await.unwrap();

    let client = client(&uri).await;
    let docs = documents(&client, &database, "btc-price-zscore-30s").await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].get_f64("price").unwrap(), 2.0);
    assert_eq!(docs[0].get_f64("zscore_price").unwrap(), 2.0);
    client.database(&database).drop().await.unwrap();
}

#[tokio::test]
async fn malformed_record_in_the_middle_is_rejected_and_the_rest_written() {
    let uri = mongo_uri();
    let database = unique_database("malformed");
    let mut sink = sink(config(&uri, &database, serde_json::json!({})));
    let mut payloads = payloads("BTCUSDT", 0..10);
    payloads[3] = b"{\"symbol\": \"BTCUSDT\", \"price\": 1".to_vec();
    payloads[6] =
        br#"{"timestamp":"not a time","symbol":"BTCUSDT","price":1.0,"zscores":[{"window":"1m","zscore_price":0.5}]}"#.to_vec();

    let outcome = sink.write(&records(&payloads), &ctx()).await.unwrap();

    let rejected: Vec<(usize, &str)> = outcome.rejected.iter().map(|(i, r, _)| (*i, *r)).collect();
    assert_eq!(rejected, vec![(3, "malformed_json"), (6, "bad_date")]);
    assert!(
        outcome.rejected[1].2.contains("not a time"),
        "{}",
        outcome.rejected[1].2
    );
    let client = client(&uri).await;
    for window in WINDOWS {
        let docs = documents(&client, &database, &format!("btc-price-zscore-{window}")).await;
        let written: Vec<i64> = docs
            .iter()
            .map(|d| (d.get_datetime("timestamp").unwrap().timestamp_millis() - BASE_MS) / 100)
            .collect();
        assert_eq!(written, vec![0, 1, 2, 4, 5, 7, 8, 9], "{window}");
    }
    client.database(&database).drop().await.unwrap();
}

#[tokio::test]
async fn time_series_mode_creates_time_series_collections_and_stays_idempotent() {
    let uri = mongo_uri();
    let database = unique_database("time_series");
    let cfg = config(&uri, &database, serde_json::json!({"time_series": true}));
    let payloads = payloads("BTCUSDT", 0..50);
    let mut sink = sink(cfg.clone());
    sink.write(&records(&payloads), &ctx()).await.unwrap();
    let mut restarted = common::sink(cfg);
    restarted.write(&records(&payloads), &ctx()).await.unwrap();

    let client = client(&uri).await;
    assert_collections_hold(&client, &database, "BTCUSDT", 0..50).await;
    let specs: Vec<_> = client
        .database(&database)
        .list_collections()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    for window in WINDOWS {
        let name = format!("btc-price-zscore-{window}");
        let spec = specs.iter().find(|s| s.name == name).unwrap();
        assert_eq!(
            spec.collection_type,
            mongodb::results::CollectionType::Timeseries,
            "{name}"
        );
    }
    client.database(&database).drop().await.unwrap();
}

#[tokio::test]
async fn write_waits_through_a_server_outage_and_completes_once_it_is_back() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = OwnServer::start(port, data.path().to_path_buf());
    let uri = server.uri();
    let database = unique_database("outage");
    let cfg = config(
        &uri,
        &database,
        serde_json::json!({"server_selection_timeout": "300ms",
                           "retry": {"initial_backoff": "100ms", "max_backoff": "400ms"}}),
    );
    let mut sink = sink(cfg);
    let first = payloads("BTCUSDT", 0..100);
    sink.write(&records(&first), &ctx()).await.unwrap();

    server.kill();
    let data_dir = data.path().to_path_buf();
    let restart = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        OwnServer::start(port, data_dir)
    });
    // The batch overlaps what was written before the outage: a re-delivery.
    let second = payloads("BTCUSDT", 50..300);
    let started = Instant::now();
    let (counted, stage_retries) = counted_ctx(CancellationToken::new());
    let outcome = sink.write(&records(&second), &counted).await.unwrap();
    let waited = started.elapsed();
    let _server = restart.join().unwrap();

    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    assert!(
        waited >= Duration::from_millis(2500),
        "write returned after {waited:?}, before the server was back"
    );
    let counters = sink.counters().snapshot();
    assert!(counters.retries >= 2, "retries: {}", counters.retries);
    // Every retry reaches the stage's `pipeline_sink_write_retries_total`.
    assert_eq!(
        stage_retries.load(std::sync::atomic::Ordering::Relaxed),
        counters.retries
    );
    let client = client(&uri).await;
    assert_collections_hold(&client, &database, "BTCUSDT", 0..300).await;
}

#[tokio::test]
async fn cancelling_shutdown_during_an_outage_makes_write_fail_promptly() {
    let data = tempfile::tempdir().unwrap();
    let mut server = OwnServer::start(free_port(), data.path().to_path_buf());
    let uri = server.uri();
    let database = unique_database("outage_cancel");
    // Default server-selection timeout (5s): promptness must not depend on it.
    let mut sink = sink(config(&uri, &database, serde_json::json!({})));
    let first = payloads("BTCUSDT", 0..10);
    sink.write(&records(&first), &ctx()).await.unwrap();
    server.kill();

    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        trigger.cancel();
    });
    let second = payloads("BTCUSDT", 10..20);
    let started = Instant::now();
    let result = sink
        .write(&records(&second), &SinkContext::new(shutdown))
        .await;
    let elapsed = started.elapsed();

    let error = result.expect_err("write must fail when shutdown interrupts the retries");
    assert!(error.to_string().contains("shutdown requested"), "{error}");
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_millis(2500),
        "write returned after {elapsed:?}"
    );
}

#[tokio::test]
async fn a_server_down_longer_than_retry_max_elapsed_stops_the_write_with_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let mut server = OwnServer::start(free_port(), data.path().to_path_buf());
    let uri = server.uri();
    let database = unique_database("outage_budget");
    let cfg = config(
        &uri,
        &database,
        serde_json::json!({"server_selection_timeout": "300ms",
                           "retry": {"initial_backoff": "100ms", "max_backoff": "400ms",
                                     "max_elapsed": "2s"}}),
    );
    let mut sink = sink(cfg);
    sink.write(&records(&payloads("BTCUSDT", 0..10)), &ctx())
        .await
        .unwrap();
    server.kill();

    let started = Instant::now();
    let result = sink
        .write(&records(&payloads("BTCUSDT", 10..20)), &ctx())
        .await;
    let elapsed = started.elapsed();

    let error = result
        .expect_err("the write must give up once the budget is spent")
        .to_string();
    assert!(
        error.contains("retry budget of 2s (retry.max_elapsed)"),
        "{error}"
    );
    assert!(error.contains("batch left uncommitted"), "{error}");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(6),
        "gave up after {elapsed:?}"
    );
}

#[tokio::test]
async fn document_the_server_refuses_is_rejected_as_write_error_and_the_rest_written() {
    refused_document_is_rejected("bulk_write").await;
}

#[tokio::test]
async fn per_collection_commands_reject_a_refused_document_and_write_the_rest() {
    refused_document_is_rejected("per_collection").await;
}

async fn refused_document_is_rejected(write_command: &str) {
    let uri = mongo_uri();
    let database = unique_database(&format!("write_error_{write_command}"));
    let client = client(&uri).await;
    // A stray unique index on `price` makes the second record with the same price a
    // permanent duplicate-key error in that one collection.
    client
        .database(&database)
        .collection::<Document>("btc-price-zscore-30s")
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! {"price": 1})
                .options(
                    mongodb::options::IndexOptions::builder()
                        .unique(true)
                        .build(),
                )
                .build(),
        )
        .await
        .unwrap();
    let mut sink = sink(config(
        &uri,
        &database,
        serde_json::json!({"write_command": write_command}),
    ));
    let mut payloads = payloads("BTCUSDT", 0..5);
    let mut clash: serde_json::Value = serde_json::from_slice(&payloads[4]).unwrap();
    clash["price"] = serde_json::json!(expected_price(1));
    payloads[4] = serde_json::to_vec(&clash).unwrap();

    let outcome = sink.write(&records(&payloads), &ctx()).await.unwrap();

    assert_eq!(outcome.rejected.len(), 1, "{:?}", outcome.rejected);
    let (index, reason, detail) = &outcome.rejected[0];
    assert_eq!((*index, *reason), (4, "write_error"));
    assert!(
        detail.contains("btc-price-zscore-30s") && detail.contains("11000"),
        "{detail}"
    );
    assert_eq!(
        documents(&client, &database, "btc-price-zscore-30s")
            .await
            .len(),
        4
    );
    assert_eq!(
        documents(&client, &database, "btc-price-zscore-1m")
            .await
            .len(),
        5
    );
    client.database(&database).drop().await.unwrap();
}

#[tokio::test]
async fn per_collection_commands_write_typed_documents_idempotently() {
    let uri = mongo_uri();
    let database = unique_database("per_collection");
    let cfg = config(
        &uri,
        &database,
        serde_json::json!({"write_command": "per_collection"}),
    );
    let mut sink = sink(cfg.clone());
    let first = payloads("BTCUSDT", 0..100);
    sink.write(&records(&first), &ctx()).await.unwrap();
    let mut restarted = common::sink(cfg);
    let overlapping = payloads("BTCUSDT", 50..150);
    restarted
        .write(&records(&overlapping), &ctx())
        .await
        .unwrap();

    let client = client(&uri).await;
    assert_collections_hold(&client, &database, "BTCUSDT", 0..150).await;
    assert_eq!(sink.counters().snapshot().documents_inserted, 600);
    let counters = restarted.counters().snapshot();
    assert_eq!(
        (counters.documents_inserted, counters.documents_replaced),
        (300, 300)
    );
    client.database(&database).drop().await.unwrap();
}

#[tokio::test]
async fn per_collection_commands_in_time_series_mode_do_not_duplicate() {
    let uri = mongo_uri();
    let database = unique_database("per_collection_ts");
    let cfg = config(
        &uri,
        &database,
        serde_json::json!({"write_command": "per_collection", "time_series": true}),
    );
    let payloads = payloads("BTCUSDT", 0..40);
    common::sink(cfg.clone())
        .write(&records(&payloads), &ctx())
        .await
        .unwrap();
    let mut again = common::sink(cfg);
    again.write(&records(&payloads), &ctx()).await.unwrap();

    let client = client(&uri).await;
    assert_collections_hold(&client, &database, "BTCUSDT", 0..40).await;
    assert_eq!(again.counters().snapshot().documents_replaced, 240);
    client.database(&database).drop().await.unwrap();
}

// Here rather than next to the log-capturing tests: tracing caches callsite interest
// across threads, so a second test hitting the same log lines makes their capture flaky.
#[tokio::test]
async fn every_retry_is_counted_in_the_stage_retry_metric() {
    let port = free_port(); // nothing listens there
    let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
    let config = config(
        &uri,
        "retries",
        serde_json::json!({"server_selection_timeout": "100ms",
                           "retry": {"initial_backoff": "10ms", "max_backoff": "20ms"}}),
    );
    let mut sink = connector_mongo::MongoSink::new(config, &stage()).unwrap();
    let shutdown = CancellationToken::new();
    let (ctx, stage_retries) = counted_ctx(shutdown.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        shutdown.cancel();
    });
    let payloads = payloads("BTCUSDT", 0..1);
    sink.write(&records(&payloads), &ctx)
        .await
        .expect_err("nothing listens on the port");
    let retries = stage_retries.load(std::sync::atomic::Ordering::Relaxed);
    assert!(retries >= 2, "stage retry counter: {retries}");
    assert_eq!(retries, sink.counters().snapshot().retries);
}
