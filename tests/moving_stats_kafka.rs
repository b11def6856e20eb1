//! The moving-statistics stage on the real broker: killed with SIGKILL mid-stream and
//! restarted, it produces the same distinct records as an uninterrupted run.

mod common;

use std::{path::Path, time::Duration};

use common::*;

fn pipeline(dir: &Path, file: &str, name: &str, prices: &str, output: &str) -> std::path::PathBuf {
    write_file(
        dir,
        file,
        &format!(
            r#"name: {name}
kafka:
  brokers: ${{KAFKA_BROKERS}}
  commit_interval: 200ms
topics:
  {prices}: {{ partitions: 3 }}
  {output}: {{ partitions: 3 }}
stages:
  - name: replay
    type: file_source
    output: {prices}
    config: {{ path: "${{IN_FILE}}", key_field: symbol, timestamp_field: timestamp }}
  - name: moving
    type: moving_stats
    input: {prices}
    output: {output}
    dead_letter: {output}-late
    config: {{ windows: [30s, 1m, 5m, 15m, 30m, 1h], slide: 1s, lateness: 10s }}
"#
        ),
    )
}

#[test]
fn sigkill_mid_stream_and_restart_gives_the_same_distinct_output_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("prices.jsonl");
    let lines = price_lines(
        &["BTCUSDT", "ETHUSDT", "BNBUSDT"],
        200_000,
        1_746_630_000_000,
        997,
    );
    std::fs::write(&input, lines.join("\n") + "\n").expect("write prices");
    let prices = unique("prices");
    let reference_out = unique("moving-reference");
    let restarted_out = unique("moving-restarted");
    let reference = pipeline(
        dir.path(),
        "reference.yaml",
        &unique("ref"),
        &prices,
        &reference_out,
    );
    let restarted = pipeline(
        dir.path(),
        "restarted.yaml",
        &unique("kill"),
        &prices,
        &restarted_out,
    );
    let envs = [
        ("KAFKA_BROKERS", kafka_brokers()),
        ("IN_FILE", input.display().to_string()),
    ];

    let fill = run_pipeline(
        &[
            "run",
            reference.to_str().expect("utf-8"),
            "--stage",
            "replay",
        ],
        &envs,
        Duration::from_secs(120),
    );
    assert!(fill.status.success(), "{}", stderr_of(&fill));
    let uninterrupted = run_pipeline(
        &[
            "run",
            reference.to_str().expect("utf-8"),
            "--stage",
            "moving",
        ],
        &envs,
        Duration::from_secs(300),
    );
    assert!(
        uninterrupted.status.success(),
        "{}",
        stderr_of(&uninterrupted)
    );

    // Kill the second run once it has visibly emitted part of its output.
    let resumed = kill_mid_stream_and_rerun(
        &[
            "run",
            restarted.to_str().expect("utf-8"),
            "--stage",
            "moving",
        ],
        &envs,
        &restarted_out,
        500,
    );
    assert!(
        stderr_of(&resumed).contains("replaying input to rebuild state"),
        "the restart replays: {}",
        stderr_of(&resumed)
    );
    assert_same_distinct_records(&reference_out, &restarted_out, 10_000);
}
