//! The z-score join on the real broker: killed with SIGKILL mid-stream and restarted, it
//! produces the same distinct records as an uninterrupted run, and those records are the
//! z-scores of each price against the statistics of the slide before it.

mod common;

use std::{collections::HashMap, path::Path, time::Duration};

use common::*;

struct Topics {
    prices: String,
    moving: String,
}

fn pipeline(
    dir: &Path,
    file: &str,
    topics: &Topics,
    output: &str,
    max_pending_prices: usize,
) -> std::path::PathBuf {
    write_file(
        dir,
        file,
        &format!(
            r#"name: {name}
kafka:
  brokers: ${{KAFKA_BROKERS}}
  commit_interval: 200ms
topics:
  {prices}: {{ partitions: 2 }}
  {moving}: {{ partitions: 2 }}
  {output}: {{ partitions: 2 }}
stages:
  - name: replay
    type: file_source
    output: {prices}
    config: {{ path: "${{IN_FILE}}", key_field: symbol, timestamp_field: timestamp }}
  - name: moving
    type: moving_stats
    input: {prices}
    output: {moving}
    config: {{ windows: [30s, 1m, 5m], slide: 1s, lateness: 10s }}
  - name: zscore
    type: zscore
    inputs: {{ prices: {prices}, stats: {moving} }}
    output: {output}
    dead_letter: {output}-dropped
    # The whole prices topic is there before the join starts, so the consumer reads
    # prices far ahead of their statistics until max_pending_prices pauses it.
    config: {{ slide: 1s, lateness: 10s, max_pending_prices: {max_pending_prices} }}
"#,
            name = unique("zscore"),
            prices = topics.prices,
            moving = topics.moving,
        ),
    )
}

/// Prices of two symbols (`per_symbol` each, some late) and their statistics, written once
/// to Kafka by the `replay` and `moving` stages, for joins to read.
struct Upstream {
    dir: tempfile::TempDir,
    topics: Topics,
    envs: [(&'static str, String); 2],
}

fn upstream(per_symbol: usize) -> Upstream {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("prices.jsonl");
    let lines = price_lines(
        &["BTCUSDT", "ETHUSDT"],
        per_symbol,
        1_746_630_000_000,
        1_009,
    );
    std::fs::write(&input, lines.join("\n") + "\n").expect("write prices");
    let topics = Topics {
        prices: unique("prices"),
        moving: unique("moving"),
    };
    let envs = [
        ("KAFKA_BROKERS", kafka_brokers()),
        ("IN_FILE", input.display().to_string()),
    ];
    let file = pipeline(dir.path(), "upstream.yaml", &topics, &unique("unused"), 1);
    let run = run_pipeline(
        &[
            "run",
            file.to_str().expect("utf-8"),
            "--stage",
            "replay",
            "--stage",
            "moving",
        ],
        &envs,
        Duration::from_secs(300),
    );
    assert!(run.status.success(), "{}", stderr_of(&run));
    Upstream { dir, topics, envs }
}

#[test]
fn sigkill_mid_stream_and_restart_gives_the_same_distinct_zscores_as_an_uninterrupted_run() {
    let Upstream { dir, topics, envs } = upstream(150_000);
    let reference_out = unique("zscore-reference");
    let restarted_out = unique("zscore-restarted");
    let reference = pipeline(
        dir.path(),
        "reference.yaml",
        &topics,
        &reference_out,
        1_000_000,
    );
    let restarted = pipeline(
        dir.path(),
        "restarted.yaml",
        &topics,
        &restarted_out,
        1_000_000,
    );
    let reference = reference.to_str().expect("utf-8");
    let restarted = restarted.to_str().expect("utf-8");

    // The join twice from the same topics.
    let uninterrupted = run_pipeline(
        &["run", reference, "--stage", "zscore"],
        &envs,
        Duration::from_secs(300),
    );
    assert!(
        uninterrupted.status.success(),
        "{}",
        stderr_of(&uninterrupted)
    );

    kill_mid_stream_and_rerun(
        &["run", restarted, "--stage", "zscore"],
        &envs,
        &restarted_out,
        500,
    );
    let expected = assert_same_distinct_records(&reference_out, &restarted_out, 100_000);

    // Independent check of the values: z-score of each price against the statistics
    // record of its symbol at floor(t / 1 s) * 1 s, read back from the statistics topic.
    let mut stats: HashMap<(String, String), serde_json::Value> = HashMap::new();
    for record in read_topic(
        &topics.moving,
        Duration::from_secs(3),
        Duration::from_secs(120),
    )
    .iter()
    .filter(|r| !r.end_of_input)
    {
        let value: serde_json::Value = serde_json::from_slice(&record.payload).expect("stats JSON");
        let key = (
            value["symbol"].as_str().unwrap_or_default().to_string(),
            value["timestamp"].as_str().unwrap_or_default().to_string(),
        );
        stats.insert(key, value);
    }
    let mut checked = 0;
    for (_, payload) in expected.iter().step_by(97) {
        let z: serde_json::Value = serde_json::from_slice(payload).expect("zscore JSON");
        let t = chrono::DateTime::parse_from_rfc3339(z["timestamp"].as_str().expect("timestamp"))
            .expect("time")
            .timestamp_millis();
        let e = t.div_euclid(1000) * 1000;
        let e_text = chrono::DateTime::from_timestamp_millis(e)
            .expect("e")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let record = &stats[&(z["symbol"].as_str().expect("symbol").to_string(), e_text)];
        let price = z["price"].as_f64().expect("price");
        let windows = record["stats"].as_array().expect("stats");
        let zscores = z["zscores"].as_array().expect("zscores");
        assert_eq!(windows.len(), zscores.len());
        for (w, zs) in windows.iter().zip(zscores) {
            assert_eq!(w["window"], zs["window"]);
            let (avg, std) = (
                w["avg_price"].as_f64().expect("avg"),
                w["std_price"].as_f64().expect("std"),
            );
            let want = if std == 0.0 { 0.0 } else { (price - avg) / std };
            let got = zs["zscore_price"].as_f64().expect("z");
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
        checked += 1;
    }
    assert!(checked > 1_000);
}

#[test]
fn a_join_at_its_pending_bound_pauses_prices_instead_of_dropping_them_and_writes_every_zscore() {
    let Upstream { dir, topics, envs } = upstream(20_000);
    let unbounded_out = unique("zscore-unbounded");
    let bounded_out = unique("zscore-bounded");
    let unbounded = pipeline(
        dir.path(),
        "unbounded.yaml",
        &topics,
        &unbounded_out,
        1_000_000,
    );
    // Far fewer than the prices that come before their statistics in the topic.
    let bounded = pipeline(dir.path(), "bounded.yaml", &topics, &bounded_out, 200);
    let unbounded = unbounded.to_str().expect("utf-8");
    let bounded = bounded.to_str().expect("utf-8");
    for file in [unbounded, bounded] {
        let join = run_pipeline(
            &["run", file, "--stage", "zscore"],
            &envs,
            Duration::from_secs(300),
        );
        assert!(join.status.success(), "{file}: {}", stderr_of(&join));
    }
    let records = |topic: &str| -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
        read_topic(topic, Duration::from_secs(3), Duration::from_secs(120))
            .into_iter()
            .filter(|r| !r.end_of_input)
            .map(|r| (r.key, r.payload))
            .collect()
    };
    let mut want = records(&unbounded_out);
    let mut got = records(&bounded_out);
    assert!(want.len() > 30_000, "{} z-scores", want.len());
    // Compared as multisets of (key, payload): the runs interleave their inputs differently.
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len(), "z-scores with the bound vs without");
    assert!(got == want, "the bounded join wrote other records");
    // The same prices are refused (late ones), none for a full buffer.
    let mut dropped_unbounded = records(&format!("{unbounded_out}-dropped"));
    let mut dropped_bounded = records(&format!("{bounded_out}-dropped"));
    dropped_unbounded.sort();
    dropped_bounded.sort();
    assert!(!dropped_unbounded.is_empty(), "the input has late prices");
    assert_eq!(
        dropped_bounded.len(),
        dropped_unbounded.len(),
        "dead letters with the bound vs without"
    );
    assert!(dropped_bounded == dropped_unbounded);
}
