//! Helpers shared by the MongoDB sink's integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use connector_mongo::{MongoSink, MongoSinkConfig};
use framework::{connector::StageContext, InputRecord};
use mongodb::{bson::Document, Client};

/// The server the project's test script started (tests fail loudly without it) and a
/// free port for a test's own server: the helpers every crate's tests share.
#[allow(unused_imports)] // each test binary uses a different subset
pub use framework::testing::{free_port, mongo_uri};

/// A database name no other test (or earlier run) uses (MongoDB allows 63 characters).
pub fn unique_database(test: &str) -> String {
    let mut name = framework::testing::unique(&format!("t_{test}")).replace('-', "_");
    name.truncate(63);
    name
}

pub fn stage() -> StageContext {
    StageContext {
        pipeline: "test".into(),
        stage: "load".into(),
        connector: "mongo",
    }
}

/// A sink config with fast retries, from `extra` JSON fields merged over the basics.
pub fn config(uri: &str, database: &str, extra: serde_json::Value) -> MongoSinkConfig {
    let mut value = serde_json::json!({
        "uri": uri,
        "database": database,
        "retry": {"initial_backoff": "50ms", "max_backoff": "500ms"},
    });
    if let (Some(base), Some(layout)) = (value.as_object_mut(), btc_layout().as_object()) {
        base.extend(layout.clone());
    }
    if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(value).unwrap()
}

/// The layout of `pipelines/btcusdt.yaml`'s `load` stage.
pub fn btc_layout() -> serde_json::Value {
    serde_json::json!({
        "collection": "btc-price-zscore-{window}",
        "explode": "zscores",
        "key": ["symbol", "timestamp"],
        "date_fields": ["timestamp"],
    })
}

/// A retry counter the test can read, as the runtime passes the stage's
/// `pipeline_sink_write_retries_total`.
pub fn counted_ctx(
    shutdown: tokio_util::sync::CancellationToken,
) -> (
    framework::SinkContext,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let retries = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = metrics::Counter::from_arc(retries.clone());
    (
        framework::SinkContext::with_retry_counter(shutdown, counter),
        retries,
    )
}

pub fn sink(config: MongoSinkConfig) -> MongoSink {
    MongoSink::new(config, &stage()).unwrap()
}

pub const WINDOWS: [&str; 6] = ["30s", "1m", "5m", "15m", "30m", "1h"];
pub const BASE_MS: i64 = 1_746_631_860_000; // 2025-05-07T15:31:00.000Z

/// A `btc-price-zscore` record whose values are a function of `i`.
pub fn zscore_payload(symbol: &str, i: i64) -> Vec<u8> {
    let ts = framework::event_time::format_millis(BASE_MS + i * 100);
    let zscores: Vec<_> = WINDOWS
        .iter()
        .enumerate()
        .map(|(w, window)| {
            serde_json::json!({"window": window, "zscore_price": expected_zscore(i, w)})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "timestamp": ts, "symbol": symbol, "price": expected_price(i), "zscores": zscores,
    }))
    .unwrap()
}

pub fn expected_price(i: i64) -> f64 {
    97_000.0 + i as f64 * 0.01
}

pub fn expected_zscore(i: i64, window: usize) -> f64 {
    ((i * 7 + window as i64) % 50) as f64 / 10.0 - 2.5
}

pub fn payloads(symbol: &str, range: std::ops::Range<i64>) -> Vec<Vec<u8>> {
    range.map(|i| zscore_payload(symbol, i)).collect()
}

pub fn records(payloads: &[Vec<u8>]) -> Vec<InputRecord<'_>> {
    payloads
        .iter()
        .enumerate()
        .map(|(offset, payload)| InputRecord {
            port: 0,
            key: Some(b"BTCUSDT"),
            payload,
            timestamp_ms: None,
            partition: 0,
            offset: offset as i64,
        })
        .collect()
}

pub async fn client(uri: &str) -> Client {
    Client::with_uri_str(uri).await.unwrap()
}

/// Every document of a collection, sorted by (symbol, timestamp).
pub async fn documents(client: &Client, database: &str, collection: &str) -> Vec<Document> {
    use futures::TryStreamExt;
    client
        .database(database)
        .collection::<Document>(collection)
        .find(mongodb::bson::doc! {})
        .sort(mongodb::bson::doc! {"symbol": 1, "timestamp": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

// ------------------------------------------------------------------------ own server

/// The secantusd-rs binary: $SECANTUSD_BIN, then PATH, then ~/.cargo/bin.
pub fn secantusd_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("SECANTUSD_BIN") {
        return PathBuf::from(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("secantusd-rs");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let candidate = cargo_home.map(|c| c.join("bin").join("secantusd-rs"));
    match candidate {
        Some(c) if c.is_file() => c,
        _ => panic!("secantusd-rs not found (SECANTUSD_BIN, PATH, ~/.cargo/bin): run scripts/servers.sh install"),
    }
}

/// A secantusd-rs child process owned by one test, killed on drop.
pub struct OwnServer {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
}

impl OwnServer {
    pub fn start(port: u16, data_dir: PathBuf) -> OwnServer {
        let child = Command::new(secantusd_binary())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--storage-path",
            ])
            .arg(&data_dir)
            .args(["--cache-size", "64M", "--log-file-max", "8MB"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "secantusd-rs did not open port {port}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        OwnServer {
            child: Some(child),
            port,
            data_dir,
        }
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// SIGKILL: the harshest outage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}
