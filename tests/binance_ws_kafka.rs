//! `binance_ws` through `pipeline run` into the real broker and out to a file, against
//! the Binance mock's WebSocket streams (the only mocked part).

mod common;

use std::{collections::BTreeMap, time::Duration};

use binance_mock::{MockBinance, MockConfig, WsCommand};
use common::*;

#[test]
fn trades_flow_from_the_websocket_through_kafka_to_a_file_with_values_and_times_intact() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mock = runtime
        .block_on(MockBinance::start(MockConfig {
            symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
            ws_trade_interval: None,
            ..MockConfig::default()
        }))
        .expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique("ws");
    let topic = format!("{name}-trades");
    let archive = dir.path().join("trades.jsonl");
    let pipeline = write_file(
        dir.path(),
        "trades.yaml",
        &format!(
            r#"name: {name}
kafka:
  brokers: ${{KAFKA_BROKERS}}
stages:
  - name: ws
    type: binance_ws
    output: {topic}
    dead_letter: {topic}-rejected
    config:
      base_urls: ["{ws}"]
      symbols: [BTCUSDT, ETHUSDT]
      streams: [trade]
  - name: archive
    type: file_sink
    input: {topic}
    config: {{ path: "{archive}" }}
"#,
            ws = mock.ws_base_url(),
            archive = archive.display()
        ),
    );
    let child = KillOnDrop(Some(spawn_pipeline(
        &["run", pipeline.to_str().expect("utf-8")],
        &[("KAFKA_BROKERS", kafka_brokers())],
    )));
    wait_for("the stream connection", Duration::from_secs(60), || {
        (mock.ws_open_connections() == 1).then_some(())
    });
    let before = chrono::Utc::now().timestamp_millis();
    runtime.block_on(async {
        mock.ws_command(WsCommand::Publish { count: 10 });
        mock.ws_command(WsCommand::Malformed {
            text: "{\"stream\":\"btcusdt@trade\",\"data\":{\"e\":\"trade\"}}".into(),
        });
        mock.ws_command(WsCommand::Publish { count: 10 });
    });
    let after = chrono::Utc::now().timestamp_millis();
    let last_ids: BTreeMap<String, u64> = mock.last_trade_ids().into_iter().collect();
    let lines = wait_for("40 archived trades", Duration::from_secs(60), || {
        let lines = if archive.exists() {
            read_lines(&archive)
        } else {
            Vec::new()
        };
        (lines.len() >= 40).then_some(lines)
    });
    let child = child.take();
    sigterm(&child);
    let output = wait_with_timeout(child, Duration::from_secs(30));
    assert!(output.status.success(), "{}", stderr_of(&output));

    // The file holds exactly the 20 trades of each symbol, ids consecutive, once each.
    assert_eq!(lines.len(), 40, "{lines:?}");
    let mut by_symbol: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let symbol = v["symbol"].as_str().expect("symbol").to_string();
        by_symbol
            .entry(symbol)
            .or_default()
            .push(v["trade_id"].as_u64().expect("trade_id"));
        assert!(
            v["price"].is_number() && v["quantity"].is_number(),
            "{line}"
        );
        assert!(
            v["timestamp"].is_string() && v["event_time"].is_string(),
            "{line}"
        );
    }
    for (symbol, ids) in &by_symbol {
        let last = last_ids[symbol];
        let expected: Vec<u64> = (last - 19..=last).collect();
        assert_eq!(ids, &expected, "{symbol}");
    }

    // In Kafka: keyed by symbol, message time = trade time `T` = the record's timestamp.
    let records = read_topic(&topic, Duration::from_secs(2), Duration::from_secs(30));
    assert_eq!(records.len(), 40);
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("JSON");
        assert_eq!(r.key.as_deref(), v["symbol"].as_str().map(str::as_bytes));
        let ts = r.timestamp_ms.expect("timestamp");
        assert!(
            (before..=after + 5).contains(&ts),
            "{ts} not in {before}..{after}"
        );
        let parsed = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        assert_eq!(parsed, ts);
    }
    // The malformed frame went to the dead-letter topic.
    let dead = read_topic(
        &format!("{topic}-rejected"),
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    assert_eq!(dead.len(), 1);
    assert!(String::from_utf8_lossy(&dead[0].payload).contains("\"e\":\"trade\""));
    runtime.block_on(async { mock.shutdown().await });
}
