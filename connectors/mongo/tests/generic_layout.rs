//! The generic sink against a real secantusd-rs (`MONGO_URI`): `pipelines/btcusdt.yaml`'s
//! layout writes exactly what the z-score-only sink wrote, records of another shape land
//! as configured, hostile records are dead-lettered while good ones are written, and the
//! sink's own counter reaches the stage metrics.

mod common;

use std::collections::BTreeMap;

use common::*;
use framework::{Sink, SinkContext};
use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document};
use tokio_util::sync::CancellationToken;

fn ctx() -> SinkContext {
    SinkContext::new(CancellationToken::new())
}

/// The layout keys of the `load` stage in `pipelines/btcusdt.yaml`, as shipped.
fn btcusdt_yaml_layout() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines/btcusdt.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let (spec, _) = framework::yaml::load(&text).unwrap();
    let load = spec["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "load")
        .expect("a load stage");
    assert_eq!(load["type"], "mongo");
    let mut layout = serde_json::Map::new();
    for (name, value) in load["config"].as_object().unwrap() {
        if !["uri", "database"].contains(&name.as_str()) {
            layout.insert(name.clone(), value.clone());
        }
    }
    serde_json::Value::Object(layout)
}

/// A document as `[field, BSON type, value]` triples in stored order, `_id` left out
/// (the server assigns it): the format of the fixture captured on main.
fn describe(document: &Document) -> serde_json::Value {
    let fields: Vec<serde_json::Value> = document
        .iter()
        .filter(|(name, _)| name.as_str() != "_id")
        .map(|(name, value)| {
            let (kind, value) = match value {
                Bson::DateTime(d) => ("date", serde_json::json!(d.timestamp_millis())),
                Bson::String(s) => ("string", serde_json::json!(s)),
                Bson::Double(f) => ("double", serde_json::json!(format!("{f:?}"))),
                Bson::Int64(i) => ("long", serde_json::json!(i)),
                Bson::Int32(i) => ("int", serde_json::json!(i)),
                other => ("other", serde_json::json!(other.to_string())),
            };
            serde_json::json!([name, kind, value])
        })
        .collect();
    serde_json::json!(fields)
}

async fn index_descriptions(client: &mongodb::Client, database: &str, name: &str) -> Vec<String> {
    let models: Vec<mongodb::IndexModel> = client
        .database(database)
        .collection::<Document>(name)
        .list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut indexes: Vec<String> = models
        .into_iter()
        .map(|index| {
            let options = index.options.unwrap();
            format!(
                "{} {} unique={:?}",
                options.name.unwrap(),
                index.keys,
                options.unique
            )
        })
        .collect();
    indexes.sort();
    indexes
}

#[tokio::test]
async fn btcusdt_layout_writes_exactly_the_documents_and_indexes_of_the_zscore_only_sink() {
    let uri = mongo_uri();
    let database = unique_database("btc_equal");
    let mut cfg = serde_json::json!({
        "uri": uri, "database": database,
    });
    cfg.as_object_mut()
        .unwrap()
        .extend(btcusdt_yaml_layout().as_object().unwrap().clone());
    let mut sink = sink(serde_json::from_value(cfg).unwrap());
    let payloads: Vec<Vec<u8>> = include_str!("fixtures/btcusdt_zscore_records.jsonl")
        .lines()
        .map(|line| line.as_bytes().to_vec())
        .collect();
    let outcome = sink.write(&records(&payloads), &ctx()).await.unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);

    let client = client(&uri).await;
    let mut names = client
        .database(&database)
        .list_collection_names()
        .await
        .unwrap();
    names.sort();
    let mut actual = BTreeMap::new();
    for name in names {
        let documents = documents(&client, &database, &name).await;
        actual.insert(
            name.clone(),
            serde_json::json!({
                "indexes": index_descriptions(&client, &database, &name).await,
                "documents": documents.iter().map(describe).collect::<Vec<_>>(),
            }),
        );
    }
    let expected: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(include_str!("fixtures/btcusdt_documents_today.json")).unwrap();
    // Same collections; per collection the same indexes and documents: fields in the same
    // order, with the same BSON types and values.
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (name, expected) in &expected {
        assert_eq!(&actual[name], expected, "collection {name}");
    }
    client.database(&database).drop().await.unwrap();
}

fn sensor_config(uri: &str, database: &str) -> connector_mongo::MongoSinkConfig {
    serde_json::from_value(serde_json::json!({
        "uri": uri,
        "database": database,
        "collection": "sensors-{sensor}",
        "explode": "stats",
        "key": ["sensor", "ts", "window"],
        "date_fields": ["ts"],
    }))
    .unwrap()
}

fn sensor_record(sensor: &str, minute: u32, temps: &[(&str, f64)]) -> Vec<u8> {
    let stats: Vec<_> = temps
        .iter()
        .map(|(window, t)| serde_json::json!({"window": window, "avg_temp_c": t}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "sensor": sensor,
        "ts": format!("2026-01-01T00:{minute:02}:00Z"),
        "stats": stats,
    }))
    .unwrap()
}

#[tokio::test]
async fn sensor_records_land_one_document_per_window_in_a_collection_per_sensor() {
    let uri = mongo_uri();
    let database = unique_database("sensors");
    let mut sink = sink(sensor_config(&uri, &database));
    let payloads = vec![
        sensor_record("s1", 0, &[("1m", 1.5), ("5m", 2.25)]),
        sensor_record("s2", 0, &[("1m", -3.0)]),
        sensor_record("s1", 1, &[("1m", 1.75)]),
    ];
    let outcome = sink.write(&records(&payloads), &ctx()).await.unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    // Re-delivery overwrites: still one document per (sensor, ts, window).
    sink.write(&records(&payloads), &ctx()).await.unwrap();

    let client = client(&uri).await;
    let mut names = client
        .database(&database)
        .list_collection_names()
        .await
        .unwrap();
    names.sort();
    assert_eq!(names, ["sensors-s1", "sensors-s2"]);
    let s1 = documents(&client, &database, "sensors-s1").await;
    let described: Vec<_> = s1.iter().map(describe).collect();
    let at = |minute: i64| serde_json::json!(1_767_225_600_000i64 + minute * 60_000);
    let doc = |minute: i64, window: &str, temp: &str| {
        serde_json::json!([
            ["sensor", "string", "s1"],
            ["ts", "date", at(minute)],
            ["window", "string", window],
            ["avg_temp_c", "double", temp]
        ])
    };
    let mut expected = vec![
        doc(0, "1m", "1.5"),
        doc(0, "5m", "2.25"),
        doc(1, "1m", "1.75"),
    ];
    let mut described_sorted = described.clone();
    described_sorted.sort_by_key(|d| d.to_string());
    expected.sort_by_key(|d| d.to_string());
    assert_eq!(described_sorted, expected);
    assert_eq!(
        index_descriptions(&client, &database, "sensors-s1").await,
        [
            "_id_ { \"_id\": 1 } unique=None",
            "sensor_1_ts_1_window_1 { \"sensor\": 1, \"ts\": 1, \"window\": 1 } unique=Some(true)"
        ]
    );
    let s2 = documents(&client, &database, "sensors-s2").await;
    assert_eq!(s2.len(), 1);
    assert_eq!(
        s2[0].get("ts"),
        Some(&Bson::DateTime(DateTime::from_millis(1_767_225_600_000)))
    );
    client.database(&database).drop().await.unwrap();
}

#[tokio::test]
async fn hostile_records_are_dead_lettered_with_their_reason_and_good_ones_written() {
    let uri = mongo_uri();
    let database = unique_database("hostile");
    let mut config = sensor_config(&uri, &database);
    config.max_collections = 2;
    let mut sink = sink(config);
    let ts = "2026-01-01T00:00:00Z";
    let hostile: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "malformed_json"),
        (b"[1,2,3]".to_vec(), "not_an_object"),
        (
            format!(r#"{{"ts":"{ts}","stats":[{{"window":"1m"}}]}}"#).into_bytes(),
            "missing_template_field",
        ),
        (
            format!(r#"{{"sensor":"a$b","ts":"{ts}","stats":[{{"window":"1m"}}]}}"#).into_bytes(),
            "invalid_collection",
        ),
        (
            format!(
                r#"{{"sensor":"{}","ts":"{ts}","stats":[{{"window":"1m"}}]}}"#,
                "x".repeat(300)
            )
            .into_bytes(),
            "invalid_collection",
        ),
        (
            format!(r#"{{"sensor":"s1","ts":"{ts}","stats":[{{"avg_temp_c":1.0}}]}}"#).into_bytes(),
            "missing_key_field",
        ),
        (
            r#"{"sensor":"s1","ts":"noon","stats":[{"window":"1m"}]}"#
                .as_bytes()
                .to_vec(),
            "bad_date",
        ),
        (
            format!(r#"{{"sensor":"s1","ts":"{ts}"}}"#).into_bytes(),
            "bad_explode",
        ),
        (
            format!(r#"{{"sensor":"s1","ts":"{ts}","stats":"1m"}}"#).into_bytes(),
            "bad_explode",
        ),
        (
            format!(r#"{{"sensor":"s1","ts":"{ts}","stats":[{{"window":"1m","_id":7}}]}}"#)
                .into_bytes(),
            "reserved_field",
        ),
        // Two collections are allowed: s1 and s2 come first, s3 would be the third.
        (
            sensor_record("s3", 0, &[("1m", 1.0)]),
            "too_many_collections",
        ),
    ];
    let mut payloads = vec![
        sensor_record("s1", 0, &[("1m", 1.5)]),
        sensor_record("s2", 0, &[("1m", 2.5)]),
    ];
    let good = payloads.len();
    payloads.extend(hostile.iter().map(|(p, _)| p.clone()));
    payloads.push(sensor_record("s1", 1, &[("1m", 3.5)]));

    let outcome = sink.write(&records(&payloads), &ctx()).await.unwrap();
    let reasons: Vec<(usize, &str)> = outcome.rejected.iter().map(|(i, r, _)| (*i, *r)).collect();
    let expected: Vec<(usize, &str)> = hostile
        .iter()
        .enumerate()
        .map(|(i, (_, reason))| (good + i, *reason))
        .collect();
    assert_eq!(reasons, expected, "{:#?}", outcome.rejected);
    assert!(outcome
        .rejected
        .iter()
        .all(|(_, _, detail)| !detail.is_empty()));

    let client = client(&uri).await;
    assert_eq!(documents(&client, &database, "sensors-s1").await.len(), 2);
    assert_eq!(documents(&client, &database, "sensors-s2").await.len(), 1);
    let mut names = client
        .database(&database)
        .list_collection_names()
        .await
        .unwrap();
    names.sort();
    assert_eq!(
        names,
        ["sensors-s1", "sensors-s2"],
        "nothing else was created"
    );
    client.database(&database).drop().await.unwrap();
}

#[tokio::test]
async fn written_documents_are_exported_as_a_stage_metric() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let uri = mongo_uri();
    let database = unique_database("metric");
    // The counters are registered when the sink is built, as the runtime does with its
    // recorder installed.
    let mut sink = metrics::with_local_recorder(&recorder, || {
        connector_mongo::MongoSink::new(sensor_config(&uri, &database), &stage()).unwrap()
    });
    let payloads = vec![sensor_record("s1", 0, &[("1m", 1.5), ("5m", 2.0)])];
    sink.write(&records(&payloads), &ctx()).await.unwrap();
    sink.write(&records(&payloads), &ctx()).await.unwrap();

    let text = handle.render();
    let line = |outcome: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("pipeline_mongo_documents_written_total{")
                    && l.contains(&format!("outcome=\"{outcome}\""))
                    && l.contains("stage=\"load\"")
                    && l.contains("connector=\"mongo\"")
            })
            .unwrap_or_else(|| panic!("no {outcome} series in:\n{text}"))
            .to_string()
    };
    assert!(line("inserted").ends_with(" 2"), "{}", line("inserted"));
    assert!(line("replaced").ends_with(" 2"), "{}", line("replaced"));
    client(&uri).await.database(&database).drop().await.unwrap();
}
