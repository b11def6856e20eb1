//! Helpers shared by the end-to-end tests: the real broker's address, unique names, and
//! running the `pipeline` binary.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Address of the real Kafka-protocol broker started by `scripts/test.sh`.
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("KAFKA_BROKERS is not set: run the tests with scripts/test.sh, which starts a local broker")
    })
}

/// URI of the real MongoDB-protocol server started by `scripts/test.sh`.
pub fn mongo_uri() -> String {
    std::env::var("MONGO_URI").unwrap_or_else(|_| {
        panic!(
            "MONGO_URI is not set: run the tests with scripts/test.sh, which starts a local server"
        )
    })
}

/// A name no other test (or earlier run against the same broker) uses.
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
}

/// Reads `topic` from the beginning until `quiet` passes without a new record (or
/// `timeout`). End-of-input markers are returned flagged.
pub fn read_topic(topic: &str, quiet: Duration, timeout: Duration) -> Vec<TopicRecord> {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        message::Headers,
        ClientConfig, Message, Offset, TopicPartitionList,
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let start = Instant::now();
    let mut last = Instant::now();
    let mut records = Vec::new();
    while last.elapsed() < quiet && start.elapsed() < timeout {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            last = Instant::now();
            let end_of_input = m
                .headers()
                .is_some_and(|h| h.iter().any(|h| h.key == "x-pipeline-end-of-input"));
            records.push(TopicRecord {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                timestamp_ms: m.timestamp().to_millis(),
                partition: m.partition(),
                offset: m.offset(),
                end_of_input,
            });
        }
    }
    records
}

/// Sends SIGTERM (graceful stop) or SIGKILL to a child.
pub fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).expect("signal child");
}
