//! The fetch loop: fixed schedule, validation, retries, rate limits, graceful stop.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use framework::{
    connector::StageContext,
    metrics::RateLimitedLog,
    retry::{Retry, RetryPolicy},
    ConnectorError, OutputRecord, Source, SourceContext, SourceEnd,
};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    client::{Answer, FetchError, PriceClient, WEIGHT_LIMIT_PER_MINUTE},
    config::BinanceConfig,
    response::{parse_ticker_prices, price_record, reason, ApiError},
    stats::{SourceStats, StatsSnapshot},
};

/// Repeated warnings of one kind are logged at most this often.
const WARN_PERIOD: Duration = Duration::from_secs(10);
/// Used weight above this share of the per-minute limit is worth a warning.
const WEIGHT_WARN_RATIO: f64 = 0.8;
/// Wait after a 429 without a usable `Retry-After`: the weight window is one minute.
const DEFAULT_RETRY_AFTER_429: Duration = Duration::from_secs(60);
/// Wait after a 418 without a usable `Retry-After`: bans last at least two minutes.
const DEFAULT_RETRY_AFTER_418: Duration = Duration::from_secs(120);

/// A running `binance` source.
pub struct BinanceSource {
    config: BinanceConfig,
    client: PriceClient,
    stats: Arc<SourceStats>,
    stage: String,
    retry_policy: RetryPolicy,
    /// The stage's `pipeline_source_retries_total` (a no-op outside the runtime).
    retries_total: metrics::Counter,
}

/// What the loop does after one request.
enum Next {
    /// Wait for the next slot of the schedule.
    OnSchedule,
    /// Suspend the schedule for this long, then restart it (no catch-up burst).
    Pause(Duration),
}

/// Signals that shutdown was requested while waiting.
struct Stopped;

/// Mutable state of one run.
struct LoopState {
    /// Whether Binance has answered 200 once: before that, a 400 means the config is wrong.
    confirmed: bool,
    /// Consecutive failed requests and their backoff.
    retry: Retry,
    /// Failure and weight warnings (rejections are logged by the runtime).
    log: RateLimitedLog,
}

impl BinanceSource {
    /// Builds a source from a config; refuses configs that fail [`ConnectorConfig::check`].
    pub fn new(config: BinanceConfig, stage: &str) -> Result<Self, ConnectorError> {
        framework::connector::require_valid(&config)?;
        Self::from_checked(config, stage)
    }

    /// Builds a source from a config the registry already checked.
    fn from_checked(config: BinanceConfig, stage: &str) -> Result<Self, ConnectorError> {
        let client = PriceClient::new(&config)?;
        let retry_policy = RetryPolicy::from_specs(config.backoff_initial, config.backoff_max)
            .map_err(|e| ConnectorError::Config(format!("backoff: {e}")))?;
        Ok(BinanceSource {
            config,
            client,
            stats: Arc::new(SourceStats::default()),
            stage: stage.to_string(),
            retry_policy,
            retries_total: metrics::Counter::noop(),
        })
    }

    pub(crate) fn from_stage(
        config: BinanceConfig,
        stage: &StageContext,
    ) -> Result<Self, ConnectorError> {
        let mut source = Self::from_checked(config, &stage.stage)?;
        source.retries_total = stage.counter(framework::retry::SOURCE_RETRIES_METRIC, &[]);
        source.stats = Arc::new(SourceStats::exported(stage));
        Ok(source)
    }

    /// Live counters (requests, records, rejections by reason, retries, rate-limit waits).
    pub fn stats(&self) -> Arc<SourceStats> {
        Arc::clone(&self.stats)
    }

    async fn emit(
        ctx: &mut SourceContext,
        shutdown: &CancellationToken,
        record: OutputRecord,
    ) -> Result<Result<(), Stopped>, ConnectorError> {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => Ok(Err(Stopped)),
            sent = ctx.emit(record) => sent.map(Ok),
        }
    }

    async fn reject(
        &self,
        ctx: &mut SourceContext,
        shutdown: &CancellationToken,
        reason: &'static str,
        detail: String,
        payload: Vec<u8>,
    ) -> Result<Result<(), Stopped>, ConnectorError> {
        self.stats.rejected(reason);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => Ok(Err(Stopped)),
            sent = ctx.reject(reason, detail, payload) => sent.map(Ok),
        }
    }

    fn log_weight(&self, state: &mut LoopState, used: Option<u64>) {
        let Some(used) = used else { return };
        if used as f64 > WEIGHT_LIMIT_PER_MINUTE as f64 * WEIGHT_WARN_RATIO {
            if let Some(held_back) = state.log.allow("weight") {
                warn!(
                    stage = %self.stage,
                    used_weight_1m = used,
                    limit = WEIGHT_LIMIT_PER_MINUTE,
                    similar_suppressed = held_back,
                    "binance request weight above 80% of the per-minute limit"
                );
            }
        } else {
            debug!(stage = %self.stage, used_weight_1m = used, "binance used weight");
        }
    }

    /// A request failed transiently (network, timeout, 5xx, unexpected 4xx): count it,
    /// rotate base URL after repeated failures, and return the backoff.
    fn failed(&mut self, state: &mut LoopState, what: &str) -> Next {
        let delay = state.retry.next_delay();
        let failures = state.retry.failures();
        self.stats.retry();
        let mut rotated_to = None;
        if self.client.base_count() > 1 && failures % self.config.failures_before_rotate == 0 {
            rotated_to = Some(self.client.rotate().to_string());
            self.stats.rotation();
        }
        if let Some(held_back) = state.log.allow("failure") {
            warn!(
                stage = %self.stage,
                error = %what,
                consecutive_failures = failures,
                retry_in_ms = delay.as_millis() as u64,
                similar_suppressed = held_back,
                "binance request failed; retrying with backoff"
            );
        }
        if let Some(base) = rotated_to {
            warn!(stage = %self.stage, base_url = %base, consecutive_failures = failures,
                  "switching to the next Binance base URL");
        }
        Next::Pause(delay)
    }

    /// Turns a 400 before the first success into a fatal error naming the refused symbol
    /// (with several symbols, each is asked for alone to find the culprit).
    async fn symbol_error(&self, first: ApiError, shutdown: &CancellationToken) -> ConnectorError {
        let mut culprits: Vec<(String, ApiError)> = Vec::new();
        if let [only] = self.client.symbols() {
            culprits.push((only.clone(), first.clone()));
        } else {
            for symbol in self.client.symbols() {
                let answer = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    a = self.client.fetch_one(symbol) => a,
                };
                if let Ok(answer) = answer {
                    if answer.status == StatusCode::BAD_REQUEST {
                        if let Some(e) = ApiError::parse(&answer.body) {
                            culprits.push((symbol.clone(), e));
                        }
                    }
                }
            }
        }
        if culprits.is_empty() {
            return ConnectorError::Fatal(format!(
                "binance rejected the request for symbols {:?} (code {}: {}) — check config.symbols",
                self.client.symbols(),
                first.code,
                first.msg
            ));
        }
        let parts: Vec<String> = culprits
            .iter()
            .map(|(symbol, e)| {
                format!(
                    "binance rejected symbol {symbol:?} (code {}: {})",
                    e.code, e.msg
                )
            })
            .collect();
        ConnectorError::Fatal(format!("{} — check config.symbols", parts.join("; ")))
    }

    /// Handles one complete HTTP answer.
    async fn on_answer(
        &mut self,
        answer: Answer,
        ctx: &mut SourceContext,
        shutdown: &CancellationToken,
        state: &mut LoopState,
    ) -> Result<Result<Next, Stopped>, ConnectorError> {
        self.log_weight(state, answer.used_weight);
        let status = answer.status;
        if status == StatusCode::OK {
            state.confirmed = true;
            state.retry.succeeded();
            let parsed =
                parse_ticker_prices(&answer.body, self.client.symbols(), self.client.is_multi());
            let emitted = parsed.prices.len() as u64;
            for price in &parsed.prices {
                if let Err(Stopped) =
                    Self::emit(ctx, shutdown, price_record(price, answer.received_ms)).await?
                {
                    return Ok(Err(Stopped));
                }
            }
            self.stats.records(emitted);
            for r in parsed.rejections {
                if let Err(Stopped) = self
                    .reject(ctx, shutdown, r.reason, r.detail, r.payload)
                    .await?
                {
                    return Ok(Err(Stopped));
                }
            }
            return Ok(Ok(Next::OnSchedule));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.as_u16() == 418 {
            let fallback = if status == StatusCode::TOO_MANY_REQUESTS {
                DEFAULT_RETRY_AFTER_429
            } else {
                DEFAULT_RETRY_AFTER_418
            };
            let asked = answer
                .retry_after_secs
                .map(Duration::from_secs)
                .unwrap_or(fallback);
            let cap = self.config.max_retry_after.as_std();
            let wait = asked.min(cap);
            if asked > cap {
                warn!(stage = %self.stage, retry_after_s = asked.as_secs(), max_retry_after = %self.config.max_retry_after,
                    "Retry-After longer than max_retry_after: waiting max_retry_after");
            }
            self.stats.rate_limited(wait);
            warn!(
                stage = %self.stage,
                status = status.as_u16(),
                retry_after_s = wait.as_secs(),
                used_weight_1m = answer.used_weight,
                body = %String::from_utf8_lossy(&answer.body),
                "binance rate limit: no request until Retry-After has passed"
            );
            return Ok(Ok(Next::Pause(wait)));
        }
        if status.is_server_error() {
            self.stats.server_error();
            return Ok(Ok(self.failed(state, &format!("HTTP {status}"))));
        }
        // Any other status: the request itself is wrong or refused.
        if !state.confirmed && status == StatusCode::BAD_REQUEST {
            if let Some(api_error) = ApiError::parse(&answer.body) {
                return Err(self.symbol_error(api_error, shutdown).await);
            }
        }
        let detail = format!(
            "HTTP {status} from {}: {}",
            self.client.current_url(),
            String::from_utf8_lossy(&answer.body)
        );
        // Logged (rate-limited) by the runtime; retried with backoff like other failures, since
        // a refusal after start-up may be Binance's transient doing.
        if let Err(Stopped) = self
            .reject(
                ctx,
                shutdown,
                reason::HTTP_STATUS,
                detail.clone(),
                answer.body.to_vec(),
            )
            .await?
        {
            return Ok(Err(Stopped));
        }
        Ok(Ok(self.failed(state, &detail)))
    }

    async fn run_loop(&mut self, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        let shutdown = ctx.shutdown().clone();
        let interval_ms = i64::try_from(self.config.interval.as_std().as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut state = LoopState {
            confirmed: false,
            retry: Retry::new(self.retry_policy, self.retries_total.clone()),
            log: RateLimitedLog::new(WARN_PERIOD),
        };
        // The first request goes at once, so a bad symbol fails the start-up fast.
        let mut immediate = true;
        let mut promised = i64::MIN;
        loop {
            if !immediate && wait_for_slot(interval_ms, &shutdown).await.is_err() {
                return Ok(());
            }
            immediate = false;
            // End of the previous poll cycle: every later price is stamped with a receipt
            // time after this instant, so readers may close windows up to it now instead
            // of at the next price (progress marker, docs/semantics.md §8). A clock that
            // stepped back promises nothing new.
            let now_ms = chrono::Utc::now().timestamp_millis();
            if now_ms > promised {
                ctx.progress(now_ms).await?;
                promised = now_ms;
            }
            self.stats.request();
            let result = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                r = self.client.fetch() => r,
            };
            let next = match result {
                Ok(answer) => match self.on_answer(answer, ctx, &shutdown, &mut state).await? {
                    Ok(next) => next,
                    Err(Stopped) => return Ok(()),
                },
                Err(e @ FetchError::BodyTooLarge { .. }) => {
                    // Counted as a rejection (with the limit in the detail, not the body)
                    // and retried like a failure: the next answer may be normal again.
                    let detail = e.to_string();
                    if let Err(Stopped) = self
                        .reject(
                            ctx,
                            &shutdown,
                            reason::BODY_TOO_LARGE,
                            detail.clone(),
                            Vec::new(),
                        )
                        .await?
                    {
                        return Ok(());
                    }
                    self.failed(&mut state, &detail)
                }
                Err(e) => {
                    self.stats.network_error();
                    let text = match &e {
                        FetchError::Timeout { .. } | FetchError::BodyTooLarge { .. } => {
                            e.to_string()
                        }
                        FetchError::Network { source, .. } => {
                            format!("{e} ({})", root_cause(source))
                        }
                    };
                    self.failed(&mut state, &text)
                }
            };
            if let Next::Pause(delay) = next {
                ctx.report_wait(Some(("rate_limited", delay)));
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                ctx.report_wait(None);
                immediate = true;
            }
        }
    }
}

/// Sleeps until the next multiple of the interval since the epoch (by the wall clock): a
/// late slot is dropped, not made up for. Polls on that grid make a window's lateness end
/// right at a poll, whose progress marker then closes the window at once. `Err` on
/// shutdown.
async fn wait_for_slot(interval_ms: i64, shutdown: &CancellationToken) -> Result<(), Stopped> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let slot = now_ms
        .div_euclid(interval_ms)
        .saturating_add(1)
        .saturating_mul(interval_ms);
    loop {
        let now_ms = chrono::Utc::now().timestamp_millis();
        if now_ms >= slot {
            return Ok(());
        }
        // The timer may wake a little before the wall clock reaches the slot: wait again.
        let wait = Duration::from_millis(u64::try_from(slot - now_ms).unwrap_or(0));
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Err(Stopped),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The innermost error message (reqwest's own text is often just "error sending request").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn log_summary(stage: &str, symbols: &[String], stats: &StatsSnapshot) {
    info!(
        stage = %stage,
        symbols = ?symbols,
        requests = stats.requests,
        records = stats.records,
        rejected = ?stats.rejected,
        retries = stats.retries,
        network_errors = stats.network_errors,
        server_errors = stats.server_errors,
        rate_limited_waits = stats.rate_limited_waits,
        rate_limited_wait_ms = stats.rate_limited_wait_ms,
        base_url_rotations = stats.base_url_rotations,
        "binance source stopped"
    );
}

#[async_trait]
impl Source for BinanceSource {
    async fn run(&mut self, ctx: &mut SourceContext) -> Result<SourceEnd, ConnectorError> {
        info!(
            stage = %self.stage,
            symbols = ?self.config.symbols,
            interval = %self.config.interval,
            base_url = %self.client.current_url(),
            "binance source starting"
        );
        let result = self.run_loop(ctx).await;
        log_summary(&self.stage, &self.config.symbols, &self.stats.snapshot());
        // A live feed never ends by itself: only shutdown (or an error) stops it.
        result.map(|()| SourceEnd::Stopped)
    }
}
