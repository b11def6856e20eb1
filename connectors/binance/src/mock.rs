//! A local Binance spot REST server for tests and demos: real answer shapes, headers,
//! error codes and weight accounting, seeded prices, and scriptable faults.
//!
//! In process: [`MockBinance::start`] returns a [`MockHandle`] (address, faults, request
//! log). Out of process: the `binance-mock` binary, driven over HTTP with
//! `POST /__mock/faults` and `GET /__mock/requests`.
//!
//! Served: `GET /api/v3/ping`, `/api/v3/time`, `/api/v3/ticker/price` (`symbol=`,
//! `symbols=[...]` raw or URL-encoded, or neither for all symbols). Faults apply to valid
//! `ticker/price` requests, in the order they were queued, one per request.

use std::{
    collections::{BTreeSet, VecDeque},
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    body::Incoming, header, server::conn::http1, service::service_fn, Method, Request, Response,
    StatusCode,
};
use hyper_util::rt::TokioIo;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::is_legal_symbol;

/// Price tick of the random walk: 0.01, prices are kept in ticks to stay exact.
const TICKS_PER_UNIT: i64 = 100;
/// The request log keeps at most this many entries (oldest dropped first).
const MAX_LOGGED_REQUESTS: usize = 200_000;
const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// How the mock starts.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Address to listen on; port 0 picks a free port ([`MockHandle::addr`] tells which).
    pub listen: SocketAddr,
    /// Symbols the mock knows, in "exchange order" (the order of `symbols=` answers).
    pub symbols: Vec<String>,
    /// Seed of the price walk: the same seed gives the same prices per request index.
    pub seed: u64,
    /// REQUEST_WEIGHT limit per clock minute; beyond it, 429 with `Retry-After` and -1003.
    pub weight_limit: u32,
    /// Chance that a symbol's price moves on a `ticker/price` request (real BTCUSDT
    /// polled every 100 ms keeps the same price most of the time).
    pub change_probability: f64,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            symbols: vec!["BTCUSDT".into(), "ETHUSDT".into(), "BNBUSDT".into()],
            seed: 42,
            weight_limit: 6_000,
            change_probability: 0.1,
        }
    }
}

/// A misbehaviour of the next `ticker/price` answer(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// 200 with a truncated JSON body.
    MalformedJson,
    /// 200 with a symbol that was not asked for (first element for `symbols=`).
    WrongSymbol,
    /// 200 with `"price":"NaN"` (first element).
    NonNumericPrice,
    /// 200 with a negative price (first element).
    NegativePrice,
    /// 200 with `"price":"0.00000000"` (first element).
    ZeroPrice,
    /// 200 with `[]`.
    EmptyArray,
    /// 429, `Retry-After`, -1003 "Too much request weight used".
    RateLimited { retry_after_secs: u64 },
    /// 418, `Retry-After`, -1003 "IP banned until".
    Banned { retry_after_secs: u64 },
    /// 500 with a -1000 body.
    ServerError,
    /// The normal answer, after a delay.
    Slow { delay_ms: u64 },
    /// The connection is closed without any answer.
    DropConnection,
}

/// A fault and how many consecutive requests it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStep {
    #[serde(flatten)]
    pub fault: Fault,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// One request the mock received on `/api/...`.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// When the request arrived (monotonic; for in-process assertions).
    #[serde(skip)]
    pub at: Instant,
    /// When the request arrived, epoch ms.
    pub at_ms: i64,
    /// When the request arrived, ms since the mock started.
    pub since_start_ms: f64,
    pub method: String,
    pub path: String,
    /// Raw (still encoded) query string.
    pub query: String,
    /// Status answered; `None` when the connection was dropped.
    pub status: Option<u16>,
    pub fault: Option<Fault>,
    /// Used weight of the minute after this request.
    pub used_weight: u32,
}

/// Entry point of the mock.
pub struct MockBinance;

impl MockBinance {
    /// Binds `config.listen` and serves until the handle is shut down or dropped.
    pub async fn start(config: MockConfig) -> std::io::Result<MockHandle> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let prices = config
            .symbols
            .iter()
            .map(|s| initial_price_ticks(s, &mut rng))
            .collect();
        let shared = Arc::new(Shared {
            started: Instant::now(),
            state: Mutex::new(State {
                rng,
                prices,
                faults: VecDeque::new(),
                requests: VecDeque::new(),
                weight_minute: 0,
                weight_used: 0,
            }),
            config,
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, Arc::clone(&shared), shutdown.clone()));
        Ok(MockHandle {
            addr,
            shared,
            shutdown,
            task: Some(task),
        })
    }
}

/// A running mock. Dropping it stops the server.
pub struct MockHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl MockHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `base_urls`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends a fault for the next `times` `ticker/price` requests (after those queued).
    pub fn push_fault(&self, fault: Fault, times: u32) {
        if times > 0 {
            self.shared
                .lock()
                .faults
                .push_back(FaultStep { fault, times });
        }
    }

    /// Replaces the queued faults.
    pub fn set_fault_plan(&self, plan: Vec<FaultStep>) {
        self.shared.lock().faults = plan.into_iter().filter(|s| s.times > 0).collect();
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Faults not yet used.
    pub fn pending_faults(&self) -> Vec<FaultStep> {
        self.shared.lock().faults.iter().cloned().collect()
    }

    /// Every logged `/api/...` request, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.iter().cloned().collect()
    }

    /// Only the `ticker/price` requests.
    pub fn price_requests(&self) -> Vec<RequestRecord> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.path == TICKER_PATH)
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Stops accepting, closes every connection and waits for the server task.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                warn!(error = %e, "binance mock server task failed");
            }
        }
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Shared {
    config: MockConfig,
    started: Instant,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way
        // that matters to a mock, so keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct State {
    rng: StdRng,
    /// Price of each configured symbol, in ticks of 0.01.
    prices: Vec<i64>,
    faults: VecDeque<FaultStep>,
    requests: VecDeque<RequestRecord>,
    /// The clock minute (epoch ms / 60000) the used weight belongs to.
    weight_minute: i64,
    weight_used: u32,
}

impl State {
    fn next_fault(&mut self) -> Option<Fault> {
        let step = self.faults.front_mut()?;
        let fault = step.fault.clone();
        step.times = step.times.saturating_sub(1);
        if step.times == 0 {
            self.faults.pop_front();
        }
        Some(fault)
    }

    fn log(&mut self, record: RequestRecord) {
        if self.requests.len() >= MAX_LOGGED_REQUESTS {
            self.requests.pop_front();
        }
        self.requests.push_back(record);
    }
}

/// Plausible starting prices for well-known symbols; others get a seeded one.
fn initial_price_ticks(symbol: &str, rng: &mut StdRng) -> i64 {
    match symbol {
        "BTCUSDT" => 9_700_902,
        "ETHUSDT" => 350_010,
        "BNBUSDT" => 60_025,
        _ => rng.random_range(100..100_000),
    }
}

fn format_ticks(ticks: i64) -> String {
    // Binance pads spot prices to 8 decimals: "97009.02000000".
    format!(
        "{}.{:02}000000",
        ticks / TICKS_PER_UNIT,
        ticks % TICKS_PER_UNIT
    )
}

const TICKER_PATH: &str = "/api/v3/ticker/price";

/// A Binance error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ApiFailure {
    status: StatusCode,
    code: i64,
    msg: String,
}

impl ApiFailure {
    fn bad_request(code: i64, msg: impl Into<String>) -> Self {
        ApiFailure {
            status: StatusCode::BAD_REQUEST,
            code,
            msg: msg.into(),
        }
    }
    fn body(&self) -> String {
        serde_json::json!({"code": self.code, "msg": self.msg}).to_string()
    }
}

/// Which symbols a valid `ticker/price` request asks for (indices into the config).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TickerQuery {
    indices: Vec<usize>,
    /// An array answer (`symbols=` or no parameter).
    array: bool,
}

const SYMBOLS_RANGE: &str = r#"^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$"#;

/// Parses the `symbols` value by Binance's own legal-range regex (no spaces, quoted).
fn parse_symbols_list(text: &str) -> Result<Vec<&str>, ApiFailure> {
    let illegal = || {
        ApiFailure::bad_request(
            -1100,
            format!("Illegal characters found in parameter 'symbols'; legal range is '{SYMBOLS_RANGE}'."),
        )
    };
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(illegal)?;
    if inner.is_empty() {
        return Err(ApiFailure::bad_request(
            -1102,
            "Mandatory parameter 'symbols' was not sent, was empty/null, or malformed.",
        ));
    }
    inner
        .split(',')
        .map(|quoted| {
            quoted
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .filter(|s| is_legal_symbol(s))
                .ok_or_else(illegal)
        })
        .collect()
}

/// Validates `ticker/price` parameters as Binance does, in its order of checks.
fn parse_ticker_query(query: &str, known: &[String]) -> Result<TickerQuery, ApiFailure> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut names = BTreeSet::new();
    for (name, _) in &pairs {
        if !names.insert(name.as_str()) {
            return Err(ApiFailure::bad_request(
                -1101,
                "Duplicate values for a parameter detected.",
            ));
        }
    }
    let unknown = pairs
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "symbol" | "symbols" | "symbolStatus"))
        .count();
    if unknown > 0 {
        return Err(ApiFailure::bad_request(
            -1104,
            format!(
                "Not all sent parameters were read; read '{}' parameter(s) but was sent '{}'.",
                pairs.len() - unknown,
                pairs.len()
            ),
        ));
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let index_of = |symbol: &str| {
        known
            .iter()
            .position(|k| k == symbol)
            .ok_or_else(|| ApiFailure::bad_request(-1121, "Invalid symbol."))
    };
    match (get("symbol"), get("symbols")) {
        (Some(_), Some(_)) => Err(ApiFailure::bad_request(
            -1128,
            "Combination of optional parameters invalid.",
        )),
        (Some(""), None) => Err(ApiFailure::bad_request(
            -1105,
            "Parameter 'symbol' was empty.",
        )),
        (Some(symbol), None) => {
            if !is_legal_symbol(symbol) {
                return Err(ApiFailure::bad_request(
                    -1100,
                    "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
                ));
            }
            Ok(TickerQuery {
                indices: vec![index_of(symbol)?],
                array: false,
            })
        }
        (None, Some("")) => Err(ApiFailure::bad_request(
            -1105,
            "Parameter 'symbols' was empty.",
        )),
        (None, Some(list)) => {
            let symbols = parse_symbols_list(list)?;
            let distinct: BTreeSet<&str> = symbols.iter().copied().collect();
            if distinct.len() != symbols.len() {
                return Err(ApiFailure::bad_request(
                    -1151,
                    "Symbol is present multiple times in the list.",
                ));
            }
            let mut indices = symbols
                .iter()
                .map(|s| index_of(s))
                .collect::<Result<Vec<_>, _>>()?;
            // Answers list symbols in exchange order, not request order.
            indices.sort_unstable();
            Ok(TickerQuery {
                indices,
                array: true,
            })
        }
        (None, None) => Ok(TickerQuery {
            indices: (0..known.len()).collect(),
            array: true,
        }),
    }
}

/// Weight of a request to `path` (per Binance's docs since 2023-08-25).
fn weight_of(path: &str, query: &str) -> u32 {
    match path {
        "/api/v3/ping" | "/api/v3/time" => 1,
        TICKER_PATH => {
            let single = form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "symbol");
            if single {
                2
            } else {
                4
            }
        }
        _ => 1,
    }
}

#[derive(Serialize)]
struct TickerItem<'a> {
    symbol: &'a str,
    price: String,
}

/// What to send back.
enum Reply {
    Answer {
        status: StatusCode,
        body: String,
        retry_after: Option<u64>,
        delay: Option<Duration>,
    },
    Drop,
}

/// Binance's 429 answer (-1003) for a weight limit per minute.
fn rate_limited(weight_limit: u32, retry_after_secs: u64) -> Reply {
    Reply::Answer {
        status: StatusCode::TOO_MANY_REQUESTS,
        body: ApiFailure {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: -1003,
            msg: format!(
                "Too much request weight used; current limit is {weight_limit} request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
            ),
        }
        .body(),
        retry_after: Some(retry_after_secs),
        delay: None,
    }
}

fn answer(status: StatusCode, body: String) -> Reply {
    Reply::Answer {
        status,
        body,
        retry_after: None,
        delay: None,
    }
}

/// Decides the reply to an `/api/...` request and logs it, all under the lock, so that
/// fault order and price walk follow request arrival order.
fn plan_api_reply(shared: &Shared, method: &Method, path: &str, query: &str) -> (Reply, u32) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut state = shared.lock();
    let minute = now_ms.div_euclid(60_000);
    if minute != state.weight_minute {
        state.weight_minute = minute;
        state.weight_used = 0;
    }
    let cost = weight_of(path, query);
    let mut fault = None;
    let reply = if state.weight_used.saturating_add(cost) > shared.config.weight_limit {
        let retry_after = ((minute + 1) * 60_000 - now_ms + 999) / 1000;
        rate_limited(shared.config.weight_limit, retry_after.max(1) as u64)
    } else {
        state.weight_used += cost;
        match (method, path) {
            (&Method::GET, "/api/v3/ping") => answer(StatusCode::OK, "{}".into()),
            (&Method::GET, "/api/v3/time") => answer(
                StatusCode::OK,
                serde_json::json!({"serverTime": now_ms}).to_string(),
            ),
            (&Method::GET, TICKER_PATH) => {
                match parse_ticker_query(query, &shared.config.symbols) {
                    Err(failure) => answer(failure.status, failure.body()),
                    Ok(ticker) => {
                        fault = state.next_fault();
                        ticker_reply(shared, &mut state, &ticker, fault.as_ref(), now_ms)
                    }
                }
            }
            (_, "/api/v3/ping" | "/api/v3/time" | TICKER_PATH) => answer(
                StatusCode::METHOD_NOT_ALLOWED,
                ApiFailure::bad_request(-1000, "Method not allowed.").body(),
            ),
            _ => answer(StatusCode::NOT_FOUND, String::new()),
        }
    };
    let used_weight = state.weight_used;
    let record = RequestRecord {
        at: Instant::now(),
        at_ms: now_ms,
        since_start_ms: shared.started.elapsed().as_secs_f64() * 1000.0,
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        status: match &reply {
            Reply::Answer { status, .. } => Some(status.as_u16()),
            Reply::Drop => None,
        },
        fault,
        used_weight,
    };
    state.log(record);
    (reply, used_weight)
}

/// Moves the price walk one step for the asked symbols and renders the (faulty) answer.
fn ticker_reply(
    shared: &Shared,
    state: &mut State,
    ticker: &TickerQuery,
    fault: Option<&Fault>,
    now_ms: i64,
) -> Reply {
    let probability = shared.config.change_probability.clamp(0.0, 1.0);
    for &i in &ticker.indices {
        if state.rng.random_bool(probability) {
            let step: i64 = state.rng.random_range(1..=3);
            let up = state.rng.random_bool(0.5);
            let price = &mut state.prices[i];
            *price = if up {
                *price + step
            } else {
                (*price - step).max(1)
            };
        }
    }
    let symbols = &shared.config.symbols;
    let mut items: Vec<TickerItem<'_>> = ticker
        .indices
        .iter()
        .map(|&i| TickerItem {
            symbol: &symbols[i],
            price: format_ticks(state.prices[i]),
        })
        .collect();
    // A symbol that was not asked for: another known one, or an unknown one.
    let unrequested = symbols
        .iter()
        .enumerate()
        .find(|(i, _)| !ticker.indices.contains(i))
        .map(|(_, s)| s.as_str())
        .unwrap_or("WRONGUSDT");
    let render = |items: &[TickerItem<'_>]| -> String {
        let result = if ticker.array {
            serde_json::to_string(items)
        } else {
            match items.first() {
                Some(item) => serde_json::to_string(item),
                None => Ok("{}".to_string()),
            }
        };
        result.unwrap_or_default()
    };
    let Some(fault) = fault else {
        return answer(StatusCode::OK, render(&items));
    };
    match fault {
        Fault::MalformedJson => {
            let body = render(&items);
            let cut = body.len() / 2;
            answer(StatusCode::OK, body[..cut].to_string())
        }
        Fault::WrongSymbol => {
            if let Some(first) = items.first_mut() {
                first.symbol = unrequested;
            }
            answer(StatusCode::OK, render(&items))
        }
        Fault::NonNumericPrice | Fault::NegativePrice | Fault::ZeroPrice => {
            if let Some(first) = items.first_mut() {
                first.price = match fault {
                    Fault::NonNumericPrice => "NaN".to_string(),
                    Fault::NegativePrice => format!("-{}", first.price),
                    _ => "0.00000000".to_string(),
                };
            }
            answer(StatusCode::OK, render(&items))
        }
        Fault::EmptyArray => answer(StatusCode::OK, "[]".into()),
        Fault::RateLimited { retry_after_secs } => {
            rate_limited(shared.config.weight_limit, *retry_after_secs)
        }
        Fault::Banned { retry_after_secs } => {
            let until = now_ms.saturating_add((*retry_after_secs as i64).saturating_mul(1000));
            Reply::Answer {
                status: StatusCode::IM_A_TEAPOT,
                body: ApiFailure {
                    status: StatusCode::IM_A_TEAPOT,
                    code: -1003,
                    msg: format!("Way too much request weight used; IP banned until {until}. Please use WebSocket Streams for live updates to avoid bans."),
                }
                .body(),
                retry_after: Some(*retry_after_secs),
                delay: None,
            }
        }
        Fault::ServerError => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiFailure::bad_request(
                -1000,
                "An unknown error occurred while processing the request.",
            )
            .body(),
        ),
        Fault::Slow { delay_ms } => Reply::Answer {
            status: StatusCode::OK,
            body: render(&items),
            retry_after: None,
            delay: Some(Duration::from_millis(*delay_ms)),
        },
        Fault::DropConnection => Reply::Drop,
    }
}

fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    response
}

/// The `/__mock/...` control endpoints.
async fn control(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let replace = request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "replace" && v == "true"))
        .unwrap_or(false);
    let to_json = |value: Result<String, serde_json::Error>| match value {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": e.to_string()}).to_string(),
        ),
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/__mock/requests") => {
            let requests: Vec<RequestRecord> = shared.lock().requests.iter().cloned().collect();
            to_json(serde_json::to_string(&requests))
        }
        (&Method::DELETE, "/__mock/requests") => {
            shared.lock().requests.clear();
            json_response(StatusCode::OK, "{}".into())
        }
        (&Method::GET, "/__mock/faults") => {
            let faults: Vec<FaultStep> = shared.lock().faults.iter().cloned().collect();
            to_json(serde_json::to_string(&faults))
        }
        (&Method::DELETE, "/__mock/faults") => {
            shared.lock().faults.clear();
            json_response(StatusCode::OK, "{}".into())
        }
        (&Method::POST, "/__mock/faults") => {
            let body = match request.into_body().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"error": format!("cannot read body: {e}")}).to_string(),
                    )
                }
            };
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Steps {
                One(FaultStep),
                Many(Vec<FaultStep>),
            }
            let steps = match serde_json::from_slice::<Steps>(&body) {
                Ok(Steps::One(step)) => vec![step],
                Ok(Steps::Many(steps)) => steps,
                Err(e) => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({
                            "error": format!("expected a fault step or an array of them, e.g. {{\"kind\":\"server_error\",\"times\":3}}: {e}")
                        })
                        .to_string(),
                    )
                }
            };
            let pending: Vec<FaultStep> = {
                let mut state = shared.lock();
                if replace {
                    state.faults.clear();
                }
                state
                    .faults
                    .extend(steps.into_iter().filter(|s| s.times > 0));
                state.faults.iter().cloned().collect()
            };
            to_json(serde_json::to_string(&pending))
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": format!("no mock control endpoint {method} {path}")})
                .to_string(),
        ),
    }
}

async fn handle(
    shared: Arc<Shared>,
    kill: Arc<Notify>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.uri().path().starts_with("/__mock/") {
        return control(&shared, request).await;
    }
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let (reply, used_weight) = plan_api_reply(&shared, request.method(), &path, &query);
    match reply {
        Reply::Drop => {
            // Closing the connection from its task drops it without writing a response.
            kill.notify_one();
            std::future::pending().await
        }
        Reply::Answer {
            status,
            body,
            retry_after,
            delay,
        } => {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let mut response = json_response(status, body);
            let headers = response.headers_mut();
            let weight = header::HeaderValue::from(used_weight);
            headers.insert("x-mbx-used-weight", weight.clone());
            headers.insert("x-mbx-used-weight-1m", weight);
            if let Some(secs) = retry_after {
                headers.insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
            }
            response
        }
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    warn!(error = %e, "binance mock: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "binance mock: cannot set TCP_NODELAY");
        }
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let service_kill = Arc::clone(&kill);
            let service = service_fn(move |request| {
                let shared = Arc::clone(&shared);
                let kill = Arc::clone(&service_kill);
                async move { Ok::<_, Infallible>(handle(shared, kill, request).await) }
            });
            let connection = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        debug!(%peer, error = %e, "binance mock: connection ended with an error");
                    }
                }
                _ = kill.notified() => debug!(%peer, "binance mock: dropped a connection (fault)"),
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        vec!["BTCUSDT".into(), "ETHUSDT".into(), "BNBUSDT".into()]
    }

    fn code(query: &str) -> i64 {
        parse_ticker_query(query, &known()).unwrap_err().code
    }

    #[test]
    fn prices_are_padded_to_eight_decimals() {
        assert_eq!(format_ticks(9_700_902), "97009.02000000");
        assert_eq!(format_ticks(5), "0.05000000");
        assert_eq!(format_ticks(100), "1.00000000");
    }

    #[test]
    fn ticker_query_accepts_symbol_raw_and_encoded_symbols_and_none() {
        let q = parse_ticker_query("symbol=ETHUSDT", &known()).unwrap();
        assert_eq!(
            q,
            TickerQuery {
                indices: vec![1],
                array: false
            }
        );
        let raw = parse_ticker_query(r#"symbols=["BNBUSDT","BTCUSDT"]"#, &known()).unwrap();
        let encoded =
            parse_ticker_query("symbols=%5B%22BNBUSDT%22,%22BTCUSDT%22%5D", &known()).unwrap();
        assert_eq!(
            raw,
            TickerQuery {
                indices: vec![0, 2],
                array: true
            }
        );
        assert_eq!(raw, encoded);
        let all = parse_ticker_query("", &known()).unwrap();
        assert_eq!(
            all,
            TickerQuery {
                indices: vec![0, 1, 2],
                array: true
            }
        );
    }

    #[test]
    fn ticker_query_errors_use_binance_codes() {
        assert_eq!(code("symbol=XYZUSDT"), -1121);
        assert_eq!(code("symbol=btcusdt"), -1100);
        assert_eq!(code("symbol=BTC%20USDT"), -1100);
        assert_eq!(code("symbol="), -1105);
        assert_eq!(code(r#"symbol=BTCUSDT&symbols=["ETHUSDT"]"#), -1128);
        assert_eq!(code(r#"symbols=["BTCUSDT","BTCUSDT"]"#), -1151);
        assert_eq!(code(r#"symbols=["BTCUSDT","XYZUSDT"]"#), -1121);
        assert_eq!(code(r#"symbols=["BTCUSDT", "ETHUSDT"]"#), -1100);
        assert_eq!(code(r#"symbols=["btcusdt"]"#), -1100);
        assert_eq!(code("symbols=BTCUSDT"), -1100);
        assert_eq!(code("symbols=[]"), -1102);
        assert_eq!(code("symbol=BTCUSDT&symbol=ETHUSDT"), -1101);
        assert_eq!(code("symbol=BTCUSDT&foo=1"), -1104);
    }

    #[test]
    fn weights_follow_the_documented_table() {
        assert_eq!(weight_of("/api/v3/ping", ""), 1);
        assert_eq!(weight_of(TICKER_PATH, "symbol=BTCUSDT"), 2);
        assert_eq!(weight_of(TICKER_PATH, "symbols=%5B%22BTCUSDT%22%5D"), 4);
        assert_eq!(weight_of(TICKER_PATH, ""), 4);
    }

    #[test]
    fn fault_steps_round_trip_as_flat_json() {
        let step: FaultStep =
            serde_json::from_str(r#"{"kind":"rate_limited","retry_after_secs":2,"times":3}"#)
                .unwrap();
        assert_eq!(
            step,
            FaultStep {
                fault: Fault::RateLimited {
                    retry_after_secs: 2
                },
                times: 3
            }
        );
        let step: FaultStep = serde_json::from_str(r#"{"kind":"drop_connection"}"#).unwrap();
        assert_eq!(step.times, 1);
        let back = serde_json::to_value(&step).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"kind":"drop_connection","times":1})
        );
    }
}
