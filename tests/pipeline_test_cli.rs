//! `pipeline test`: the shipped pipelines' tests pass, and failures are readable (test
//! name, record diff, file:line of the expectation). No servers needed.

mod common;

use std::{fs, path::Path, process::Command};

fn pipeline_test(args: &[&str]) -> std::process::Output {
    Command::new(common::pipeline_bin())
        .arg("test")
        .args(args)
        .output()
        .expect("run pipeline test")
}

fn shipped_pipelines() -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["pipelines", "pipelines/examples"] {
        for entry in fs::read_dir(dir)
            .expect("pipelines folder")
            .filter_map(Result::ok)
        {
            let path = entry.path().to_string_lossy().into_owned();
            if path.ends_with(".yaml") && !path.ends_with("_test.yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Transform connector names, from `pipeline connectors`.
fn transform_types() -> Vec<String> {
    let output = Command::new(common::pipeline_bin())
        .arg("connectors")
        .output()
        .expect("run");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            (words.next() == Some("transform")).then(|| name.to_string())
        })
        .collect()
}

#[test]
fn every_shipped_pipeline_with_a_transform_has_tests_and_they_pass() {
    let transforms = transform_types();
    assert!(
        transforms.contains(&"moving_stats".to_string()),
        "{transforms:?}"
    );
    let mut tested = 0;
    for file in shipped_pipelines() {
        let text = fs::read_to_string(&file).expect("read pipeline");
        let has_transform = text.lines().any(|l| {
            l.trim()
                .strip_prefix("type:")
                .is_some_and(|t| transforms.iter().any(|x| x == t.trim()))
        });
        let output = pipeline_test(&[&file]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !has_transform && output.status.code() == Some(2) && stderr.contains("has no tests") {
            continue;
        }
        assert_eq!(output.status.code(), Some(0), "{file}:\n{stdout}{stderr}");
        assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
        assert!(!stdout.contains("FAIL"), "{stdout}");
        tested += 1;
    }
    assert!(tested >= 1, "no shipped pipeline has tests");
}

#[test]
fn btcusdt_tests_cover_late_gap_constant_price_and_unmatched() {
    let output = pipeline_test(&["--format", "json", "pipelines/btcusdt.yaml"]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["failed"], 0, "{report:#}");
    let names: Vec<&str> = report["files"][0]["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default())
        .collect();
    for topic in [
        "late",
        "gap longer than the longest window",
        "std exactly 0",
        "unmatched",
    ] {
        assert!(
            names.iter().any(|n| n.contains(topic)),
            "no test about {topic:?}: {names:?}"
        );
    }
    for test in report["files"][0]["tests"].as_array().expect("tests") {
        assert_eq!(test["passed"], true, "{test:#}");
        // In process: milliseconds, not seconds.
        assert!(
            test["duration_us"].as_u64().unwrap_or(u64::MAX) < 5_000_000,
            "{test:#}"
        );
    }
}

/// A test file next to a temporary copy of nothing: it points at the shipped pipeline.
fn write_tests(dir: &Path, body: &str) -> String {
    let pipeline = fs::canonicalize("pipelines/btcusdt.yaml").expect("pipeline path");
    let text = format!("pipeline: {}\n{body}", pipeline.display());
    let path = dir.join("wrong_test.yaml");
    fs::write(&path, text).expect("write tests");
    path.to_string_lossy().into_owned()
}

#[test]
fn a_wrong_expectation_fails_with_the_test_name_a_record_diff_and_its_file_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_tests(
        dir.path(),
        r#"tests:
  - name: z-score of a price one std above the average
    stages: [zscore]
    input:
      - port: stats
        value: { timestamp: "2025-01-01T00:00:03.000Z", symbol: BTCUSDT, stats: [{ window: 30s, window_start: "2024-12-31T23:59:33.000Z", count: 2, avg_price: 100, std_price: 2 }] }
      - port: prices
        value: { symbol: BTCUSDT, price: 102, timestamp: "2025-01-01T00:00:03.500Z" }
    expect:
      - records:
          - value: { timestamp: "2025-01-01T00:00:03.500Z", symbol: BTCUSDT, price: 102, zscores: [{ window: 30s, zscore_price: 1.5 }] }
"#,
    );
    let output = pipeline_test(&[&file]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  z-score of a price one std above the average"),
        "{stdout}"
    );
    // The expected record is on line 12, column 13 of the file.
    assert!(
        stdout.contains(&format!(
            "{file}:12:13: tests[0].expect[0].records[0]: record 0 on topic \"btc-price-zscore\" differs (- expected, + actual)"
        )),
        "{stdout}"
    );
    // Only the differing line is marked, expected first.
    let marked: Vec<&str> = stdout
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("- ") || l.starts_with("+ "))
        .collect();
    assert_eq!(
        marked,
        [
            "-       \"zscore_price\": 1.5",
            "+       \"zscore_price\": 1"
        ],
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
}

#[test]
fn failures_in_json_format_carry_location_and_diff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_tests(
        dir.path(),
        r#"tests:
  - name: wrong count
    stages: [moving]
    input:
      - value: { symbol: BTCUSDT, price: 1, timestamp: "2025-01-01T00:00:00.000Z" }
    expect:
      - rejected: { reason: late, count: 1 }
"#,
    );
    let output = pipeline_test(&["--format", "json", &file]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["failed"], 1);
    let failure = &report["files"][0]["tests"][0]["failures"][0];
    assert_eq!(failure["path"], "tests[0].expect[0].rejected.count");
    assert_eq!(failure["line"], 8, "{failure:#}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expected 1 record(s) rejected as \"late\", found 0 (nothing was rejected)"),
        "{failure:#}"
    );
}

#[test]
fn an_invalid_test_file_is_reported_like_validate_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_tests(
        dir.path(),
        "tests:\n  - name: typo\n    input: []\n    expekt: []\n",
    );
    let output = pipeline_test(&[&file]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{file}:5:5: tests[0].expekt: unknown field \"expekt\" (did you mean \"expect\"?)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{file}:3:5: tests[0]: missing required field \"expect\""
        )),
        "{stdout}"
    );
}

#[test]
fn naming_a_source_or_an_unknown_stage_explains_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_tests(
        dir.path(),
        "tests:\n  - name: source\n    stages: [extract]\n    input: []\n    expect: [{ count: 0 }]\n  - name: typo\n    stages: [movin]\n    input: []\n    expect: [{ count: 0 }]\n",
    );
    let output = pipeline_test(&[&file]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout.contains("stage \"extract\" is a source (binance): only transforms run in tests"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no stage named \"movin\" in the pipeline (did you mean \"moving\"?)"),
        "{stdout}"
    );
}

#[test]
fn usage_errors_exit_with_2() {
    assert_eq!(
        pipeline_test(&["pipelines/no-such.yaml"]).status.code(),
        Some(2)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = common::write_file(dir.path(), "untested.yaml", "name: x\n");
    let output = pipeline_test(&[pipeline.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("untested_test.yaml"));
}
