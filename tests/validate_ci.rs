//! `pipeline validate` in CI: env files, unset variables as warnings, warnings as a
//! category (`--deny-warnings`), and schema failures worded like the golden messages.

mod common;

use std::{fs, process::Command};

fn validate(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(common::pipeline_bin())
        .arg("validate")
        .args(args)
        .env_remove("IN_FILE")
        .env_remove("OUT_FILE")
        .env_remove("KAFKA_BROKERS")
        .output()
        .expect("run pipeline validate");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn shipped_pipelines() -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["pipelines", "pipelines/examples"] {
        for entry in fs::read_dir(dir).expect("folder").filter_map(Result::ok) {
            let path = entry.path().to_string_lossy().into_owned();
            if path.ends_with(".yaml") && !path.ends_with("_test.yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_shipped_pipeline_validates_with_allow_unset_env_and_nothing_set() {
    for file in shipped_pipelines() {
        let (code, stdout) = validate(&["--allow-unset-env", &file]);
        assert_eq!(code, Some(0), "{file}: {stdout}");
        // Only the unset variables are mentioned, as warnings.
        for line in stdout.lines() {
            assert!(
                line.contains(": warning: ") && line.contains("is not set"),
                "{file}: {line}"
            );
        }
    }
    let (code, stdout) = validate(&[
        "--allow-unset-env",
        "pipelines/examples/file-roundtrip.yaml",
    ]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("pipelines/examples/file-roundtrip.yaml:17:13: warning: stages[0].config.path: environment variable IN_FILE is not set"),
        "{stdout}"
    );
    // Without the flag the same file is invalid; with --deny-warnings too.
    assert_eq!(
        validate(&["pipelines/examples/file-roundtrip.yaml"]).0,
        Some(1)
    );
    assert_eq!(
        validate(&[
            "--allow-unset-env",
            "--deny-warnings",
            "pipelines/examples/file-roundtrip.yaml"
        ])
        .0,
        Some(1)
    );
}

#[test]
fn allow_unset_env_still_reports_every_other_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = common::write_file(
        dir.path(),
        "p.yaml",
        "name: p\nkafka:\n  brokers: localhost:9092\nstages:\n  - name: read\n    type: file_source\n    output: records\n    config: { path: \"${IN_FILE}\", key_feld: symbol }\n  - name: write\n    type: file_sink\n    input: recrods\n    config: { path: out.jsonl }\n",
    );
    let (code, stdout) = validate(&["--allow-unset-env", file.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("unknown field \"key_feld\" (did you mean \"key_field\"?)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: stages[0].config.path: environment variable IN_FILE is not set"),
        "{stdout}"
    );
}

#[test]
fn env_file_fills_variables_and_a_bad_env_file_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = common::write_file(
        dir.path(),
        "ci.env",
        "# CI values\nIN_FILE=prices.jsonl\nOUT_FILE=\"out file.jsonl\"\n",
    );
    let env = env.to_str().expect("utf-8");
    let (code, stdout) = validate(&["--env-file", env, "pipelines/examples/file-roundtrip.yaml"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.is_empty(), "{stdout}");

    let missing = dir.path().join("missing.env");
    let (code, _) = validate(&[
        "--env-file",
        missing.to_str().expect("utf-8"),
        "pipelines/btcusdt.yaml",
    ]);
    assert_eq!(code, Some(2));
}

const WARNED: &str = r#"name: warned
kafka:
  brokers: localhost:9092
stages:
  - name: read
    type: file_source
    output: prices
    dead_letter: bad-prices
    config: { path: in.jsonl }
  - name: stats
    type: moving_stats
    input: prices
    output: stats
    config: { windows: [5s, 1m], slide: 1s, lateness: 10s }
"#;

#[test]
fn warnings_name_unread_outputs_unread_dead_letters_and_lateness_beyond_the_shortest_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = common::write_file(dir.path(), "warned.yaml", WARNED);
    let file = file.to_str().expect("utf-8");
    let (code, stdout) = validate(&[file]);
    assert_eq!(code, Some(0), "warnings alone pass: {stdout}");
    let expected = [
        format!("{file}:8:18: warning: stages[0].dead_letter: no stage reads dead-letter topic \"bad-prices\" of stage \"read\""),
        format!("{file}:13:13: warning: stages[1].output: no stage reads topic \"stats\", the output of stage \"stats\""),
        format!("{file}:14:55: warning: stages[1].config.lateness: lateness 10s is longer than the shortest window (5s)"),
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, expected) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(expected.as_str()),
            "{line}\nexpected: {expected}"
        );
    }
    assert_eq!(validate(&["--deny-warnings", file]).0, Some(1));

    let (_, json) = validate(&["--format", "json", file]);
    let items: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(items.as_array().map(Vec::len), Some(3));
    assert!(items
        .as_array()
        .into_iter()
        .flatten()
        .all(|i| i["severity"] == "warning"));

    // Declaring the topics as read outside the pipeline silences the first two.
    let quiet = WARNED.replace(
        "stages:\n",
        "topics:\n  bad-prices: { read_externally: true }\n  stats: { read_externally: true }\nstages:\n",
    );
    let file = common::write_file(dir.path(), "quiet.yaml", &quiet);
    let (_, stdout) = validate(&[file.to_str().expect("utf-8")]);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

#[test]
fn schema_failures_read_like_the_golden_messages_not_like_the_validator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = common::write_file(
        dir.path(),
        "raw.yaml",
        "name: raw\nkafka:\n  brokers: localhost:9092\n  properties:\n    socket.timeout.ms: [a, b]\nstages: []\n",
    );
    let (code, stdout) = validate(&[file.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains("kafka.properties.socket.timeout.ms: expected a string, an integer, true or false or a number, found a list"),
        "{stdout}"
    );
    for raw in ["anyOf", "is not valid under", "oneOf", "schema"] {
        assert!(
            !stdout.contains(raw),
            "raw validator wording {raw:?}: {stdout}"
        );
    }
}
