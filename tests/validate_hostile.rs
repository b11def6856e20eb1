//! `pipeline validate` on hostile files: alias bombs and files near the size limit stay
//! within 2 s and 100 MB, secrets never show in diagnostics (text or JSON), and the
//! shipped secured-cluster example validates.

mod common;

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

/// Runs `pipeline validate ARGS`; returns its output and how long it took.
fn validate(args: &[&str], envs: &[(&str, &str)]) -> (Output, Duration) {
    let mut command = Command::new(common::pipeline_bin());
    command.arg("validate").args(args);
    for (k, v) in envs {
        command.env(k, v);
    }
    let started = Instant::now();
    let output = command.output().expect("run pipeline validate");
    (output, started.elapsed())
}

/// Largest resident set of any child process waited for so far, in bytes. Every child
/// of this test binary is a `pipeline validate`, so this bounds each of them.
fn max_child_rss() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    // Linux reports kilobytes.
    usage.max_rss() as u64 * 1024
}

const MEMORY_BUDGET: u64 = 100 * 1024 * 1024;
const TIME_BUDGET: Duration = Duration::from_secs(2);

/// A ~25 KB file of nested aliases: 26 levels, each naming the previous level 160 times.
fn alias_bomb() -> String {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..=26 {
        let refs = vec![format!("*a{}", level - 1); 160].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    text
}

#[test]
fn a_25_kb_alias_bomb_is_rejected_clearly_within_2_s_and_100_mb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bomb = alias_bomb();
    assert!(bomb.len() > 20_000 && bomb.len() < 30_000, "{}", bomb.len());
    let path = common::write_file(dir.path(), "bomb.yaml", &bomb);
    let (output, elapsed) = validate(&[path.to_str().expect("path")], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("too large once its aliases are expanded"),
        "{stdout}"
    );
    assert!(elapsed < TIME_BUDGET, "took {elapsed:?}");
    assert!(max_child_rss() < MEMORY_BUDGET, "{} bytes", max_child_rss());
}

#[test]
fn files_just_under_1_mb_of_any_shape_validate_within_2_s_and_100_mb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = 1_000_000;
    let head = "name: big\nkafka:\n  brokers: localhost:9092\nstages: []\n";
    let shapes = [
        // Many small nodes: under the node limit, so fully validated.
        (
            "nodes",
            format!("{head}x: [{}]\n", vec!["1"; 99_000].join(",")),
        ),
        // More nodes than the limit.
        (
            "too-many-nodes",
            format!("{head}x: [{}]\n", vec!["1"; 400_000].join(",")),
        ),
        // Deep nesting.
        (
            "deep",
            format!("{head}x: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        // One long string.
        (
            "long-string",
            format!("{head}x: \"{}\"\n", "a".repeat(budget - 100)),
        ),
        // Many keys.
        (
            "keys",
            format!(
                "{head}{}",
                (0..60_000)
                    .map(|i| format!("k{i}: 1\n"))
                    .collect::<String>()
            ),
        ),
    ];
    for (name, text) in shapes {
        let text: String = text.chars().take(budget).collect();
        let path = common::write_file(dir.path(), &format!("{name}.yaml"), &text);
        let (output, elapsed) = validate(&[path.to_str().expect("path")], &[]);
        assert!(
            output.status.code() == Some(1),
            "{name}: {:?}",
            output.status
        );
        assert!(elapsed < TIME_BUDGET, "{name} took {elapsed:?}");
        assert!(
            max_child_rss() < MEMORY_BUDGET,
            "{name}: {} bytes",
            max_child_rss()
        );
    }
    // Over the size limit: refused before parsing.
    let huge = common::write_file(dir.path(), "huge.yaml", &"# x\n".repeat(600_000));
    let (output, _) = validate(&[huge.to_str().expect("path")], &[]);
    assert_ne!(output.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("too large for a pipeline file"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn secret_values_appear_in_no_diagnostic_text_or_json() {
    let fixture = "tests/fixtures/invalid/secret-values-masked.yaml";
    for format in ["text", "json"] {
        let (output, _) = validate(&[fixture, "--format", format], &[]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("sasl.password"), "{format}: {stdout}");
        for secret in ["hunter2-secret", "key-pass-1234"] {
            assert!(
                !stdout.contains(secret),
                "{format} leaks {secret}: {stdout}"
            );
        }
    }
    // A secret from the environment, quoted by librdkafka's rejection of another
    // property, is masked too.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write_file(
        dir.path(),
        "env-secret.yaml",
        "name: s\nkafka:\n  brokers: b:1\n  properties:\n    sasl.password: ${PW}\n    security.protocol: ${PW}\nstages: []\n",
    );
    for format in ["text", "json"] {
        let (output, _) = validate(
            &[path.to_str().expect("path"), "--format", format],
            &[("PW", "from-the-env-777")],
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("security.protocol"), "{stdout}");
        assert!(!stdout.contains("from-the-env-777"), "{format}: {stdout}");
    }
    // A misspelled secret's name is not recognised as secret, and librdkafka's
    // rejection of the unknown name quotes its value: the value is never shown.
    let path = common::write_file(
        dir.path(),
        "typo-secret.yaml",
        "name: s\nkafka:\n  brokers: b:1\n  properties:\n    sasl.pasword: typo-secret-5678\nstages: []\n",
    );
    for format in ["text", "json"] {
        let (output, _) = validate(&[path.to_str().expect("path"), "--format", format], &[]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("sasl.pasword"), "{stdout}");
        assert!(!stdout.contains("typo-secret-5678"), "{format}: {stdout}");
    }
}

#[test]
fn the_secured_cluster_example_validates() {
    let (output, _) = validate(
        &["pipelines/examples/secured.yaml"],
        &[
            ("KAFKA_BROKERS", "broker-1.example.com:9093"),
            ("KAFKA_USER", "pipeline"),
            ("KAFKA_PASSWORD", "007-not-a-number"),
            ("KAFKA_CA", "/etc/ssl/certs/ca-certificates.crt"),
            ("IN_FILE", "in.jsonl"),
            ("OUT_FILE", "out.jsonl"),
        ],
    );
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(Path::new("pipelines/examples/secured.yaml").exists());
}
