//! A local Binance spot server for tests and demos: real answer shapes, headers, error
//! codes and weight accounting, seeded prices, WebSocket market streams, and scriptable
//! faults. It is never linked into the `pipeline` binary.
//!
//! In process: [`MockBinance::start`] returns a [`MockHandle`] (address, faults, request
//! and connection logs, stream commands). Out of process: the `binance-mock` binary,
//! driven over HTTP with `POST /__mock/faults`, `POST /__mock/ws` and the `GET` logs.
//!
//! REST ([`rest`]): `GET /api/v3/ping`, `/api/v3/time`, `/api/v3/ticker/price`
//! (`symbol=`, `symbols=[...]` raw or URL-encoded, or neither for all symbols). Faults apply
//! to valid `ticker/price` requests, in the order they were queued, one per request.
//!
//! WebSocket ([`ws`]), on the same port: `/stream?streams=<symbol>@<trade|aggTrade|bookTicker>/...`,
//! the combined-stream endpoint, with Binance's payload shapes ([`feed`]), pings, the
//! 5 incoming messages/s limit, the connection lifetime cut-off and [`WsCommand`]s.

pub mod faults;
pub mod feed;
mod query;
mod rest;
mod server;
pub mod ws;

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, SeedableRng};
use tokio::{
    net::TcpListener,
    sync::broadcast,
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use faults::{Fault, FaultStep, RequestRecord, WsCommand, WsConnectionRecord};

use crate::{feed::Feed, query::TICKER_PATH, rest::initial_price_ticks, ws::Broadcast};

/// The request log keeps at most this many entries (oldest dropped first).
const MAX_LOGGED_REQUESTS: usize = 200_000;
/// The WebSocket connection log keeps at most this many entries.
const MAX_LOGGED_CONNECTIONS: usize = 10_000;
/// Ticks and commands a stream connection may fall behind before it is cut (Binance
/// disconnects slow consumers too).
const BROADCAST_CAPACITY: usize = 4_096;

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
    /// Streams: one trade (plus aggTrade and bookTicker update) per symbol this often;
    /// `None` publishes only on [`WsCommand::Publish`] (scripted trades).
    pub ws_trade_interval: Option<Duration>,
    /// Streams: the server pings every connection this often (Binance: 20 s).
    pub ws_ping_interval: Duration,
    /// Streams: a connection whose oldest ping is unanswered this long is cut (Binance: 1 min).
    pub ws_pong_timeout: Duration,
    /// Streams: a connection is closed this long after it opened (Binance: 24 h).
    pub ws_max_lifetime: Duration,
    /// Streams: more incoming frames than this within one second cut the connection.
    pub ws_max_incoming_per_second: u32,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            symbols: vec!["BTCUSDT".into(), "ETHUSDT".into(), "BNBUSDT".into()],
            seed: 42,
            weight_limit: 6_000,
            change_probability: 0.1,
            ws_trade_interval: Some(Duration::from_millis(100)),
            ws_ping_interval: Duration::from_secs(20),
            ws_pong_timeout: Duration::from_secs(60),
            ws_max_lifetime: Duration::from_secs(24 * 3600),
            ws_max_incoming_per_second: 5,
        }
    }
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
        let (ws_tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let shared = Arc::new(Shared {
            started: Instant::now(),
            state: Mutex::new(State {
                rng,
                prices,
                faults: VecDeque::new(),
                requests: VecDeque::new(),
                weight_minute: 0,
                weight_used: 0,
                feed: Feed::new(&config.symbols, config.seed),
                ws_connections: VecDeque::new(),
                next_ws_id: 1,
            }),
            ws_tx,
            config,
        });
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(server::serve(
            listener,
            Arc::clone(&shared),
            shutdown.clone(),
        ));
        if let Some(every) = shared.config.ws_trade_interval {
            tasks.spawn(feed::run_ticker(
                Arc::clone(&shared),
                every,
                shutdown.clone(),
            ));
        }
        let task = tokio::spawn(async move {
            while let Some(result) = tasks.join_next().await {
                if let Err(e) = result {
                    warn!(error = %e, "binance mock task failed");
                }
            }
        });
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

    /// `ws://127.0.0.1:PORT`, for the `binance_ws` source's `base_urls`.
    pub fn ws_base_url(&self) -> String {
        format!("ws://{}", self.addr)
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

    /// Applies a stream command at once (see [`WsCommand`]).
    pub fn ws_command(&self, command: WsCommand) {
        ws::apply(&self.shared, command);
    }

    /// Every stream connection accepted so far (the last 10000), oldest first.
    pub fn ws_connections(&self) -> Vec<WsConnectionRecord> {
        self.shared.lock().ws_connections.iter().cloned().collect()
    }

    /// Stream connections still open.
    pub fn ws_open_connections(&self) -> usize {
        self.shared
            .lock()
            .ws_connections
            .iter()
            .filter(|c| c.closed_ms.is_none())
            .count()
    }

    /// The id of the last trade published (or skipped) per symbol, in config order.
    pub fn last_trade_ids(&self) -> Vec<(String, u64)> {
        let state = self.shared.lock();
        self.shared
            .config
            .symbols
            .iter()
            .cloned()
            .zip(state.feed.last_trade_ids())
            .collect()
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
    /// Feed ticks and commands to every open stream connection.
    ws_tx: broadcast::Sender<Broadcast>,
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
    /// The streams' trades (own ids, prices and random numbers: the REST walk is unchanged).
    feed: Feed,
    ws_connections: VecDeque<WsConnectionRecord>,
    next_ws_id: u64,
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

    fn log_ws_connection(&mut self, record: WsConnectionRecord) {
        if self.ws_connections.len() >= MAX_LOGGED_CONNECTIONS {
            self.ws_connections.pop_front();
        }
        self.ws_connections.push_back(record);
    }

    /// The log entry of connection `id`, while it is still logged.
    fn ws_connection(&mut self, id: u64) -> Option<&mut WsConnectionRecord> {
        self.ws_connections.iter_mut().rev().find(|c| c.id == id)
    }
}
