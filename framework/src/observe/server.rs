//! The Prometheus recorder and a small HTTP server for `/metrics`, `/health` and `/ready`.
//!
//! `metrics-exporter-prometheus` has an HTTP listener of its own, but it serves only the
//! exposition; health and readiness need the pipeline's [`PipelineStatus`], so this module
//! renders the recorder's handle behind its own hyper server.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header::{HeaderValue, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::runtime::{PipelineStatus, StageState};

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
    let bind_error = |source| ObserveError::Bind {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    info!(%local_addr, "serving /metrics, /health and /ready");
    let task = tokio::spawn(async move {
        let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = upkeep.tick() => handle.run_upkeep(),
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
                    let handle = handle.clone();
                    let status = status.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request: Request<Incoming>| {
                            let response = respond(&request, &handle, &status);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        if let Err(e) = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                        {
                            debug!(%peer, "metrics connection: {e}");
                        }
                    });
                }
            }
        }
    });
    Ok(ObserveServer { local_addr, task })
}

fn respond<B>(
    request: &Request<B>,
    handle: &PrometheusHandle,
    status: &PipelineStatus,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
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
            "not found: try /metrics, /health or /ready\n".into(),
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

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
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
