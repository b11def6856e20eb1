//! Records through the real broker with `pipeline run`: file source → topic → file sink.
//! Needs KAFKA_BROKERS (scripts/test.sh starts a broker).

mod common;

use std::{collections::HashSet, path::Path, time::Duration};

use common::*;

fn write_input(path: &Path, count: usize) -> Vec<String> {
    let lines: Vec<String> = (0..count)
        .map(|i| {
            let symbol = ["BTCUSDT", "ETHUSDT", "BNBUSDT"][i % 3];
            format!(
                r#"{{"symbol":"{symbol}","price":{}.{:02},"timestamp":"2025-05-07T15:{:02}:{:02}.{:03}Z","seq":{i}}}"#,
                97_000 + i / 100,
                i % 100,
                (i / 60_000) % 60,
                (i / 1000) % 60,
                i % 1000
            )
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").expect("write input");
    lines
}

/// Environment of the round-trip pipeline: broker, input and output files.
fn roundtrip_env(input: &Path, output: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BROKERS", kafka_brokers()),
        ("IN_FILE", input.display().to_string()),
        ("OUT_FILE", output.display().to_string()),
    ]
}

fn roundtrip_pipeline(dir: &Path, topic: &str, batch: usize) -> std::path::PathBuf {
    write_file(
        dir,
        "pipeline.yaml",
        &format!(
            r#"name: {name}
kafka:
  brokers: ${{KAFKA_BROKERS}}
  commit_interval: 200ms
topics:
  {topic}:
    partitions: 3
stages:
  - name: read
    type: file_source
    output: {topic}
    dead_letter: {topic}-dead
    config:
      path: ${{IN_FILE}}
      key_field: symbol
      timestamp_field: timestamp
  - name: write
    type: file_sink
    input: {topic}
    batch:
      max_records: {batch}
      max_wait: 20ms
    config:
      path: ${{OUT_FILE}}
"#,
            name = unique("roundtrip")
        ),
    )
}

#[test]
fn file_to_kafka_to_file_loses_and_duplicates_nothing_and_ends_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    let mut lines = write_input(&input, 30_000);
    // A malformed line is dead-lettered, not written and not fatal.
    let mut text = std::fs::read_to_string(&input).expect("read");
    text.push_str("{not json\n");
    std::fs::write(&input, text).expect("write");
    let pipeline = roundtrip_pipeline(dir.path(), &unique("records"), 1000);
    let envs = roundtrip_env(&input, &output);
    let result = run_pipeline(
        &["run", pipeline.to_str().expect("utf-8")],
        &envs,
        Duration::from_secs(120),
    );
    assert!(
        result.status.success(),
        "pipeline failed:\n{}",
        stderr_of(&result)
    );
    let mut written = read_lines(&output);
    assert_eq!(
        written.len(),
        lines.len(),
        "every record written exactly once"
    );
    let distinct: HashSet<&String> = written.iter().collect();
    assert_eq!(distinct.len(), written.len(), "no duplicates");
    written.sort();
    lines.sort();
    assert_eq!(written, lines, "the written records are the input records");
    assert!(
        stderr_of(&result).contains("malformed_json"),
        "the bad line is reported"
    );
}

#[test]
fn records_of_one_key_keep_their_order_through_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    let lines = write_input(&input, 9_000);
    let pipeline = roundtrip_pipeline(dir.path(), &unique("ordered"), 250);
    let envs = roundtrip_env(&input, &output);
    let result = run_pipeline(
        &["run", pipeline.to_str().expect("utf-8")],
        &envs,
        Duration::from_secs(120),
    );
    assert!(result.status.success(), "{}", stderr_of(&result));
    let written = read_lines(&output);
    for symbol in ["BTCUSDT", "ETHUSDT", "BNBUSDT"] {
        let expected: Vec<&String> = lines.iter().filter(|l| l.contains(symbol)).collect();
        let got: Vec<&String> = written.iter().filter(|l| l.contains(symbol)).collect();
        assert_eq!(got, expected, "order of {symbol}");
    }
}

#[test]
fn sigterm_mid_run_exits_0_and_a_restart_resumes_from_committed_offsets_without_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    let mut lines = write_input(&input, 60_000);
    let pipeline = roundtrip_pipeline(dir.path(), &unique("restart"), 50);
    let pipeline = pipeline.to_str().expect("utf-8");
    let envs = roundtrip_env(&input, &output);
    // Fill the topic first, so the sink has a long backlog when it is stopped.
    let filled = run_pipeline(
        &["run", pipeline, "--stage", "read"],
        &envs,
        Duration::from_secs(120),
    );
    assert!(filled.status.success(), "{}", stderr_of(&filled));

    let sink = spawn_pipeline(&["run", pipeline, "--stage", "write"], &envs);
    // Wait until the sink is visibly mid-way.
    let started = std::time::Instant::now();
    while read_lines(&output).len() < 2_000 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "sink never started writing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sink.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("send SIGTERM");
    let stop_started = std::time::Instant::now();
    let stopped = wait_with_timeout(sink, Duration::from_secs(30));
    let stop_time = stop_started.elapsed();
    assert!(
        stopped.status.success(),
        "exit status after SIGTERM: {:?}\n{}",
        stopped.status,
        stderr_of(&stopped)
    );
    assert!(
        stop_time < Duration::from_secs(10),
        "graceful stop took {stop_time:?}"
    );
    let after_stop = read_lines(&output).len();
    assert!(
        after_stop < lines.len(),
        "the sink was stopped before the end ({after_stop} written)"
    );

    let resumed = run_pipeline(
        &["run", pipeline, "--stage", "write"],
        &envs,
        Duration::from_secs(120),
    );
    assert!(resumed.status.success(), "{}", stderr_of(&resumed));
    let mut written = read_lines(&output);
    assert_eq!(
        written.len(),
        lines.len(),
        "no loss and no duplicate across the restart"
    );
    written.sort();
    lines.sort();
    assert_eq!(written, lines);
}

#[test]
fn two_processes_of_one_stage_share_its_partitions_and_together_write_everything_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let out_a = dir.path().join("out-a.jsonl");
    let out_b = dir.path().join("out-b.jsonl");
    let mut lines = write_input(&input, 30_000);
    let pipeline = roundtrip_pipeline(dir.path(), &unique("shared"), 500);
    let pipeline = pipeline.to_str().expect("utf-8");
    let env = |out: &Path| roundtrip_env(&input, out);
    // Both sink processes join the group before there is anything to read.
    let a = spawn_pipeline(&["run", pipeline, "--stage", "write"], &env(&out_a));
    std::thread::sleep(Duration::from_secs(4));
    let b = spawn_pipeline(&["run", pipeline, "--stage", "write"], &env(&out_b));
    std::thread::sleep(Duration::from_secs(8));
    let filled = run_pipeline(
        &["run", pipeline, "--stage", "read"],
        &env(&out_a),
        Duration::from_secs(120),
    );
    assert!(filled.status.success(), "{}", stderr_of(&filled));
    let a = wait_with_timeout(a, Duration::from_secs(120));
    let b = wait_with_timeout(b, Duration::from_secs(120));
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        stderr_of(&a),
        stderr_of(&b)
    );
    let written_a = read_lines(&out_a);
    let written_b = read_lines(&out_b);
    assert!(
        !written_a.is_empty() && !written_b.is_empty(),
        "both processes got partitions ({} / {})",
        written_a.len(),
        written_b.len()
    );
    let mut all: Vec<String> = written_a.into_iter().chain(written_b).collect();
    all.sort();
    lines.sort();
    assert_eq!(all, lines, "together, every record exactly once");
}

#[test]
fn rerunning_a_stage_whose_inputs_already_ended_finishes_at_once_without_rewriting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    let lines = write_input(&input, 3_000);
    let pipeline = roundtrip_pipeline(dir.path(), &unique("rerun"), 500);
    let pipeline = pipeline.to_str().expect("utf-8");
    let envs = roundtrip_env(&input, &output);
    let first = run_pipeline(&["run", pipeline], &envs, Duration::from_secs(120));
    assert!(first.status.success(), "{}", stderr_of(&first));
    // The committed positions stay at the end-of-input markers: a rerun reads them again
    // and ends, instead of waiting forever, and writes nothing twice.
    let again = run_pipeline(
        &["run", pipeline, "--stage", "write"],
        &envs,
        Duration::from_secs(60),
    );
    assert!(again.status.success(), "{}", stderr_of(&again));
    assert_eq!(read_lines(&output).len(), lines.len());
}
