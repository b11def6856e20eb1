//! Progress of long bounded work (replaying a file): an `indicatif` bar (bytes of total,
//! rate, ETA) when stderr is a terminal, otherwise an `info!` line every few seconds, and
//! in both cases the `pipeline_replay_progress_ratio{stage}` gauge for `/metrics`.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use metrics::{gauge, Gauge};
use tracing::info;

/// How often the plain (non-terminal) mode logs.
const LOG_INTERVAL: Duration = Duration::from_secs(5);
/// Calls to [`Progress::advance`] between clock reads: keeps the per-record cost to an add.
const CHECK_EVERY: u64 = 512;

/// Where a replay stands, for log lines and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// 0–100, when the total is known.
    pub percent: Option<f64>,
    pub records: u64,
    /// Records per second since the start.
    pub rate: f64,
    /// Time left at the average byte rate so far, when the total is known.
    pub eta: Option<Duration>,
}

impl Summary {
    pub fn new(done_bytes: u64, total_bytes: Option<u64>, records: u64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        let total = total_bytes.filter(|t| *t > 0);
        let percent = total.map(|t| (done_bytes.min(t) as f64 / t as f64) * 100.0);
        let eta = match total {
            Some(t) if done_bytes > 0 && seconds > 0.0 => {
                let left = t.saturating_sub(done_bytes) as f64;
                Some(Duration::from_secs_f64(
                    left / (done_bytes as f64 / seconds),
                ))
            }
            _ => None,
        };
        Summary {
            percent,
            records,
            rate: if seconds > 0.0 {
                records as f64 / seconds
            } else {
                0.0
            },
            eta,
        }
    }
}

/// Reports the progress of one bounded replay.
pub struct Progress {
    stage: String,
    total: Option<u64>,
    bytes: u64,
    records: u64,
    until_check: u64,
    started: Instant,
    last_log: Instant,
    bar: Option<ProgressBar>,
    ratio: Gauge,
}

impl Progress {
    /// A bar on stderr when it is a terminal, log lines otherwise.
    pub fn new(stage: &str, total_bytes: Option<u64>) -> Self {
        Self::with_bar(stage, total_bytes, std::io::stderr().is_terminal())
    }

    pub fn with_bar(stage: &str, total_bytes: Option<u64>, bar: bool) -> Self {
        let bar = bar.then(|| {
            let bar = ProgressBar::with_draw_target(total_bytes, ProgressDrawTarget::stderr());
            let template =
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}";
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(stage.to_string());
            bar
        });
        let now = Instant::now();
        Progress {
            stage: stage.to_string(),
            total: total_bytes,
            bytes: 0,
            records: 0,
            until_check: CHECK_EVERY,
            started: now,
            last_log: now,
            bar,
            ratio: gauge!("pipeline_replay_progress_ratio", "stage" => stage.to_string()),
        }
    }

    /// Counts `bytes` read and `records` emitted.
    pub fn advance(&mut self, bytes: u64, records: u64) {
        self.bytes += bytes;
        self.records += records;
        self.until_check -= 1;
        if self.until_check == 0 {
            self.until_check = CHECK_EVERY;
            self.report(false);
        }
    }

    pub fn summary(&self) -> Summary {
        Summary::new(self.bytes, self.total, self.records, self.started.elapsed())
    }

    /// Final report: clears the bar and logs the totals.
    pub fn finish(&mut self) {
        self.report(true);
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn report(&mut self, last: bool) {
        let summary = self.summary();
        if let Some(percent) = summary.percent {
            self.ratio.set(percent / 100.0);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(self.bytes);
            bar.set_message(format!("{} records", self.records));
            return;
        }
        let now = Instant::now();
        if last || now.duration_since(self.last_log) >= LOG_INTERVAL {
            self.last_log = now;
            info!(
                stage = %self.stage,
                percent = summary.percent.map(|p| format!("{p:.1}")).unwrap_or_else(|| "?".into()),
                records = summary.records,
                rate = format!("{:.0}/s", summary.rate),
                eta = summary.eta.map(|d| format!("{}s", d.as_secs())).unwrap_or_else(|| "?".into()),
                "replay progress"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_gives_percent_rate_and_eta_from_bytes_and_records() {
        let s = Summary::new(250, Some(1000), 50, Duration::from_secs(10));
        assert_eq!(s.percent, Some(25.0));
        assert_eq!(s.rate, 5.0);
        // 25 bytes/s, 750 bytes left.
        assert_eq!(s.eta, Some(Duration::from_secs(30)));
    }

    #[test]
    fn summary_without_a_total_or_time_has_no_percent_eta_or_rate() {
        let s = Summary::new(250, None, 50, Duration::ZERO);
        assert_eq!((s.percent, s.eta, s.rate), (None, None, 0.0));
        let empty = Summary::new(0, Some(0), 0, Duration::from_secs(1));
        assert_eq!(empty.percent, None);
    }

    #[test]
    fn progress_counts_what_it_is_told_and_caps_percent_at_100() {
        let mut p = Progress::with_bar("read", Some(100), false);
        for _ in 0..1000 {
            p.advance(1, 1);
        }
        p.finish();
        let s = p.summary();
        assert_eq!(s.records, 1000);
        assert_eq!(s.percent, Some(100.0));
    }
}
