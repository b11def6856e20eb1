//! No record stops or silences a pipeline (issue 10 §2), on the real broker: invalid
//! UTF-8 and over-long lines, records too large for the broker (source output and
//! dead-letter copies with headers), prices from year 9999. Each is counted, dead-lettered
//! and the pipeline runs to its end.

mod common;

use std::{collections::BTreeMap, path::Path, time::Duration};

use common::*;

/// A record of a dead-letter topic with its headers.
struct Dead {
    payload: Vec<u8>,
    headers: BTreeMap<String, String>,
}

/// Every data record of `topic` (end-of-input markers left out), with headers.
fn read_dead_letters(topic: &str) -> Vec<Dead> {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        message::Headers,
        ClientConfig, Message, Offset, TopicPartitionList,
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique("dead-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let start = std::time::Instant::now();
    let mut last = std::time::Instant::now();
    while last.elapsed() < Duration::from_secs(2) && start.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            last = std::time::Instant::now();
            let headers: BTreeMap<String, String> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                            (h.key.to_string(), value.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            if headers.contains_key("x-pipeline-end-of-input") {
                continue;
            }
            out.push(Dead {
                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                headers,
            });
        }
    }
    out
}

fn reason(dead: &Dead) -> &str {
    dead.headers
        .get("x-dead-letter-reason")
        .map_or("", String::as_str)
}

fn run_to_end(pipeline: &Path, envs: &[(&str, String)]) -> String {
    let result = run_pipeline(
        &["run", pipeline.to_str().expect("utf-8")],
        envs,
        Duration::from_secs(120),
    );
    let stderr = stderr_of(&result);
    assert!(result.status.success(), "pipeline failed:\n{stderr}");
    stderr
}

#[test]
fn invalid_utf8_and_over_long_lines_are_dead_lettered_and_the_rest_of_the_file_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    let good: Vec<String> = (0..100).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    let mut bytes = Vec::new();
    for (i, line) in good.iter().enumerate() {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        if i == 10 {
            bytes.extend_from_slice(b"{\"n\":\"\xff\xfe broken\"}\n");
        }
        if i == 50 {
            bytes.extend_from_slice(format!(r#"{{"pad":"{}"}}"#, "x".repeat(50_000)).as_bytes());
            bytes.push(b'\n');
        }
    }
    std::fs::write(&input, bytes).expect("write input");
    let topic = unique("lines");
    let pipeline = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            r#"name: {name}
kafka: {{ brokers: "${{KAFKA_BROKERS}}", commit_interval: 200ms }}
stages:
  - name: read
    type: file_source
    output: {topic}
    dead_letter: {topic}-dead
    config: {{ path: "${{IN_FILE}}", max_line_bytes: 1000 }}
  - name: write
    type: file_sink
    input: {topic}
    config: {{ path: "${{OUT_FILE}}" }}
"#,
            name = unique("lines")
        ),
    );
    let envs = [
        ("KAFKA_BROKERS", kafka_brokers()),
        ("IN_FILE", input.display().to_string()),
        ("OUT_FILE", output.display().to_string()),
    ];
    run_to_end(&pipeline, &envs);
    let mut written = read_lines(&output);
    written.sort();
    let mut expected = good.clone();
    expected.sort();
    assert_eq!(written, expected, "every good line, once");
    let dead = read_dead_letters(&format!("{topic}-dead"));
    let mut reasons: Vec<&str> = dead.iter().map(reason).collect();
    reasons.sort();
    assert_eq!(reasons, vec!["invalid_utf8", "line_too_long"]);
    let long = dead
        .iter()
        .find(|d| reason(d) == "line_too_long")
        .expect("long line");
    assert_eq!(
        long.payload.len(),
        1000,
        "only max_line_bytes of it is kept"
    );
    assert!(long.headers["x-dead-letter-detail"].contains("line 53"));
}

#[test]
fn records_too_large_for_the_broker_are_dead_lettered_truncated_and_every_stage_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("prices.jsonl");
    let output = dir.path().join("stats.jsonl");
    let mut lines = price_lines(&["BTCUSDT"], 300, 1_746_630_000_000, 0);
    // Source output over the 100 kB limit.
    let huge = format!(
        r#"{{"symbol":"BTCUSDT","price":1.5,"timestamp":"2025-05-07T15:00:10.000Z","pad":"{}"}}"#,
        "x".repeat(150_000)
    );
    // Fits as a source record, but moving_stats' dead-letter copy (same payload plus its
    // x-dead-letter-* headers) does not.
    let prefix = r#"{"symbol":"BTCUSDT","timestamp":"2025-05-07T15:00:11.000Z","pad":""#;
    let fill = 99_950 - prefix.len() - 2;
    let no_price = format!(r#"{prefix}{}"}}"#, "y".repeat(fill));
    assert_eq!(no_price.len(), 99_950);
    lines.insert(100, huge);
    lines.insert(200, no_price);
    std::fs::write(&input, lines.join("\n") + "\n").expect("write input");
    let prices = unique("big-prices");
    let pipeline = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            r#"name: {name}
kafka:
  brokers: ${{KAFKA_BROKERS}}
  commit_interval: 200ms
  properties: {{ message.max.bytes: 100000 }}
stages:
  - name: read
    type: file_source
    output: {prices}
    dead_letter: {prices}-read-dead
    config: {{ path: "${{IN_FILE}}", key_field: symbol, timestamp_field: timestamp }}
  - name: stats
    type: moving_stats
    input: {prices}
    output: {prices}-stats
    dead_letter: {prices}-stats-dead
    config: {{ windows: [10s], slide: 1s, lateness: 5s }}
  - name: write
    type: file_sink
    input: {prices}-stats
    config: {{ path: "${{OUT_FILE}}" }}
"#,
            name = unique("big")
        ),
    );
    let envs = [
        ("KAFKA_BROKERS", kafka_brokers()),
        ("IN_FILE", input.display().to_string()),
        ("OUT_FILE", output.display().to_string()),
    ];
    let stderr = run_to_end(&pipeline, &envs);
    assert!(stderr.contains("too large"), "{stderr}");

    let read_dead = read_dead_letters(&format!("{prices}-read-dead"));
    assert_eq!(read_dead.len(), 1);
    assert_eq!(reason(&read_dead[0]), "too_large");
    assert_eq!(read_dead[0].headers["x-dead-letter-truncated"], "150080");
    assert!(read_dead[0].payload.len() < 100_000);
    assert!(read_dead[0].payload.starts_with(br#"{"symbol":"BTCUSDT""#));

    let stats_dead = read_dead_letters(&format!("{prices}-stats-dead"));
    let copy = stats_dead
        .iter()
        .find(|d| d.headers.contains_key("x-dead-letter-truncated"))
        .expect("a truncated copy of the refused record");
    assert_eq!(reason(copy), "missing_field", "the original reason is kept");
    assert_eq!(copy.headers["x-dead-letter-truncated"], "99950");
    // The statistics of the 300 good prices are all written.
    let stats = read_lines(&output);
    assert!(stats.len() >= 25, "{} statistics records", stats.len());
}

#[test]
fn a_price_from_year_9999_is_dead_lettered_as_future_and_later_prices_still_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("prices.jsonl");
    let output = dir.path().join("stats.jsonl");
    let mut lines = price_lines(&["BTCUSDT"], 600, 1_746_630_000_000, 0);
    lines.insert(
        100,
        r#"{"symbol":"BTCUSDT","price":1.0,"timestamp":"9999-12-31T23:59:59.999Z"}"#.into(),
    );
    std::fs::write(&input, lines.join("\n") + "\n").expect("write input");
    let prices = unique("future-prices");
    let pipeline = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            r#"name: {name}
kafka: {{ brokers: "${{KAFKA_BROKERS}}", commit_interval: 200ms }}
stages:
  - name: read
    type: file_source
    output: {prices}
    config: {{ path: "${{IN_FILE}}", key_field: symbol, timestamp_field: timestamp }}
  - name: stats
    type: moving_stats
    input: {prices}
    output: {prices}-stats
    dead_letter: {prices}-dead
    config: {{ windows: [10s], slide: 1s, lateness: 5s }}
  - name: write
    type: file_sink
    input: {prices}-stats
    config: {{ path: "${{OUT_FILE}}" }}
"#,
            name = unique("future")
        ),
    );
    let envs = [
        ("KAFKA_BROKERS", kafka_brokers()),
        ("IN_FILE", input.display().to_string()),
        ("OUT_FILE", output.display().to_string()),
    ];
    run_to_end(&pipeline, &envs);
    let dead = read_dead_letters(&format!("{prices}-dead"));
    let reasons: Vec<&str> = dead.iter().map(reason).collect();
    assert_eq!(reasons, vec!["future"], "nothing after it is late");
    // 60 s of prices: one record per 1 s slide, up to the last price's window.
    let stats = read_lines(&output);
    assert!(stats.len() >= 65, "{} statistics records", stats.len());
}
