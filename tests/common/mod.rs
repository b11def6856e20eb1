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
