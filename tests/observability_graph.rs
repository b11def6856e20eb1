//! `pipeline graph`: golden output for the example pipeline, in both formats.

mod common;

use std::time::Duration;

use common::*;

fn graph(format: &str) -> String {
    let output = run_pipeline(
        &[
            "graph",
            "--format",
            format,
            "pipelines/examples/file-roundtrip.yaml",
        ],
        &[
            ("IN_FILE", "in.jsonl".into()),
            ("OUT_FILE", "out.jsonl".into()),
        ],
        Duration::from_secs(20),
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn mermaid_graph_of_the_example_matches_its_golden_file() {
    let golden = std::fs::read_to_string("tests/fixtures/graph/file-roundtrip.mmd").unwrap();
    assert_eq!(graph("mermaid"), golden);
}

#[test]
fn dot_graph_of_the_example_matches_its_golden_file() {
    let golden = std::fs::read_to_string("tests/fixtures/graph/file-roundtrip.dot").unwrap();
    assert_eq!(graph("dot"), golden);
}

#[test]
fn graph_shows_ports_and_dashed_dead_letters_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_file(
        dir.path(),
        "p.yaml",
        "name: g\nkafka: { brokers: 127.0.0.1:1 }\nstages:\n  \
         - name: read\n    type: file_source\n    output: raw\n    dead_letter: bad\n    config: { path: in.jsonl }\n  \
         - name: write\n    type: file_sink\n    input: raw\n    dead_letter: bad-write\n    config: { path: out.jsonl }\n  \
         - name: copy\n    type: file_sink\n    input: raw\n    config: { path: copy.jsonl }\n",
    );
    let path = pipeline.to_str().unwrap();
    let run = || run_pipeline(&["graph", path], &[], Duration::from_secs(20));
    let first = run();
    assert!(first.status.success(), "{}", stderr_of(&first));
    let text = String::from_utf8(first.stdout).unwrap();
    assert!(text.contains("s0 -.->|dead letter| t1"), "{text}");
    assert!(text.contains("s1 -.->|dead letter| t2"), "{text}");
    assert!(text.contains("t0 -->|input| s1"), "{text}");
    assert!(text.contains("t0 -->|input| s2"), "{text}");
    assert!(text.contains("s2[\"copy (file_sink)\"]"), "{text}");
    assert_eq!(
        text.matches("([\"raw\"])").count(),
        1,
        "one node per topic: {text}"
    );
    assert_eq!(String::from_utf8(run().stdout).unwrap(), text);
}

#[test]
fn graph_of_an_invalid_pipeline_prints_its_problems_and_exits_1() {
    let output = run_pipeline(
        &["graph", "pipelines/examples/file-roundtrip.yaml"],
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("IN_FILE is not set"),
        "{}",
        stderr_of(&output)
    );
}
