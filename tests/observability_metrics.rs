//! `pipeline run --metrics-addr`: what /metrics, /ready and /health report during real
//! runs against the broker (KAFKA_BROKERS).

mod common;

use std::{
    path::Path,
    process::Child,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::*;
use framework::observe::prom::{self, Sample};
use rdkafka::{config::ClientConfig, producer::FutureProducer};

const GOOD_LINES: usize = 50_000;

fn scrape(addr: &str) -> Option<Vec<Sample>> {
    match http_get(addr, "/metrics") {
        Some((200, body)) => Some(prom::parse(&body).expect("valid Prometheus text")),
        _ => None,
    }
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    prom::sum(samples, name, labels)
}

fn roundtrip_pipeline(dir: &Path, name: &str, sink_path: &Path) -> std::path::PathBuf {
    write_file(
        dir,
        "pipeline.yaml",
        &format!(
            "name: {name}\nkafka:\n  brokers: ${{KAFKA_BROKERS}}\n  partitions: 2\nstages:\n  \
             - name: read\n    type: file_source\n    output: {name}-records\n    config:\n      \
             path: {}\n      key_field: symbol\n      timestamp_field: timestamp\n  \
             - name: write\n    type: file_sink\n    input: {name}-records\n    config:\n      path: {}\n",
            dir.join("in.jsonl").display(),
            sink_path.display()
        ),
    )
}

fn write_prices(dir: &Path, good: usize, malformed_at: usize) {
    let mut text = String::new();
    for i in 0..good {
        if i == malformed_at {
            text.push_str("{\"symbol\": \"BTCUSDT\", \"price\": \n");
        }
        let symbol = if i % 2 == 0 { "BTCUSDT" } else { "ETHUSDT" };
        text.push_str(&format!(
            "{{\"symbol\":\"{symbol}\",\"price\":{}.5,\"timestamp\":\"2025-05-07T15:{:02}:{:02}.{:03}Z\"}}\n",
            97000 + i % 100,
            (i / 60_000) % 60,
            (i / 1000) % 60,
            i % 1000
        ));
    }
    write_file(dir, "in.jsonl", &text);
}

fn spawn_with_metrics(pipeline: &Path, addr: &str, linger: &str) -> Child {
    spawn_pipeline(
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--metrics-addr",
            addr,
            "--metrics-linger",
            linger,
        ],
        &[("KAFKA_BROKERS", kafka_brokers())],
    )
}

#[test]
fn metrics_count_every_record_of_a_roundtrip_and_the_malformed_line_and_ready_follows_the_consumer()
{
    let dir = tempfile::tempdir().unwrap();
    write_prices(dir.path(), GOOD_LINES, 1234);
    let out = dir.path().join("out.jsonl");
    let pipeline = roundtrip_pipeline(dir.path(), &unique("obs-roundtrip"), &out);
    let addr = free_local_addr();
    let child = KillOnDrop(Some(spawn_with_metrics(&pipeline, &addr, "60s")));

    // The first answer of /ready comes before the sink's consumer joined its group.
    let (first_status, first_body) = wait_for("/ready to answer", Duration::from_secs(30), || {
        http_get(&addr, "/ready")
    });
    assert_eq!(first_status, 503, "{first_body}");
    let json: serde_json::Value = serde_json::from_str(&first_body).unwrap();
    assert_eq!(json["ready"], false);
    let ready_body = wait_for("/ready to turn 200", Duration::from_secs(60), || {
        http_get(&addr, "/ready")
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
    });
    let json: serde_json::Value = serde_json::from_str(&ready_body).unwrap();
    assert_eq!(json["ready"], true);

    let samples = wait_for(
        "every record in the sink's counters",
        Duration::from_secs(90),
        || {
            let samples = scrape(&addr)?;
            let sunk = value(
                &samples,
                "pipeline_records_out_total",
                &[("stage", "write")],
            );
            (sunk as usize == GOOD_LINES).then_some(samples)
        },
    );
    let n = GOOD_LINES as f64;
    assert_eq!(
        value(&samples, "pipeline_records_out_total", &[("stage", "read")]),
        n
    );
    assert_eq!(
        value(&samples, "pipeline_records_in_total", &[("stage", "write")]),
        n
    );
    assert_eq!(
        value(
            &samples,
            "pipeline_rejected_records_total",
            &[("stage", "read"), ("reason", "malformed_json")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "pipeline_rejected_records_total",
            &[("stage", "write")]
        ),
        0.0
    );
    assert!(
        value(
            &samples,
            "pipeline_offset_commits_total",
            &[("stage", "write")]
        ) >= 1.0
    );
    let writes = value(
        &samples,
        "pipeline_sink_write_duration_seconds_count",
        &[("stage", "write")],
    );
    assert!(writes >= 1.0, "sink writes are timed");
    assert_eq!(
        value(
            &samples,
            "pipeline_replay_progress_ratio",
            &[("stage", "read")]
        ),
        1.0,
        "the replay reports it read the whole file"
    );
    assert_eq!(read_lines(&out).len(), GOOD_LINES);
    assert_eq!(http_get(&addr, "/health").map(|(s, _)| s), Some(200));

    // Lingering after a clean run ends at SIGTERM with exit 0.
    let child = child.take();
    sigterm(&child);
    let output = wait_with_timeout(child, Duration::from_secs(20));
    assert!(output.status.success(), "{}", stderr_of(&output));
}

#[test]
fn health_turns_503_naming_the_stage_whose_task_died() {
    let dir = tempfile::tempdir().unwrap();
    write_prices(dir.path(), 1000, usize::MAX);
    // A directory as the sink's file: its first write fails and the stage dies.
    let not_a_file = dir.path().join("a-directory");
    std::fs::create_dir(&not_a_file).unwrap();
    let pipeline = roundtrip_pipeline(dir.path(), &unique("obs-health"), &not_a_file);
    let addr = free_local_addr();
    let child = KillOnDrop(Some(spawn_with_metrics(&pipeline, &addr, "60s")));

    let (status, body) = wait_for("/health to answer", Duration::from_secs(30), || {
        http_get(&addr, "/health")
    });
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let body = wait_for("/health to turn 503", Duration::from_secs(60), || {
        http_get(&addr, "/health")
            .filter(|(s, _)| *s == 503)
            .map(|(_, b)| b)
    });
    assert!(body.starts_with("failed stages:\nwrite: "), "{body}");
    assert!(scrape(&addr).is_some(), "metrics are still served");
    let (ready, _) = http_get(&addr, "/ready").unwrap();
    assert_eq!(ready, 503);

    let child = child.take();
    sigterm(&child);
    let output = wait_with_timeout(child, Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
}

#[test]
fn metrics_addr_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    write_prices(dir.path(), 10, usize::MAX);
    let pipeline = roundtrip_pipeline(dir.path(), &unique("obs-inuse"), &dir.path().join("o"));
    let output = run_pipeline(
        &["run", pipeline.to_str().unwrap(), "--metrics-addr", &addr],
        &[("KAFKA_BROKERS", kafka_brokers())],
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(&format!("error: --metrics-addr {addr} is in use: ")),
        "{stderr}"
    );
}

/// Creates a one-partition topic (written by the test, external to the pipeline).
fn create_topic(topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("create topic");
    for result in results {
        result.expect("topic created");
    }
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .expect("test producer")
}

fn send_prices(producer: &FutureProducer, topic: &str, seconds: &[i64], base_ms: i64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for s in seconds {
            let ts = base_ms + s * 1000;
            produce_price(producer, topic, None, "BTCUSDT", 97000.5, ts).await;
        }
    });
}

#[test]
fn a_late_record_is_counted_as_late_and_the_watermark_gauge_advances() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("obs-late");
    let input = format!("{name}-prices");
    let pipeline = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "name: {name}\nkafka:\n  brokers: ${{KAFKA_BROKERS}}\n  partitions: 1\n\
             topics:\n  {input}: {{ external: true, record_type: price }}\nstages:\n  \
             - name: moving\n    type: moving_stats\n    inputs: {{ prices: {input} }}\n    \
             output: {name}-moving\n    dead_letter: {name}-dead\n    \
             config: {{ windows: [10s, 30s], slide: 1s, lateness: 10s }}\n"
        ),
    );
    create_topic(&input);
    let addr = free_local_addr();
    let child = spawn_with_metrics(&pipeline, &addr, "0s");
    let child = KillOnDrop(Some(child));
    wait_for("the transform to be ready", Duration::from_secs(60), || {
        http_get(&addr, "/ready").filter(|(s, _)| *s == 200)
    });
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // A minute ago, aligned to a second: the event-time lag is about a minute.
    let base_ms = (now_s - 60) * 1000;
    let producer = producer();
    let watermark = |samples: &[Sample]| {
        prom::max(
            samples,
            "pipeline_watermark_seconds",
            &[("stage", "moving"), ("key", "BTCUSDT")],
        )
    };
    let late = |samples: &[Sample]| {
        value(
            samples,
            "pipeline_rejected_records_total",
            &[("stage", "moving"), ("reason", "late")],
        )
    };

    let records_in =
        |samples: &[Sample]| value(samples, "pipeline_records_in_total", &[("stage", "moving")]);

    send_prices(&producer, &input, &[0, 5, 20], base_ms);
    // W = max event time - lateness = base + 20 s - 10 s, published at the next commit.
    let first = base_ms as f64 / 1000.0 + 10.0;
    let samples = wait_for("the first three records", Duration::from_secs(30), || {
        scrape(&addr).filter(|s| records_in(s) == 3.0)
    });
    assert_eq!(late(&samples), 0.0);
    wait_for(
        "the watermark gauge at base + 10 s",
        Duration::from_secs(10),
        || scrape(&addr).filter(|s| watermark(s) == Some(first)),
    );

    // 9 s is before W (10 s): late. Then 40 s moves W to 30 s.
    send_prices(&producer, &input, &[9, 40], base_ms);
    let samples = wait_for("the next two records", Duration::from_secs(30), || {
        scrape(&addr).filter(|s| records_in(s) == 5.0)
    });
    assert_eq!(late(&samples), 1.0);
    assert_eq!(
        value(
            &samples,
            "pipeline_dead_lettered_total",
            &[("stage", "moving")]
        ),
        1.0
    );

    // librdkafka statistics come every 5 s; by then every record is consumed.
    let lag_of_input = |samples: &[Sample]| {
        prom::max(
            samples,
            "pipeline_consumer_lag_records",
            &[
                ("stage", "moving"),
                ("topic", input.as_str()),
                ("partition", "0"),
            ],
        )
    };
    wait_for(
        "the consumer lag of the input partition",
        Duration::from_secs(20),
        || {
            scrape(&addr)
                .and_then(|s| lag_of_input(&s))
                .filter(|lag| *lag == 0.0)
        },
    );

    // The watermark gauge advanced from base + 10 s to base + 30 s; the event-time lag is
    // about a minute (the records are a minute old).
    let samples = wait_for(
        "the watermark gauge at base + 30 s",
        Duration::from_secs(10),
        || scrape(&addr).filter(|s| watermark(s) == Some(first + 20.0)),
    );
    let lag = prom::max(
        &samples,
        "pipeline_event_time_lag_seconds",
        &[("stage", "moving"), ("key", "BTCUSDT")],
    )
    .expect("event-time lag published with the watermark");
    assert!((25.0..600.0).contains(&lag), "event-time lag {lag}");

    let child = child.take();
    sigterm(&child);
    let output = wait_with_timeout(child, Duration::from_secs(20));
    assert!(output.status.success(), "{}", stderr_of(&output));
}
