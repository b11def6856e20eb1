//! The second pipeline, `pipelines/trades.yaml` (YAML only), end to end: the Binance mock's
//! aggTrade stream -> `binance_ws` -> real broker -> `moving_stats` -> real MongoDB. Every
//! document is checked against exact arithmetic on the trades read back from the topic
//! with an independent Kafka client.

mod common;

use std::{collections::BTreeMap, time::Duration};

use binance_mock::{MockBinance, MockConfig};
use common::*;
use mongodb::bson::{doc, Document};
use serde_json::Value;

const WINDOWS: [(&str, i64); 3] = [("1m", 60_000), ("5m", 300_000), ("15m", 900_000)];

/// A trade price as an exact integer of 1e-8 units (Binance sends at most 8 decimals).
fn scaled(text: &str) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() <= 8, "{text}");
    let digits = format!("{int}{frac:0<8}");
    digits.parse().expect("decimal price")
}

fn millis(value: &Value) -> i64 {
    let text = value.as_str().expect("timestamp string");
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .timestamp_millis()
}

#[test]
fn trades_pipeline_writes_exact_moving_stats_of_every_symbol_and_window_to_mongodb() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mock = runtime
        .block_on(MockBinance::start(MockConfig {
            symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
            ws_trade_interval: Some(Duration::from_millis(50)),
            ..MockConfig::default()
        }))
        .expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique("trades");
    let database = unique("tradesdb");
    // The shipped file, with names unique to this run (the broker is shared).
    let text = std::fs::read_to_string("pipelines/trades.yaml")
        .expect("pipelines/trades.yaml")
        .replace("name: trades", &format!("name: {name}"))
        .replace("  trades", &format!("  {name}"))
        .replace(": trades", &format!(": {name}"));
    let pipeline = write_file(dir.path(), "trades.yaml", &text);
    let child = KillOnDrop(Some(spawn_pipeline(
        &["run", pipeline.to_str().expect("utf-8")],
        &[
            ("KAFKA_BROKERS", kafka_brokers()),
            ("MONGO_URI", mongo_uri()),
            ("MONGO_DATABASE", database.clone()),
            ("BINANCE_WS_BASE_URLS", format!("[{}]", mock.ws_base_url())),
        ],
    )));
    let client = runtime
        .block_on(mongodb::Client::with_uri_str(mongo_uri()))
        .expect("client");
    let db = client.database(&database);
    let count = |symbol: &str| {
        runtime
            .block_on(async {
                db.collection::<Document>(&format!("trades-moving-{symbol}"))
                    .count_documents(doc! {})
                    .await
            })
            .unwrap_or(0)
    };
    // Windows close 10 s (the lateness) after they end: wait for 8 slides of each symbol.
    wait_for("documents of both symbols", Duration::from_secs(90), || {
        (count("BTCUSDT") >= 24 && count("ETHUSDT") >= 24).then_some(())
    });
    let child = child.take();
    sigterm(&child);
    let output = wait_with_timeout(child, Duration::from_secs(30));
    assert!(output.status.success(), "{}", stderr_of(&output));

    // Every trade the source wrote, by symbol: (trade time, exact price).
    let mut trades: BTreeMap<String, Vec<(i64, i128)>> = BTreeMap::new();
    for record in read_topic(&name, Duration::from_secs(2), Duration::from_secs(30)) {
        if record.end_of_input {
            continue;
        }
        // The price is a JSON number printed with Binance's digits: read it as text.
        let text = String::from_utf8(record.payload).expect("utf-8");
        let value: Value = serde_json::from_str(&text).expect("JSON trade");
        let symbol = value["symbol"].as_str().expect("symbol").to_string();
        let price_text = text
            .split("\"price\":")
            .nth(1)
            .and_then(|rest| rest.split([',', '}']).next())
            .expect("price field");
        trades
            .entry(symbol)
            .or_default()
            .push((millis(&value["timestamp"]), scaled(price_text)));
    }
    assert_eq!(
        trades.keys().collect::<Vec<_>>(),
        ["BTCUSDT", "ETHUSDT"],
        "both symbols traded"
    );

    for (symbol, symbol_trades) in &trades {
        let documents = all_documents(&runtime, &db, &format!("trades-moving-{symbol}"));
        let mut ends_per_window: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for document in &documents {
            assert_eq!(document.get_str("symbol").ok(), Some(symbol.as_str()));
            let window = document.get_str("window").expect("window").to_string();
            let end = document
                .get_datetime("timestamp")
                .expect("date")
                .timestamp_millis();
            let start = document
                .get_datetime("window_start")
                .expect("date")
                .timestamp_millis();
            let length = WINDOWS
                .iter()
                .find(|(w, _)| *w == window)
                .map(|(_, ms)| *ms)
                .expect("a configured window");
            assert!(start <= end && end - start <= length, "{document}");
            let inside: Vec<i128> = symbol_trades
                .iter()
                .filter(|(t, _)| *t >= end - length && *t < end)
                .map(|(_, p)| *p)
                .collect();
            let n = inside.len() as i128;
            assert!(n > 0, "a document of an empty window: {document}");
            assert_eq!(document.get_i64("count").ok(), Some(n as i64), "{document}");
            let sum: i128 = inside.iter().sum();
            let sum_sq: i128 = inside.iter().map(|p| p * p).sum();
            let mean = sum as f64 / n as f64 / 1e8;
            let variance_num = n * sum_sq - sum * sum; // n^2 * 1e16 * variance, exact
            let std = (variance_num as f64).sqrt() / n as f64 / 1e8;
            let avg = document.get_f64("avg_price").expect("avg_price");
            let got_std = document.get_f64("std_price").expect("std_price");
            assert!(
                ((avg - mean) / mean).abs() < 1e-12,
                "avg {avg} vs {mean}: {document}"
            );
            assert!(
                (got_std - std).abs() <= 1e-9 * std.max(1e-9 * mean),
                "std {got_std} vs {std}: {document}"
            );
            ends_per_window.entry(window).or_default().push(end);
        }
        // Every window length is there, one document per second of event time, no gaps.
        assert_eq!(ends_per_window.len(), 3, "{symbol}: {ends_per_window:?}");
        for (window, mut ends) in ends_per_window {
            ends.sort_unstable();
            let expected: Vec<i64> = (0..ends.len() as i64).map(|i| ends[0] + 1000 * i).collect();
            assert_eq!(ends, expected, "{symbol} {window}: one document per slide");
        }
    }
    runtime
        .block_on(async { db.drop().await })
        .expect("drop test database");
}
