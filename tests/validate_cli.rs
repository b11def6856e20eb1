//! `pipeline validate` against golden fixtures: every invalid pipeline under
//! `tests/fixtures/invalid/` must print exactly its `.expected` text (with line:col), and
//! every shipped pipeline must validate silently.
//!
//! Set `UPDATE_GOLDEN=1` to rewrite the `.expected` files after an intended change, then
//! review the diff.

mod common;

use std::{fs, path::Path, process::Command};

fn validate(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(common::pipeline_bin());
    command.arg("validate").args(args);
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("run pipeline validate")
}

#[test]
fn every_invalid_fixture_prints_its_exact_expected_diagnostics() {
    let dir = Path::new("tests/fixtures/invalid");
    let mut fixtures: Vec<_> = fs::read_dir(dir)
        .expect("fixtures folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    assert!(
        fixtures.len() >= 15,
        "expected at least 15 invalid fixtures, found {}",
        fixtures.len()
    );
    let mut failures = Vec::new();
    for fixture in &fixtures {
        let path = fixture.to_str().expect("utf-8 path");
        let output = validate(&[path], &[]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let expected_path = fixture.with_extension("expected");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            fs::write(&expected_path, &stdout).expect("write golden file");
            continue;
        }
        let expected = fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        if output.status.code() != Some(1) {
            failures.push(format!(
                "{path}: exit {:?}, expected 1",
                output.status.code()
            ));
        }
        if stdout != expected {
            failures.push(format!(
                "{path}:\n--- expected\n{expected}--- got\n{stdout}"
            ));
        }
        if stdout.is_empty() {
            failures.push(format!("{path}: printed no diagnostic"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_diagnostic_line_has_file_line_column_and_path() {
    let output = validate(
        &["tests/fixtures/invalid/17-out-of-range-and-stage-errors.yaml"],
        &[],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in lines {
        let mut parts = line.splitn(4, ':');
        let file = parts.next().unwrap_or_default();
        let line_no: usize = parts
            .next()
            .and_then(|s| s.parse().ok())
            .expect("line number");
        let col: usize = parts.next().and_then(|s| s.parse().ok()).expect("column");
        assert!(
            file.ends_with(".yaml") && line_no >= 1 && col >= 1,
            "{line}"
        );
    }
}

#[test]
fn shipped_and_valid_fixture_pipelines_validate_silently_with_exit_0() {
    let mut files: Vec<String> = Vec::new();
    for dir in ["pipelines", "pipelines/examples", "tests/fixtures/valid"] {
        for entry in fs::read_dir(dir)
            .expect("pipelines folder")
            .filter_map(Result::ok)
        {
            let path = entry.path();
            // `*_test.yaml` files hold `pipeline test` tests, not pipelines.
            if path.extension().is_some_and(|e| e == "yaml")
                && !path.to_string_lossy().ends_with("_test.yaml")
            {
                files.push(path.to_string_lossy().into_owned());
            }
        }
    }
    assert!(!files.is_empty());
    for file in files {
        let output = validate(
            &[&file],
            &[
                ("IN_FILE", "in.jsonl"),
                ("OUT_FILE", "out.jsonl"),
                // pipelines/examples/secured.yaml
                ("KAFKA_BROKERS", "broker.example:9093"),
                ("KAFKA_USER", "pipeline"),
                ("KAFKA_PASSWORD", "not-a-real-password"),
                ("KAFKA_CA", "/etc/ssl/certs/ca-certificates.crt"),
            ],
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(
            output.stdout.is_empty(),
            "{file} printed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(
            output.stderr.is_empty(),
            "{file} logged: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn json_format_reports_the_same_problems_as_structured_objects() {
    let output = validate(
        &[
            "--format",
            "json",
            "tests/fixtures/invalid/08-unknown-input-topic.yaml",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    let items = parsed.as_array().expect("an array");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["line"], 12);
    assert_eq!(items[0]["column"], 12);
    assert_eq!(items[0]["path"], "stages[1].input");
    assert!(items[0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("did you mean \"records\""));
}

#[test]
fn usage_errors_exit_with_2() {
    assert_eq!(validate(&[], &[]).status.code(), Some(2), "no file given");
    assert_eq!(
        validate(&["tests/fixtures/no-such-file.yaml"], &[])
            .status
            .code(),
        Some(2),
        "missing file"
    );
}

#[test]
fn environment_variables_fill_placeholders_and_defaults() {
    // With the variables set, the example needs nothing else.
    let output = validate(
        &["pipelines/examples/file-roundtrip.yaml"],
        &[("IN_FILE", "a"), ("OUT_FILE", "b")],
    );
    assert_eq!(output.status.code(), Some(0));
    // Without them, each unset variable is named.
    let output = Command::new(common::pipeline_bin())
        .args(["validate", "pipelines/examples/file-roundtrip.yaml"])
        .env_remove("IN_FILE")
        .env_remove("OUT_FILE")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout.contains("environment variable IN_FILE is not set"),
        "{stdout}"
    );
    assert!(
        stdout.contains("environment variable OUT_FILE is not set"),
        "{stdout}"
    );
}

#[test]
fn connectors_lists_and_describes_registered_connectors() {
    let list = Command::new(common::pipeline_bin())
        .arg("connectors")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("file_source") && l.contains("source")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("file_sink") && l.contains("sink")),
        "{text}"
    );

    let describe = Command::new(common::pipeline_bin())
        .args(["connectors", "describe", "file_source"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&describe.stdout);
    assert!(text.contains("path: string (required)"), "{text}");
    assert!(text.contains("key_field:"), "{text}");
    assert!(text.contains("output: json records"), "{text}");

    let unknown = Command::new(common::pipeline_bin())
        .args(["connectors", "describe", "file_sorce"])
        .output()
        .expect("run");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("did you mean \"file_source\""));
}

#[test]
fn credentials_quoted_in_diagnostics_are_redacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = common::write_file(
        dir.path(),
        "secret.yaml",
        "name: secret\nkafka:\n  brokers: localhost:9092\n  partitions: \"mongodb://admin:s3cret@db:27017/\"\nstages: []\n",
    );
    let output = validate(&[file.to_str().expect("utf-8")], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.contains("mongodb://***@db:27017/"), "{stdout}");
    assert!(!stdout.contains("s3cret"), "{stdout}");
}
