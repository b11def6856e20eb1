//! After the run: the prices the source wrote, whether each has its z-scores in MongoDB,
//! and the poll-gap jitter.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use mongodb::bson::{doc, Document};

use crate::{Error, WINDOWS};

/// Every price the source wrote up to `stop - 15 s` (later ones may still be in their
/// windows' lateness) has its document in every window collection: counts per window of
/// documents vs prices read from the price topic.
pub async fn check_complete(
    db: &mongodb::Database,
    symbols: usize,
    prices: &BTreeMap<Vec<u8>, Vec<i64>>,
    stop_at_ms: i64,
) -> Result<String, Error> {
    let from = prices
        .values()
        .flatten()
        .copied()
        .min()
        .ok_or("no prices")?
        + 15_000;
    let until = stop_at_ms - 15_000;
    let expected: usize = prices
        .values()
        .map(|ts| ts.iter().filter(|t| **t >= from && **t < until).count())
        .sum();
    // Give the stages time to drain what was in flight when the source stopped.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let mut counts = Vec::new();
        for window in WINDOWS {
            let n = db
                .collection::<Document>(&format!("btc-price-zscore-{window}"))
                .count_documents(doc! {"timestamp": {
                "$gte": mongodb::bson::DateTime::from_millis(from),
                "$lt": mongodb::bson::DateTime::from_millis(until)}})
                .await? as usize;
            counts.push(n);
        }
        if counts.iter().all(|n| *n == expected) {
            return Ok(format!(
                "every price of {symbols} symbols in [start + 15 s, stop - 15 s) has its 6 z-scores ({expected} prices, {} documents; {:.1} s after the source stopped)",
                expected * 6,
                started.elapsed().as_secs_f64()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("{expected} prices, documents per window {counts:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// |gap - 100 ms| between consecutive receipts (event times) of each symbol, sorted.
pub fn poll_gap_deviations(prices: &BTreeMap<Vec<u8>, Vec<i64>>) -> Vec<i64> {
    let mut deviations: Vec<i64> = Vec::new();
    for times in prices.values() {
        let mut times = times.clone();
        times.sort_unstable();
        deviations.extend(times.windows(2).map(|w| (w[1] - w[0] - 100).abs()));
    }
    deviations.sort_unstable();
    deviations
}

/// The `p`th percentile of sorted values (0 when there are none).
pub fn percentile(sorted: &[i64], p: usize) -> i64 {
    let i = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or(0)
}

/// Event times of the prices in the run's price topic, per symbol.
pub fn read_prices(topic: &str, stop_at_ms: i64) -> Result<BTreeMap<Vec<u8>, Vec<i64>>, Error> {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        ClientConfig, Message, Offset, TopicPartitionList,
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", std::env::var("KAFKA_BROKERS")?)
        .set("group.id", format!("{topic}-bench-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut list = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            list.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&list)?;
    let mut out: BTreeMap<Vec<u8>, Vec<i64>> = BTreeMap::new();
    let mut quiet = Instant::now();
    let started = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) && started.elapsed() < Duration::from_secs(90) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            quiet = Instant::now();
            if let (Some(key), Some(_), Some(ts)) =
                (m.key(), m.payload(), m.timestamp().to_millis())
            {
                if ts <= stop_at_ms {
                    out.entry(key.to_vec()).or_default().push(ts);
                }
            }
        }
    }
    Ok(out)
}
