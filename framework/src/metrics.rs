//! The metrics every stage reports, recorded by the runtime (not by connectors) so that
//! all stages report the same way. Names follow Prometheus conventions; every series has
//! `stage` and `connector` labels. Without an installed recorder they cost almost nothing.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use tracing::{debug, warn};

/// Handles of one stage's series (looked up once, incremented on the hot path).
#[derive(Clone)]
pub struct StageMetrics {
    stage: String,
    connector: &'static str,
    pub records_in: Counter,
    pub records_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub dead_lettered: Counter,
    pub commits: Counter,
    pub sink_write_retries: Counter,
    pub sink_write_seconds: Histogram,
    pub up: Gauge,
    /// Input partitions paused because the transform's buffer for them is full.
    pub inputs_paused: Gauge,
    /// Keys with a watermark series: a flood of distinct keys must not grow the label
    /// sets without bound.
    watermark_keys: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// Most keys per stage with their own `pipeline_watermark_seconds` series.
pub const MAX_WATERMARK_KEYS: usize = 100;

impl StageMetrics {
    pub fn new(stage: &str, connector: &'static str) -> Self {
        let labels = [
            ("stage", stage.to_string()),
            ("connector", connector.to_string()),
        ];
        StageMetrics {
            stage: stage.to_string(),
            connector,
            records_in: counter!("pipeline_records_in_total", &labels),
            records_out: counter!("pipeline_records_out_total", &labels),
            bytes_in: counter!("pipeline_bytes_in_total", &labels),
            bytes_out: counter!("pipeline_bytes_out_total", &labels),
            dead_lettered: counter!("pipeline_dead_lettered_total", &labels),
            commits: counter!("pipeline_offset_commits_total", &labels),
            sink_write_retries: counter!("pipeline_sink_write_retries_total", &labels),
            sink_write_seconds: histogram!("pipeline_sink_write_duration_seconds", &labels),
            up: gauge!("pipeline_stage_up", &labels),
            inputs_paused: gauge!("pipeline_input_partitions_paused", &labels),
            watermark_keys: Default::default(),
        }
    }

    /// Publishes a key's event-time watermark and how far it trails the wall clock.
    /// Only the first [`MAX_WATERMARK_KEYS`] keys get series; returns whether `key` has one.
    pub fn watermark(&self, key: &str, watermark_ms: i64, now_ms: i64) -> bool {
        {
            let mut keys = self
                .watermark_keys
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !keys.contains(key) {
                if keys.len() >= MAX_WATERMARK_KEYS {
                    return false;
                }
                keys.insert(key.to_string());
            }
        }
        let labels = [
            ("stage", self.stage.clone()),
            ("connector", self.connector.to_string()),
            ("key", key.to_string()),
        ];
        gauge!("pipeline_watermark_seconds", &labels).set(watermark_ms as f64 / 1000.0);
        gauge!("pipeline_event_time_lag_seconds", &labels)
            .set((now_ms - watermark_ms) as f64 / 1000.0);
        true
    }

    /// Publishes how many records of `topic`/`partition` this stage has yet to consume
    /// (`pipeline_consumer_lag_records`), from librdkafka statistics (see
    /// [`crate::observe::lag`]).
    pub fn consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        gauge!(
            "pipeline_consumer_lag_records",
            "stage" => self.stage.clone(),
            "connector" => self.connector,
            "topic" => topic.to_string(),
            "partition" => partition.to_string()
        )
        .set(lag as f64);
    }

    /// Counts a rejected record under its reason (`late`, `unmatched` and bad-input reasons).
    pub fn rejected(&self, reason: &'static str) {
        counter!(
            "pipeline_rejected_records_total",
            "stage" => self.stage.clone(),
            "connector" => self.connector,
            "reason" => reason
        )
        .increment(1);
    }
}

/// A connector's own counter: exported with its stage's labels (made by
/// [`crate::connector::StageContext::live_counter`]) and readable in process, for tests and
/// a connector's stop summary. Outside the runtime (or without a recorder) it only counts.
#[derive(Debug, Default)]
pub struct LiveCounter {
    value: std::sync::atomic::AtomicU64,
    exported: Option<Counter>,
}

impl LiveCounter {
    /// A counter that also increments `exported`.
    pub fn exported(exported: Counter) -> Self {
        LiveCounter {
            value: Default::default(),
            exported: Some(exported),
        }
    }

    pub fn add(&self, n: u64) {
        self.value
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if let Some(exported) = &self.exported {
            exported.increment(n);
        }
    }

    pub fn get(&self) -> u64 {
        self.value.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Per-record counts kept locally and added to the shared counters in batches: a
/// counter increment through a recorder costs ~10 ns, which would be a noticeable share of
/// a fast transform's per-record budget.
#[derive(Debug, Default)]
pub struct Tally {
    records_in: u64,
    bytes_in: u64,
    records_out: u64,
    bytes_out: u64,
}

impl Tally {
    /// Records after which the counts are published even between flushes.
    const BATCH: u64 = 4096;

    pub fn record_in(&mut self, bytes: usize, metrics: &StageMetrics) {
        self.records_in += 1;
        self.bytes_in += bytes as u64;
        if self.records_in >= Self::BATCH {
            self.flush(metrics);
        }
    }

    pub fn record_out(&mut self, bytes: usize) {
        self.records_out += 1;
        self.bytes_out += bytes as u64;
    }

    /// Publishes the counts kept so far.
    pub fn flush(&mut self, metrics: &StageMetrics) {
        if self.records_in > 0 {
            metrics.records_in.increment(self.records_in);
            metrics.bytes_in.increment(self.bytes_in);
        }
        if self.records_out > 0 {
            metrics.records_out.increment(self.records_out);
            metrics.bytes_out.increment(self.bytes_out);
        }
        *self = Tally::default();
    }
}

/// Rejection reasons that normal operation produces (a record behind the watermark, a
/// value without statistics yet around a restart): logged at debug, every other reason
/// at warn.
pub const EXPECTED_REJECTIONS: &[&str] = &["late", "unmatched", "stale_stats"];

/// The level a rejection under `reason` is logged at.
pub fn rejection_level(reason: &str) -> tracing::Level {
    if EXPECTED_REJECTIONS.contains(&reason) {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    }
}

/// The one rate-limited log of a stage: rejected records (logged here by the runtime,
/// never again by the connector) and connectors' repeated warnings (retries, failures).
/// At most one line per interval per key, with how many were suppressed, so a bad feed
/// cannot flood the log.
pub struct RateLimitedLog {
    interval: Duration,
    last: HashMap<&'static str, (Instant, u64)>,
}

impl RateLimitedLog {
    pub fn new(interval: Duration) -> Self {
        RateLimitedLog {
            interval,
            last: HashMap::new(),
        }
    }

    /// Logs a rejected record at its reason's [`rejection_level`].
    pub fn rejected(&mut self, stage: &str, reason: &'static str, detail: &str) {
        if let Some(suppressed) = self.allow(reason) {
            if rejection_level(reason) == tracing::Level::DEBUG {
                debug!(stage, reason, suppressed, "rejected record: {detail}");
            } else {
                warn!(stage, reason, suppressed, "rejected record: {detail}");
            }
        }
    }

    /// Whether a message under `key` may be logged now: `Some(number suppressed since
    /// the last one)`, or `None` (counted as suppressed). For connectors' own warnings
    /// (e.g. retries), so that every stage shares one rate limit rule.
    pub fn allow(&mut self, key: &'static str) -> Option<u64> {
        let now = Instant::now();
        match self.last.get_mut(key) {
            Some((at, suppressed)) if now.duration_since(*at) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                *at = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                self.last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn rate_limited_log_lets_one_message_per_key_and_interval_through_and_counts_the_rest() {
        let mut log = RateLimitedLog::new(Duration::from_millis(200));
        assert_eq!(log.allow("retry"), Some(0));
        assert_eq!(log.allow("retry"), None);
        assert_eq!(log.allow("retry"), None);
        assert_eq!(log.allow("other"), Some(0), "keys are limited separately");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(log.allow("retry"), Some(2));
    }

    #[test]
    fn expected_rejections_are_debug_and_the_others_warn() {
        assert_eq!(rejection_level("late"), tracing::Level::DEBUG);
        assert_eq!(rejection_level("unmatched"), tracing::Level::DEBUG);
        assert_eq!(rejection_level("invalid_price"), tracing::Level::WARN);
        assert_eq!(rejection_level("too_large"), tracing::Level::WARN);
    }

    #[test]
    fn watermark_series_are_capped_per_stage_however_many_keys_arrive() {
        let metrics = StageMetrics::new("stage", "connector");
        let published = (0..1_000)
            .filter(|i| metrics.watermark(&format!("key-{i}"), 0, 0))
            .count();
        assert_eq!(published, MAX_WATERMARK_KEYS);
        assert!(metrics.watermark("key-0", 5, 5), "known keys stay updated");
        assert!(!metrics.watermark("key-999", 5, 5));
    }
}
