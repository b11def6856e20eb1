//! `pipeline top URL`: a live per-stage view of a running pipeline, from its `/metrics`
//! (counter deltas between two scrapes give rates) and `/ready` (stage states).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use framework::observe::prom::{self, Sample};
use ratatui::{
    backend::TestBackend,
    crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Block, Paragraph, Row, Table},
    Frame, Terminal,
};

const REFRESH: Duration = Duration::from_secs(1);
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(900);

/// One scrape of a running pipeline.
struct Snapshot {
    at: Instant,
    samples: Vec<Sample>,
    /// Stage name → state word, from `/ready` (empty when it could not be read).
    states: BTreeMap<String, String>,
}

/// What the table shows for one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRow {
    pub stage: String,
    pub connector: String,
    pub in_rate: Option<f64>,
    pub out_rate: Option<f64>,
    pub rejected_rate: Option<f64>,
    pub dead_lettered: f64,
    pub consumer_lag: Option<f64>,
    pub event_time_lag: Option<f64>,
    pub state: String,
}

/// The screen's content: the latest rows and the last scrape error, if any.
struct Model {
    url: String,
    previous: Option<Snapshot>,
    current: Option<Snapshot>,
    error: Option<String>,
}

impl Model {
    fn rows(&self) -> Vec<StageRow> {
        match &self.current {
            Some(current) => rows(self.previous.as_ref(), current),
            None => Vec::new(),
        }
    }

    fn push(&mut self, scraped: Result<Snapshot>) {
        match scraped {
            Ok(snapshot) => {
                self.previous = self.current.replace(snapshot);
                self.error = None;
            }
            Err(e) => self.error = Some(format!("{e:#}")),
        }
    }
}

const IN: &str = "pipeline_records_in_total";
const OUT: &str = "pipeline_records_out_total";
const REJECTED: &str = "pipeline_rejected_records_total";
const DEAD_LETTERED: &str = "pipeline_dead_lettered_total";
const LAG: &str = "pipeline_consumer_lag_records";
const EVENT_LAG: &str = "pipeline_event_time_lag_seconds";
const UP: &str = "pipeline_stage_up";

/// Per-stage rows from the current scrape and, for rates, the one before it.
fn rows(previous: Option<&Snapshot>, current: &Snapshot) -> Vec<StageRow> {
    let mut stages: BTreeMap<String, String> = BTreeMap::new();
    for s in &current.samples {
        if s.name.starts_with("pipeline_") {
            if let Some(stage) = s.label("stage") {
                let connector = s.label("connector").unwrap_or_default().to_string();
                let entry = stages.entry(stage.to_string()).or_default();
                if entry.is_empty() {
                    *entry = connector;
                }
            }
        }
    }
    for stage in current.states.keys() {
        stages.entry(stage.clone()).or_default();
    }
    stages
        .into_iter()
        .map(|(stage, connector)| {
            let by_stage = [("stage", stage.as_str())];
            let rate = |name: &str| {
                let previous = previous?;
                let seconds = current.at.duration_since(previous.at).as_secs_f64();
                if seconds <= 0.0 {
                    return None;
                }
                let delta = prom::sum(&current.samples, name, &by_stage)
                    - prom::sum(&previous.samples, name, &by_stage);
                // A restarted pipeline resets its counters: no negative rates.
                Some(delta.max(0.0) / seconds)
            };
            let state = current.states.get(&stage).cloned().unwrap_or_else(|| {
                match prom::max(&current.samples, UP, &by_stage) {
                    Some(v) if v >= 1.0 => "up".into(),
                    Some(_) => "down".into(),
                    None => "?".into(),
                }
            });
            StageRow {
                in_rate: rate(IN),
                out_rate: rate(OUT),
                rejected_rate: rate(REJECTED),
                dead_lettered: prom::sum(&current.samples, DEAD_LETTERED, &by_stage),
                consumer_lag: current
                    .samples
                    .iter()
                    .any(|s| s.name == LAG && s.matches(&by_stage))
                    .then(|| prom::sum(&current.samples, LAG, &by_stage)),
                event_time_lag: prom::max(&current.samples, EVENT_LAG, &by_stage),
                stage,
                connector,
                state,
            }
        })
        .collect()
}

/// State word of a `/ready` stage entry.
fn state_word(entry: &serde_json::Value) -> String {
    match entry["state"].as_str() {
        Some("running") if entry["detail"]["ready"] == true => "ready".into(),
        Some("running") => "joining".into(),
        Some("finished") => "done".into(),
        Some("waiting") => format!(
            "waiting {}s ({})",
            entry["detail"]["seconds"].as_u64().unwrap_or(0),
            entry["detail"]["reason"].as_str().unwrap_or("?")
        ),
        Some("failed") => "FAILED".into(),
        Some(other) => other.into(),
        None => "?".into(),
    }
}

/// `http://host:port` from what the user typed (`host:port`, `.../metrics`, ...).
pub fn base_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix("/metrics").unwrap_or(url);
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

async fn scrape(client: &reqwest::Client, base: &str) -> Result<Snapshot> {
    let metrics_url = format!("{base}/metrics");
    let response = client
        .get(&metrics_url)
        .send()
        .await
        .with_context(|| format!("scraping {metrics_url}"))?;
    if !response.status().is_success() {
        anyhow::bail!("scraping {metrics_url}: HTTP {}", response.status());
    }
    let text = response
        .text()
        .await
        .with_context(|| format!("reading {metrics_url}"))?;
    let at = Instant::now();
    let samples = prom::parse(&text).with_context(|| format!("parsing {metrics_url}"))?;
    // `/ready` answers 503 with the same JSON while a stage is not ready.
    let mut states = BTreeMap::new();
    if let Ok(response) = client.get(format!("{base}/ready")).send().await {
        if let Ok(json) = response.json::<serde_json::Value>().await {
            if let Some(stages) = json["stages"].as_object() {
                for (name, entry) in stages {
                    states.insert(name.clone(), state_word(entry));
                }
            }
        }
    }
    Ok(Snapshot {
        at,
        samples,
        states,
    })
}

fn compact(value: f64) -> String {
    let v = value.abs();
    if v >= 1e9 {
        format!("{:.1}G", value / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if v >= 100.0 || v == v.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn seconds(value: f64) -> String {
    if value >= 7200.0 {
        format!("{:.0}h", value / 3600.0)
    } else if value >= 120.0 {
        format!("{:.0}m", value / 60.0)
    } else {
        format!("{value:.1}s")
    }
}

fn or_dash(value: Option<f64>, format: fn(f64) -> String) -> String {
    value.map_or_else(|| "-".into(), format)
}

fn draw(frame: &mut Frame, model: &Model) {
    let [header, table] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(3)]).areas(frame.area());
    let status = match &model.error {
        Some(e) => Line::styled(format!("error: {e}"), Style::new().fg(Color::Red)),
        None if model.current.is_none() => Line::from("connecting..."),
        None if model.previous.is_none() => Line::from("rates after the next refresh"),
        None => Line::from("refresh 1s"),
    };
    frame.render_widget(
        Paragraph::new(vec![
            Line::styled(
                format!("pipeline top  {}   q: quit", model.url),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            status,
        ]),
        header,
    );
    let rows = model.rows();
    let body = rows.iter().map(|r| {
        let style = match r.state.as_str() {
            "FAILED" => Style::new().fg(Color::Red),
            "joining" | "starting" => Style::new().fg(Color::Yellow),
            _ => Style::new(),
        };
        Row::new(vec![
            r.stage.clone(),
            or_dash(r.in_rate, compact),
            or_dash(r.out_rate, compact),
            or_dash(r.rejected_rate, compact),
            compact(r.dead_lettered),
            or_dash(r.consumer_lag, compact),
            or_dash(r.event_time_lag, seconds),
            r.state.clone(),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Min(12),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
    ];
    let header_row = Row::new([
        "STAGE", "IN/s", "OUT/s", "REJ/s", "DLQ", "LAG", "WM LAG", "STATE",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    frame.render_widget(
        Table::new(body, widths)
            .header(header_row)
            .block(Block::bordered().title(" stages ")),
        table,
    );
}

/// What both views need: the metrics URL, a runtime and client to scrape it, an empty
/// model.
fn scraper(url: &str) -> Result<(String, tokio::runtime::Runtime, reqwest::Client, Model)> {
    let base = base_url(url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let client = reqwest::Client::builder()
        .timeout(SCRAPE_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let model = Model {
        url: base.clone(),
        previous: None,
        current: None,
        error: None,
    };
    Ok((base, runtime, client, model))
}

/// Runs the live view until `q`, Esc or Ctrl-C.
pub fn run(url: &str) -> Result<()> {
    let (base, runtime, client, mut model) = scraper(url)?;
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let result = (|| -> Result<()> {
        let mut next_scrape = Instant::now();
        loop {
            if Instant::now() >= next_scrape {
                model.push(runtime.block_on(scrape(&client, &base)));
                next_scrape = Instant::now() + REFRESH;
            }
            terminal
                .draw(|frame| draw(frame, &model))
                .context("drawing")?;
            let wait = next_scrape.saturating_duration_since(Instant::now());
            if event::poll(wait).context("reading the terminal")? {
                if let Event::Key(key) = event::read().context("reading the terminal")? {
                    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL)
                        && key.code == KeyCode::Char('c');
                    if key.kind == KeyEventKind::Press
                        && (ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc))
                    {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    result
}

/// Prints one screen (two scrapes a second apart, so rates are real) as plain text, 80
/// columns wide: for scripts and for terminals that cannot run the live view.
pub fn once(url: &str) -> Result<String> {
    let (base, runtime, client, mut model) = scraper(url)?;
    let first = runtime.block_on(scrape(&client, &base))?;
    model.push(Ok(first));
    std::thread::sleep(REFRESH);
    model.push(Ok(runtime.block_on(scrape(&client, &base))?));
    render_text(&model, 80)
}

fn render_text(model: &Model, width: u16) -> Result<String> {
    let height = model.rows().len() as u16 + 6;
    let mut terminal = Terminal::new(TestBackend::new(width, height)).context("text screen")?;
    terminal
        .draw(|frame| draw(frame, model))
        .context("drawing the text screen")?;
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(at: Instant, text: &str, states: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            at,
            samples: prom::parse(text).unwrap(),
            states: states
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const BEFORE: &str = r#"
pipeline_records_out_total{stage="read",connector="file_source"} 1000
pipeline_records_in_total{stage="moving",connector="moving_stats"} 500
pipeline_records_out_total{stage="moving",connector="moving_stats"} 10
pipeline_rejected_records_total{stage="moving",connector="moving_stats",reason="late"} 2
pipeline_stage_up{stage="read",connector="file_source"} 1
pipeline_stage_up{stage="moving",connector="moving_stats"} 1
"#;
    const AFTER: &str = r#"
pipeline_records_out_total{stage="read",connector="file_source"} 3000
pipeline_records_in_total{stage="moving",connector="moving_stats"} 2500
pipeline_records_out_total{stage="moving",connector="moving_stats"} 12
pipeline_rejected_records_total{stage="moving",connector="moving_stats",reason="late"} 4
pipeline_rejected_records_total{stage="moving",connector="moving_stats",reason="malformed_json"} 2
pipeline_dead_lettered_total{stage="moving",connector="moving_stats"} 6
pipeline_consumer_lag_records{stage="moving",connector="moving_stats",topic="p",partition="0"} 30
pipeline_consumer_lag_records{stage="moving",connector="moving_stats",topic="p",partition="1"} 12
pipeline_event_time_lag_seconds{stage="moving",connector="moving_stats",key="BTCUSDT"} 12.5
pipeline_event_time_lag_seconds{stage="moving",connector="moving_stats",key="ETHUSDT"} 3
pipeline_stage_up{stage="read",connector="file_source"} 1
pipeline_stage_up{stage="moving",connector="moving_stats"} 1
"#;

    #[test]
    fn rows_give_rates_from_counter_deltas_and_sum_lag_over_partitions() {
        let t0 = Instant::now();
        let before = snapshot(t0, BEFORE, &[]);
        let after = snapshot(t0 + Duration::from_secs(2), AFTER, &[("moving", "ready")]);
        let rows = rows(Some(&before), &after);
        assert_eq!(rows.len(), 2);
        let moving = &rows[0];
        assert_eq!(
            (moving.stage.as_str(), moving.connector.as_str()),
            ("moving", "moving_stats")
        );
        assert_eq!(moving.in_rate, Some(1000.0));
        assert_eq!(moving.out_rate, Some(1.0));
        // late 2 → 4 plus a new reason with 2: 4 rejections in 2 s.
        assert_eq!(moving.rejected_rate, Some(2.0));
        assert_eq!(moving.dead_lettered, 6.0);
        assert_eq!(moving.consumer_lag, Some(42.0));
        assert_eq!(moving.event_time_lag, Some(12.5));
        assert_eq!(moving.state, "ready");
        let read = &rows[1];
        assert_eq!(read.out_rate, Some(1000.0));
        assert_eq!(read.in_rate, Some(0.0));
        assert_eq!(read.consumer_lag, None);
        assert_eq!(read.state, "up");
    }

    #[test]
    fn first_scrape_has_no_rates_and_a_counter_reset_gives_zero_not_negative() {
        let t0 = Instant::now();
        let after = snapshot(t0, AFTER, &[]);
        assert_eq!(rows(None, &after)[0].in_rate, None);
        let restarted = snapshot(t0 + Duration::from_secs(1), BEFORE, &[]);
        assert_eq!(rows(Some(&after), &restarted)[0].in_rate, Some(0.0));
    }

    #[test]
    fn screen_fits_80_columns_with_every_stage_and_its_rate() {
        let t0 = Instant::now();
        let model = Model {
            url: "http://127.0.0.1:9898".into(),
            previous: Some(snapshot(t0, BEFORE, &[])),
            current: Some(snapshot(
                t0 + Duration::from_secs(1),
                AFTER,
                &[("read", "done")],
            )),
            error: None,
        };
        let text = render_text(&model, 80).unwrap();
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
        let moving = text.lines().find(|l| l.contains("moving")).expect(&text);
        assert!(moving.contains("2000"), "{moving}");
        assert!(moving.contains("12.5s"), "{moving}");
        assert!(moving.contains("42"), "{moving}");
        let read = text.lines().find(|l| l.contains("read")).expect(&text);
        assert!(read.contains("done"), "{read}");
    }

    #[test]
    fn base_url_accepts_host_port_and_metrics_urls() {
        assert_eq!(base_url("127.0.0.1:9898"), "http://127.0.0.1:9898");
        assert_eq!(base_url("http://h:1/metrics"), "http://h:1");
        assert_eq!(base_url("https://h:1/"), "https://h:1");
    }

    #[test]
    fn compact_numbers_stay_short() {
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(2.5), "2.5");
        assert_eq!(compact(1234.0), "1234");
        assert_eq!(compact(123_456.0), "123.5k");
        assert_eq!(compact(2_500_000.0), "2.5M");
        assert_eq!(seconds(12.5), "12.5s");
        assert_eq!(seconds(600.0), "10m");
        assert_eq!(seconds(36_000.0), "10h");
    }
}
