//! The mock's WebSocket market streams: the combined-stream endpoint on the REST port
//! (an HTTP upgrade), pings, the incoming-message limit, the lifetime cut-off, and the
//! [`WsCommand`]s tests use to misbehave.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::{body::Incoming, header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::{
    tungstenite::{
        handshake::derive_accept_key,
        protocol::{frame::coding::CloseCode, CloseFrame, Role},
        Message,
    },
    WebSocketStream,
};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{faults::WsConnectionRecord, feed, feed::Tick, Shared, WsCommand};

/// Binance's limit of streams per connection.
pub const MAX_STREAMS: usize = 1024;
/// Longest ping payload a control frame may carry.
const MAX_PING_PAYLOAD: usize = 125;
/// Pings and pongs kept per logged connection.
const MAX_LOGGED_PINGS: usize = 1_000;

/// What every open stream connection receives.
#[derive(Debug, Clone)]
pub(crate) enum Broadcast {
    Tick(Arc<Tick>),
    Command(WsCommand),
}

/// Applies a command: feed commands at once, connection commands through the broadcast.
pub(crate) fn apply(shared: &Shared, command: WsCommand) {
    match command {
        WsCommand::SkipTrades { count } => shared.lock().feed.skip(count),
        WsCommand::Publish { count } => feed::publish(shared, count),
        other => {
            let _ = shared.ws_tx.send(Broadcast::Command(other));
        }
    }
}

/// Whether the request asks for a WebSocket upgrade.
pub(crate) fn is_upgrade(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn refuse(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(
        serde_json::json!({"code": 2, "msg": msg}).to_string(),
    )));
    *response.status_mut() = status;
    response
}

/// The stream names of `/stream?streams=a/b/c`, or why they are refused.
fn parse_streams(path: &str, query: Option<&str>) -> Result<Vec<String>, &'static str> {
    if path != "/stream" {
        return Err("Invalid request: only the combined endpoint /stream is served");
    }
    let list = query
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "streams")
                .map(|(_, v)| v.into_owned())
        })
        .ok_or("Invalid request: missing streams")?;
    let streams: Vec<String> = list
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if streams.is_empty() {
        return Err("Invalid request: missing streams");
    }
    if streams.len() > MAX_STREAMS {
        return Err("Invalid request: too many streams (at most 1024 per connection)");
    }
    Ok(streams)
}

/// Answers the upgrade with 101 and serves the connection on its own task.
pub(crate) fn upgrade(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    shutdown: CancellationToken,
) -> Response<Full<Bytes>> {
    let streams = match parse_streams(request.uri().path(), request.uri().query()) {
        Ok(s) => s,
        Err(msg) => return refuse(StatusCode::BAD_REQUEST, msg),
    };
    let Some(key) = request.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Invalid request: no Sec-WebSocket-Key",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let id = {
        let mut state = shared.lock();
        let id = state.next_ws_id;
        state.next_ws_id += 1;
        state.log_ws_connection(WsConnectionRecord {
            id,
            streams: streams.clone(),
            opened_ms: chrono::Utc::now().timestamp_millis(),
            closed_ms: None,
            close_reason: None,
            pings_sent: Vec::new(),
            pongs_received: Vec::new(),
            incoming_messages: 0,
            frames_sent: 0,
        });
        id
    };
    // Subscribe before answering so that no tick published after the 101 is missed.
    let receiver = shared.ws_tx.subscribe();
    tokio::spawn(async move {
        let reason = match hyper::upgrade::on(request).await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                serve_connection(&shared, id, ws, streams, receiver, shutdown).await
            }
            Err(e) => format!("error: upgrade failed: {e}"),
        };
        debug!(id, reason = %reason, "binance mock: stream connection ended");
        if let Some(record) = shared.lock().ws_connection(id) {
            record.closed_ms = Some(chrono::Utc::now().timestamp_millis());
            record.close_reason = Some(reason);
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(value) = header::HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Counts incoming frames per one-second window.
struct IncomingLimit {
    limit: u32,
    window_start: Instant,
    count: u32,
}

impl IncomingLimit {
    /// Whether one more frame now stays within the limit.
    fn admit(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= self.limit
    }
}

/// The answer to a JSON control message (`SUBSCRIBE`, `LIST_SUBSCRIPTIONS`, ...).
fn control_answer(text: &str, streams: &mut Vec<String>) -> String {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return r#"{"error":{"code":3,"msg":"Invalid JSON"},"id":null}"#.to_string();
    };
    let id = value.get("id").cloned().unwrap_or(serde_json::Value::Null);
    let params: Vec<String> = value
        .get("params")
        .and_then(|p| p.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let result = match value.get("method").and_then(|m| m.as_str()) {
        Some("SUBSCRIBE") => {
            for p in params {
                if !streams.contains(&p) && streams.len() < MAX_STREAMS {
                    streams.push(p);
                }
            }
            serde_json::Value::Null
        }
        Some("UNSUBSCRIBE") => {
            streams.retain(|s| !params.contains(s));
            serde_json::Value::Null
        }
        Some("LIST_SUBSCRIPTIONS") => serde_json::json!(streams),
        _ => {
            return serde_json::json!({"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": id})
                .to_string()
        }
    };
    serde_json::json!({"result": result, "id": id}).to_string()
}

/// Serves one connection until it ends; returns why.
async fn serve_connection(
    shared: &Shared,
    id: u64,
    ws: Ws,
    mut streams: Vec<String>,
    mut receiver: tokio::sync::broadcast::Receiver<Broadcast>,
    shutdown: CancellationToken,
) -> String {
    let config = &shared.config;
    let (mut sink, mut incoming) = ws.split();
    let lifetime = tokio::time::sleep(config.ws_max_lifetime);
    tokio::pin!(lifetime);
    let start = tokio::time::Instant::now() + config.ws_ping_interval;
    let mut ping_timer = tokio::time::interval_at(start, config.ws_ping_interval);
    let mut unanswered_since: Option<Instant> = None;
    let mut limit = IncomingLimit {
        limit: config.ws_max_incoming_per_second,
        window_start: Instant::now(),
        count: 0,
    };
    let log = |f: &dyn Fn(&mut WsConnectionRecord)| {
        if let Some(record) = shared.lock().ws_connection(id) {
            f(record);
        }
    };
    let ping = |payload: String| {
        log(&|r| {
            if r.pings_sent.len() < MAX_LOGGED_PINGS {
                r.pings_sent.push(payload.clone());
            }
        });
        Message::Ping(Bytes::from(payload.into_bytes()))
    };
    loop {
        let outgoing: Vec<Message> = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: "server shutdown".into() }))).await;
                return "shutdown".into();
            }
            _ = &mut lifetime => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "connection lifetime reached".into() }))).await;
                return "lifetime".into();
            }
            _ = ping_timer.tick() => {
                if unanswered_since.is_some_and(|t| t.elapsed() >= config.ws_pong_timeout) {
                    return "pong_timeout".into();
                }
                unanswered_since.get_or_insert_with(Instant::now);
                vec![ping(chrono::Utc::now().timestamp_millis().to_string())]
            }
            received = receiver.recv() => match received {
                Ok(Broadcast::Tick(tick)) => tick
                    .events
                    .iter()
                    .filter(|(name, _)| streams.contains(name))
                    .map(|(name, data)| Message::text(format!(r#"{{"stream":"{name}","data":{data}}}"#)))
                    .collect(),
                Ok(Broadcast::Command(WsCommand::Disconnect)) => return "disconnect_command".into(),
                Ok(Broadcast::Command(WsCommand::Malformed { text })) => vec![Message::text(text)],
                Ok(Broadcast::Command(WsCommand::Ping { mut payload })) => {
                    let mut cut = payload.len().min(MAX_PING_PAYLOAD);
                    while !payload.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    payload.truncate(cut);
                    unanswered_since.get_or_insert_with(Instant::now);
                    vec![ping(payload)]
                }
                Ok(Broadcast::Command(WsCommand::ServerShutdown)) => {
                    let now = chrono::Utc::now().timestamp_millis();
                    vec![Message::text(format!(r#"{{"stream":"!serverShutdown","data":{{"e":"serverShutdown","E":{now}}}}}"#))]
                }
                Ok(Broadcast::Command(_)) => Vec::new(),
                Err(RecvError::Lagged(_)) => return "slow_client".into(),
                Err(RecvError::Closed) => return "shutdown".into(),
            },
            frame = incoming.next() => {
                let message = match frame {
                    None => return "client_gone".into(),
                    Some(Err(e)) => return format!("error: {e}"),
                    Some(Ok(message)) => message,
                };
                log(&|r| r.incoming_messages += 1);
                if !limit.admit(Instant::now()) {
                    // Binance disconnects a client that sends too much, without a word.
                    return "rate_limit".into();
                }
                match message {
                    Message::Pong(payload) => {
                        unanswered_since = None;
                        let text = String::from_utf8_lossy(&payload).into_owned();
                        log(&|r| {
                            if r.pongs_received.len() < MAX_LOGGED_PINGS {
                                r.pongs_received.push(text.clone());
                            }
                        });
                        Vec::new()
                    }
                    Message::Text(text) => vec![Message::text(control_answer(text.as_str(), &mut streams))],
                    Message::Close(_) => {
                        // Answer the close handshake, then end.
                        let _ = sink.close().await;
                        return "client_close".into();
                    }
                    _ => Vec::new(),
                }
            }
        };
        let sent = outgoing.len() as u64;
        for message in outgoing {
            if let Err(e) = sink.feed(message).await {
                return format!("error: {e}");
            }
        }
        if sent > 0 {
            if let Err(e) = sink.flush().await {
                return format!("error: {e}");
            }
            log(&|r| r.frames_sent += sent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_stream_paths_are_parsed_and_limited() {
        assert_eq!(
            parse_streams("/stream", Some("streams=btcusdt@trade/ethusdt@aggTrade")).unwrap(),
            ["btcusdt@trade", "ethusdt@aggTrade"]
        );
        assert!(parse_streams("/ws", Some("streams=btcusdt@trade")).is_err());
        assert!(parse_streams("/stream", Some("streams=")).is_err());
        let many: Vec<String> = (0..1025).map(|i| format!("s{i}@trade")).collect();
        let query = format!("streams={}", many.join("/"));
        assert!(parse_streams("/stream", Some(&query)).is_err());
    }

    #[test]
    fn the_sixth_incoming_frame_within_a_second_is_over_the_limit() {
        let t0 = Instant::now();
        let mut limit = IncomingLimit {
            limit: 5,
            window_start: t0,
            count: 0,
        };
        for _ in 0..5 {
            assert!(limit.admit(t0));
        }
        assert!(!limit.admit(t0 + Duration::from_millis(500)));
        assert!(limit.admit(t0 + Duration::from_millis(1_000)));
    }

    #[test]
    fn control_messages_are_answered_like_binance() {
        let mut streams = vec!["btcusdt@trade".to_string()];
        let answer = control_answer(
            r#"{"method":"SUBSCRIBE","params":["ethusdt@trade"],"id":1}"#,
            &mut streams,
        );
        // Compared as JSON: the key order depends on serde_json's features, which the
        // workspace unifies (`preserve_order`).
        let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).expect("JSON");
        assert_eq!(json(&answer), json(r#"{"id":1,"result":null}"#));
        let answer = control_answer(r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#, &mut streams);
        assert_eq!(
            json(&answer),
            json(r#"{"id":3,"result":["btcusdt@trade","ethusdt@trade"]}"#)
        );
        assert!(control_answer(r#"{"method":"NOPE","id":2}"#, &mut streams).contains("\"code\":2"));
    }
}
