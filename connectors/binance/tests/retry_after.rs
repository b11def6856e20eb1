//! A huge `Retry-After` cannot silence the source for good: the wait is capped by
//! `max_retry_after` and reported while it lasts (shown in `/ready` and `pipeline top`).

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use binance_mock::Fault;
use common::{config, mock};
use connector_binance::BinanceSource;
use framework::{
    connector::SourceEvent, ConnectorConfig, DurationSpec, Source, SourceContext, SourceEnd,
};
use tokio_util::sync::CancellationToken;

type Waits = Arc<Mutex<Vec<Option<(&'static str, Duration)>>>>;

/// The next event that is not a progress marker (the source writes one before each poll).
async fn next_record(events: &mut tokio::sync::mpsc::Receiver<SourceEvent>) -> Option<SourceEvent> {
    loop {
        match events.recv().await {
            Some(SourceEvent::Progress(_)) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn a_retry_after_of_a_day_is_capped_to_max_retry_after_and_reported_while_it_lasts() {
    let mock = mock().await;
    let mut cfg = config(&mock, &["BTCUSDT"]);
    cfg.max_retry_after = DurationSpec::from_secs(1);
    let token = CancellationToken::new();
    let waits: Waits = Arc::default();
    let seen = waits.clone();
    let (ctx, mut events) = SourceContext::channel(4096, token.clone());
    let mut ctx = ctx.with_wait_hook(Arc::new(move |wait| {
        seen.lock().unwrap().push(wait);
    }));
    let mut source = BinanceSource::new(cfg, "test").unwrap();
    let task = tokio::spawn(async move { source.run(&mut ctx).await });
    let first = tokio::time::timeout(Duration::from_secs(5), next_record(&mut events)).await;
    assert!(matches!(first, Ok(Some(SourceEvent::Record(_)))));
    mock.push_fault(
        Fault::RateLimited {
            retry_after_secs: 86_400,
        },
        1,
    );
    // Records flow again within the cap (plus scheduling slack), not in a day.
    let started = Instant::now();
    let mut resumed = false;
    while started.elapsed() < Duration::from_secs(6) {
        if let Ok(Some(SourceEvent::Record(_))) =
            tokio::time::timeout(Duration::from_millis(200), next_record(&mut events)).await
        {
            if !waits.lock().unwrap().is_empty() {
                resumed = true;
                break;
            }
        }
    }
    assert!(resumed, "records resumed after the capped wait");
    let waits = waits.lock().unwrap().clone();
    assert_eq!(
        waits,
        vec![Some(("rate_limited", Duration::from_secs(1))), None],
        "the wait was reported with its capped length, then cleared"
    );
    token.cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end.unwrap(), SourceEnd::Stopped);
}

#[test]
fn max_retry_after_and_the_other_durations_have_ranges() {
    let parse = |json: serde_json::Value| -> Vec<String> {
        let cfg: connector_binance::BinanceConfig = serde_json::from_value(json).unwrap();
        cfg.check().into_iter().map(|i| i.path).collect()
    };
    assert!(parse(serde_json::json!({})).is_empty());
    assert_eq!(
        parse(serde_json::json!({
            "max_retry_after": "2h",
            "interval": "2h",
            "request_timeout": "10m",
            "failures_before_rotate": 5000
        })),
        [
            "failures_before_rotate",
            "interval",
            "request_timeout",
            "max_retry_after"
        ]
    );
    assert_eq!(
        parse(serde_json::json!({"max_retry_after": "10ms"})),
        ["max_retry_after"]
    );
}
