//! Several processes of one stage (issue 10 §3): end of input is counted per upstream
//! writer part, so N processes give the same output as one, and a process that joins
//! mid-stream and is then SIGKILLed loses nothing.

mod common;

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use mongodb::bson::Document;

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
    config: {{ uri: "${{MONGO_URI}}", database: {name}, collection_prefix: z- }}
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

/// Window collection -> (symbol, timestamp ms) -> (price, zscore).
type Documents = BTreeMap<String, BTreeMap<(String, i64), (f64, Option<f64>)>>;

fn documents(database: &str) -> Documents {
    use futures::TryStreamExt;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = mongodb::Client::with_uri_str(mongo_uri())
            .await
            .expect("mongo client");
        let db = client.database(database);
        let mut all = Documents::new();
        for name in db.list_collection_names().await.expect("collections") {
            let docs: Vec<Document> = db
                .collection::<Document>(&name)
                .find(mongodb::bson::doc! {})
                .await
                .expect("find")
                .try_collect()
                .await
                .expect("collect");
            let entry = all.entry(name).or_default();
            for d in docs {
                let key = (
                    d.get_str("symbol").expect("symbol").to_string(),
                    d.get_datetime("timestamp")
                        .expect("timestamp")
                        .timestamp_millis(),
                );
                entry.insert(
                    key,
                    (
                        d.get_f64("price").expect("price"),
                        d.get_f64("zscore_price").ok(),
                    ),
                );
            }
        }
        all
    })
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

#[test]
fn a_second_process_joining_mid_stream_then_sigkilled_leaves_the_collections_of_an_uninterrupted_run(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("prices.jsonl");
    let lines = price_lines(&SYMBOLS, 20_000, START_MS, 0);
    std::fs::write(&input, lines.join("\n") + "\n").expect("write prices");
    let reference_name = unique("whole");
    let reference = pipeline(
        dir.path(),
        &reference_name,
        &input,
        &dir.path().join("a.jsonl"),
    );
    finished(
        run_to_end(&reference, &["replay", "moving", "zscore", "load"]),
        "uninterrupted run",
    );

    // The live run reads a pipe the test fills at ~7,500 prices/s, so the stream is still
    // flowing when the second process joins and when it dies.
    let fifo = dir.path().join("live.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let live_name = unique("live");
    let live = pipeline(dir.path(), &live_name, &fifo, &dir.path().join("b.jsonl"));
    let first = KillOnDrop(Some(run_to_end(
        &live,
        &["replay", "moving", "zscore", "load"],
    )));
    let feeder = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut pipe = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open fifo");
            for chunk in lines.chunks(375) {
                pipe.write_all((chunk.join("\n") + "\n").as_bytes())
                    .expect("feed prices");
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let log_path = dir.path().join("second.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut command = Command::new(pipeline_bin());
    command
        .args(["run", live.to_str().expect("utf-8"), "--stage", "moving"])
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    for (k, v) in envs() {
        command.env(k, v);
    }
    let second = KillOnDrop(Some(command.spawn().expect("spawn second process")));
    let prices_topic = format!("{live_name}-prices/");
    wait_for(
        "the second process to take partitions",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&log_path)
                .ok()?
                .lines()
                .any(|l| l.contains("partitions assigned") && l.contains(&prices_topic))
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let mut second = second.take();
    signal(&second, nix::sys::signal::Signal::SIGKILL);
    let _ = second.wait();
    let started = Instant::now();
    feeder.join().expect("feeder");
    finished(first.take(), "the surviving process");
    eprintln!("survivor finished {:?} after the feed", started.elapsed());

    let expected = documents(&reference_name);
    let got = documents(&live_name);
    let count: usize = expected.values().map(BTreeMap::len).sum();
    assert!(count > 50_000, "{count} documents in the uninterrupted run");
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (collection, docs) in &expected {
        let other = &got[collection];
        let missing = docs.keys().filter(|k| !other.contains_key(*k)).count();
        let differing = docs
            .iter()
            .filter(|(k, v)| other.get(*k).is_some_and(|o| o != *v))
            .count();
        assert_eq!(
            (missing, differing, other.len()),
            (0, 0, docs.len()),
            "{collection}: documents missing / differing / total after the SIGKILL"
        );
    }
}
