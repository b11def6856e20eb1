//! Progress markers (docs/semantics.md §7) change when windows close, never what is
//! written: a live run against the Binance mock and a replay of the prices it archived
//! write the same documents.

mod common;

use std::{collections::BTreeMap, path::Path, time::Duration};

use binance_mock::{MockBinance, MockConfig};
use common::*;
use mongodb::bson::Document;

fn stages(source: &str, archive: &str, name: &str) -> String {
    let t = |topic: &str| format!("{name}-{topic}");
    format!(
        r#"name: {name}
kafka:
  brokers: ${{KAFKA_BROKERS}}
  commit_interval: 200ms
topics:
  {p}: {{ partitions: 3 }}
  {m}: {{ partitions: 3 }}
  {z}: {{ partitions: 3 }}
stages:
{source}
{archive}
  - name: moving
    type: moving_stats
    input: {p}
    output: {m}
    config: {{ windows: [2s, 5s], slide: 1s, lateness: 1s }}
  - name: zscore
    type: zscore
    inputs: {{ prices: {p}, stats: {m} }}
    output: {z}
    config: {{ slide: 1s, lateness: 1s }}
  - name: load
    type: mongo
    input: {z}
    config: {{ uri: "${{MONGO_URI}}", database: {name}, collection: "z-{{window}}", explode: zscores, key: [symbol, timestamp], date_fields: [timestamp] }}
"#,
        p = t("prices"),
        m = t("moving"),
        z = t("zscore"),
    )
}

/// Collection -> symbol -> timestamp ms -> (price, zscore).
type Docs = BTreeMap<String, BTreeMap<String, BTreeMap<i64, (f64, Option<f64>)>>>;

fn documents(runtime: &tokio::runtime::Runtime, database: &str) -> Docs {
    use futures::TryStreamExt;
    runtime.block_on(async {
        let client = mongodb::Client::with_uri_str(mongo_uri())
            .await
            .expect("mongo client");
        let db = client.database(database);
        let mut all = Docs::new();
        for name in db.list_collection_names().await.expect("collections") {
            let docs: Vec<Document> = db
                .collection::<Document>(&name)
                .find(mongodb::bson::doc! {})
                .await
                .expect("find")
                .try_collect()
                .await
                .expect("collect");
            for d in docs {
                all.entry(name.clone())
                    .or_default()
                    .entry(d.get_str("symbol").expect("symbol").to_string())
                    .or_default()
                    .insert(
                        d.get_datetime("timestamp").expect("ts").timestamp_millis(),
                        (
                            d.get_f64("price").expect("price"),
                            d.get_f64("zscore_price").ok(),
                        ),
                    );
            }
        }
        all
    })
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    write_file(dir, &format!("{name}.yaml"), text)
}

#[test]
fn a_live_run_and_a_replay_of_its_prices_write_the_same_documents() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mock = runtime
        .block_on(MockBinance::start(MockConfig {
            symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
            change_probability: 0.3,
            ..MockConfig::default()
        }))
        .expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("prices.jsonl");
    let live_name = unique("live");
    let live = write(
        dir.path(),
        &live_name,
        &stages(
            &format!(
                r#"  - name: extract
    type: binance
    output: {live_name}-prices
    config: {{ base_urls: ["{}"], symbols: [BTCUSDT, ETHUSDT], interval: 100ms }}"#,
                mock.base_url()
            ),
            &format!(
                r#"  - name: archive
    type: file_sink
    input: {live_name}-prices
    config: {{ path: "{}" }}"#,
                archive.display()
            ),
            &live_name,
        ),
    );
    let envs = [
        ("KAFKA_BROKERS", kafka_brokers()),
        ("MONGO_URI", mongo_uri()),
    ];
    let child = KillOnDrop(Some(spawn_pipeline(
        &["run", live.to_str().expect("utf-8")],
        &envs,
    )));
    std::thread::sleep(Duration::from_secs(14));
    let child = child.take();
    sigterm(&child);
    let output = wait_with_timeout(child, Duration::from_secs(30));
    assert!(output.status.success(), "{}", stderr_of(&output));

    let replay_name = unique("replay");
    let replay = write(
        dir.path(),
        &replay_name,
        &stages(
            &format!(
                r#"  - name: extract
    type: file_source
    output: {replay_name}-prices
    config: {{ path: "{}", key_field: symbol, timestamp_field: timestamp }}"#,
                archive.display()
            ),
            "",
            &replay_name,
        ),
    );
    let output = run_pipeline(
        &["run", replay.to_str().expect("utf-8")],
        &envs,
        Duration::from_secs(120),
    );
    assert!(output.status.success(), "{}", stderr_of(&output));

    let live_docs = documents(&runtime, &live_name);
    let replay_docs = documents(&runtime, &replay_name);
    assert_eq!(
        live_docs.keys().collect::<Vec<_>>(),
        ["z-2s", "z-5s"],
        "window collections of the live run"
    );
    for (collection, symbols) in &live_docs {
        for (symbol, live) in symbols {
            assert!(
                live.len() >= 40,
                "{collection}/{symbol}: {} documents",
                live.len()
            );
            // Per symbol the live run wrote a prefix in time of what the replay writes
            // (the replay also closes the windows the stop left open).
            let last = *live.keys().next_back().expect("documents");
            let replayed: BTreeMap<i64, (f64, Option<f64>)> = replay_docs[collection][symbol]
                .range(..=last)
                .map(|(t, v)| (*t, *v))
                .collect();
            assert_eq!(&replayed, live, "{collection}/{symbol}: live vs replay");
        }
    }
    runtime.block_on(mock.shutdown());
}
