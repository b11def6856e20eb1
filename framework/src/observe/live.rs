//! The web view of a running pipeline, served by [`super::server`] at `/`: a page with the
//! stage/topic graph, a live stage table and charts of topic fields, and the JSON it polls:
//!
//! * `GET /api/graph`: stages (name, connector, input/output/dead-letter topics), no config.
//! * `GET /api/stages`: each stage's state and counters, from the Prometheus recorder.
//! * `GET /api/tap?topic=T&after=SEQ&limit=N`: the recent records of a topic
//!   ([`super::tap`]); `pipeline tap` reads it too.
//!
//! The assets are compiled into the binary (no CDN, works offline) and the page loads
//! nothing from elsewhere (its Content-Security-Policy says so). Everything is read-only.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::Mutex,
};

use http_body_util::Full;
use hyper::{
    body::Bytes,
    header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE},
    Response, StatusCode, Uri,
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use super::{
    prom,
    server::text,
    status::{PipelineStatus, StageState},
    tap,
};
use crate::validate::ValidatedPipeline;

const INDEX_HTML: &str = include_str!("live/index.html");
const APP_JS: &str = include_str!("live/app.js");
const APP_CSS: &str = include_str!("live/app.css");

/// Records one tap request returns at most.
pub const MAX_TAP_LIMIT: usize = 500;

/// One stage as the graph shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GraphStage {
    pub name: String,
    pub connector: String,
    pub inputs: Vec<String>,
    pub output: Option<String>,
    pub dead_letter: Option<String>,
    /// Whether this process runs the stage (`--stage` may select a few).
    pub here: bool,
}

/// What the web view shows of the pipeline's structure.
#[derive(Debug, Default, Serialize)]
pub struct LiveView {
    pub pipeline: String,
    pub stages: Vec<GraphStage>,
    /// Recent (time ms, stage -> records in, out) readings, for rates over a few seconds.
    #[serde(skip)]
    history: Mutex<VecDeque<Reading>>,
}

/// A reading of the counters: (time ms, stage -> (records in, records out)).
type Reading = (i64, BTreeMap<String, (f64, f64)>);

/// Rates are averaged over up to this long (counters move in steps: the runtime publishes
/// them at each commit).
const RATE_WINDOW_MS: i64 = 5_000;

impl LiveView {
    /// The view of `pipeline` run with `--stage` names `selected` (empty: all), and enables
    /// tapping its topics ([`tap::install`]).
    pub fn for_pipeline(pipeline: &ValidatedPipeline, selected: &[String]) -> Self {
        let stages: Vec<GraphStage> = pipeline
            .stages
            .iter()
            .map(|s| GraphStage {
                name: s.spec.name.clone(),
                connector: s.registration.name.to_string(),
                inputs: s.input_topics.clone(),
                output: s.spec.output.clone(),
                dead_letter: s.spec.dead_letter.clone(),
                here: selected.is_empty() || selected.contains(&s.spec.name),
            })
            .collect();
        let mut known = HashSet::new();
        let mut written = HashSet::new();
        for stage in &stages {
            known.extend(stage.inputs.iter().cloned());
            let outputs = stage.output.iter().chain(&stage.dead_letter);
            known.extend(outputs.clone().cloned());
            if stage.here {
                written.extend(outputs.cloned());
            }
        }
        tap::install(known, written);
        LiveView {
            pipeline: pipeline.spec.name.clone(),
            stages,
            history: Mutex::default(),
        }
    }
}

/// The page, its assets and its JSON; `None` for other paths.
pub fn respond(
    uri: &Uri,
    handle: &PrometheusHandle,
    status: &PipelineStatus,
    view: &LiveView,
) -> Option<Response<Full<Bytes>>> {
    let response = match uri.path() {
        "/" | "/index.html" => asset(INDEX_HTML, "text/html; charset=utf-8"),
        "/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
        "/app.css" => asset(APP_CSS, "text/css; charset=utf-8"),
        "/api/graph" => json(StatusCode::OK, view),
        "/api/stages" => json(StatusCode::OK, &stages(handle, status, view)),
        "/api/tap" => tap_response(uri.query().unwrap_or("")),
        _ => return None,
    };
    Some(response)
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(response)
}

/// Nothing but this server's own assets and JSON may load; no framing, no sniffing.
fn secure(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn json(code: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value)
        .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()).into_bytes());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    secure(response)
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct StageRow {
    pub connector: String,
    /// `starting`, `ready`, `running` (not yet ready), `finished` or `failed`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub records_in: f64,
    pub records_out: f64,
    /// Records in and out per second over the last few seconds (None on a first reading).
    pub in_per_s: Option<f64>,
    pub out_per_s: Option<f64>,
    pub rejected: f64,
    pub dead_lettered: f64,
    /// Records still to consume, summed over partitions (None: not a consumer or unknown).
    pub consumer_lag: Option<f64>,
    /// Greatest watermark over keys, in ms since the epoch.
    pub watermark_ms: Option<f64>,
    /// How far the watermark trails the wall clock, in seconds (greatest over keys).
    pub event_time_lag_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct StagesSnapshot {
    /// Wall clock of the snapshot (for rates from two snapshots).
    pub time_ms: i64,
    pub stages: BTreeMap<String, StageRow>,
}

fn stages(handle: &PrometheusHandle, status: &PipelineStatus, view: &LiveView) -> StagesSnapshot {
    // The recorder renders its own text; it always parses, but a failure must not break
    // the page: the table then shows states without counters.
    let samples = prom::parse(&handle.render()).unwrap_or_default();
    let stages = status
        .snapshot()
        .into_iter()
        .map(|(name, s)| {
            let wanted = [("stage", name.as_str())];
            let (state, error) = match s.state {
                StageState::Starting => ("starting", None),
                StageState::Running { ready: true } => ("ready", None),
                StageState::Running { ready: false } => ("running", None),
                StageState::Waiting { .. } => ("waiting", None),
                StageState::Finished => ("finished", None),
                StageState::Failed(e) => ("failed", Some(e)),
            };
            let has = |metric: &str| {
                samples
                    .iter()
                    .any(|x| x.name == metric && x.matches(&wanted))
            };
            let row = StageRow {
                connector: s.connector.to_string(),
                state,
                error,
                records_in: prom::sum(&samples, "pipeline_records_in_total", &wanted),
                records_out: prom::sum(&samples, "pipeline_records_out_total", &wanted),
                rejected: prom::sum(&samples, "pipeline_rejected_records_total", &wanted),
                dead_lettered: prom::sum(&samples, "pipeline_dead_lettered_total", &wanted),
                consumer_lag: has("pipeline_consumer_lag_records")
                    .then(|| prom::sum(&samples, "pipeline_consumer_lag_records", &wanted)),
                watermark_ms: prom::max(&samples, "pipeline_watermark_seconds", &wanted)
                    .map(|s| s * 1000.0),
                event_time_lag_s: prom::max(&samples, "pipeline_event_time_lag_seconds", &wanted),
                in_per_s: None,
                out_per_s: None,
            };
            (name, row)
        })
        .collect();
    let mut snapshot = StagesSnapshot {
        time_ms: chrono::Utc::now().timestamp_millis(),
        stages,
    };
    add_rates(&mut snapshot, &view.history);
    snapshot
}

/// Fills the rates from the oldest reading within [`RATE_WINDOW_MS`] at least a second old,
/// and remembers this one.
fn add_rates(snapshot: &mut StagesSnapshot, history: &Mutex<VecDeque<Reading>>) {
    let mut history = history.lock().unwrap_or_else(|p| p.into_inner());
    let now = snapshot.time_ms;
    while history
        .front()
        .is_some_and(|(at, _)| now - at > RATE_WINDOW_MS)
    {
        history.pop_front();
    }
    if let Some((at, counts)) = history.front().filter(|(at, _)| now - at >= 1000) {
        let seconds = (now - at) as f64 / 1000.0;
        for (name, row) in snapshot.stages.iter_mut() {
            if let Some((was_in, was_out)) = counts.get(name) {
                // A counter reset (restarted process) gives 0, not a negative rate.
                row.in_per_s = Some((row.records_in - was_in).max(0.0) / seconds);
                row.out_per_s = Some((row.records_out - was_out).max(0.0) / seconds);
            }
        }
    }
    // One reading per 250 ms is plenty, however many clients poll.
    if history.back().is_none_or(|(at, _)| now - at >= 250) {
        let counts = snapshot
            .stages
            .iter()
            .map(|(name, row)| (name.clone(), (row.records_in, row.records_out)))
            .collect();
        history.push_back((now, counts));
    }
}

fn tap_response(query: &str) -> Response<Full<Bytes>> {
    let mut topic = None;
    let mut after = 0u64;
    let mut limit = 100usize;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        let bad = |what: &str| text(StatusCode::BAD_REQUEST, format!("{what}: got {value:?}\n"));
        match name {
            "topic" => topic = Some(value.clone()),
            "after" => match value.parse() {
                Ok(n) => after = n,
                Err(_) => return bad("after must be a record position (0 or more)"),
            },
            "limit" => match value.parse() {
                Ok(n) if (1..=MAX_TAP_LIMIT).contains(&n) => limit = n,
                _ => return bad(&format!("limit must be 1 to {MAX_TAP_LIMIT}")),
            },
            _ => {}
        }
    }
    let Some(topic) = topic else {
        return text(StatusCode::BAD_REQUEST, "topic= is required\n".into());
    };
    match tap::fetch(&topic, after, limit) {
        Ok(batch) => json(StatusCode::OK, &batch),
        Err(e @ tap::TapError::UnknownTopic(..)) => text(StatusCode::NOT_FOUND, format!("{e}\n")),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// `%XX` and `+` decoding of a query value (invalid escapes are kept as they are).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex(bytes[i + 1]), bytes.get(i + 2).and_then(|b| hex(*b))) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_oldest_reading_of_the_last_seconds() {
        let history = Mutex::default();
        let reading = |time_ms, records_in: f64| {
            let row = StageRow {
                records_in,
                records_out: records_in * 2.0,
                ..StageRow::default()
            };
            StagesSnapshot {
                time_ms,
                stages: BTreeMap::from([("s".to_string(), row)]),
            }
        };
        let mut first = reading(10_000, 100.0);
        add_rates(&mut first, &history);
        assert_eq!(first.stages["s"].in_per_s, None, "nothing to compare with");
        let mut soon = reading(10_500, 150.0);
        add_rates(&mut soon, &history);
        assert_eq!(soon.stages["s"].in_per_s, None, "under a second");
        let mut later = reading(12_000, 300.0);
        add_rates(&mut later, &history);
        assert_eq!(later.stages["s"].in_per_s, Some(100.0));
        assert_eq!(later.stages["s"].out_per_s, Some(200.0));
        // Readings older than the window are forgotten; a reset gives 0.
        let mut much_later = reading(20_000, 10.0);
        add_rates(&mut much_later, &history);
        assert_eq!(much_later.stages["s"].in_per_s, None);
        let mut after_reset = reading(21_000, 5.0);
        add_rates(&mut after_reset, &history);
        assert_eq!(after_reset.stages["s"].in_per_s, Some(0.0));
    }

    #[test]
    fn query_values_are_percent_decoded_and_bad_escapes_kept() {
        assert_eq!(percent_decode("btc-price"), "btc-price");
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn tap_requests_with_bad_numbers_or_no_topic_are_refused() {
        assert_eq!(tap_response("").status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            tap_response("topic=t&limit=0").status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            tap_response("topic=t&limit=100000").status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            tap_response("topic=t&after=-1").status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn the_page_loads_only_its_own_embedded_assets() {
        assert!(INDEX_HTML.contains("src=\"/app.js\""));
        for asset in [INDEX_HTML, APP_JS, APP_CSS] {
            // The SVG namespace is a name, not something loaded.
            let asset = asset.replace("http://www.w3.org/2000/svg", "");
            assert!(!asset.contains("http://") && !asset.contains("https://"));
        }
        let response = asset(INDEX_HTML, "text/html");
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    }
}
