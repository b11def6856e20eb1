//! Hop notes: when each record reaches each topic of the run (prices, statistics,
//! z-scores), seen by the benchmark's own consumer with a 1 ms fetch wait, so that the
//! latency of a document splits into measured hops:
//!
//! * marker out: `e + lateness` (the watermark moment) -> the source's first progress
//!   marker at or past it is in the price topic (the poll grid, the produce); for
//!   comparison, price in: a price's receipt time -> the price is in its topic (the
//!   produce alone);
//! * statistics: that marker -> the statistics of the windows ending at `e` are in their
//!   topic (one Kafka hop, `moving_stats`, its produce);
//! * join: the later of those statistics and the price -> the z-score is in its topic;
//! * sink: the z-score is in its topic -> its document is readable in MongoDB (one Kafka
//!   hop, batching behind the previous write, the write, the benchmark's 5 ms polling).
//!
//! Each arrival includes this consumer's own delay (up to its 1 ms fetch wait), which
//! cancels out of the differences.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use framework::runtime::markers::PROGRESS_HEADER;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::Headers,
    ClientConfig, Message, Offset, TopicPartitionList,
};

use crate::{check::percentile, procs::now_us};

/// (key, Kafka timestamp in ms) -> first arrival in µs since the epoch.
type Seen = HashMap<(Vec<u8>, i64), i64>;

/// First arrivals per topic.
#[derive(Debug, Default)]
pub struct Arrivals {
    pub prices: Seen,
    pub stats: Seen,
    pub zscores: Seen,
    /// Progress markers of the price topic: partition -> marker time T (ms) -> arrival.
    pub markers: HashMap<i32, BTreeMap<i64, i64>>,
    /// The price topic's partition of each key.
    pub partitions: HashMap<Vec<u8>, i32>,
}

/// The running notes consumer.
pub struct Notes {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<Arrivals, String>>,
}

impl Notes {
    /// Starts noting arrivals in `{prefix}-btc-price`, `-moving` and `-zscore` (the
    /// pipeline creates them; this waits for them).
    pub fn start(brokers: String, prefix: String) -> Notes {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = std::thread::spawn(move || note(&brokers, &prefix, &stopped));
        Notes { stop, handle }
    }

    pub fn finish(self) -> Result<Arrivals, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| "the notes thread panicked".to_string())?
    }
}

fn note(brokers: &str, prefix: &str, stop: &AtomicBool) -> Result<Arrivals, String> {
    let topics = [
        format!("{prefix}-btc-price"),
        format!("{prefix}-btc-price-moving"),
        format!("{prefix}-btc-price-zscore"),
    ];
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{prefix}-bench-notes"))
        .set("enable.auto.commit", "false")
        // Tansu holds an empty fetch for the whole wait: 1 ms bounds this reader's delay.
        .set("fetch.wait.max.ms", "1")
        .create()
        .map_err(|e| e.to_string())?;
    let mut list = TopicPartitionList::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for topic in &topics {
        loop {
            let partitions = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    let t = m.topics().first()?;
                    (t.error().is_none() && !t.partitions().is_empty())
                        .then(|| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                });
            if let Some(partitions) = partitions {
                for p in partitions {
                    list.add_partition_offset(topic, p, Offset::Beginning)
                        .map_err(|e| e.to_string())?;
                }
                break;
            }
            if Instant::now() > deadline || stop.load(Ordering::Relaxed) {
                return Err(format!("topic {topic} did not appear"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    consumer.assign(&list).map_err(|e| e.to_string())?;
    let mut arrivals = Arrivals::default();
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let now = now_us();
        if m.topic() == topics[0] {
            if let Some(t) = progress(&m) {
                let markers = arrivals.markers.entry(m.partition()).or_default();
                markers.entry(t).or_insert(now);
                continue;
            }
        }
        // Control markers have no payload.
        let (Some(key), Some(_), Some(ts)) = (m.key(), m.payload(), m.timestamp().to_millis())
        else {
            continue;
        };
        let seen = match m.topic() {
            t if t == topics[0] => {
                arrivals.partitions.insert(key.to_vec(), m.partition());
                &mut arrivals.prices
            }
            t if t == topics[1] => &mut arrivals.stats,
            _ => &mut arrivals.zscores,
        };
        seen.entry((key.to_vec(), ts)).or_insert(now);
    }
    Ok(arrivals)
}

/// The time T of a progress marker (a payload-less record with the progress header).
fn progress(m: &rdkafka::message::BorrowedMessage<'_>) -> Option<i64> {
    if m.payload().is_some() {
        return None;
    }
    let header = m.headers()?.iter().find(|h| h.key == PROGRESS_HEADER)?;
    std::str::from_utf8(header.value?).ok()?.parse().ok()
}

/// The watermark moment of a price at `t_ms`: its windows end at `e = floor(t / 1 s)` and
/// close `lateness` later. In µs.
pub fn watermark_us(t_ms: i64) -> i64 {
    (t_ms.div_euclid(1000) * 1000 + 10_000) * 1000
}

/// p50 / p90 / p99 / max of µs values, in ms.
pub fn summary(values: &mut [i64]) -> String {
    values.sort_unstable();
    if values.is_empty() {
        return "no values".to_string();
    }
    let ms = |us: i64| us as f64 / 1e3;
    format!(
        "p50 {:.1} / p90 {:.1} / p99 {:.1} / max {:.1} ms ({} values)",
        ms(percentile(values, 50)),
        ms(percentile(values, 90)),
        ms(percentile(values, 99)),
        ms(values[values.len() - 1]),
        values.len()
    )
}

/// Report lines: the hops of the sampled documents (`(t_ms, seen_us)` of `symbol`), and
/// for every symbol how long after the watermark moment its z-scores reached their topic
/// (prices whose moment is after `from_us`).
pub fn report(arrivals: &Arrivals, symbol: &str, sampled: &[(i64, i64)], from_us: i64) -> String {
    let key = symbol.as_bytes().to_vec();
    let markers = arrivals
        .partitions
        .get(&key)
        .and_then(|p| arrivals.markers.get(p));
    let (mut marker_out, mut stats_in, mut price_in) = (Vec::new(), Vec::new(), Vec::new());
    let (mut join, mut sink) = (Vec::new(), Vec::new());
    for &(t, seen) in sampled {
        let e = t.div_euclid(1000) * 1000;
        let moment = watermark_us(t);
        let marker = markers.and_then(|m| m.range(moment / 1000..).next());
        let (Some(&price), Some(&stats), Some(&zscore), Some((_, &marker))) = (
            arrivals.prices.get(&(key.clone(), t)),
            arrivals.stats.get(&(key.clone(), e)),
            arrivals.zscores.get(&(key.clone(), t)),
            marker,
        ) else {
            continue;
        };
        marker_out.push(marker - moment);
        price_in.push(price - t * 1000);
        stats_in.push(stats - marker);
        join.push(zscore - stats.max(price));
        sink.push(seen - zscore);
    }
    let mut all: Vec<i64> = arrivals
        .zscores
        .iter()
        .map(|((_, t), &at)| (at, watermark_us(*t)))
        .filter(|&(_, moment)| moment >= from_us)
        .map(|(at, moment)| at - moment)
        .collect();
    let mut lines = vec![
        format!(
            "  hops of the sampled documents ({} of {} noted in every topic):",
            sink.len(),
            sampled.len()
        ),
        format!(
            "    marker out (e + lateness -> source's progress marker in topic): {}",
            summary(&mut marker_out)
        ),
        format!(
            "      (price in: receipt time -> price in topic: {})",
            summary(&mut price_in)
        ),
        format!(
            "    statistics (marker -> stats in topic): {}",
            summary(&mut stats_in)
        ),
        format!(
            "    join (later of stats and price -> z-score in topic): {}",
            summary(&mut join)
        ),
        format!(
            "    sink (z-score in topic -> readable in MongoDB): {}",
            summary(&mut sink)
        ),
    ];
    lines.push(format!(
        "  every symbol, z-score in topic beyond e + lateness: {}",
        summary(&mut all)
    ));
    lines.join("\n")
}
