//! A record the broker refuses after it was sent (issue 10 §2) neither fails the stage nor
//! loops on restart: it is dead-lettered as `refused_by_broker`, the others are delivered
//! in order, and offsets move past it.
//!
//! The refusal is real: a Tansu broker of this test's own with a schema registry, whose
//! JSON schema for the output topic refuses statistics records of the symbol `BAD`. Tansu
//! answers `INVALID_RECORD` for the whole batch, and the idempotent producer is then
//! fenced. Tansu also refuses records without a value on such a topic, so control markers
//! cannot cross it: the input is written by the test (no end-of-input marker) and the
//! pipelines are stopped with SIGTERM. A control run writes the same statistics to a topic
//! without a schema.

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use common::*;
use rdkafka::{producer::FutureProducer, ClientConfig};

const SECONDS: i64 = 40;

/// moving_stats (1 s windows, no lateness) from `input` to `output`, then a file.
fn pipeline(dir: &Path, port: u16, input: &str, output: &str) -> PathBuf {
    let kafka = "partitions: 1\n  commit_interval: 200ms";
    pipeline_with(dir, output, port, input, output, kafka)
}

/// [`pipeline`] in `<file>.yaml`, with other `kafka` settings (YAML lines indented by two
/// spaces).
fn pipeline_with(
    dir: &Path,
    file: &str,
    port: u16,
    input: &str,
    output: &str,
    kafka: &str,
) -> PathBuf {
    write_file(
        dir,
        &format!("{file}.yaml"),
        &format!(
            r#"name: {output}
kafka:
  brokers: 127.0.0.1:{port}
  {kafka}
topics:
  {input}: {{ external: true, record_type: json }}
stages:
  - name: stats
    type: moving_stats
    input: {input}
    output: {output}
    dead_letter: {output}-dlq
    config: {{ windows: [1s], slide: 1s, lateness: 0s }}
  - name: write
    type: file_sink
    input: {output}
    config: {{ path: "{}" }}
"#,
            dir.join(format!("{output}.jsonl")).display()
        ),
    )
}

/// One price a second for `S0` and `BAD`, an hour ago, on one partition.
fn write_prices(brokers: &str, topic: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("test producer");
    let base_ms = (chrono::Utc::now().timestamp_millis() / 1000 - 3600) * 1000;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for s in 0..SECONDS {
            for (symbol, price) in [("S0", 100 + s % 7), ("BAD", 50 + s % 3)] {
                let ts = base_ms + s * 1000;
                produce_price(&producer, topic, Some(0), symbol, price as f64, ts).await;
            }
        }
    });
}

/// Runs `file` until its output file holds `lines` lines and then a second passes without
/// a new one; stops it with SIGTERM and returns its stderr (it must exit 0).
fn run_until(file: &Path, out: &Path, lines: usize) -> String {
    let child = spawn_pipeline(&["run", file.to_str().expect("path")], &[]);
    let guard = KillOnDrop(Some(child));
    let mut last = (0, std::time::Instant::now());
    wait_for(
        &format!("{lines} lines in {}", out.display()),
        Duration::from_secs(90),
        || {
            let n = read_lines(out).len();
            if n != last.0 {
                last = (n, std::time::Instant::now());
            }
            (n >= lines && last.1.elapsed() > Duration::from_secs(1)).then_some(())
        },
    );
    let child = guard.take();
    sigterm(&child);
    let output = wait_with_timeout(child, Duration::from_secs(30));
    let stderr = stderr_of(&output);
    assert!(
        output.status.success(),
        "the pipeline must stop cleanly: {stderr}"
    );
    stderr
}

fn symbol_of(line: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(line).expect("a JSON record");
    value["symbol"].as_str().expect("a symbol").to_string()
}

#[test]
fn a_record_the_broker_refuses_is_dead_lettered_the_rest_delivered_in_order_and_a_restart_does_not_redo_it(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, guarded, control) = (unique("prices"), unique("guarded"), unique("control"));
    let schemas = refusing_schema(dir.path(), &guarded, r#"{"const":"BAD"}"#);
    let port = framework::testing::free_port();
    let registry = format!("file://{}", schemas.display());
    let _broker = Broker::start(port, port, &["--schema-registry", &registry]);
    let brokers = format!("127.0.0.1:{port}");
    write_prices(&brokers, &input);

    // Control: the same statistics on a topic without a schema (the last window of each
    // symbol stays open: the input never ends).
    let control_file = pipeline(dir.path(), port, &input, &control);
    let control_out = dir.path().join(format!("{control}.jsonl"));
    run_until(&control_file, &control_out, 2 * (SECONDS as usize - 1));
    let expected = read_lines(&control_out);
    let (bad, good): (Vec<String>, Vec<String>) = expected
        .iter()
        .cloned()
        .partition(|l| symbol_of(l) == "BAD");
    assert_eq!(good.len(), SECONDS as usize - 1, "{expected:?}");

    let file = pipeline(dir.path(), port, &input, &guarded);
    let out = dir.path().join(format!("{guarded}.jsonl"));
    let stderr = run_until(&file, &out, good.len());
    assert!(stderr.contains("refused_by_broker"), "{stderr}");
    assert_eq!(
        read_lines(&out),
        good,
        "every record the broker accepts arrives once, in order"
    );
    let quiet = Duration::from_secs(2);
    let dead = read_topic_at(
        &brokers,
        &format!("{guarded}-dlq"),
        quiet,
        Duration::from_secs(30),
    );
    let copies: Vec<String> = dead
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    assert_eq!(
        copies, bad,
        "each refused record is dead-lettered once, in order"
    );
    for record in &dead {
        assert_eq!(
            record
                .headers
                .get("x-dead-letter-reason")
                .map(String::as_str),
            Some("refused_by_broker")
        );
        let detail = &record.headers["x-dead-letter-detail"];
        assert!(detail.contains(&guarded), "{detail}");
        assert!(!record.headers.contains_key("x-dead-letter-truncated"));
    }

    // A restart resumes past the refused records: nothing is dead-lettered again, nothing
    // written twice, and the stage runs on.
    let stderr = run_until(&file, &out, good.len());
    assert!(!stderr.contains("stage failed"), "{stderr}");
    let again = read_topic_at(
        &brokers,
        &format!("{guarded}-dlq"),
        quiet,
        Duration::from_secs(30),
    );
    assert_eq!(
        again.len(),
        dead.len(),
        "a restart does not refuse them again"
    );
    assert_eq!(
        read_lines(&out),
        good,
        "a restart re-emits nothing delivered"
    );
}

/// The producer refuses a record over `message.max.bytes` before it leaves, and a line
/// that is not UTF-8 never becomes a record: both are dead-lettered with their reason, the
/// rest arrives in order and the replay ends normally.
#[test]
fn a_record_too_large_for_the_producer_and_a_non_utf8_line_are_dead_lettered_and_the_rest_arrives()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let port = framework::testing::free_port();
    let _broker = Broker::start(port, port, &[]);
    let topic = unique("sized");
    let big = format!(r#"{{"seq":1,"blob":"{}"}}"#, "x".repeat(30_000));
    let mut input = Vec::new();
    for line in [r#"{"seq":0}"#, big.as_str()] {
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    input.extend_from_slice(b"{\"seq\":2,\"bad\":\"\xff\xfe\"}\n{\"seq\":3}\n");
    std::fs::write(dir.path().join("in.jsonl"), input).expect("write input");
    let out = dir.path().join("out.jsonl");
    let file = write_file(
        dir.path(),
        "sized.yaml",
        &format!(
            r#"name: {topic}
kafka:
  brokers: 127.0.0.1:{port}
  partitions: 1
  commit_interval: 200ms
  properties:
    message.max.bytes: 10000
stages:
  - name: read
    type: file_source
    output: {topic}
    dead_letter: {topic}-dlq
    config: {{ path: "{}" }}
  - name: write
    type: file_sink
    input: {topic}
    config: {{ path: "{}" }}
"#,
            dir.path().join("in.jsonl").display(),
            out.display()
        ),
    );
    let run = run_pipeline(
        &["run", file.to_str().expect("path")],
        &[],
        Duration::from_secs(120),
    );
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert_eq!(read_lines(&out), vec![r#"{"seq":0}"#, r#"{"seq":3}"#]);
    let brokers = format!("127.0.0.1:{port}");
    let dead: Vec<_> = read_topic_at(
        &brokers,
        &format!("{topic}-dlq"),
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .into_iter()
    .filter(|r| !r.end_of_input)
    .collect();
    let reasons: Vec<&str> = dead
        .iter()
        .map(|r| r.headers["x-dead-letter-reason"].as_str())
        .collect();
    assert_eq!(reasons, vec!["too_large", "invalid_utf8"]);
    let copy = &dead[0];
    assert_eq!(
        copy.headers["x-dead-letter-truncated"],
        big.len().to_string()
    );
    assert!(copy.payload.len() < 10_000 && big.as_bytes().starts_with(&copy.payload));
    assert_eq!(dead[1].payload, b"{\"seq\":2,\"bad\":\"\xff\xfe\"}");
}

/// Input partitions of the rebalance test; `S<p>` and `BAD<p>` write to partition `p`.
const PARTITIONS: i32 = 2;
/// Seconds of prices of the rebalance test, written before the second process joins.
const BEFORE_JOIN: i64 = 10;
const REBALANCE_SECONDS: i64 = 30;

/// Creates `topic` with `partitions` partitions (written by the test).
fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("create topic");
    for result in results {
        result.expect("topic created");
    }
}

/// Seconds `seconds` after `base_ms` of prices: per second and partition `p`, `BAD<p>`
/// then `S<p>` (so when `S<p>`'s window is out, `BAD<p>`'s record of that second was read).
fn write_partitioned_prices(
    brokers: &str,
    topic: &str,
    base_ms: i64,
    seconds: std::ops::Range<i64>,
) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("test producer");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for s in seconds {
            for p in 0..PARTITIONS {
                for (symbol, price) in [
                    (format!("BAD{p}"), 50 + s % 3),
                    (format!("S{p}"), 100 + s % 7),
                ] {
                    let ts = base_ms + s * 1000;
                    produce_price(&producer, topic, Some(p), &symbol, price as f64, ts).await;
                }
            }
        }
    });
}

/// Runs the `stats` stage of `file` alone, its log in `log`.
fn spawn_stats(file: &Path, log: &Path) -> KillOnDrop {
    let child = std::process::Command::new(pipeline_bin())
        .args(["run", file.to_str().expect("path"), "--stage", "stats"])
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn pipeline");
    KillOnDrop(Some(child))
}

fn log_has(log: &Path, text: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|l| l.contains(text))
}

/// Distinct payloads of `topic` (and whether every record carries `refused_by_broker`).
/// A schema directory for Tansu's registry in which `topic` refuses the records whose
/// `symbol` matches the JSON Schema `refused`.
fn refusing_schema(dir: &std::path::Path, topic: &str, refused: &str) -> std::path::PathBuf {
    let schemas = dir.join("schemas");
    std::fs::create_dir(&schemas).expect("schema dir");
    std::fs::write(
        schemas.join(format!("{topic}.json")),
        format!(
            r#"{{"type":"object","properties":{{"value":{{"type":"object",
            "properties":{{"symbol":{{"not":{refused}}}}}}}}}}}"#
        ),
    )
    .expect("write the schema");
    schemas
}

/// `got` holds exactly `expected`: first how many are missing (and one of them), then the
/// whole sets.
fn assert_same_records(got: &BTreeSet<String>, expected: &BTreeSet<String>, what: &str) {
    let missing: Vec<&String> = expected.difference(got).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} missing, the first: {:?}",
        missing.len(),
        expected.len(),
        missing.first()
    );
    assert_eq!(got, expected, "{what}: nothing else");
}

fn distinct_payloads(brokers: &str, topic: &str) -> (BTreeSet<String>, usize, bool) {
    let records = read_topic_at(
        brokers,
        topic,
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    let refused = records.iter().all(|r| {
        r.headers.get("x-dead-letter-reason").map(String::as_str) == Some("refused_by_broker")
    });
    let payloads = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    (payloads, records.len(), refused)
}

/// A rebalance while refused deliveries are in flight (issue 10): a second process joins,
/// the first one's revoke must not commit past the records the broker refused and it has
/// not dead-lettered yet, and the first is then SIGKILLed before it does (it would at its
/// next commit). The first commits once an hour, so its revoke would be the partitions'
/// first commit: with no checkpoint to replay from, the next owner starts exactly there
/// (with one, moving_stats would replay the records since it anyway). Every valid record
/// must arrive and every refused one be dead-lettered: exactly the control run's refused
/// records, counted distinct (at-least-once: one may be dead-lettered twice).
#[test]
fn a_rebalance_then_a_sigkill_loses_no_record_refused_while_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, guarded, control) = (unique("prices"), unique("guarded"), unique("control"));
    let schemas = refusing_schema(dir.path(), &guarded, r#"{"enum":["BAD0","BAD1"]}"#);
    let port = framework::testing::free_port();
    let registry = format!("file://{}", schemas.display());
    let _broker = Broker::start(port, port, &["--schema-registry", &registry]);
    let brokers = format!("127.0.0.1:{port}");
    create_topic(&brokers, &input, PARTITIONS);
    // One pipeline, one group: the first process commits once an hour, the second every
    // second.
    let file = |name: &str, output: &str, interval: &str| {
        let kafka = format!("partitions: {PARTITIONS}\n  commit_interval: {interval}");
        pipeline_with(dir.path(), name, port, &input, output, &kafka)
    };
    let first_file = file("first", &guarded, "1h");
    let second_file = file("second", &guarded, "1s");

    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let first = spawn_stats(&first_file, &log_a);
    let base_ms = (chrono::Utc::now().timestamp_millis() / 1000 - 3600) * 1000;
    write_partitioned_prices(&brokers, &input, base_ms, 0..BEFORE_JOIN);
    wait_for(
        "the first process's assignment",
        Duration::from_secs(60),
        || log_has(&log_a, "partitions assigned").then_some(()),
    );
    // Time to consume what was written: its refused deliveries are then in flight.
    std::thread::sleep(Duration::from_secs(3));
    let second = spawn_stats(&second_file, &log_b);
    wait_for(
        "the first process's revoke",
        Duration::from_secs(60),
        || log_has(&log_a, "partitions revoked").then_some(()),
    );
    drop(first); // SIGKILL
    write_partitioned_prices(&brokers, &input, base_ms, BEFORE_JOIN..REBALANCE_SECONDS);
    let windows = PARTITIONS as usize * (REBALANCE_SECONDS as usize - 1);
    let mut last = (0, std::time::Instant::now());
    wait_for(
        "the second process to go quiet",
        Duration::from_secs(240),
        || {
            let (good, _, _) = distinct_payloads(&brokers, &guarded);
            if good.len() != last.0 {
                last = (good.len(), std::time::Instant::now());
            }
            let quiet =
                last.1.elapsed() > Duration::from_secs(if good.len() == windows { 2 } else { 30 });
            quiet.then_some(())
        },
    );
    let mut second = second;
    let child = second.0.as_mut().expect("the second process");
    sigterm(child);
    let started = std::time::Instant::now();
    let stopped = loop {
        match child.try_wait().expect("poll the second process") {
            Some(status) => break status.success(),
            None if started.elapsed() > Duration::from_secs(120) => break false,
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let log = std::fs::read_to_string(&log_b).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    assert!(stopped, "the second process stops cleanly: {tail:#?}");

    // The same input without a schema, in one process: what must arrive.
    let control_file = file(&control, &control, "200ms");
    let control_out = dir.path().join(format!("{control}.jsonl"));
    run_until(&control_file, &control_out, 2 * windows);
    let (bad, good): (BTreeSet<String>, BTreeSet<String>) = read_lines(&control_out)
        .into_iter()
        .partition(|l| symbol_of(l).starts_with("BAD"));
    assert_eq!((good.len(), bad.len()), (windows, windows));

    let (delivered, _, _) = distinct_payloads(&brokers, &guarded);
    assert_same_records(&delivered, &good, "valid records delivered");
    let (dead, copies, all_refused) = distinct_payloads(&brokers, &format!("{guarded}-dlq"));
    assert_same_records(&dead, &bad, "refused records dead-lettered");
    assert!(all_refused, "every dead letter is refused_by_broker");
    eprintln!("{} distinct dead letters in {copies} copies", dead.len());
}
