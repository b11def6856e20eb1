//! Several processes of one stage (issue 10 §3): end of input is counted per upstream
//! writer part, so N processes give the same output as one.

mod common;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use common::*;

const SYMBOLS: [&str; 3] = ["BTCUSDT", "ETHUSDT", "BNBUSDT"];
const START_MS: i64 = 1_746_630_000_000;

/// replay -> moving -> (archive file | zscore -> load).
fn pipeline(dir: &Path, name: &str, input: &Path, out: &Path) -> PathBuf {
    let t = |topic: &str| format!("{name}-{topic}");
    write_file(
        dir,
        &format!("{name}.yaml"),
        &format!(
            r#"name: {name}
kafka:
  brokers: ${{KAFKA_BROKERS}}
  commit_interval: 200ms
topics:
  {prices}: {{ partitions: 3 }}
  {moving}: {{ partitions: 3 }}
  {zscore}: {{ partitions: 3 }}
stages:
  - name: replay
    type: file_source
    output: {prices}
    config: {{ path: "{input}", key_field: symbol, timestamp_field: timestamp }}
  - name: moving
    type: moving_stats
    input: {prices}
    output: {moving}
    config: {{ windows: [30s, 1m], slide: 1s, lateness: 10s }}
  - name: archive
    type: file_sink
    input: {moving}
    config: {{ path: "{out}" }}
  - name: zscore
    type: zscore
    inputs: {{ prices: {prices}, stats: {moving} }}
    output: {zscore}
    config: {{ slide: 1s, lateness: 10s }}
  - name: load
    type: mongo
    input: {zscore}
    config: {{ uri: "${{MONGO_URI}}", database: {name}, collection: "z-{{window}}", explode: zscores, key: [symbol, timestamp], date_fields: [timestamp] }}
"#,
            prices = t("prices"),
            moving = t("moving"),
            zscore = t("zscore"),
            input = input.display(),
            out = out.display(),
        ),
    )
}

fn envs() -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BROKERS", kafka_brokers()),
        ("MONGO_URI", mongo_uri()),
    ]
}

fn run_to_end(file: &Path, stages: &[&str]) -> std::process::Child {
    let mut args = vec!["run", file.to_str().expect("utf-8")];
    for s in stages {
        args.extend(["--stage", s]);
    }
    spawn_pipeline(&args, &envs())
}

fn finished(child: std::process::Child, what: &str) {
    let output = wait_with_timeout(child, Duration::from_secs(240));
    assert!(
        output.status.success(),
        "{what}: {:?}\n{}",
        output.status,
        stderr_of(&output)
    );
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines = read_lines(path);
    lines.sort();
    lines
}

#[test]
fn two_processes_of_moving_stats_on_a_3_symbol_replay_equal_a_one_process_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("prices.jsonl");
    let lines = price_lines(&SYMBOLS, 20_000, START_MS, 0);
    std::fs::write(&input, lines.join("\n") + "\n").expect("write prices");
    let reference_out = dir.path().join("reference.jsonl");
    let scaled_out = dir.path().join("scaled.jsonl");
    let reference = pipeline(dir.path(), &unique("one"), &input, &reference_out);
    let scaled = pipeline(dir.path(), &unique("two"), &input, &scaled_out);

    finished(
        run_to_end(&reference, &["replay", "moving", "archive"]),
        "one-process run",
    );
    finished(run_to_end(&scaled, &["replay"]), "replay");
    let archive = KillOnDrop(Some(run_to_end(&scaled, &["archive"])));
    let first = KillOnDrop(Some(run_to_end(&scaled, &["moving"])));
    let second = KillOnDrop(Some(run_to_end(&scaled, &["moving"])));
    finished(first.take(), "first moving process");
    finished(second.take(), "second moving process");
    finished(archive.take(), "archive");

    let expected = sorted_lines(&reference_out);
    assert!(expected.len() > 5_000, "{} statistics", expected.len());
    let got = sorted_lines(&scaled_out);
    let mut distinct = got.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        expected.len(),
        "distinct statistics records of two processes vs one"
    );
    assert_eq!(distinct, expected);
}
