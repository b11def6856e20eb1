//! Topic settings of the pipeline file on the real broker: every topic the runtime
//! creates (outputs, dead letters, checkpoint topics) gets `kafka.replication_factor` or
//! the topic's own, the topic's `config:`, and checkpoint topics are compacted.
//! Needs KAFKA_BROKERS (scripts/test.sh starts a broker).

mod common;

use std::{collections::HashMap, time::Duration};

use common::*;
use rdkafka::{
    admin::{AdminClient, AdminOptions, ResourceSpecifier},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    ClientConfig,
};

/// Replicas of each partition of `topic`, from the broker's metadata.
fn replicas(topic: &str) -> Vec<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .expect("metadata client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.replicas().len()).collect())
        .unwrap_or_default()
}

/// The configs the broker reports for `topic`.
fn topic_configs(topic: &str) -> HashMap<String, String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .expect("admin client");
    let results = futures::executor::block_on(admin.describe_configs(
        &[ResourceSpecifier::Topic(topic)],
        &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
    ))
    .expect("describe configs");
    results
        .into_iter()
        .flat_map(|r| r.expect("topic config").entries)
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect()
}

#[test]
fn created_topics_get_the_replication_factor_their_configs_and_compacted_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("prices.jsonl");
    let lines = price_lines(&["BTCUSDT", "ETHUSDT"], 300, 1_746_630_000_000, 0);
    std::fs::write(&input, lines.join("\n") + "\n").expect("write prices");
    let name = unique("topics");
    let prices = unique("prices");
    let stats = unique("stats");
    let pipeline = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            r#"name: {name}
kafka:
  brokers: ${{KAFKA_BROKERS}}
  commit_interval: 200ms
  replication_factor: 2
topics:
  {prices}:
    replication_factor: 3
    config: {{ retention.ms: 3600000, cleanup.policy: delete, max.message.bytes: 2097152 }}
stages:
  - name: replay
    type: file_source
    output: {prices}
    config: {{ path: "${{IN_FILE}}", key_field: symbol, timestamp_field: timestamp }}
  - name: moving
    type: moving_stats
    input: {prices}
    output: {stats}
    config: {{ windows: [30s], slide: 1s }}
"#
        ),
    );
    let run = run_pipeline(
        &["run", pipeline.to_str().expect("path")],
        &[
            ("KAFKA_BROKERS", kafka_brokers()),
            ("IN_FILE", input.display().to_string()),
        ],
        Duration::from_secs(120),
    );
    assert!(run.status.success(), "{}", stderr_of(&run));

    assert_eq!(
        replicas(&prices),
        vec![3; 3],
        "the topic's own replication factor"
    );
    assert_eq!(replicas(&stats), vec![2; 3], "kafka.replication_factor");
    let checkpoints = format!("{name}.moving.checkpoints");
    assert_eq!(replicas(&checkpoints), vec![2; 3], "checkpoint topics too");

    let configs = topic_configs(&prices);
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("3600000")
    );
    assert_eq!(
        configs.get("cleanup.policy").map(String::as_str),
        Some("delete")
    );
    assert_eq!(
        configs.get("max.message.bytes").map(String::as_str),
        Some("2097152")
    );
    let configs = topic_configs(&checkpoints);
    assert_eq!(
        configs.get("cleanup.policy").map(String::as_str),
        Some("compact"),
        "{configs:?}"
    );
    // Checkpoint records carry their partition as key (compaction keeps one per key).
    let records = read_topic(
        &checkpoints,
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    assert!(!records.is_empty(), "the transform checkpointed");
    for record in &records {
        let key = format!("partition-{}", record.partition);
        assert_eq!(record.key.as_deref(), Some(key.as_bytes()));
    }
}
