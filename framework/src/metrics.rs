//! The metrics every stage reports, recorded by the runtime (not by connectors) so that
//! all stages report the same way. Names follow Prometheus conventions; every series has
//! `stage` and `connector` labels. Without an installed recorder they cost almost nothing.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use tracing::warn;

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
}

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
        }
    }

    /// Publishes a key's event-time watermark and how far it trails the wall clock.
    pub fn watermark(&self, key: &str, watermark_ms: i64, now_ms: i64) {
        let labels = [
            ("stage", self.stage.clone()),
            ("connector", self.connector.to_string()),
            ("key", key.to_string()),
        ];
        gauge!("pipeline_watermark_seconds", &labels).set(watermark_ms as f64 / 1000.0);
        gauge!("pipeline_event_time_lag_seconds", &labels)
            .set((now_ms - watermark_ms) as f64 / 1000.0);
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

/// Logs repeated warnings at most once per interval per reason, with how many were
/// suppressed, so a bad feed cannot flood the log.
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

    pub fn warn(&mut self, stage: &str, reason: &'static str, detail: &str) {
        let now = Instant::now();
        match self.last.get_mut(reason) {
            Some((at, suppressed)) if now.duration_since(*at) < self.interval => {
                *suppressed += 1;
            }
            Some((at, suppressed)) => {
                warn!(
                    stage,
                    reason,
                    suppressed = *suppressed,
                    "rejected record: {detail}"
                );
                *at = now;
                *suppressed = 0;
            }
            None => {
                warn!(stage, reason, "rejected record: {detail}");
                self.last.insert(reason, (now, 0));
            }
        }
    }
}
