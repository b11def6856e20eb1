//! The Prometheus recorder and a small HTTP server for `/metrics`, `/health` and `/ready`.
//!
//! `metrics-exporter-prometheus` has an HTTP listener of its own, but it serves only the
//! exposition; health and readiness need the pipeline's [`PipelineStatus`], so this module
//! renders the recorder's handle behind its own hyper server, which also serves the web
//! view ([`super::live`]) and bounds what clients can hold ([`limits`]).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header::{HeaderValue, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::{net::TcpListener, sync::Notify, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::live::LiveView;
use super::status::{PipelineStatus, StageState};

/// Buckets of `pipeline_sink_write_duration_seconds`: from a buffered file append (~100 µs)
/// to a database write stuck in retries (tens of seconds).
pub const WRITE_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];

/// How often histogram and idle-series upkeep runs (the exporter leaves it to the caller).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("{addr} {}: {source}", bind_problem(.source))]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(String),
}

fn bind_problem(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => "is in use",
        std::io::ErrorKind::PermissionDenied => "is not allowed",
        std::io::ErrorKind::AddrNotAvailable => "is not an address of this machine",
        _ => "cannot be listened on",
    }
}

/// Installs the process-wide Prometheus recorder. Call it before the pipeline starts:
/// stages look their series up once, from whatever recorder is installed then.
pub fn install_prometheus() -> Result<PrometheusHandle, ObserveError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("pipeline_sink_write_duration_seconds".into()),
            WRITE_SECONDS_BUCKETS,
        )
        .map_err(|e| ObserveError::Recorder(e.to_string()))?
        .install_recorder()
        .map_err(|e| ObserveError::Recorder(e.to_string()))
}

/// Limits that keep the endpoint server from being starved by slow or idle clients.
pub mod limits {
    use std::time::Duration;

    /// Connections served at once; past it, the oldest that has not sent a request yet is
    /// dropped for the new one (or the new one is closed when every slot is busy), so open
    /// file descriptors stay bounded.
    pub const MAX_CONNECTIONS: usize = 64;
    /// A client must send its request headers within this time of connecting.
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
    /// A kept-alive connection is closed after this long without a request.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
    /// Bytes of request head (request line and headers) read at most; the endpoints take
    /// no request bodies.
    pub const MAX_REQUEST_HEAD: usize = 8192;
    /// Request headers accepted at most.
    pub const MAX_HEADERS: usize = 32;
}

/// A running endpoint server; it stops when the shutdown token given to [`serve`] is
/// cancelled.
pub struct ObserveServer {
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ObserveServer {
    /// Waits until the server stopped accepting connections.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Binds `addr` (`host:port`) and serves the endpoints until `shutdown` is cancelled.
/// Binding happens before this returns, so an address in use is reported at once.
pub async fn serve(
    addr: &str,
    handle: PrometheusHandle,
    status: PipelineStatus,
    shutdown: CancellationToken,
) -> Result<ObserveServer, ObserveError> {
    serve_live(addr, handle, status, LiveView::default(), shutdown).await
}

/// [`serve`], plus the web view at `/` and its JSON under `/api/` (see [`super::live`]).
pub async fn serve_live(
    addr: &str,
    handle: PrometheusHandle,
    status: PipelineStatus,
    view: LiveView,
    shutdown: CancellationToken,
) -> Result<ObserveServer, ObserveError> {
    let bind_error = |source| ObserveError::Bind {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    info!(%local_addr, "serving /metrics, /health, /ready and the web view at /");
    let view = Arc::new(view);
    let task = tokio::spawn(async move {
        let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
        let mut connections = Connections::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = upkeep.tick() => {
                    handle.run_upkeep();
                    super::tap::upkeep();
                }
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: wait instead of spinning.
                            debug!("accepting a metrics connection: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let (connection, evicted) = match connections.admit() {
                        Admitted::Yes { connection, evicted } => (connection, evicted),
                        Admitted::Busy => {
                            debug!(%peer, "metrics server busy: connection refused");
                            drop(stream);
                            continue;
                        }
                    };
                    if let Some(evicted) = evicted {
                        // Wait for the evicted connection's socket to close, so open file
                        // descriptors never exceed the limit however fast clients connect.
                        let _ = tokio::time::timeout(EVICTION_WAIT, evicted.closed.notified()).await;
                    }
                    let handle = handle.clone();
                    let status = status.clone();
                    let view = view.clone();
                    tokio::spawn(serve_connection(stream, peer, connection, move |request| {
                        respond(request, &handle, &status, &view)
                    }));
                }
            }
        }
    });
    Ok(ObserveServer { local_addr, task })
}

/// What the server knows of one open connection.
#[derive(Default)]
struct Connection {
    /// Requests received (0: still waiting for the first one's headers).
    requests: AtomicU64,
    /// Cancelled to drop the connection (it was evicted for a newer one).
    evict: CancellationToken,
    /// Notified once the connection's socket is closed.
    closed: Notify,
}

/// Longest the accept loop waits for an evicted connection to close its socket.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// Signals [`Connection::closed`] when the connection task ends, after its socket dropped.
struct ClosedOnDrop(Arc<Connection>);

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        self.0.closed.notify_one();
    }
}

/// The outcome of [`Connections::admit`].
enum Admitted {
    /// Serve the connection; `evicted` (if any) was told to close to make room for it.
    Yes {
        connection: Arc<Connection>,
        evicted: Option<Arc<Connection>>,
    },
    /// Every slot is busy with requests.
    Busy,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Connections {
    open: Vec<Arc<Connection>>,
}

impl Connections {
    /// A slot for a new connection, evicting the oldest one that has not sent a request
    /// when all are taken; `None` when every connection is busy with requests.
    fn admit(&mut self) -> Admitted {
        // Connections whose task ended hold only our reference.
        self.open.retain(|c| Arc::strong_count(c) > 1);
        let mut evicted = None;
        if self.open.len() >= limits::MAX_CONNECTIONS {
            let Some(idle) = self
                .open
                .iter()
                .position(|c| c.requests.load(Ordering::Relaxed) == 0)
            else {
                return Admitted::Busy;
            };
            let oldest_idle = self.open.remove(idle);
            oldest_idle.evict.cancel();
            evicted = Some(oldest_idle);
        }
        let connection = Arc::new(Connection::default());
        self.open.push(connection.clone());
        Admitted::Yes {
            connection,
            evicted,
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: Arc<Connection>,
    respond: impl Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
) {
    // Declared before the connection so it drops after it, once the socket is closed.
    let _closed = ClosedOnDrop(state.clone());
    let counted = state.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        counted.requests.fetch_add(1, Ordering::Relaxed);
        let response = respond(&request);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits::HEADER_READ_TIMEOUT)
        .max_buf_size(limits::MAX_REQUEST_HEAD)
        .max_headers(limits::MAX_HEADERS);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // Closes the connection when no request arrived within the header-read timeout (first
    // request) or the idle timeout (later ones): hyper's own timeout only starts once a
    // request's first byte arrived.
    let mut seen = 0;
    let mut deadline = Instant::now() + limits::HEADER_READ_TIMEOUT;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    debug!(%peer, "metrics connection: {e}");
                }
                return;
            }
            _ = state.evict.cancelled() => {
                debug!(%peer, "metrics connection dropped for a newer one");
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = state.requests.load(Ordering::Relaxed);
                if now == seen {
                    debug!(%peer, "metrics connection timed out");
                    return;
                }
                seen = now;
                deadline = Instant::now() + limits::IDLE_TIMEOUT;
            }
        }
    }
}

fn respond<B>(
    request: &Request<B>,
    handle: &PrometheusHandle,
    status: &PipelineStatus,
    view: &LiveView,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    if let Some(response) = super::live::respond(request.uri(), handle, status, view) {
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, handle.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/health" => health(status),
        "/ready" => ready(status),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /, /metrics, /health or /ready\n".into(),
        ),
    }
}

/// 200 `ok` while no stage failed; 503 listing each failed stage and its error.
pub fn health(status: &PipelineStatus) -> Response<Full<Bytes>> {
    let failed: Vec<String> = status
        .snapshot()
        .into_iter()
        .filter_map(|(name, s)| match s.state {
            StageState::Failed(message) => Some(format!("{name}: {message}")),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        text(StatusCode::OK, "ok\n".into())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("failed stages:\n{}\n", failed.join("\n")),
        )
    }
}

/// 200 once every stage is ready, else 503; the body is the JSON of every stage's state.
pub fn ready(status: &PipelineStatus) -> Response<Full<Bytes>> {
    let ready = status.is_ready();
    let body = serde_json::json!({ "ready": ready, "stages": status.snapshot() });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = text(code, format!("{body}\n"));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(crate) fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn health_is_ok_until_a_stage_fails_then_names_it() {
        let status = PipelineStatus::default();
        status.set("read", "file_source", StageState::Running { ready: true });
        let ok = health(&status);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(body(ok).await, "ok\n");
        status.set("write", "file_sink", StageState::Failed("disk full".into()));
        let failed = health(&status);
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(failed).await, "failed stages:\nwrite: disk full\n");
    }

    #[tokio::test]
    async fn ready_is_503_with_stage_states_until_every_stage_is_ready() {
        let status = PipelineStatus::default();
        status.set("read", "file_source", StageState::Running { ready: true });
        status.set("write", "file_sink", StageState::Running { ready: false });
        let waiting = ready(&status);
        assert_eq!(waiting.status(), StatusCode::SERVICE_UNAVAILABLE);
        let json: serde_json::Value = serde_json::from_str(&body(waiting).await).unwrap();
        assert_eq!(json["ready"], false);
        assert_eq!(json["stages"]["write"]["state"], "running");
        assert_eq!(json["stages"]["write"]["detail"]["ready"], false);
        status.mark_ready("write");
        assert_eq!(ready(&status).status(), StatusCode::OK);
    }

    #[test]
    fn a_full_server_drops_the_oldest_connection_without_a_request_for_a_new_one() {
        fn admit(connections: &mut Connections) -> Option<Arc<Connection>> {
            match connections.admit() {
                Admitted::Yes { connection, .. } => Some(connection),
                Admitted::Busy => None,
            }
        }
        let mut connections = Connections::default();
        let held: Vec<_> = (0..limits::MAX_CONNECTIONS)
            .map(|_| admit(&mut connections).expect("room"))
            .collect();
        held[0].requests.fetch_add(1, Ordering::Relaxed);
        let Admitted::Yes {
            connection: newest,
            evicted: Some(evicted),
        } = connections.admit()
        else {
            panic!("room made for the new one by evicting one");
        };
        assert!(Arc::ptr_eq(&evicted, &held[1]), "the oldest idle one goes");
        assert!(!held[0].evict.is_cancelled(), "a busy connection is kept");
        assert!(
            held[1].evict.is_cancelled(),
            "the evicted one is told to close"
        );
        assert!(held[2..].iter().all(|c| !c.evict.is_cancelled()));
        for c in held.iter().chain([&newest]) {
            c.requests.fetch_add(1, Ordering::Relaxed);
        }
        assert!(admit(&mut connections).is_none(), "all busy: refused");
        drop((held, evicted));
        assert!(
            admit(&mut connections).is_some(),
            "closed ones free their slots"
        );
    }

    #[tokio::test]
    async fn binding_an_address_in_use_says_so() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let error = serve(
            &addr,
            handle,
            PipelineStatus::default(),
            CancellationToken::new(),
        )
        .await
        .err()
        .expect("second bind must fail");
        assert!(
            error
                .to_string()
                .starts_with(&format!("{addr} is in use: ")),
            "{error}"
        );
    }
}
