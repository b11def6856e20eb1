//! The broker features the runtime relies on, checked against the real local broker:
//! group offset commits of arbitrary partitions (checkpoint positions), fetching from an
//! exact offset and CreateTime timestamps. The runtime deliberately avoids commit
//! metadata and time-based offset lookups, which not every Kafka-protocol broker has.

mod common;

use std::time::Duration;

use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer},
    producer::{FutureProducer, FutureRecord},
    ClientConfig, Offset, TopicPartitionList,
};

fn consumer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", common::kafka_brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

async fn produce(topic: &str, timestamps: &[i64]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", common::kafka_brokers())
        .create()
        .expect("producer");
    for ts in timestamps {
        producer
            .send(
                FutureRecord::<str, str>::to(topic)
                    .partition(0)
                    .payload("x")
                    .timestamp(*ts),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered");
    }
}

#[tokio::test]
async fn a_group_commit_of_any_topic_partition_reads_back_exactly() {
    // Transform stages commit the offset of their checkpoint record this way.
    let topic = common::unique("compat-commit");
    produce(&topic, &[1, 2, 3]).await;
    let group = common::unique("compat-group");
    let c = consumer(&group);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(2))
        .expect("add");
    c.commit(&tpl, CommitMode::Sync).expect("commit");

    let fresh = consumer(&group);
    let mut query = TopicPartitionList::new();
    query.add_partition(&topic, 0);
    let committed = fresh
        .committed_offsets(query, Duration::from_secs(10))
        .expect("committed");
    assert_eq!(
        committed
            .find_partition(&topic, 0)
            .expect("element")
            .offset(),
        Offset::Offset(2)
    );
}

#[tokio::test]
async fn a_consumer_assigned_at_an_offset_reads_that_exact_record_and_its_timestamp() {
    // Checkpoints are read back by offset; replays rely on CreateTime timestamps.
    let topic = common::unique("compat-fetch");
    produce(&topic, &[1_000, 2_000, 3_000, 4_000]).await;
    let c = consumer(&common::unique("compat-group"));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(2))
        .expect("add");
    c.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(std::time::Instant::now() < deadline, "no record fetched");
        if let Some(Ok(message)) = c.poll(Duration::from_millis(200)) {
            use rdkafka::Message;
            assert_eq!(message.offset(), 2);
            assert_eq!(message.timestamp().to_millis(), Some(3_000));
            break;
        }
    }
}
