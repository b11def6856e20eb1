//! Helpers shared by the tests of the framework, the connectors and the binary (cargo
//! feature `testing`, enabled only as a dev-dependency feature): the servers
//! `scripts/test.sh` started, unique names, free ports, record builders and a transform
//! driver. They panic on a broken test environment: that is the test failing loudly.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    event_time::format_millis, record::Rejected, Emitter, InputRecord, OutputRecord, Transform,
};

/// Address of the real Kafka-protocol broker started by `scripts/test.sh`.
pub fn kafka_brokers() -> String {
    match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => brokers,
        _ => panic!(
            "KAFKA_BROKERS is not set: run the tests with scripts/test.sh, which starts a local broker"
        ),
    }
}

/// URI of the real MongoDB-protocol server started by `scripts/test.sh`.
pub fn mongo_uri() -> String {
    match std::env::var("MONGO_URI") {
        Ok(uri) if !uri.is_empty() => uri,
        _ => panic!(
            "MONGO_URI is not set: run the tests with scripts/test.sh, which starts a local \
             server and exports MONGO_URI (or export MONGO_URI=mongodb://127.0.0.1:PORT/?directConnection=true yourself)"
        ),
    }
}

/// A name no other test (or earlier run against the same servers) uses:
/// `<prefix>-<pid>-<counter>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// `127.0.0.1:PORT` with a port that was free a moment ago.
pub fn free_local_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").to_string()
}

/// A local port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A `price` record as the sources write it: `{"symbol","price","timestamp"}`.
pub fn price_json(symbol: &str, price: f64, t_ms: i64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "symbol": symbol,
        "price": price,
        "timestamp": format_millis(t_ms),
    }))
    .expect("a JSON object serializes")
}

/// An input record of partition 0.
pub fn input<'a>(
    port: usize,
    key: &'a [u8],
    payload: &'a [u8],
    timestamp_ms: Option<i64>,
    offset: i64,
) -> InputRecord<'a> {
    InputRecord {
        port,
        key: Some(key),
        payload,
        timestamp_ms,
        partition: 0,
        offset,
    }
}

/// Feeds records to a transform through its trait (consecutive offsets per input port)
/// and collects everything it emits and rejects.
pub struct TransformDriver<T: Transform> {
    pub transform: T,
    pub records: Vec<OutputRecord>,
    pub rejected: Vec<Rejected>,
    offsets: Vec<i64>,
}

impl<T: Transform> TransformDriver<T> {
    pub fn new(transform: T) -> Self {
        TransformDriver {
            transform,
            records: Vec::new(),
            rejected: Vec::new(),
            offsets: Vec::new(),
        }
    }

    fn drain(&mut self, mut out: Emitter) {
        self.records.append(&mut out.records);
        self.rejected.append(&mut out.rejected);
    }

    /// Processes one record on `port`, at the port's next offset.
    pub fn feed(&mut self, port: usize, key: &[u8], payload: &[u8], timestamp_ms: Option<i64>) {
        if self.offsets.len() <= port {
            self.offsets.resize(port + 1, 0);
        }
        let offset = self.offsets[port];
        self.offsets[port] += 1;
        let mut out = Emitter::new();
        self.transform
            .process(&input(port, key, payload, timestamp_ms, offset), &mut out);
        self.drain(out);
    }

    /// Signals end of input (windows close, pending records are decided).
    pub fn end(&mut self) {
        let mut out = Emitter::new();
        self.transform.end_of_input(&mut out);
        self.drain(out);
    }

    /// The emitted payloads as text.
    pub fn outputs(&self) -> Vec<String> {
        self.records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect()
    }

    /// The reasons of the rejections, in order.
    pub fn reasons(&self) -> Vec<&'static str> {
        self.rejected.iter().map(|r| r.reason).collect()
    }
}

/// The Tansu binary `scripts/servers.sh install` put in place.
pub fn tansu_bin() -> PathBuf {
    let home = std::env::var("PIPELINE_HOME").unwrap_or_else(|_| {
        format!(
            "{}/.local/share/pipeline",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let bin = Path::new(&home).join("bin/tansu");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/servers.sh install (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A Kafka-protocol broker of a test's own (for settings the shared one lacks: a schema
/// registry, TLS, a listener that differs from the advertised one), stopped when dropped.
pub struct Broker(Child);

impl Broker {
    /// Listens on `port`, tells clients to connect to `advertised`. Runs in `/`, so that
    /// relative paths in `extra` cannot depend on the test's directory.
    pub fn start(port: u16, advertised: u16, extra: &[&str]) -> Broker {
        let child = Command::new(tansu_bin())
            .current_dir("/")
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{advertised}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = Broker(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the test broker did not listen on {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_keep_their_prefix() {
        let (a, b) = (unique("topic"), unique("topic"));
        assert_ne!(a, b);
        assert!(a.starts_with("topic-"));
    }

    #[test]
    fn price_records_carry_the_three_fields_of_the_price_format() {
        let value: serde_json::Value = serde_json::from_slice(&price_json("BTC", 1.5, 0)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"symbol": "BTC", "price": 1.5, "timestamp": "1970-01-01T00:00:00.000Z"})
        );
    }
}
