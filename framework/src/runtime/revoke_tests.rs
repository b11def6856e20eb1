//! The revoke hook against a real broker (issue 10): a Tansu of the test's own whose
//! schema registry refuses records of the symbol `BAD` on the output topic, the stage's
//! real producer, consumer and hooks. Records are produced without waiting, as a stage
//! does between commits; then the consumer leaves its group, and the revoke runs inside
//! `recv()`, on the stage's task, like in a stage.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
    producer::{FutureProducer, FutureRecord},
    ClientConfig, Message, Offset, TopicPartitionList,
};
use tokio::time::timeout;

use crate::testing::{unique, Broker};

use super::{
    consumer::{lock, subscribe, StageHooks},
    kafka, StageRuntime,
};

/// Starts Tansu with a schema for `output` that refuses the symbol `BAD`; returns it, its
/// address and the schema directory (kept until the test ends).
fn start_tansu(output: &str) -> (Broker, String, tempfile::TempDir) {
    let schemas = tempfile::tempdir().expect("schema dir");
    std::fs::write(
        schemas.path().join(format!("{output}.json")),
        r#"{"type":"object","properties":{"value":{"type":"object",
            "properties":{"symbol":{"not":{"const":"BAD"}}}}}}"#,
    )
    .expect("write the schema");
    let port = crate::testing::free_port();
    let registry = format!("file://{}", schemas.path().display());
    let tansu = Broker::start(port, port, &["--schema-registry", &registry]);
    (tansu, format!("127.0.0.1:{port}"), schemas)
}

/// A stage reading `input` and writing `output` (dead letters to `output-dlq`).
fn stage(brokers: &str, input: &str, output: &str, group: &str) -> StageRuntime {
    let kafka = serde_yaml::from_str(&format!("brokers: {brokers}")).expect("kafka spec");
    StageRuntime {
        name: "revoke".into(),
        connector: "test",
        kafka,
        group: group.into(),
        input_topics: vec![input.into()],
        output: Some(output.into()),
        dead_letter: Some(format!("{output}-dlq")),
        batch: Default::default(),
        commit_interval: Duration::from_secs(3600),
        metrics: crate::metrics::StageMetrics::new("revoke", "test"),
        status: Default::default(),
        partitions: Arc::new(HashMap::new()),
    }
}

async fn create_topics(brokers: &str, topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .expect("create topics")
    {
        result.expect("topic created");
    }
}

/// Writes one `{"symbol": s}` record per symbol to partition 0 of `topic`, in order.
async fn write_inputs(brokers: &str, topic: &str, symbols: &[&str]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("test producer");
    for symbol in symbols {
        let payload = format!(r#"{{"symbol":"{symbol}"}}"#);
        let record = FutureRecord::to(topic)
            .partition(0)
            .key(*symbol)
            .payload(&payload);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("write an input");
    }
}

/// Consumes `count` records as the stage, produces each to the output without waiting,
/// then leaves the group and polls until the revoke hook has run.
async fn consume_produce_and_revoke(stage: &StageRuntime, count: usize) -> kafka::Deliveries {
    let (view, mut deliveries) = stage.deliveries().expect("deliveries");
    let (hooks, shared) = StageHooks::new(stage, None, Some(view));
    let consumer = subscribe(stage, hooks).expect("subscribe");
    let output = stage.output.clone().expect("an output");
    for _ in 0..count {
        let message = timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("an input record in time")
            .expect("an input record");
        deliveries
            .send(
                &output,
                None,
                message.key(),
                message.payload(),
                message.timestamp().to_millis(),
                None,
            )
            .await
            .expect("send");
        if let Some(state) = lock(&shared).partitions.get_mut(&message.partition()) {
            state.advance_position(0, message.offset());
        }
    }
    consumer.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lock(&shared).partitions.is_empty() {
        assert!(Instant::now() < deadline, "the partition was never revoked");
        let _ = timeout(Duration::from_millis(200), consumer.recv()).await;
    }
    deliveries
}

fn committed(brokers: &str, group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("offset reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let offsets = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    match offsets.find_partition(topic, 0).map(|e| e.offset()) {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    }
}

/// Every record of partition 0 of `topic`: payload and dead-letter reason.
fn read_all(brokers: &str, topic: &str) -> Vec<(String, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut records = Vec::new();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(2) {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("a record");
        let payload = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        let reason = message.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == kafka::DEAD_LETTER_REASON)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
        records.push((payload, reason));
        quiet_since = Instant::now();
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_does_not_commit_past_a_refused_delivery_the_stage_has_not_recovered() {
    let (input, output, group) = (unique("in"), unique("out"), unique("group"));
    let (_tansu, brokers, _schemas) = start_tansu(&output);
    let dlq = format!("{output}-dlq");
    create_topics(&brokers, &[&input, &output, &dlq]).await;
    write_inputs(&brokers, &input, &["S0", "BAD", "S1"]).await;
    let stage = stage(&brokers, &input, &output, &group);

    let mut deliveries = consume_produce_and_revoke(&stage, 3).await;
    if let Some(offset) = committed(&brokers, &group, &input) {
        assert!(
            offset <= 1,
            "offset {offset} was committed: past the refused record at offset 1, which is \
             not resent or dead-lettered yet"
        );
    }

    // The stage still recovers the failed batch, in send order.
    deliveries.wait_all().await.expect("recovered");
    let delivered: BTreeSet<String> = read_all(&brokers, &output)
        .into_iter()
        .map(|(payload, _)| payload)
        .collect();
    let expected: BTreeSet<String> = ["S0", "S1"]
        .iter()
        .map(|s| format!(r#"{{"symbol":"{s}"}}"#))
        .collect();
    assert_eq!(delivered, expected);
    let dead = read_all(&brokers, &dlq);
    assert_eq!(
        dead,
        vec![(
            r#"{"symbol":"BAD"}"#.to_string(),
            Some("refused_by_broker".to_string())
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_commits_the_revoked_partitions_when_every_delivery_is_acknowledged() {
    let (input, output, group) = (unique("in"), unique("out"), unique("group"));
    let (_tansu, brokers, _schemas) = start_tansu(&output);
    create_topics(&brokers, &[&input, &output, &format!("{output}-dlq")]).await;
    write_inputs(&brokers, &input, &["S0", "S1", "S2"]).await;
    let stage = stage(&brokers, &input, &output, &group);

    let mut deliveries = consume_produce_and_revoke(&stage, 3).await;
    assert_eq!(committed(&brokers, &group, &input), Some(3));
    deliveries.wait_all().await.expect("delivered");
}
