//! The benchmark's view of processes: CPU ticks, peak RSS, the load average, stopping a
//! child, and the sink's write metrics scraped from `pipeline run --metrics-addr`.

use std::{
    process::{Child, Command},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Wall clock in µs since the epoch (the Kafka timestamps' clock).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A port nothing listens on now (the OS picks it).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// SIGTERM to `pid` (the runtime drains and commits on it).
pub fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// Waits up to 30 s for a child to exit, then kills it.
pub fn wait(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// utime + stime of each process (clock ticks; 0 when it is gone).
pub fn cpu_ticks(pids: &[u32]) -> Vec<u64> {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
                    Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
                })
                .unwrap_or(0)
        })
        .collect()
}

pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The `load` stage's write counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct SinkWrites {
    pub writes: f64,
    pub write_seconds: f64,
    pub records: f64,
}

impl SinkWrites {
    /// Counters scraped from a running pipeline's `/metrics` (None if unreachable).
    pub async fn scrape(port: u16) -> Option<SinkWrites> {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let value = |name: &str| {
            text.lines()
                .filter(|l| l.starts_with(name) && l.contains("stage=\"load\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        };
        Some(SinkWrites {
            writes: value("pipeline_sink_write_duration_seconds_count{"),
            write_seconds: value("pipeline_sink_write_duration_seconds_sum{"),
            records: value("pipeline_records_in_total{"),
        })
    }

    /// What happened between `earlier` and `self`, as one report line.
    pub fn since(&self, earlier: &SinkWrites, seconds: f64) -> String {
        let writes = self.writes - earlier.writes;
        let busy = self.write_seconds - earlier.write_seconds;
        let records = self.records - earlier.records;
        if writes < 1.0 {
            return "no writes scraped".to_string();
        }
        format!(
            "{writes:.0} writes, mean {:.1} ms, {:.1} records per write, busy writing {:.0} % of the time",
            1e3 * busy / writes,
            records / writes,
            100.0 * busy / seconds
        )
    }
}
