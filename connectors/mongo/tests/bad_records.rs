//! Per-record permanent failures against a real secantusd-rs (`MONGO_URI`): the record is
//! refused (and dead-lettered by the runtime), the rest of the batch is written, and the
//! sink keeps going — a restart would not loop on it.

mod common;

use common::*;
use framework::{Sink, SinkContext};
use mongodb::bson::doc;
use tokio_util::sync::CancellationToken;

fn ctx() -> SinkContext {
    SinkContext::new(CancellationToken::new())
}

/// A `btc-price-zscore` record with a single z-score for `window`.
fn payload_with_window(i: i64, window: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "timestamp": framework::event_time::format_millis(BASE_MS + i * 100),
        "symbol": "BTCUSDT",
        "price": expected_price(i),
        "zscores": [{"window": window, "zscore_price": 1.5}],
    }))
    .unwrap()
}

#[tokio::test]
async fn a_window_naming_an_invalid_collection_is_refused_and_the_rest_of_the_batch_is_written() {
    let uri = mongo_uri();
    let database = unique_database("bad_window");
    let mut sink = sink(config(&uri, &database, serde_json::json!({})));
    let long_window = "w".repeat(300);
    let mut payloads = payloads("BTCUSDT", 0..10);
    payloads.insert(3, payload_with_window(100, &long_window));
    payloads.insert(7, payload_with_window(101, "bad$window"));

    let outcome = sink.write(&records(&payloads), &ctx()).await.unwrap();
    let refused: Vec<(usize, &str)> = outcome.rejected.iter().map(|(i, r, _)| (*i, *r)).collect();
    // The rendered names: one over MongoDB's 255-byte namespaces, one with `$`.
    assert_eq!(
        refused,
        vec![(3, "invalid_collection"), (7, "invalid_collection")]
    );
    assert!(
        outcome.rejected[0].2.contains("namespace"),
        "{:?}",
        outcome.rejected
    );

    let client = client(&uri).await;
    for window in WINDOWS {
        let docs = documents(&client, &database, &format!("btc-price-zscore-{window}")).await;
        assert_eq!(docs.len(), 10, "every good record of {window} is written");
    }
    // The same batch again (as after a restart) gives the same answer: no loop, no failure.
    let again = sink.write(&records(&payloads), &ctx()).await.unwrap();
    assert_eq!(again.rejected.len(), 2);
}

#[tokio::test]
async fn documents_the_server_refuses_are_refused_one_by_one() {
    let uri = mongo_uri();
    let database = unique_database("validation");
    let client = client(&uri).await;
    // Prices above 97_000.05 fail the collection's validator.
    let created = client
        .database(&database)
        .create_collection("btc-price-zscore-30s")
        .validator(doc! { "price": { "$lt": 97_000.05 } })
        .await;
    if let Err(e) = created {
        panic!("the server must support collection validators: {e}");
    }
    let mut sink = sink(config(&uri, &database, serde_json::json!({})));
    let payloads: Vec<Vec<u8>> = (0..10).map(|i| payload_with_window(i, "30s")).collect();
    let outcome = sink.write(&records(&payloads), &ctx()).await.unwrap();
    let refused: Vec<usize> = outcome.rejected.iter().map(|(i, _, _)| *i).collect();
    assert_eq!(refused, vec![5, 6, 7, 8, 9], "{:?}", outcome.rejected);
    assert!(outcome.rejected.iter().all(|(_, r, _)| *r == "write_error"));
    let docs = documents(&client, &database, "btc-price-zscore-30s").await;
    assert_eq!(docs.len(), 5, "the valid documents are written");
}
