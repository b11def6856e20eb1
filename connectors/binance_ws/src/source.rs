//! The source loop: one live connection, a second one during a rotation, reconnects with
//! backoff, de-duplication and gap counting by id, graceful stop.

use std::{collections::VecDeque, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use async_trait::async_trait;
use framework::{
    connector::StageContext,
    metrics::RateLimitedLog,
    retry::{Retry, RetryPolicy},
    ConnectorError, Source, SourceContext, SourceEnd,
};
use futures::FutureExt;
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    config::BinanceWsConfig,
    connection::{self, Event, Report, Settings},
    event::{parse_frame, reason, Frame, StreamInfo, Streams},
    sequence::{Sequences, Verdict},
    stats::WsStats,
};

/// Reports the connection tasks may queue before they wait (TCP then holds the rest).
const QUEUE_CAPACITY: usize = 256;
/// Repeated warnings of one kind are logged at most this often.
const WARN_PERIOD: Duration = Duration::from_secs(10);
/// How long `run` waits for the connection tasks to close after a stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A running `binance_ws` source.
pub struct BinanceWsSource {
    config: BinanceWsConfig,
    stage: String,
    streams: Streams,
    urls: Vec<String>,
    settings: Settings,
    stats: Arc<WsStats>,
    retry_policy: RetryPolicy,
    /// The stage's `pipeline_source_retries_total` (a no-op outside the runtime).
    retries_total: metrics::Counter,
}

/// Signals that shutdown was requested while emitting.
struct Stopped;

/// A connection task.
struct Link {
    id: u64,
    stop: CancellationToken,
    task: JoinHandle<()>,
    connected_at: Option<Instant>,
}

/// The replacement connection of a rotation, and what it received while the old one
/// still delivered.
struct Pending {
    link: Link,
    /// Frames held back, at most `max_buffered_messages`.
    buffer: VecDeque<(String, i64)>,
    /// The first id the new connection saw on each stream.
    first_ids: Vec<Option<u64>>,
    /// When the old connection is closed even without proven overlap.
    deadline: Option<Instant>,
}

/// Mutable state of one run.
struct Run {
    tx: mpsc::Sender<Report>,
    next_id: u64,
    base: usize,
    active: Option<Link>,
    pending: Option<Pending>,
    /// When the next rotation starts (set once the active connection is open).
    rotate_at: Option<Instant>,
    /// Consecutive failed connections and their backoff.
    retry: Retry,
    sequences: Sequences,
    /// Gap warnings (rejections are logged by the runtime).
    log: RateLimitedLog,
}

impl BinanceWsSource {
    /// Builds a source; refuses configs that fail [`ConnectorConfig::check`].
    pub fn new(config: BinanceWsConfig, stage: &str) -> Result<Self, ConnectorError> {
        framework::connector::require_valid(&config)?;
        let context = StageContext {
            pipeline: String::new(),
            stage: stage.to_string(),
            connector: <crate::BinanceWs as framework::connector::SourceConnector>::NAME,
        };
        Self::from_checked(config, &context)
    }

    /// Builds a source from a config the registry already checked; its reconnections
    /// count in `retries_total`.
    pub(crate) fn from_checked(
        config: BinanceWsConfig,
        context: &StageContext,
    ) -> Result<Self, ConnectorError> {
        let stage = context.stage.as_str();
        let retries_total = context.counter(framework::retry::SOURCE_RETRIES_METRIC, &[]);
        let retry_policy = RetryPolicy::from_specs(config.backoff_initial, config.backoff_max)
            .map_err(|e| ConnectorError::Config(format!("backoff: {e}")))?;
        let names = config.stream_names();
        let query: Vec<&str> = names.iter().map(|(n, _, _)| n.as_str()).collect();
        let query = query.join("/");
        let urls = config
            .base_urls
            .iter()
            .map(|base| format!("{}/stream?streams={query}", base.trim_end_matches('/')))
            .collect();
        let streams = Streams::new(
            names
                .into_iter()
                .map(|(name, symbol, kind)| StreamInfo { name, symbol, kind })
                .collect(),
        );
        let tls = Settings::tls_config()
            .map_err(|e| ConnectorError::Fatal(format!("cannot set up TLS: {e}")))?;
        let settings = Settings {
            connect_timeout: config.connect_timeout.as_std(),
            idle_timeout: config.idle_timeout.as_std(),
            max_message_bytes: usize::try_from(config.max_message_bytes).unwrap_or(usize::MAX),
            tls,
        };
        Ok(BinanceWsSource {
            stats: Arc::new(WsStats::new(context)),
            stage: stage.to_string(),
            streams,
            urls,
            settings,
            config,
            retry_policy,
            retries_total,
        })
    }

    /// Live counters (connections, rotations, records, duplicates, gaps, rejections).
    pub fn stats(&self) -> Arc<WsStats> {
        Arc::clone(&self.stats)
    }

    /// The URL of base `base`, e.g. `wss://stream.binance.com:9443/stream?streams=btcusdt@trade`.
    pub fn url(&self, base: usize) -> &str {
        &self.urls[base % self.urls.len()]
    }

    fn spawn(&self, run: &mut Run, delay: Duration) -> Link {
        let id = run.next_id;
        run.next_id += 1;
        let stop = CancellationToken::new();
        let tx = run.tx.clone();
        let connection = connection::run(
            id,
            self.url(run.base).to_string(),
            delay,
            self.settings.clone(),
            tx.clone(),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            // A panic inside the WebSocket layer must not leave the source waiting forever.
            if let Err(panic) = AssertUnwindSafe(connection).catch_unwind().await {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let event = Event::Ended(format!("connection task panicked: {what}"));
                let _ = tx.send(Report { conn: id, event }).await;
            }
        });
        Link {
            id,
            stop,
            task,
            connected_at: None,
        }
    }

    /// Replaces a lost active connection: at once with the pending one when it is open,
    /// otherwise a new attempt after backoff (on the next base URL if this one failed).
    fn replace_active(&self, run: &mut Run, failed_to_connect: bool) {
        if let Some(pending) = run.pending.take() {
            if pending.link.connected_at.is_some() {
                run.pending = Some(pending);
                return;
            }
            pending.link.stop.cancel();
        }
        let delay = run.retry.next_delay();
        if failed_to_connect {
            run.base = (run.base + 1) % self.urls.len();
        }
        run.rotate_at = None;
        run.active = Some(self.spawn(run, delay));
        info!(stage = %self.stage, retry_in_ms = delay.as_millis() as u64, url = %self.url(run.base),
              consecutive_failures = run.retry.failures(), "binance_ws reconnecting");
    }

    async fn reject(
        &self,
        ctx: &mut SourceContext,
        reason: &'static str,
        detail: String,
        payload: Vec<u8>,
    ) -> Result<Result<(), Stopped>, ConnectorError> {
        self.stats.rejected(reason);
        let shutdown = ctx.shutdown().clone();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => Ok(Err(Stopped)),
            sent = ctx.reject(reason, detail, payload) => sent.map(Ok),
        }
    }

    /// Emits, drops or rejects one text frame of the connection whose records count.
    async fn process(
        &self,
        ctx: &mut SourceContext,
        run: &mut Run,
        text: String,
        received_ms: i64,
    ) -> Result<Result<(), Stopped>, ConnectorError> {
        match parse_frame(&text, &self.streams, received_ms) {
            Ok(Frame::Record(r)) => match run.sequences.observe(r.stream, r.id) {
                Verdict::Duplicate => self.stats.duplicate(),
                Verdict::New { missed } => {
                    run.retry.succeeded();
                    if missed > 0 {
                        self.stats.gap(missed);
                        if let Some(held_back) = run.log.allow("gap") {
                            warn!(stage = %self.stage, stream = %self.streams.list[r.stream].name,
                                  missed_ids = missed, before_id = r.id, similar_suppressed = held_back,
                                  "binance_ws gap in consecutive ids: trades were missed");
                        }
                    }
                    let shutdown = ctx.shutdown().clone();
                    let sent = tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Ok(Err(Stopped)),
                        sent = ctx.emit(r.record) => sent,
                    };
                    sent?;
                    self.stats.record();
                }
            },
            Ok(Frame::ServerShutdown) => {
                info!(stage = %self.stage, "binance_ws: serverShutdown notice, rotating the connection now");
                if run.pending.is_none() {
                    run.rotate_at = Some(Instant::now());
                }
            }
            Ok(Frame::ControlAnswer(answer)) => {
                debug!(stage = %self.stage, %answer, "binance_ws control answer")
            }
            Err(refusal) => {
                return self
                    .reject(ctx, refusal.reason, refusal.detail, text.into_bytes())
                    .await;
            }
        }
        Ok(Ok(()))
    }

    /// Closes the old connection and continues with the pending one, first emitting what
    /// it held back (ids already emitted are dropped).
    async fn hand_over(
        &self,
        ctx: &mut SourceContext,
        run: &mut Run,
    ) -> Result<Result<(), Stopped>, ConnectorError> {
        let Some(mut pending) = run.pending.take() else {
            return Ok(Ok(()));
        };
        if let Some(old) = run.active.take() {
            old.stop.cancel();
        }
        self.stats.rotated();
        let connected_at = pending.link.connected_at.unwrap_or_else(Instant::now);
        run.rotate_at = Some(connected_at + self.config.rotate_after.as_std());
        info!(stage = %self.stage, connection = pending.link.id, held_back = pending.buffer.len(),
              "binance_ws rotation: switched to the new connection");
        run.active = Some(pending.link);
        while let Some((text, received_ms)) = pending.buffer.pop_front() {
            if let Err(Stopped) = self.process(ctx, run, text, received_ms).await? {
                return Ok(Err(Stopped));
            }
        }
        Ok(Ok(()))
    }

    /// Whether the pending connection has proven it holds everything after what was
    /// emitted, on every stream.
    fn overlap_proven(&self, run: &Run) -> bool {
        run.pending.as_ref().is_some_and(|p| {
            p.link.connected_at.is_some()
                && (0..run.sequences.len()).all(|s| run.sequences.covered_by(s, p.first_ids[s]))
        })
    }

    /// Handles one report of a connection task.
    async fn on_report(
        &self,
        ctx: &mut SourceContext,
        run: &mut Run,
        report: Report,
    ) -> Result<Result<(), Stopped>, ConnectorError> {
        let is_active = run.active.as_ref().is_some_and(|l| l.id == report.conn);
        let is_pending = run
            .pending
            .as_ref()
            .is_some_and(|p| p.link.id == report.conn);
        if !is_active && !is_pending {
            // A connection already replaced: what it still delivers is covered by the new one.
            return Ok(Ok(()));
        }
        match report.event {
            Event::Connected => {
                self.stats.connected();
                let now = Instant::now();
                info!(stage = %self.stage, connection = report.conn, url = %self.url(run.base),
                      role = if is_active { "active" } else { "rotation" }, "binance_ws connected");
                if is_active {
                    if let Some(link) = run.active.as_mut() {
                        link.connected_at = Some(now);
                    }
                    run.rotate_at = Some(now + self.config.rotate_after.as_std());
                } else if let Some(p) = run.pending.as_mut() {
                    p.link.connected_at = Some(now);
                    p.deadline = Some(now + self.config.max_overlap.as_std());
                }
            }
            Event::Ping => self.stats.ping(),
            Event::Text(text, received_ms) => {
                if is_active {
                    return self.process(ctx, run, text, received_ms).await;
                }
                let Some(p) = run.pending.as_mut() else {
                    return Ok(Ok(()));
                };
                if let Ok(Frame::Record(r)) = parse_frame(&text, &self.streams, received_ms) {
                    p.first_ids[r.stream].get_or_insert(r.id);
                }
                p.buffer.push_back((text, received_ms));
                if p.buffer.len() >= self.config.max_buffered_messages as usize {
                    warn!(stage = %self.stage, held_back = p.buffer.len(),
                          "binance_ws rotation: max_buffered_messages reached, switching now");
                    return self.hand_over(ctx, run).await;
                }
            }
            Event::Binary(len) => {
                return self
                    .reject(
                        ctx,
                        reason::BINARY_FRAME,
                        format!("binary frame of {len} bytes"),
                        Vec::new(),
                    )
                    .await;
            }
            Event::Oversized(detail) => {
                let detail = format!(
                    "{detail} (max_message_bytes {})",
                    self.config.max_message_bytes
                );
                return self
                    .reject(ctx, reason::OVERSIZED_MESSAGE, detail, Vec::new())
                    .await;
            }
            Event::Failed(why) | Event::Ended(why) if is_pending => {
                self.stats.connect_failed();
                warn!(stage = %self.stage, error = %why, "binance_ws rotation: the new connection failed; keeping the current one");
                run.pending = None;
                run.rotate_at = Some(Instant::now() + run.retry.next_delay());
            }
            Event::Failed(why) => {
                self.stats.connect_failed();
                warn!(stage = %self.stage, error = %why, url = %self.url(run.base), "binance_ws connection attempt failed");
                self.replace_active(run, true);
            }
            Event::Ended(why) => {
                self.stats.disconnected();
                warn!(stage = %self.stage, reason = %why, "binance_ws connection lost");
                run.active = None;
                self.replace_active(run, false);
                if run.active.is_none() {
                    // The rotation's connection is open: it becomes the active one.
                    return self.hand_over(ctx, run).await;
                }
            }
        }
        if is_pending && self.overlap_proven(run) {
            return self.hand_over(ctx, run).await;
        }
        Ok(Ok(()))
    }

    async fn run_loop(&mut self, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        let shutdown = ctx.shutdown().clone();
        let (tx, mut rx) = mpsc::channel(QUEUE_CAPACITY);
        let consecutive = self
            .streams
            .list
            .iter()
            .map(|s| s.kind.has_consecutive_ids())
            .collect();
        let mut run = Run {
            tx,
            next_id: 1,
            base: 0,
            active: None,
            pending: None,
            rotate_at: None,
            retry: Retry::new(self.retry_policy, self.retries_total.clone()),
            sequences: Sequences::new(consecutive),
            log: RateLimitedLog::new(WARN_PERIOD),
        };
        run.active = Some(self.spawn(&mut run, Duration::ZERO));
        let result = loop {
            let rotate_at = run.rotate_at.filter(|_| run.pending.is_none());
            let deadline = run.pending.as_ref().and_then(|p| p.deadline);
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                report = rx.recv() => match report {
                    Some(report) => self.on_report(ctx, &mut run, report).await,
                    None => break Ok(()),
                },
                _ = sleep_until(rotate_at) => {
                    run.rotate_at = None;
                    let link = self.spawn(&mut run, Duration::ZERO);
                    info!(stage = %self.stage, connection = link.id, "binance_ws rotation: opening the new connection");
                    run.pending = Some(Pending {
                        link,
                        buffer: VecDeque::new(),
                        first_ids: vec![None; run.sequences.len()],
                        deadline: None,
                    });
                    Ok(Ok(()))
                }
                _ = sleep_until(deadline) => {
                    debug!(stage = %self.stage, "binance_ws rotation: max_overlap reached");
                    self.hand_over(ctx, &mut run).await
                }
            };
            match step {
                Ok(Ok(())) => {}
                Ok(Err(Stopped)) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Stop: every connection sends its close frame; wait for them, bounded.
        let links: Vec<Link> = run
            .active
            .take()
            .into_iter()
            .chain(run.pending.take().map(|p| p.link))
            .collect();
        for link in &links {
            link.stop.cancel();
        }
        drop(run);
        let _ = tokio::time::timeout(STOP_TIMEOUT, async {
            for link in links {
                let _ = link.task.await;
            }
        })
        .await;
        result
    }
}

/// Sleeps until `at`, or forever when `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl Source for BinanceWsSource {
    async fn run(&mut self, ctx: &mut SourceContext) -> Result<SourceEnd, ConnectorError> {
        info!(stage = %self.stage, streams = self.streams.list.len(), url = %self.url(0),
              rotate_after = %self.config.rotate_after, "binance_ws source starting");
        let result = self.run_loop(ctx).await;
        let s = self.stats.snapshot();
        info!(stage = %self.stage, records = s.records, connections = s.connections,
              rotations = s.rotations, disconnects = s.disconnects, connect_failures = s.connect_failures,
              duplicates = s.duplicates, gaps = s.gaps, missed_ids = s.missed_ids, rejected = ?s.rejected,
              "binance_ws source stopped");
        result.map(|()| SourceEnd::Stopped)
    }
}
