//! Compressed topics through the real broker: with each codec librdkafka is built with
//! (`compression.type` zstd, lz4, snappy, gzip), file → topic → file loses nothing.
//! Needs KAFKA_BROKERS (scripts/test.sh starts a broker).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn records_compressed_with_zstd_lz4_snappy_and_gzip_round_trip_through_the_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = (0..2_000)
        .map(|i| {
            format!(
                r#"{{"symbol":"S{}","seq":{i},"pad":"{}"}}"#,
                i % 3,
                "x".repeat(50)
            )
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").expect("write input");
    for codec in ["zstd", "lz4", "snappy", "gzip"] {
        let topic = unique(&format!("compressed-{codec}"));
        let output = dir.path().join(format!("{codec}.jsonl"));
        let pipeline = write_file(
            dir.path(),
            &format!("{codec}.yaml"),
            &format!(
                r#"name: {topic}
kafka:
  brokers: ${{KAFKA_BROKERS}}
  commit_interval: 200ms
  properties:
    compression.type: {codec}
stages:
  - name: read
    type: file_source
    output: {topic}
    config: {{ path: "${{IN_FILE}}", key_field: symbol }}
  - name: write
    type: file_sink
    input: {topic}
    config: {{ path: "${{OUT_FILE}}" }}
"#
            ),
        );
        let run = run_pipeline(
            &["run", pipeline.to_str().expect("path")],
            &[
                ("KAFKA_BROKERS", kafka_brokers()),
                ("IN_FILE", input.display().to_string()),
                ("OUT_FILE", output.display().to_string()),
            ],
            Duration::from_secs(120),
        );
        assert!(run.status.success(), "{codec}: {}", stderr_of(&run));
        let mut got = read_lines(&output);
        let mut want = lines.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{codec}");
    }
}
