//! Insert-first writes against a real secantusd-rs (`MONGO_URI`): a re-delivered batch,
//! alone or mixed with new keys and changed values, ends with exactly the documents one
//! delivery of the final records writes (same bytes but `_id`, which a replacement keeps).

mod common;

use common::*;
use framework::{Sink, SinkContext};
use mongodb::bson::{Bson, Document};
use tokio_util::sync::CancellationToken;

fn ctx() -> SinkContext {
    SinkContext::new(CancellationToken::new())
}

/// Record `i` with a changed price and z-scores (a record recomputed after a restart).
fn changed_payload(i: i64) -> Vec<u8> {
    let mut value: serde_json::Value =
        serde_json::from_slice(&zscore_payload("BTCUSDT", i)).expect("the fixture payload is JSON");
    value["price"] = serde_json::json!(expected_price(i) + 1000.0);
    if let Some(zscores) = value["zscores"].as_array_mut() {
        for z in zscores {
            z["zscore_price"] = serde_json::json!(9.5);
        }
    }
    serde_json::to_vec(&value).expect("a JSON value serializes")
}

/// Every window collection's documents, sorted by key.
async fn all_documents(client: &mongodb::Client, database: &str) -> Vec<Vec<Document>> {
    let mut out = Vec::new();
    for window in WINDOWS {
        out.push(documents(client, database, &format!("btc-price-zscore-{window}")).await);
    }
    out
}

/// The BSON bytes of each document, with or without `_id` (`Document`'s equality
/// ignores field order; bytes do not).
fn bytes(collections: &[Vec<Document>], with_id: bool) -> Vec<Vec<Vec<u8>>> {
    collections
        .iter()
        .map(|docs| {
            docs.iter()
                .map(|d| {
                    let mut d = d.clone();
                    if !with_id {
                        d.remove("_id");
                    }
                    mongodb::bson::to_vec(&d).expect("a document encodes")
                })
                .collect()
        })
        .collect()
}

fn ids(collections: &[Vec<Document>]) -> Vec<Vec<Bson>> {
    collections
        .iter()
        .map(|docs| {
            docs.iter()
                .map(|d| d.get("_id").cloned().unwrap_or(Bson::Null))
                .collect()
        })
        .collect()
}

async fn redelivery_ends_as_one_delivery(write_command: &str) {
    let uri = mongo_uri();
    let database = unique_database(&format!("redeliver_{write_command}"));
    let reference = unique_database(&format!("reference_{write_command}"));
    let cfg = |db: &str| {
        config(
            &uri,
            db,
            serde_json::json!({"write_command": write_command}),
        )
    };
    let client = client(&uri).await;

    let first = payloads("BTCUSDT", 0..100);
    let mut sink = sink(cfg(&database));
    sink.write(&records(&first), &ctx()).await.unwrap();
    let written = all_documents(&client, &database).await;

    // The same batch again, from a restarted sink: nothing changes, `_id` included.
    let mut restarted = common::sink(cfg(&database));
    let outcome = restarted.write(&records(&first), &ctx()).await.unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    let again = all_documents(&client, &database).await;
    assert_eq!(
        bytes(&again, true),
        bytes(&written, true),
        "a re-delivered batch changes nothing"
    );
    let counters = restarted.counters().snapshot();
    assert_eq!(
        (counters.documents_inserted, counters.documents_replaced),
        (0, 600)
    );

    // A batch mixing written keys (50..100, recomputed with other values) and new ones
    // (100..150), in an interleaved order.
    let mut mixed: Vec<Vec<u8>> = Vec::new();
    for i in 50..100 {
        mixed.push(zscore_payload("BTCUSDT", i + 50));
        mixed.push(changed_payload(i));
    }
    let outcome = restarted.write(&records(&mixed), &ctx()).await.unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    let counters = restarted.counters().snapshot();
    assert_eq!(
        (counters.documents_inserted, counters.documents_replaced),
        (300, 900)
    );

    // One delivery of the final records into an empty database.
    let mut last: Vec<Vec<u8>> = payloads("BTCUSDT", 0..50);
    last.extend((50..100).map(changed_payload));
    last.extend(payloads("BTCUSDT", 100..150));
    common::sink(cfg(&reference))
        .write(&records(&last), &ctx())
        .await
        .unwrap();

    let actual = all_documents(&client, &database).await;
    let expected = all_documents(&client, &reference).await;
    assert_eq!(bytes(&actual, false), bytes(&expected, false));
    // Replaced documents keep the `_id` their first delivery got.
    let kept: Vec<Vec<Bson>> = ids(&actual)
        .into_iter()
        .map(|c| c[..100].to_vec())
        .collect();
    assert_eq!(kept, ids(&written));
    for docs in &actual {
        assert_eq!(docs.len(), 150);
        assert_eq!(
            docs[75].get_f64("price").unwrap(),
            expected_price(75) + 1000.0
        );
        assert_eq!(docs[75].get_f64("zscore_price").unwrap(), 9.5);
    }
    client.database(&database).drop().await.unwrap();
    client.database(&reference).drop().await.unwrap();
}

#[tokio::test]
async fn a_redelivered_or_mixed_batch_ends_with_the_documents_of_one_delivery() {
    redelivery_ends_as_one_delivery("bulk_write").await;
}

#[tokio::test]
async fn per_collection_commands_end_a_redelivery_with_the_documents_of_one_delivery() {
    redelivery_ends_as_one_delivery("per_collection").await;
}
