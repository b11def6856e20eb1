//! The Binance source through `pipeline run` into the real broker, against the local
//! Binance mock (the only mocked part: there is no internet here).

mod common;

use std::{collections::HashMap, time::Duration};

use binance_mock::{MockBinance, MockConfig};
use common::*;
use nix::sys::signal::Signal;

fn extract_pipeline(dir: &std::path::Path, base_url: &str, topic: &str) -> std::path::PathBuf {
    write_file(
        dir,
        "extract.yaml",
        &format!(
            r#"name: {name}
kafka:
  brokers: ${{KAFKA_BROKERS}}
stages:
  - name: extract
    type: binance
    output: {topic}
    dead_letter: {topic}-rejected
    config:
      base_urls: ["{base_url}"]
      symbols: [BTCUSDT, ETHUSDT]
      interval: 100ms
"#,
            name = unique("extract")
        ),
    )
}

#[test]
fn a_10s_run_publishes_contract_records_every_100ms_and_sigterm_delivers_everything() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mock = runtime
        .block_on(MockBinance::start(MockConfig::default()))
        .expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = unique("btc-price");
    let pipeline = extract_pipeline(dir.path(), &mock.base_url(), &topic);
    let child = spawn_pipeline(
        &["run", pipeline.to_str().expect("utf-8")],
        &[("KAFKA_BROKERS", kafka_brokers())],
    );
    // Wait for the first request, then let it run 10 s.
    let started = std::time::Instant::now();
    while mock.price_requests().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the source never fetched"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(10));
    signal(&child, Signal::SIGTERM);
    let stop = std::time::Instant::now();
    let output = wait_with_timeout(child, Duration::from_secs(20));
    let stop_time = stop.elapsed();
    assert!(
        output.status.success(),
        "exit after SIGTERM: {:?}\n{}",
        output.status,
        stderr_of(&output)
    );
    assert!(
        stop_time < Duration::from_secs(2),
        "stopping took {stop_time:?}"
    );

    // Every answered request was delivered to Kafka: one record per symbol per answer.
    let answered = mock
        .price_requests()
        .iter()
        .filter(|r| r.status == Some(200))
        .count();
    let records: Vec<TopicRecord> =
        read_topic(&topic, Duration::from_secs(3), Duration::from_secs(60))
            .into_iter()
            .filter(|r| !r.end_of_input)
            .collect();
    assert_eq!(
        records.len(),
        answered * 2,
        "records in Kafka vs answered requests x 2 symbols"
    );

    let mut times: HashMap<String, Vec<i64>> = HashMap::new();
    for record in &records {
        let value: serde_json::Value = serde_json::from_slice(&record.payload).expect("valid JSON");
        let object = value.as_object().expect("a JSON object");
        assert_eq!(object.len(), 3, "exactly symbol, price, timestamp: {value}");
        let symbol = object["symbol"].as_str().expect("symbol string");
        assert!(
            object["price"]
                .as_f64()
                .is_some_and(|p| p > 0.0 && p.is_finite()),
            "{value}"
        );
        let timestamp = object["timestamp"].as_str().expect("timestamp string");
        assert_eq!(timestamp.len(), 24, "ISO 8601 with ms and Z: {timestamp}");
        assert!(timestamp.ends_with('Z'));
        let ms = chrono::DateTime::parse_from_rfc3339(timestamp)
            .expect("parses")
            .timestamp_millis();
        assert_eq!(
            record.key.as_deref(),
            Some(symbol.as_bytes()),
            "keyed by symbol"
        );
        assert_eq!(
            record.timestamp_ms,
            Some(ms),
            "Kafka timestamp is the receipt time"
        );
        times.entry(symbol.to_string()).or_default().push(ms);
    }
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        let mut ts = times.remove(symbol).unwrap_or_default();
        ts.sort_unstable();
        // Records of the first and last ~100 ms around start and SIGTERM count too.
        let in_10s: Vec<i64> = ts.iter().copied().filter(|t| *t - ts[0] < 10_000).collect();
        assert!(
            in_10s.len() >= 98,
            "{symbol}: {} records in the first 10 s",
            in_10s.len()
        );
        // One poll per 100 ms grid slot: two receipts of a symbol share a slot only when an
        // answer arrives over 100 ms late, which is rare. (The jitter is a benchmark figure,
        // not asserted here.)
        let slots: std::collections::HashSet<i64> = ts.iter().map(|t| t / 100).collect();
        assert!(
            (ts.len() - slots.len()) * 50 <= ts.len(),
            "{symbol}: {} receipts in {} slots of 100 ms",
            ts.len(),
            slots.len()
        );
    }
    runtime.block_on(async { mock.shutdown().await });
}

#[test]
fn an_invalid_symbol_stops_the_pipeline_at_start_up_with_a_message_naming_it() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mock = runtime
        .block_on(MockBinance::start(MockConfig::default()))
        .expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = unique("btc-price");
    let text = std::fs::read_to_string(extract_pipeline(dir.path(), &mock.base_url(), &topic))
        .expect("read")
        .replace("[BTCUSDT, ETHUSDT]", "[BTCUSDT, NOSUCHCOIN]");
    let pipeline = write_file(dir.path(), "bad.yaml", &text);
    let started = std::time::Instant::now();
    let output = run_pipeline(
        &["run", pipeline.to_str().expect("utf-8")],
        &[("KAFKA_BROKERS", kafka_brokers())],
        Duration::from_secs(30),
    );
    assert!(!output.status.success());
    assert!(started.elapsed() < Duration::from_secs(10), "failed fast");
    let stderr = stderr_of(&output);
    assert!(stderr.contains("NOSUCHCOIN"), "{stderr}");
}
