//! Shared helpers: a source running against the in-process mock.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use binance_mock::{MockBinance, MockConfig, MockHandle};
use connector_binance::{BinanceConfig, BinanceSource, SourceStats};
use framework::{
    connector::SourceEvent, ConnectorError, DurationSpec, OutputRecord, Source, SourceContext,
    SourceEnd,
};
use std::sync::Arc;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub async fn mock() -> MockHandle {
    MockBinance::start(MockConfig::default()).await.unwrap()
}

/// A config polling `mock` every 100 ms with short timeouts and backoffs.
pub fn config(mock: &MockHandle, symbols: &[&str]) -> BinanceConfig {
    BinanceConfig {
        base_urls: vec![mock.base_url()],
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        interval: DurationSpec::from_millis(100),
        request_timeout: DurationSpec::from_millis(500),
        backoff_initial: DurationSpec::from_millis(50),
        backoff_max: DurationSpec::from_millis(1_000),
        failures_before_rotate: 3,
        ..BinanceConfig::default()
    }
}

pub struct Running {
    pub token: CancellationToken,
    pub events: mpsc::Receiver<SourceEvent>,
    pub stats: Arc<SourceStats>,
    pub task: JoinHandle<Result<SourceEnd, ConnectorError>>,
}

pub fn spawn(config: BinanceConfig) -> Running {
    let token = CancellationToken::new();
    let (mut ctx, events) = SourceContext::channel(4096, token.clone());
    let mut source = BinanceSource::new(config, "test").unwrap();
    let stats = source.stats();
    let task = tokio::spawn(async move { source.run(&mut ctx).await });
    Running {
        token,
        events,
        stats,
        task,
    }
}

impl Running {
    /// The next event, or `None` after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<SourceEvent> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for the next record, collecting the rejections seen before it.
    pub async fn next_record(
        &mut self,
        timeout: Duration,
    ) -> (Option<OutputRecord>, Vec<(&'static str, String, Vec<u8>)>) {
        let deadline = Instant::now() + timeout;
        let mut rejected = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(SourceEvent::Record(r)) => return (Some(r), rejected),
                Some(SourceEvent::Rejected {
                    reason,
                    detail,
                    payload,
                }) => rejected.push((reason, detail, payload)),
                Some(SourceEvent::Progress(_)) => {}
                None => return (None, rejected),
            }
        }
    }

    /// Cancels and returns how `run` ended.
    pub async fn stop(self) -> Result<SourceEnd, ConnectorError> {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("source did not stop within 5 s")
            .expect("source task panicked")
    }
}
