//! The HTTP server: REST answers, WebSocket upgrades and the `/__mock/...` control
//! endpoints.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    body::Incoming, header, server::conn::http1, service::service_fn, Method, Request, Response,
    StatusCode,
};
use hyper_util::rt::TokioIo;
use serde::{de::DeserializeOwned, Deserialize};
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{
    faults::{FaultStep, RequestRecord, WsCommand, WsConnectionRecord},
    rest::{plan_api_reply, Reply},
    ws, Shared,
};

const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

pub(crate) fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
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
            let steps: Vec<FaultStep> = match read_one_or_many(
                request,
                "a fault step or an array of them, e.g. {\"kind\":\"server_error\",\"times\":3}",
            )
            .await
            {
                Ok(steps) => steps,
                Err(response) => return response,
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
        (&Method::POST, "/__mock/ws") => {
            let commands: Vec<WsCommand> = match read_one_or_many(
                request,
                "a stream command or an array of them, e.g. {\"kind\":\"disconnect\"}",
            )
            .await
            {
                Ok(commands) => commands,
                Err(response) => return response,
            };
            for command in commands {
                ws::apply(shared, command);
            }
            json_response(StatusCode::OK, "{}".into())
        }
        (&Method::GET, "/__mock/ws/connections") => {
            let connections: Vec<WsConnectionRecord> =
                shared.lock().ws_connections.iter().cloned().collect();
            to_json(serde_json::to_string(&connections))
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
    shutdown: CancellationToken,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.uri().path().starts_with("/__mock/") {
        return control(&shared, request).await;
    }
    if ws::is_upgrade(&request) {
        return ws::upgrade(shared, request, shutdown);
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

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
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
            let service_shutdown = shutdown.clone();
            let service = service_fn(move |request| {
                let shared = Arc::clone(&shared);
                let kill = Arc::clone(&service_kill);
                let shutdown = service_shutdown.clone();
                async move { Ok::<_, Infallible>(handle(shared, kill, shutdown, request).await) }
            });
            // Upgrades hand the socket to a stream task, which outlives this future.
            let connection = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
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

/// A JSON body holding one `T` or an array of them; a 400 answer when it is not.
async fn read_one_or_many<T: DeserializeOwned>(
    request: Request<Incoming>,
    expected: &str,
) -> Result<Vec<T>, Response<Full<Bytes>>> {
    let bad = |text: String| {
        json_response(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": text }).to_string(),
        )
    };
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Err(bad(format!("cannot read body: {e}"))),
    };
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    match serde_json::from_slice::<OneOrMany<T>>(&body) {
        Ok(OneOrMany::One(item)) => Ok(vec![item]),
        Ok(OneOrMany::Many(items)) => Ok(items),
        Err(e) => Err(bad(format!("expected {expected}: {e}"))),
    }
}
