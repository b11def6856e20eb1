//! Issue 15 on the real broker: the replay of one price per symbol through `file_source` →
//! `moving_stats` (windows 30s and 1h, slide 1s) → `file_sink`, whose end of input closes
//! 3,600 windows per symbol at once, is streamed through the runtime in chunks and writes
//! exactly what the transform computes when it collects everything at once (the old
//! behaviour), in the same order per symbol. Peak memory at 20,000 symbols is measured by
//! scripts/bench-memory.sh (docs/benchmarks.md).

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use connector_moving_stats::{MovingStats, MovingStatsConfig};
use framework::{event_time::format_millis, DurationSpec, Emitter, InputRecord, Transform};

const T0: i64 = 1_746_631_830_000;

fn config() -> MovingStatsConfig {
    MovingStatsConfig {
        windows: vec![DurationSpec::from_secs(30), DurationSpec::from_secs(3_600)],
        slide: DurationSpec::from_secs(1),
        lateness: DurationSpec::from_secs(10),
        ..MovingStatsConfig::default()
    }
}

/// Per symbol, the payloads the transform emits for `lines` when it collects all at once.
fn expected(lines: &[(String, String, i64)]) -> BTreeMap<String, Vec<String>> {
    let mut transform = MovingStats::new(&config()).expect("config");
    let mut out = Emitter::new();
    for (offset, (symbol, line, t)) in lines.iter().enumerate() {
        let record = InputRecord {
            port: 0,
            key: Some(symbol.as_bytes()),
            payload: line.as_bytes(),
            timestamp_ms: Some(*t),
            partition: 0,
            offset: offset as i64,
        };
        transform.process(&record, &mut out);
    }
    transform.end_of_input(&mut out);
    let mut by_symbol: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in out.records {
        let symbol = String::from_utf8(r.key.unwrap_or_default()).expect("utf-8 key");
        let payload = String::from_utf8(r.payload).expect("utf-8 payload");
        by_symbol.entry(symbol).or_default().push(payload);
    }
    by_symbol
}

#[test]
fn one_price_per_symbol_replay_streams_every_window_with_the_same_bytes_as_before() {
    const SYMBOLS: usize = 30;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("prices.jsonl");
    let output = dir.path().join("moving.jsonl");
    let lines: Vec<(String, String, i64)> = (0..SYMBOLS)
        .map(|i| {
            let symbol = format!("SYM{i:05}");
            let t = T0 + 250 + 3 * i as i64;
            let line = format!(
                r#"{{"symbol":"{symbol}","price":{}.25,"timestamp":"{}"}}"#,
                100 + i,
                format_millis(t)
            );
            (symbol, line, t)
        })
        .collect();
    let text: Vec<&str> = lines.iter().map(|(_, l, _)| l.as_str()).collect();
    std::fs::write(&input, text.join("\n") + "\n").expect("write input");
    let prices = unique("mem-prices");
    let moving = unique("mem-moving");
    let pipeline = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            r#"name: {name}
kafka:
  brokers: ${{KAFKA_BROKERS}}
  commit_interval: 200ms
topics:
  {prices}: {{ partitions: 3 }}
  {moving}: {{ partitions: 3 }}
stages:
  - name: replay
    type: file_source
    output: {prices}
    config: {{ path: "${{IN_FILE}}", key_field: symbol, timestamp_field: timestamp }}
  - name: moving
    type: moving_stats
    input: {prices}
    output: {moving}
    config: {{ windows: [30s, 1h], slide: 1s, lateness: 10s }}
  - name: write
    type: file_sink
    input: {moving}
    batch: {{ max_records: 5000, max_wait: 20ms }}
    config: {{ path: "${{OUT_FILE}}", fsync: false }}
"#,
            name = unique("memory")
        ),
    );
    let envs = [
        ("KAFKA_BROKERS", kafka_brokers()),
        ("IN_FILE", input.display().to_string()),
        ("OUT_FILE", output.display().to_string()),
    ];
    let result = run_pipeline(
        &["run", pipeline.to_str().expect("utf-8")],
        &envs,
        Duration::from_secs(240),
    );
    assert!(result.status.success(), "{}", stderr_of(&result));

    let want = expected(&lines);
    assert_eq!(want.len(), SYMBOLS);
    assert!(want.values().all(|records| records.len() == 3_600));
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in read_lines(&output) {
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        let symbol = value["symbol"].as_str().expect("symbol").to_string();
        got.entry(symbol).or_default().push(line);
    }
    assert_eq!(
        got.values().map(Vec::len).sum::<usize>(),
        SYMBOLS * 3_600,
        "every window record written once"
    );
    for (symbol, records) in &want {
        assert!(
            got.get(symbol) == Some(records),
            "{symbol}: the same records, byte for byte, in the same order"
        );
    }
}
