//! Several processes of one stage (issue 10 §3): end of input is counted per upstream
//! writer part, so N processes give the same output as one; a process that joins a
//! running stage and is then SIGKILLed loses and duplicates nothing.

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use common::*;

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
    # All prices may be in the topic before their statistics: no price may be dropped at
    # the pending bound, or runs would differ by fetch timing (semantics.md §7).
    config: {{ slide: 1s, lateness: 10s, max_pending_prices: 1000000 }}
  - name: load
    type: mongo
    input: {zscore}
    config: {{ uri: "${{MONGO_URI}}", database: {name}, collection: "z-{{window}}", explode: zscores, key: [symbol, timestamp], date_fields: [timestamp] }}
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

/// Every document of every collection of `database`, without `_id`, sorted.
fn mongo_documents(database: &str) -> BTreeMap<String, Vec<String>> {
    use futures::TryStreamExt;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = mongodb::Client::with_uri_str(mongo_uri())
            .await
            .expect("mongo client");
        let db = client.database(database);
        let mut all = BTreeMap::new();
        for name in db.list_collection_names().await.expect("collections") {
            let docs: Vec<mongodb::bson::Document> = db
                .collection(&name)
                .find(mongodb::bson::doc! {})
                .await
                .expect("find")
                .try_collect()
                .await
                .expect("documents");
            let mut docs: Vec<String> = docs
                .into_iter()
                .map(|mut d| {
                    d.remove("_id");
                    format!("{d}")
                })
                .collect();
            docs.sort();
            all.insert(name, docs);
        }
        all
    })
}

/// `pipeline_records_in_total` of `stage` in a /metrics text, summed over its series.
fn records_in(metrics: &str, stage: &str) -> f64 {
    let label = format!("stage=\"{stage}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("pipeline_records_in_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_process_that_joins_a_live_stage_and_is_sigkilled_leaves_mongodb_equal_to_an_uninterrupted_run()
{
    let dir = tempfile::tempdir().expect("tempdir");
    const PER_SYMBOL: usize = 4_000;
    let lines = price_lines(&SYMBOLS, PER_SYMBOL, START_MS, 0);
    let file = dir.path().join("prices.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write prices");
    let unused = dir.path().join("archive.jsonl");

    let reference_name = unique("ref");
    let reference = pipeline(dir.path(), &reference_name, &file, &unused);
    finished(
        run_to_end(&reference, &["replay", "moving", "zscore", "load"]),
        "uninterrupted run",
    );
    let expected = mongo_documents(&reference_name);
    let expected_docs: usize = expected.values().map(Vec::len).sum();
    assert!(
        expected_docs > 20_000,
        "{expected_docs} reference documents"
    );

    // Live: the replay reads a FIFO that this test fills at a steady pace, so the stages
    // are mid-stream when the second process joins and when it dies.
    let fifo = dir.path().join("live.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    let live_name = unique("live");
    let live = pipeline(dir.path(), &live_name, &fifo, &unused);
    let replay = KillOnDrop(Some(run_to_end(&live, &["replay"])));
    let first = KillOnDrop(Some(run_to_end(&live, &["moving", "zscore", "load"])));
    let (written_tx, written_rx) = std::sync::mpsc::channel::<usize>();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("open fifo");
        // 1,000 prices/s: the whole input takes 12 s to arrive.
        for (n, chunk) in lines.chunks(100).enumerate() {
            out.write_all((chunk.join("\n") + "\n").as_bytes())
                .expect("write fifo");
            let _ = written_tx.send((n + 1) * 100);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // A quarter in, a second process joins every stateful stage and the sink.
    while written_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the writer goes on")
        < SYMBOLS.len() * PER_SYMBOL / 4
    {}
    let addr = free_local_addr();
    let second = spawn_pipeline(
        &[
            "run",
            live.to_str().expect("utf-8"),
            "--stage",
            "moving",
            "--stage",
            "zscore",
            "--stage",
            "load",
            "--metrics-addr",
            &addr,
        ],
        &envs(),
    );
    // It dies once the rebalance gave it partitions and it processed records of both
    // stateful stages: its uncommitted work and its partitions must be taken over.
    wait_for(
        "the second process to process records",
        Duration::from_secs(90),
        || {
            let (_, metrics) = http_get(&addr, "/metrics")?;
            (records_in(&metrics, "moving") > 0.0 && records_in(&metrics, "zscore") > 0.0)
                .then_some(())
        },
    );
    signal(&second, nix::sys::signal::Signal::SIGKILL);
    let killed = wait_with_timeout(second, Duration::from_secs(10));
    assert!(!killed.status.success(), "the second process was killed");
    writer.join().expect("writer");
    finished(replay.take(), "live replay");
    finished(first.take(), "first process");

    let got = mongo_documents(&live_name);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "collections"
    );
    for (collection, docs) in &expected {
        let live_docs = &got[collection];
        let missing = docs
            .iter()
            .filter(|d| live_docs.binary_search(d).is_err())
            .count();
        let extra = live_docs
            .iter()
            .filter(|d| docs.binary_search(d).is_err())
            .count();
        assert_eq!(
            (missing, extra, live_docs.len()),
            (0, 0, docs.len()),
            "{collection}: documents missing / different / count after the rebalance and SIGKILL"
        );
    }
}

/// A member of `group` that takes partitions of `topic`, commits offset 0 for them ("started
/// there") and then holds them without finishing them, until `stop` is set.
fn idle_group_member(
    group: String,
    topic: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    held: std::sync::mpsc::Sender<Vec<i32>>,
) -> std::thread::JoinHandle<()> {
    use rdkafka::{
        consumer::{BaseConsumer, CommitMode, Consumer},
        ClientConfig, Offset, TopicPartitionList,
    };
    std::thread::spawn(move || {
        // The assignment settings of the runtime's stage consumers.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .create()
            .expect("idle member");
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut last: Vec<i32> = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = consumer.poll(Duration::from_millis(100));
            let mut now: Vec<i32> = consumer
                .assignment()
                .map(|a| a.elements().iter().map(|e| e.partition()).collect())
                .unwrap_or_default();
            now.sort();
            if now != last && !now.is_empty() {
                let mut list = TopicPartitionList::new();
                for p in &now {
                    list.add_partition_offset(&topic, *p, Offset::Offset(0))
                        .expect("offset");
                }
                consumer.commit(&list, CommitMode::Sync).expect("commit");
                let _ = held.send(now.clone());
            }
            last = now;
        }
        // Dropping the consumer leaves the group: its partitions go back to the stage.
    })
}

#[test]
fn a_process_keeps_running_while_a_peer_holds_a_partition_it_has_not_finished_though_its_end_markers_are_in_the_topic(
) {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("prices.jsonl");
    // Small partitions: an end-of-input check that reads from a peer's committed position
    // finds every end marker in them.
    let lines = price_lines(&SYMBOLS, 1_000, START_MS, 0);
    std::fs::write(&input, lines.join("\n") + "\n").expect("write prices");
    let reference_out = dir.path().join("reference.jsonl");
    let scaled_out = dir.path().join("scaled.jsonl");
    let reference = pipeline(dir.path(), &unique("one"), &input, &reference_out);
    let name = unique("peer");
    let scaled = pipeline(dir.path(), &name, &input, &scaled_out);
    finished(
        run_to_end(&reference, &["replay", "moving", "archive"]),
        "one-process run",
    );
    finished(run_to_end(&scaled, &["replay"]), "replay");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let peer = idle_group_member(
        format!("{name}.moving"),
        format!("{name}-prices"),
        stop.clone(),
        held_tx,
    );
    let first = held_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the idle member is assigned partitions");
    assert_eq!(
        first,
        vec![0, 1, 2],
        "the idle member alone holds every partition"
    );
    let archive = KillOnDrop(Some(run_to_end(&scaled, &["archive"])));
    let mut moving = KillOnDrop(Some(run_to_end(&scaled, &["moving"])));
    let stderr = moving
        .0
        .as_mut()
        .and_then(|c| c.stderr.take())
        .expect("stderr");
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = line_tx.send(line);
        }
    });
    // The process finishes the partitions the rebalance gives it, then must wait: the
    // idle member holds the others, which nobody has finished.
    let mut log = Vec::new();
    let mut held_by_peer = first;
    loop {
        while let Ok(now) = held_rx.try_recv() {
            held_by_peer = now;
        }
        match line_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                let waiting = line.contains("waiting for the other processes of the stage");
                log.push(line);
                if waiting {
                    break;
                }
            }
            Err(_) => panic!(
                "the process stopped (or never finished its own partitions) while the idle peer \
                 still held partitions {held_by_peer:?}:\n{}",
                log.join("\n")
            ),
        }
    }
    assert!(
        held_by_peer.len() < 3,
        "the rebalance gave the process partitions"
    );
    // Several end-of-input checks later it is still there.
    std::thread::sleep(Duration::from_secs(3));
    let still_running = moving
        .0
        .as_mut()
        .map(|c| c.try_wait().expect("poll").is_none());
    assert_eq!(
        still_running,
        Some(true),
        "the process stopped while the idle peer still held partitions {held_by_peer:?}:\n{}",
        log.join("\n")
    );

    // The peer leaves: its partitions come back and are finished; everything ends.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    peer.join().expect("idle member");
    finished(moving.take(), "moving process");
    finished(archive.take(), "archive");
    let expected = sorted_lines(&reference_out);
    let mut got = sorted_lines(&scaled_out);
    got.dedup();
    assert!(expected.len() > 300, "{} statistics", expected.len());
    assert_eq!(
        got, expected,
        "distinct statistics with a peer vs one process"
    );
}
