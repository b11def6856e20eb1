//! Helpers shared by the end-to-end tests: the real broker's address, unique names, and
//! running the `pipeline` binary.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The servers' addresses and unique names: the helpers every crate's tests share.
#[allow(unused_imports)] // each test binary uses a different subset
pub use framework::testing::{free_local_addr, kafka_brokers, mongo_uri, unique, Broker};

pub fn pipeline_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pipeline"))
}

/// `pipeline ARGS` with `envs`, waiting for it to finish (at most `timeout`).
pub fn run_pipeline(args: &[&str], envs: &[(&str, String)], timeout: Duration) -> Output {
    let child = spawn_pipeline(args, envs);
    wait_with_timeout(child, timeout)
}

pub fn spawn_pipeline(args: &[&str], envs: &[(&str, String)]) -> Child {
    let mut command = Command::new(pipeline_bin());
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.env("RUST_LOG", "info,rdkafka=warn");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.spawn().expect("spawn pipeline binary")
}

pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait().expect("poll child") {
            Some(_) => return child.wait_with_output().expect("collect output"),
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("collect output");
                panic!(
                    "pipeline did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct TopicRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub timestamp_ms: Option<i64>,
    pub partition: i32,
    pub offset: i64,
    pub end_of_input: bool,
    /// Every header, by name (the value of the last one of a name).
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Reads `topic` from the beginning until `quiet` passes without a new record (or
/// `timeout`). End-of-input markers are returned flagged.
pub fn read_topic(topic: &str, quiet: Duration, timeout: Duration) -> Vec<TopicRecord> {
    read_topic_at(&kafka_brokers(), topic, quiet, timeout)
}

/// [`read_topic`] on the broker at `brokers` (a test's own).
pub fn read_topic_at(
    brokers: &str,
    topic: &str,
    quiet: Duration,
    timeout: Duration,
) -> Vec<TopicRecord> {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        message::Headers,
        ClientConfig, Message, Offset, TopicPartitionList,
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let start = Instant::now();
    let mut last = Instant::now();
    let mut records = Vec::new();
    while last.elapsed() < quiet && start.elapsed() < timeout {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            last = Instant::now();
            let has = |key: &str| m.headers().is_some_and(|h| h.iter().any(|h| h.key == key));
            // Progress markers of live sources are the runtime's business, not records.
            if has("x-pipeline-progress") {
                continue;
            }
            let end_of_input = has("x-pipeline-end-of-input");
            records.push(TopicRecord {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                timestamp_ms: m.timestamp().to_millis(),
                partition: m.partition(),
                offset: m.offset(),
                end_of_input,
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let value = h.value.unwrap_or_default();
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(value).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    records
}

/// Sends SIGTERM (graceful stop) or SIGKILL to a child.
pub fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
        .expect("signal child");
}

/// A deterministic price stream for `symbols`: ~10 records/s/symbol of event time from
/// `start_ms`, a random walk on a 0.01 tick with long flat runs, some records out of order
/// within a few seconds and, every `late_every` records (0 = never), one older than the
/// allowed lateness. Lines are JSON in the `btc-price` format.
pub fn price_lines(
    symbols: &[&str],
    per_symbol: usize,
    start_ms: i64,
    late_every: usize,
) -> Vec<String> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut prices: Vec<i64> = symbols
        .iter()
        .enumerate()
        .map(|(i, _)| 9_700_000 + i as i64 * 100_000)
        .collect();
    let mut lines = Vec::with_capacity(symbols.len() * per_symbol);
    for n in 0..per_symbol {
        for (i, symbol) in symbols.iter().enumerate() {
            if next() % 10 == 0 {
                prices[i] += (next() % 5) as i64 - 2;
            }
            let mut t = start_ms + n as i64 * 100 + (next() % 40) as i64;
            if next() % 50 == 0 {
                t -= (next() % 3_000) as i64; // out of order, within lateness
            }
            if late_every > 0 && n % late_every == late_every - 1 {
                t -= 60_000; // beyond the 10 s lateness
            }
            let price = prices[i] as f64 / 100.0;
            lines.push(format!(
                r#"{{"symbol":"{symbol}","price":{price},"timestamp":"{}"}}"#,
                chrono::DateTime::from_timestamp_millis(t)
                    .expect("valid time")
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ));
        }
    }
    lines
}

/// Distinct (key, payload) pairs of a topic's data records.
pub fn distinct_records(records: &[TopicRecord]) -> std::collections::BTreeSet<(Vec<u8>, Vec<u8>)> {
    records
        .iter()
        .filter(|r| !r.end_of_input)
        .map(|r| (r.key.clone().unwrap_or_default(), r.payload.clone()))
        .collect()
}

/// Plain HTTP/1.0 GET: `(status, body)`, or `None` while nothing listens at `addr`.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Polls `check` every 100 ms until it returns `Some`, panicking with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM to a child process.
pub fn sigterm(child: &Child) {
    use nix::{
        sys::signal::{kill, Signal},
        unistd::Pid,
    };
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
}

/// Kills the pipeline when a failed assertion unwinds past it.
pub struct KillOnDrop(pub Option<Child>);

impl KillOnDrop {
    pub fn take(mut self) -> Child {
        self.0.take().expect("child present")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `pipeline ARGS`, kills it with SIGKILL once `output_topic` holds more than
/// `records` records and the stage has committed a checkpoint (so the restart has state
/// to rebuild), then runs it again until it ends; returns the second run.
pub fn kill_mid_stream_and_rerun(
    args: &[&str],
    envs: &[(&str, String)],
    output_topic: &str,
    records: usize,
) -> Output {
    use rdkafka::{consumer::BaseConsumer, ClientConfig};
    let checkpoints = checkpoint_topic_of(args);
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique("probe"))
        .create()
        .expect("probe consumer");
    let child = spawn_pipeline(args, envs);
    let started = Instant::now();
    // Watermarks only (no reading): cheap enough to poll every few milliseconds, so the
    // kill lands mid-stream even when the whole run takes a second or two.
    while topic_end(&probe, output_topic) <= records as i64 || topic_end(&probe, &checkpoints) == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no output and checkpoint to interrupt"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, nix::sys::signal::Signal::SIGKILL);
    let killed = wait_with_timeout(child, Duration::from_secs(10));
    assert!(
        !killed.status.success(),
        "the stage was killed, not finished"
    );
    let resumed = run_pipeline(args, envs, Duration::from_secs(300));
    assert!(resumed.status.success(), "{}", stderr_of(&resumed));
    resumed
}

/// The checkpoint topic of the stage `args` run: `<pipeline name>.<stage>.checkpoints`,
/// the name read from the pipeline file's `name:` line.
fn checkpoint_topic_of(args: &[&str]) -> String {
    let file = args.get(1).expect("run FILE");
    let text = std::fs::read_to_string(file).expect("pipeline file");
    let name = text
        .lines()
        .find_map(|line| line.strip_prefix("name: "))
        .expect("a name: line")
        .trim();
    let stage = args
        .iter()
        .position(|a| *a == "--stage")
        .and_then(|i| args.get(i + 1))
        .expect("--stage NAME");
    format!("{name}.{stage}.checkpoints")
}

/// Sum of the high watermarks of `topic`'s partitions (0 while the topic does not exist).
fn topic_end(consumer: &rdkafka::consumer::BaseConsumer, topic: &str) -> i64 {
    use rdkafka::consumer::Consumer;
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) else {
        return 0;
    };
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(2))
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

/// Asserts that two topics hold the same distinct data records, and returns them.
pub fn assert_same_distinct_records(
    expected_topic: &str,
    got_topic: &str,
    at_least: usize,
) -> std::collections::BTreeSet<(Vec<u8>, Vec<u8>)> {
    let expected = distinct_records(&read_topic(
        expected_topic,
        Duration::from_secs(3),
        Duration::from_secs(120),
    ));
    let got = distinct_records(&read_topic(
        got_topic,
        Duration::from_secs(3),
        Duration::from_secs(120),
    ));
    assert!(
        expected.len() >= at_least,
        "the reference run emitted {} records",
        expected.len()
    );
    let missing = expected.difference(&got).count();
    let different = got.difference(&expected).count();
    for (_, payload) in got.difference(&expected).take(3) {
        let text = String::from_utf8_lossy(payload);
        let stamp = text
            .split("\"timestamp\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("");
        let twins: Vec<String> = expected
            .iter()
            .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
            .filter(|p| !stamp.is_empty() && p.contains(stamp))
            .take(2)
            .collect();
        eprintln!("extra after restart: {text}\n  expected with that timestamp: {twins:?}");
    }
    assert_eq!(
        (missing, different),
        (0, 0),
        "records missing after the restart / records with other values"
    );
    expected
}

/// Every document of a MongoDB collection.
pub fn all_documents(
    runtime: &tokio::runtime::Runtime,
    db: &mongodb::Database,
    collection: &str,
) -> Vec<mongodb::bson::Document> {
    runtime.block_on(async {
        use futures::TryStreamExt;
        db.collection::<mongodb::bson::Document>(collection)
            .find(mongodb::bson::doc! {})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("documents")
    })
}

/// Produces one price record (`symbol`, `price`, ISO `timestamp` = `ts`) keyed by its
/// symbol with Kafka timestamp `ts`, to `partition` when given, and waits for it.
pub async fn produce_price(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    partition: Option<i32>,
    symbol: &str,
    price: f64,
    ts: i64,
) {
    let payload = format!(
        r#"{{"symbol":"{symbol}","price":{price},"timestamp":"{}"}}"#,
        framework::event_time::format_millis(ts)
    );
    let mut record = rdkafka::producer::FutureRecord::to(topic)
        .key(symbol)
        .payload(&payload)
        .timestamp(ts);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produce a price");
}
