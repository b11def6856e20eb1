//! One WebSocket connection on its own task: connect, read frames into the source's
//! bounded queue, let tungstenite answer pings (same payload), refuse oversized messages,
//! and close with a close frame when told to stop.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::{
    connect_async_tls_with_config,
    tungstenite::{
        protocol::{frame::coding::CloseCode, CloseFrame, WebSocketConfig},
        Error as WsError, Message,
    },
    Connector,
};
use tokio_util::sync::CancellationToken;

/// Binance's limit on messages a client sends per second (pongs and close included).
pub const MAX_OUTGOING_PER_SECOND: u32 = 5;
/// Longest wait for the server's answer to our close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a connection reports, tagged with its id.
#[derive(Debug)]
pub(crate) struct Report {
    pub conn: u64,
    pub event: Event,
}

#[derive(Debug)]
pub(crate) enum Event {
    /// The handshake is done: frames follow.
    Connected,
    /// A text frame and when it arrived (epoch ms).
    Text(String, i64),
    /// A binary frame of this many bytes (its content is not kept).
    Binary(usize),
    /// A ping (answered by the WebSocket layer with the same payload).
    Ping,
    /// A message over the size limit; the connection ends after it.
    Oversized(String),
    /// The attempt failed before the handshake completed.
    Failed(String),
    /// An open connection ended (the reason, for the log).
    Ended(String),
}

/// Settings of every connection of one source.
#[derive(Clone)]
pub(crate) struct Settings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_message_bytes: usize,
    pub tls: Arc<rustls::ClientConfig>,
}

impl Settings {
    /// TLS with the ring provider and the webpki roots, as reqwest does, so no other
    /// crypto provider has to be installed process-wide.
    pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Arc::new(config))
    }

    fn ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
            // We send pongs and one close frame at most: write at once, and bound what
            // may queue if the server stops reading.
            .write_buffer_size(0)
            .max_write_buffer_size(64 * 1024)
    }
}

/// Counts the frames we send per one-second window, so that pongs never exceed Binance's
/// limit of 5 incoming messages per second (one slot stays free for a close frame).
#[derive(Debug)]
pub(crate) struct OutgoingBudget {
    window_start: Instant,
    sent: u32,
}

impl OutgoingBudget {
    pub fn new(now: Instant) -> OutgoingBudget {
        OutgoingBudget {
            window_start: now,
            sent: 0,
        }
    }

    /// Takes one slot for a pong; `false` when the window's pongs are used up.
    pub fn take_pong(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.sent = 0;
        }
        if self.sent + 1 >= MAX_OUTGOING_PER_SECOND {
            return false;
        }
        self.sent += 1;
        true
    }
}

async fn report(
    tx: &mpsc::Sender<Report>,
    stop: &CancellationToken,
    conn: u64,
    event: Event,
) -> bool {
    tokio::select! {
        biased;
        _ = stop.cancelled() => false,
        sent = tx.send(Report { conn, event }) => sent.is_ok(),
    }
}

/// Runs connection `conn` to `url` after `delay`, until it ends or `stop` is cancelled.
pub(crate) async fn run(
    conn: u64,
    url: String,
    delay: Duration,
    settings: Settings,
    tx: mpsc::Sender<Report>,
    stop: CancellationToken,
) {
    if !delay.is_zero() {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    let attempt = connect_async_tls_with_config(
        url.as_str(),
        Some(settings.ws_config()),
        true,
        Some(Connector::Rustls(Arc::clone(&settings.tls))),
    );
    let ws = tokio::select! {
        _ = stop.cancelled() => return,
        result = tokio::time::timeout(settings.connect_timeout, attempt) => match result {
            Ok(Ok((ws, _response))) => ws,
            Ok(Err(e)) => {
                report(&tx, &stop, conn, Event::Failed(e.to_string())).await;
                return;
            }
            Err(_) => {
                let why = format!("no handshake within connect_timeout ({:?})", settings.connect_timeout);
                report(&tx, &stop, conn, Event::Failed(why)).await;
                return;
            }
        },
    };
    if !report(&tx, &stop, conn, Event::Connected).await {
        return;
    }
    let (mut sink, mut frames) = ws.split();
    let mut budget = OutgoingBudget::new(Instant::now());
    let mut closing: Option<String> = None;
    let ended = loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => {
                // Graceful: a close frame, then wait briefly for the server's answer.
                let frame = CloseFrame { code: CloseCode::Normal, reason: "client stopping".into() };
                if sink.send(Message::Close(Some(frame))).await.is_ok() {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                        while let Some(Ok(_)) = frames.next().await {}
                    })
                    .await;
                }
                return;
            }
            next = tokio::time::timeout(settings.idle_timeout, frames.next()) => next,
        };
        let message = match next {
            Err(_) => break format!("no frame for idle_timeout ({:?})", settings.idle_timeout),
            Ok(None) => break closing.unwrap_or_else(|| "connection closed".into()),
            Ok(Some(Err(WsError::Capacity(e)))) => {
                report(&tx, &stop, conn, Event::Oversized(e.to_string())).await;
                break format!("message over max_message_bytes: {e}");
            }
            Ok(Some(Err(e))) => break closing.unwrap_or_else(|| e.to_string()),
            Ok(Some(Ok(message))) => message,
        };
        let event = match message {
            Message::Text(text) => Event::Text(
                text.as_str().to_owned(),
                chrono::Utc::now().timestamp_millis(),
            ),
            Message::Binary(bytes) => Event::Binary(bytes.len()),
            Message::Ping(_) => {
                if !budget.take_pong(Instant::now()) {
                    // Answering would break the 5 messages/s limit (and get us banned):
                    // drop the connection without a word and reconnect instead.
                    break "more than 4 pings within one second: dropped rather than exceed 5 outgoing messages/s".into();
                }
                Event::Ping
            }
            Message::Close(frame) => {
                // tungstenite answers the close; the next read ends the stream.
                closing = Some(match frame {
                    Some(f) => format!("closed by the server ({} {})", u16::from(f.code), f.reason),
                    None => "closed by the server".into(),
                });
                continue;
            }
            Message::Pong(_) | Message::Frame(_) => continue,
        };
        if !report(&tx, &stop, conn, event).await {
            return;
        }
    };
    report(&tx, &stop, conn, Event::Ended(ended)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_four_pongs_leave_room_for_a_close_within_five_messages_per_second() {
        let t0 = Instant::now();
        let mut budget = OutgoingBudget::new(t0);
        for _ in 0..4 {
            assert!(budget.take_pong(t0));
        }
        assert!(!budget.take_pong(t0 + Duration::from_millis(900)));
        assert!(budget.take_pong(t0 + Duration::from_secs(1)));
    }
}
