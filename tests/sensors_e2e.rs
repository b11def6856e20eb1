//! The sensor pipeline, `pipelines/sensors.yaml` (YAML only, other field names), end to
//! end: `examples/sensors.jsonl` -> `file_source` -> real broker -> `moving_stats` ->
//! `zscore` -> real MongoDB. Every document is checked against z-scores computed here with
//! exact integer arithmetic over the input file, and the set of documents must be exactly
//! the expected one (no reading missing, none extra).

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use serde_json::Value;

/// Slide and windows of `pipelines/sensors.yaml`.
const SLIDE_MS: i64 = 10_000;
const WINDOWS: [(&str, i64); 2] = [("30s", 30_000), ("1m", 60_000)];

/// A reading: sensor, event time (ms), temperature in hundredths of a degree (exact).
struct Reading {
    sensor: String,
    at: i64,
    centi: i128,
}

/// A decimal with at most 2 fractional digits as an exact integer of hundredths.
fn centi(text: &str) -> i128 {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(frac.len() <= 2, "{text}");
    let value: i128 = format!("{int}{frac:0<2}").parse().expect("decimal");
    if negative {
        -value
    } else {
        value
    }
}

fn readings() -> Vec<Reading> {
    let text = std::fs::read_to_string("examples/sensors.jsonl").expect("examples/sensors.jsonl");
    text.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("JSON line");
            // The temperature as written, digits and all (not through f64).
            let temp = line
                .split("\"temp_c\":")
                .nth(1)
                .and_then(|rest| rest.split([',', '}']).next())
                .expect("temp_c");
            let at = chrono::DateTime::parse_from_rfc3339(value["ts"].as_str().expect("ts"))
                .expect("RFC 3339")
                .timestamp_millis();
            Reading {
                sensor: value["sensor"].as_str().expect("sensor").to_string(),
                at,
                centi: centi(temp),
            }
        })
        .collect()
}

/// Per window: (sensor, reading time) -> (temperature in hundredths, exact z-score).
type Expected = BTreeMap<&'static str, BTreeMap<(String, i64), (i128, f64)>>;

/// Expected documents per window: (sensor, reading time) -> (temperature, z-score). A
/// reading at `t` meets the windows ending at `e = floor(t / S) * S` that hold readings
/// (semantics.md §4); z = (n v - sum) / sqrt(n sum_sq - sum^2), exact until the last
/// division.
fn expected(readings: &[Reading]) -> Expected {
    let mut out = Expected::new();
    for r in readings {
        let end = r.at.div_euclid(SLIDE_MS) * SLIDE_MS;
        for (window, length) in WINDOWS {
            let inside: Vec<i128> = readings
                .iter()
                .filter(|o| o.sensor == r.sensor && o.at >= end - length && o.at < end)
                .map(|o| o.centi)
                .collect();
            if inside.is_empty() {
                continue;
            }
            let n = inside.len() as i128;
            let sum: i128 = inside.iter().sum();
            let sum_sq: i128 = inside.iter().map(|v| v * v).sum();
            let spread = n * sum_sq - sum * sum;
            let z = if spread == 0 {
                0.0
            } else {
                (n * r.centi - sum) as f64 / (spread as f64).sqrt()
            };
            out.entry(window)
                .or_default()
                .insert((r.sensor.clone(), r.at), (r.centi, z));
        }
    }
    out
}

#[test]
fn sensors_pipeline_writes_exact_zscores_of_every_reading_and_window_to_mongodb() {
    let readings = readings();
    assert!(
        readings.len() >= 500,
        "the sample covers minutes of readings"
    );
    let expected = expected(&readings);
    assert!(
        expected
            .values()
            .flat_map(|m| m.values())
            .any(|(_, z)| *z == 0.0)
            && expected
                .values()
                .flat_map(|m| m.values())
                .any(|(v, _)| *v < 0),
        "the sample exercises a flat window and negative temperatures"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique("sensors");
    let database = unique("sensorsdb");
    // The shipped file, with topic names unique to this run (the broker is shared).
    let text = std::fs::read_to_string("pipelines/sensors.yaml")
        .expect("pipelines/sensors.yaml")
        .replace("name: sensors", &format!("name: {name}"))
        .replace("sensor-", &format!("{name}-"));
    let pipeline = write_file(dir.path(), "sensors.yaml", &text);
    let input = std::fs::canonicalize("examples/sensors.jsonl").expect("sample");
    // Bounded input: the run ends by itself once every stage has finished.
    let output = run_pipeline(
        &["run", pipeline.to_str().expect("utf-8")],
        &[
            ("KAFKA_BROKERS", kafka_brokers()),
            ("MONGO_URI", mongo_uri()),
            ("MONGO_DATABASE", database.clone()),
            ("SENSORS_FILE", input.display().to_string()),
        ],
        Duration::from_secs(180),
    );
    assert!(output.status.success(), "{}", stderr_of(&output));

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime
        .block_on(mongodb::Client::with_uri_str(mongo_uri()))
        .expect("client");
    let db = client.database(&database);
    for (window, want) in &expected {
        let documents = all_documents(&runtime, &db, &format!("{name}-zscore-{window}"));
        let mut seen = BTreeMap::new();
        for document in &documents {
            assert_eq!(document.get_str("window").ok(), Some(*window), "{document}");
            let sensor = document.get_str("sensor").expect("sensor").to_string();
            let at = document
                .get_datetime("timestamp")
                .expect("a BSON date")
                .timestamp_millis();
            let Some((centi, z)) = want.get(&(sensor.clone(), at)) else {
                panic!("a document of no expected reading: {document}");
            };
            let temp = document.get_f64("temp_c").expect("temp_c");
            assert_eq!(temp, *centi as f64 / 100.0, "{document}");
            let got = document.get_f64("zscore_temp_c").expect("zscore_temp_c");
            // avg and std travel as correctly rounded f64s: their rounding bounds the error.
            assert!(
                (got - z).abs() <= 1e-9 * z.abs().max(1.0),
                "zscore {got} vs exact {z}: {document}"
            );
            if *z == 0.0 {
                assert_eq!(got, 0.0, "a flat window gives exactly 0: {document}");
            }
            assert!(
                seen.insert((sensor, at), ()).is_none(),
                "duplicate {document}"
            );
        }
        assert_eq!(
            seen.len(),
            want.len(),
            "window {window}: every reading with statistics is in MongoDB once"
        );
    }
    runtime
        .block_on(async { db.drop().await })
        .expect("drop test database");
}
