//! The whole BTCUSDT pipeline (the shipped `pipelines/btcusdt.yaml`) against the local
//! Binance mock, the real broker and the real MongoDB server. Every document of every
//! per-window collection is checked against z-scores computed here, independently and
//! exactly, from the records in `btc-price`.

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use binance_mock::{MockBinance, MockConfig, MockHandle};
use common::*;
use mongodb::bson::Document;
use nix::sys::signal::Signal;

const WINDOWS: [(&str, i64); 6] = [
    ("30s", 30_000),
    ("1m", 60_000),
    ("5m", 300_000),
    ("15m", 900_000),
    ("30m", 1_800_000),
    ("1h", 3_600_000),
];
const LATENESS_MS: i64 = 10_000;
const SLIDE_MS: i64 = 1_000;

/// The shipped pipeline with its topics and group names made unique to this test.
struct Deployment {
    file: PathBuf,
    prefix: String,
    database: String,
    envs: Vec<(&'static str, String)>,
}

impl Deployment {
    fn new(dir: &Path, mock: &MockHandle) -> Self {
        let prefix = unique("e2e");
        let text = std::fs::read_to_string("pipelines/btcusdt.yaml")
            .expect("read pipelines/btcusdt.yaml")
            .replace("name: btcusdt", &format!("name: {prefix}"))
            .replace("btc-price", &format!("{prefix}-btc-price"))
            // The collections keep their documented names.
            .replace(
                &format!("collection: \"{prefix}-btc-price-zscore-{{window}}\""),
                "collection: \"btc-price-zscore-{window}\"",
            );
        let file = write_file(dir, "btcusdt.yaml", &text);
        let database = unique("btc").replace('-', "_");
        let envs = vec![
            ("KAFKA_BROKERS", kafka_brokers()),
            ("MONGO_URI", mongo_uri()),
            ("MONGO_DATABASE", database.clone()),
            ("BINANCE_BASE_URLS", format!("[{}]", mock.base_url())),
        ];
        Deployment {
            file,
            prefix,
            database,
            envs,
        }
    }

    fn spawn(&self, stages: &[&str]) -> Child {
        let mut args = vec!["run", self.file.to_str().expect("utf-8")];
        for stage in stages {
            args.extend(["--stage", stage]);
        }
        spawn_pipeline(&args, &self.envs)
    }

    fn topic(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }
}

fn stop(child: Child, what: &str) {
    signal(&child, Signal::SIGTERM);
    let output = wait_with_timeout(child, Duration::from_secs(30));
    assert!(
        output.status.success(),
        "{what} after SIGTERM: {:?}\n{}",
        output.status,
        stderr_of(&output)
    );
}

async fn documents(database: &str) -> BTreeMap<String, Vec<Document>> {
    use futures::TryStreamExt;
    let client = mongodb::Client::with_uri_str(mongo_uri())
        .await
        .expect("mongo client");
    let db = client.database(database);
    let mut all = BTreeMap::new();
    for (window, _) in WINDOWS {
        let collection = db.collection::<Document>(&format!("btc-price-zscore-{window}"));
        let docs: Vec<Document> = collection
            .find(mongodb::bson::doc! {})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("collect");
        all.insert(window.to_string(), docs);
    }
    all
}

async fn document_count(database: &str) -> usize {
    documents(database).await.values().map(Vec::len).sum()
}

/// Waits until the collections stop growing (the downstream stages caught up).
fn wait_until_settled(runtime: &tokio::runtime::Runtime, database: &str) {
    let mut last = usize::MAX;
    let mut stable_since = Instant::now();
    let started = Instant::now();
    loop {
        let count = runtime.block_on(document_count(database));
        if count != last {
            last = count;
            stable_since = Instant::now();
        } else if count > 0 && stable_since.elapsed() > Duration::from_secs(8) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "collections never settled ({count} documents)"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Window -> (symbol, timestamp ms) -> (price, exact zscore, tolerance).
type ExpectedByWindow = BTreeMap<String, BTreeMap<(String, i64), (f64, f64, f64)>>;

/// Exact z-scores from the price records: prices in integer cents, sums in i128.
/// Returns window -> (symbol, timestamp ms) -> (price, zscore, tolerance).
///
/// The tolerance is 1e-9 relative plus what the record format itself costs: the average
/// travels as an f64 near 1e5, so `price - avg` carries a few ulps (~1e-11) of error,
/// which dividing by a tiny standard deviation (a cent or less) magnifies.
fn expected_zscores(prices: &[TopicRecord]) -> ExpectedByWindow {
    let mut by_symbol: HashMap<String, Vec<(i64, i128, f64)>> = HashMap::new();
    for record in prices.iter().filter(|r| !r.end_of_input) {
        let value: serde_json::Value = serde_json::from_slice(&record.payload).expect("price JSON");
        let price = value["price"].as_f64().expect("price");
        let t =
            chrono::DateTime::parse_from_rfc3339(value["timestamp"].as_str().expect("timestamp"))
                .expect("time")
                .timestamp_millis();
        let cents = (price * 100.0).round() as i128;
        assert!(
            ((cents as f64) / 100.0 - price).abs() < 1e-6,
            "the mock quotes whole cents: {price}"
        );
        by_symbol
            .entry(value["symbol"].as_str().expect("symbol").to_string())
            .or_default()
            .push((t, cents, price));
    }
    let mut expected: ExpectedByWindow = BTreeMap::new();
    for (symbol, records) in by_symbol {
        // Live receipt times only grow, so no record is late and the final watermark is
        // the last time minus the lateness: windows ending after it are still open.
        let max_t = records.iter().map(|r| r.0).max().unwrap_or(0);
        let watermark = max_t - LATENESS_MS;
        for &(t, cents, price) in &records {
            let e = t.div_euclid(SLIDE_MS) * SLIDE_MS;
            if e > watermark {
                continue;
            }
            for (window, length) in WINDOWS {
                let members: Vec<i128> = records
                    .iter()
                    .filter(|r| r.0 >= e - length && r.0 < e)
                    .map(|r| r.1)
                    .collect();
                if members.is_empty() {
                    continue;
                }
                let n = members.len() as i128;
                let s1: i128 = members.iter().sum();
                let s2: i128 = members.iter().map(|c| c * c).sum();
                let spread = n * s2 - s1 * s1; // n^2 * variance, in cents^2
                let (z, tolerance) = if spread == 0 {
                    (0.0, 0.0)
                } else {
                    let z = ((n * cents - s1) as f64) / (spread as f64).sqrt();
                    let std = (spread as f64).sqrt() / (n as f64) / 100.0;
                    (z, 1e-9 * z.abs() + 4.0 * f64::EPSILON * price / std)
                };
                expected
                    .entry(window.to_string())
                    .or_default()
                    .insert((symbol.clone(), t), (price, z, tolerance));
            }
        }
    }
    expected
}

/// Every document of every collection against the independent computation.
fn verify(runtime: &tokio::runtime::Runtime, deployment: &Deployment) -> usize {
    let prices = read_topic(
        &deployment.topic("btc-price"),
        Duration::from_secs(3),
        Duration::from_secs(60),
    );
    let expected = expected_zscores(&prices);
    let actual = runtime.block_on(documents(&deployment.database));
    let mut checked = 0;
    for (window, _) in WINDOWS {
        let want = expected.get(window).cloned().unwrap_or_default();
        let docs = &actual[window];
        let mut got: BTreeMap<(String, i64), (f64, f64)> = BTreeMap::new();
        for doc in docs {
            let symbol = doc.get_str("symbol").expect("symbol").to_string();
            let timestamp = doc
                .get_datetime("timestamp")
                .expect("timestamp is a BSON date")
                .timestamp_millis();
            assert_eq!(doc.get_str("window").expect("window"), window);
            let previous = got.insert(
                (symbol, timestamp),
                (
                    doc.get_f64("price").expect("price"),
                    doc.get_f64("zscore_price").expect("zscore"),
                ),
            );
            assert!(previous.is_none(), "duplicate document in {window}");
        }
        let missing: Vec<_> = want
            .keys()
            .filter(|k| !got.contains_key(*k))
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .keys()
            .filter(|k| !want.contains_key(*k))
            .take(5)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{window}: missing {missing:?}, unexpected {extra:?} ({} vs {})",
            got.len(),
            want.len()
        );
        for (key, (price, z, tolerance)) in &want {
            let (got_price, got_z) = got[key];
            assert_eq!(got_price, *price, "{window} {key:?} price");
            assert!(
                (got_z - z).abs() <= *tolerance,
                "{window} {key:?}: zscore {got_z} vs exact {z} (tolerance {tolerance:e})"
            );
            checked += 1;
        }
    }
    checked
}

fn start_mock(runtime: &tokio::runtime::Runtime) -> MockHandle {
    // Prices move on 30% of requests so the statistics are not all zero.
    runtime
        .block_on(MockBinance::start(MockConfig {
            symbols: vec!["BTCUSDT".into()],
            change_probability: 0.3,
            ..MockConfig::default()
        }))
        .expect("mock")
}

#[test]
fn the_whole_pipeline_writes_exactly_the_independently_computed_zscores_and_dead_letters_a_malformed_record(
) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mock = start_mock(&runtime);
    let dir = tempfile::tempdir().expect("tempdir");
    let deployment = Deployment::new(dir.path(), &mock);
    let validate = run_pipeline(
        &["validate", deployment.file.to_str().expect("utf-8")],
        &deployment.envs,
        Duration::from_secs(30),
    );
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stdout)
    );

    let extract = deployment.spawn(&["extract"]);
    let downstream = deployment.spawn(&["moving", "zscore", "load"]);
    std::thread::sleep(Duration::from_secs(15));
    // A malformed z-score record goes to the sink's dead-letter topic; the rest is written.
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .expect("producer");
    runtime
        .block_on(
            producer.send(
                rdkafka::producer::FutureRecord::<str, str>::to(
                    &deployment.topic("btc-price-zscore"),
                )
                .key("BTCUSDT")
                .payload("{\"timestamp\": oops"),
                Duration::from_secs(10),
            ),
        )
        .expect("produced");
    std::thread::sleep(Duration::from_secs(25));
    stop(extract, "extract");
    wait_until_settled(&runtime, &deployment.database);
    stop(downstream, "downstream stages");

    let checked = verify(&runtime, &deployment);
    assert!(checked >= 6 * 250, "only {checked} documents checked");
    let dead = read_topic(
        &deployment.topic("btc-price-zscore-rejected"),
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    assert!(
        dead.iter().any(|r| r.payload == b"{\"timestamp\": oops"),
        "the malformed record is dead-lettered"
    );
    runtime.block_on(mock.shutdown());
}

#[test]
fn sigkill_of_the_whole_pipeline_and_a_restart_leave_exactly_the_expected_documents() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mock = start_mock(&runtime);
    let dir = tempfile::tempdir().expect("tempdir");
    let deployment = Deployment::new(dir.path(), &mock);

    let all = deployment.spawn(&[]);
    let started = Instant::now();
    while runtime.block_on(document_count(&deployment.database)) < 300 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no documents before the kill"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));
    signal(&all, Signal::SIGKILL);
    let _ = wait_with_timeout(all, Duration::from_secs(10));

    // Restart: the source in one process, the rest in another, so the source can be
    // stopped and the others can catch up before the check.
    let extract = deployment.spawn(&["extract"]);
    let downstream = deployment.spawn(&["moving", "zscore", "load"]);
    std::thread::sleep(Duration::from_secs(20));
    stop(extract, "extract");
    wait_until_settled(&runtime, &deployment.database);
    stop(downstream, "downstream stages");
    let checked = verify(&runtime, &deployment);
    assert!(checked >= 6 * 250, "only {checked} documents checked");
    runtime.block_on(mock.shutdown());
}

#[test]
fn a_20s_mongodb_outage_loses_and_duplicates_nothing_and_the_pipeline_keeps_running() {
    let servers = std::env::var("PIPELINE_SERVERS_SH")
        .expect("PIPELINE_SERVERS_SH is set by scripts/test.sh: run the tests with it");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mock = start_mock(&runtime);
    let dir = tempfile::tempdir().expect("tempdir");
    let deployment = Deployment::new(dir.path(), &mock);

    let extract = deployment.spawn(&["extract"]);
    let mut downstream = deployment.spawn(&["moving", "zscore", "load"]);
    let started = Instant::now();
    while runtime.block_on(document_count(&deployment.database)) < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no documents before the outage"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let run = |arg: &str| {
        let status = std::process::Command::new("bash")
            .arg(&servers)
            .arg(arg)
            .status()
            .expect("servers.sh");
        assert!(status.success(), "servers.sh {arg}");
    };
    run("stop-mongo");
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        downstream.try_wait().expect("poll").is_none(),
        "the pipeline exited during the outage"
    );
    run("start-mongo");
    std::thread::sleep(Duration::from_secs(10));
    stop(extract, "extract");
    wait_until_settled(&runtime, &deployment.database);
    assert!(
        downstream.try_wait().expect("poll").is_none(),
        "the pipeline exited after the outage"
    );
    stop(downstream, "downstream stages");
    let checked = verify(&runtime, &deployment);
    assert!(checked >= 6 * 250, "only {checked} documents checked");
    runtime.block_on(mock.shutdown());
}
