//! The `binance` source against the in-process mock, through `SourceContext::channel`.

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use binance_mock::{Fault, MockHandle};
use common::{config, mock, spawn};
use connector_binance::{response::reason, BinanceSource};
use framework::{
    connector::SourceEvent, event_time::parse_millis, ConnectorConfig, ConnectorError,
    ConnectorKind, ConnectorRegistration, OutputRecord, SourceEnd, ValidationContext,
};

/// Checks one record against the `btc-price` contract and returns (symbol, price).
fn assert_contract(record: &OutputRecord) -> (String, f64) {
    let value: serde_json::Value = serde_json::from_slice(&record.payload).unwrap();
    let object = value.as_object().expect("payload is a JSON object");
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        vec!["price", "symbol", "timestamp"],
        "exactly three fields"
    );
    // Field order on the wire: symbol, price, timestamp.
    let text = std::str::from_utf8(&record.payload).unwrap();
    assert!(text.starts_with(r#"{"symbol":"#), "{text}");
    assert!(
        text.find(r#""price":"#) < text.find(r#""timestamp":"#),
        "{text}"
    );
    let symbol = object["symbol"].as_str().expect("symbol is a string");
    let price = object["price"].as_f64().expect("price is a JSON number");
    assert!(object["price"].is_number());
    assert!(price.is_finite() && price > 0.0, "{price}");
    // The mock's prices move on a 0.01 tick.
    assert!(
        ((price * 100.0).round() - price * 100.0).abs() < 1e-6,
        "{price}"
    );
    let timestamp = object["timestamp"].as_str().expect("timestamp is a string");
    let b = timestamp.as_bytes();
    assert_eq!(b.len(), 24, "{timestamp}");
    assert!(
        timestamp.ends_with('Z') && b[10] == b'T' && b[19] == b'.',
        "ISO ms Z: {timestamp}"
    );
    assert_eq!(parse_millis(timestamp).unwrap(), record.timestamp_ms);
    assert_eq!(record.key.as_deref(), Some(symbol.as_bytes()));
    (symbol.to_string(), price)
}

fn p99_abs_deviation_ms(timestamps: &[i64], expected_ms: i64) -> i64 {
    let mut deviations: Vec<i64> = timestamps
        .windows(2)
        .map(|w| (w[1] - w[0] - expected_ms).abs())
        .collect();
    deviations.sort_unstable();
    let index = ((deviations.len() as f64) * 0.99).ceil() as usize - 1;
    deviations[index.min(deviations.len() - 1)]
}

/// Runs a source for `run_for` and returns every record by symbol (no rejection allowed).
async fn run_clean(
    mock: &MockHandle,
    symbols: &[&str],
    run_for: Duration,
) -> BTreeMap<String, Vec<OutputRecord>> {
    let mut running = spawn(config(mock, symbols));
    let deadline = Instant::now() + run_for;
    let mut by_symbol: BTreeMap<String, Vec<OutputRecord>> = BTreeMap::new();
    while let Some(event) = running
        .next(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        match event {
            SourceEvent::Record(r) => {
                let (symbol, _) = assert_contract(&r);
                by_symbol.entry(symbol).or_default().push(r);
            }
            SourceEvent::Rejected { reason, detail, .. } => {
                panic!("unexpected rejection {reason}: {detail}")
            }
            SourceEvent::Progress(_) => {}
        }
    }
    assert_eq!(running.stop().await.unwrap(), SourceEnd::Stopped);
    by_symbol
}

fn assert_paced(records: &[OutputRecord], symbol: &str) {
    assert!(
        records.len() >= 98,
        "{symbol}: {} records in 10 s",
        records.len()
    );
    let ts: Vec<i64> = records.iter().map(|r| r.timestamp_ms).collect();
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "{symbol}: timestamps go back"
    );
    let p99 = p99_abs_deviation_ms(&ts, 100);
    eprintln!(
        "{symbol}: {} records, p99 |gap - 100 ms| = {p99} ms",
        records.len()
    );
    assert!(p99 < 20, "{symbol}: p99 |gap - 100 ms| = {p99} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_symbol_for_10s_yields_contract_records_every_100ms() {
    let mock = mock().await;
    let by_symbol = run_clean(&mock, &["BTCUSDT"], Duration::from_secs(10)).await;
    assert_eq!(by_symbol.keys().collect::<Vec<_>>(), vec!["BTCUSDT"]);
    assert_paced(&by_symbol["BTCUSDT"], "BTCUSDT");
    // One request per record, each with `symbol=`, never two in flight.
    let requests = mock.price_requests();
    assert!(requests.iter().all(|r| r.query == "symbol=BTCUSDT"));
    assert!(requests.len() <= by_symbol["BTCUSDT"].len() + 1);
    for pair in requests.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap > Duration::from_millis(50), "requests {gap:?} apart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_symbols_for_10s_yield_contract_records_every_100ms_from_one_request_per_tick() {
    let mock = mock().await;
    let by_symbol = run_clean(&mock, &["BTCUSDT", "ETHUSDT"], Duration::from_secs(10)).await;
    assert_eq!(
        by_symbol.keys().collect::<Vec<_>>(),
        vec!["BTCUSDT", "ETHUSDT"]
    );
    for (symbol, records) in &by_symbol {
        assert_paced(records, symbol);
    }
    // Both symbols of a tick come from the same answer, so they share the receipt time.
    let btc: Vec<i64> = by_symbol["BTCUSDT"]
        .iter()
        .map(|r| r.timestamp_ms)
        .collect();
    let eth: Vec<i64> = by_symbol["ETHUSDT"]
        .iter()
        .map(|r| r.timestamp_ms)
        .collect();
    assert_eq!(btc, eth);
    let requests = mock.price_requests();
    assert!(requests
        .iter()
        .all(|r| r.query == "symbols=%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D"));
    assert!(requests.len() <= btc.len() + 1);
}

#[tokio::test]
async fn each_bad_answer_kind_is_rejected_with_its_reason_and_the_stream_goes_on() {
    let mock = mock().await;
    let kinds = [
        (Fault::MalformedJson, reason::MALFORMED_JSON),
        (Fault::WrongSymbol, reason::WRONG_SYMBOL),
        (Fault::NonNumericPrice, reason::INVALID_PRICE),
        (Fault::NegativePrice, reason::INVALID_PRICE),
        (Fault::ZeroPrice, reason::INVALID_PRICE),
        (Fault::EmptyArray, reason::UNEXPECTED_SHAPE),
    ];
    let mut running = spawn(config(&mock, &["BTCUSDT"]));
    let (first, rejected) = running.next_record(Duration::from_secs(2)).await;
    assert!(first.is_some() && rejected.is_empty());
    for (fault, expected) in kinds {
        mock.push_fault(fault.clone(), 1);
        let (record, rejected) = running.next_record(Duration::from_secs(2)).await;
        let reasons: Vec<&str> = rejected.iter().map(|r| r.0).collect();
        assert_eq!(reasons, vec![expected], "{fault:?}");
        // The raw body is what gets dead-lettered, never a record.
        let (_, detail, payload) = &rejected[0];
        assert!(!payload.is_empty(), "{fault:?}: {detail}");
        let record = record.unwrap_or_else(|| panic!("no record after {fault:?}"));
        assert_contract(&record);
    }
    let stats = running.stats.snapshot();
    assert_eq!(stats.rejected(reason::MALFORMED_JSON), 1);
    assert_eq!(stats.rejected(reason::WRONG_SYMBOL), 1);
    assert_eq!(stats.rejected(reason::INVALID_PRICE), 3);
    assert_eq!(stats.rejected(reason::UNEXPECTED_SHAPE), 1);
    assert_eq!(stats.rejected_total(), 6);
    assert_eq!(running.stop().await.unwrap(), SourceEnd::Stopped);
}

#[tokio::test]
async fn a_bad_element_of_a_multi_symbol_answer_loses_no_good_record() {
    let mock = mock().await;
    // Faults corrupt the first element (BTCUSDT, exchange order) of the first answer.
    mock.push_fault(Fault::NonNumericPrice, 1);
    let mut running = spawn(config(&mock, &["BTCUSDT", "ETHUSDT"]));
    let (record, rejected) = running.next_record(Duration::from_secs(2)).await;
    let (symbol, _) = assert_contract(&record.unwrap());
    assert_eq!(symbol, "ETHUSDT");
    let (first_rejection, rejected_after) = running.next_record(Duration::from_secs(2)).await;
    let all: Vec<_> = rejected.into_iter().chain(rejected_after).collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].0, reason::INVALID_PRICE);
    let element: serde_json::Value = serde_json::from_slice(&all[0].2).unwrap();
    assert_eq!(element["symbol"], "BTCUSDT");
    assert_eq!(element["price"], "NaN");
    // The stream goes on with both symbols.
    assert!(first_rejection.is_some());
    assert_eq!(running.stop().await.unwrap(), SourceEnd::Stopped);
}

/// Pushes `fault` once the stream runs, then checks the request log for silence during
/// Retry-After and that records resume.
async fn assert_retry_after_is_honoured(fault: Fault, status: u16) {
    let mock = mock().await;
    let mut running = spawn(config(&mock, &["BTCUSDT"]));
    for _ in 0..3 {
        assert!(running
            .next_record(Duration::from_secs(2))
            .await
            .0
            .is_some());
    }
    mock.push_fault(fault, 1);
    let (record, rejected) = running.next_record(Duration::from_secs(5)).await;
    assert!(
        rejected.is_empty(),
        "rate limits are not rejections: {rejected:?}"
    );
    let record = record.expect("records resume after Retry-After");
    assert_contract(&record);
    let requests = mock.price_requests();
    let limited = requests
        .iter()
        .position(|r| r.status == Some(status))
        .expect("the mock answered the fault");
    let next = requests
        .get(limited + 1)
        .expect("a request after the limit");
    let silence = next.at - requests[limited].at;
    assert!(
        silence >= Duration::from_secs(2),
        "next request only {silence:?} after HTTP {status} with Retry-After: 2"
    );
    assert!(
        silence < Duration::from_millis(2_500),
        "resumed late: {silence:?}"
    );
    let stats = running.stats.snapshot();
    assert_eq!(stats.rate_limited_waits, 1);
    assert_eq!(stats.rate_limited_wait_ms, 2_000);
    // After the wait the schedule restarts: no burst of catch-up requests.
    let after: Vec<_> = requests[limited + 1..].iter().map(|r| r.at).collect();
    for pair in after.windows(2) {
        assert!(pair[1] - pair[0] > Duration::from_millis(50));
    }
    assert_eq!(running.stop().await.unwrap(), SourceEnd::Stopped);
}

#[tokio::test]
async fn http_429_with_retry_after_2_silences_requests_for_2s_then_resumes() {
    assert_retry_after_is_honoured(
        Fault::RateLimited {
            retry_after_secs: 2,
        },
        429,
    )
    .await;
}

#[tokio::test]
async fn http_418_with_retry_after_2_silences_requests_for_2s_then_resumes() {
    assert_retry_after_is_honoured(
        Fault::Banned {
            retry_after_secs: 2,
        },
        418,
    )
    .await;
}

#[tokio::test]
async fn a_burst_of_500s_at_start_up_is_retried_with_growing_backoff_then_records_flow() {
    let mock = mock().await;
    mock.push_fault(Fault::ServerError, 5);
    let mut running = spawn(config(&mock, &["BTCUSDT"]));
    let (record, rejected) = running.next_record(Duration::from_secs(5)).await;
    assert!(rejected.is_empty());
    assert_contract(&record.expect("records after the 500s"));
    let stats = running.stats.snapshot();
    assert_eq!(stats.server_errors, 5);
    assert_eq!(stats.retries, 5);
    let requests = mock.price_requests();
    assert!(requests[..5].iter().all(|r| r.status == Some(500)));
    assert_eq!(requests[5].status, Some(200));
    // Equal jitter keeps each delay in [base/2, base] with base doubling, so delays never
    // shrink: 50, 100, 200, 400, 800 ms bases (config backoff_initial 50ms).
    let gaps: Vec<Duration> = requests[..6]
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .collect();
    assert!(gaps[0] >= Duration::from_millis(25), "{gaps:?}");
    for pair in gaps.windows(2) {
        assert!(pair[1] + Duration::from_millis(5) >= pair[0], "{gaps:?}");
    }
    assert!(gaps[4] >= Duration::from_millis(400), "{gaps:?}");
    // And then back on the 100 ms schedule.
    for _ in 0..3 {
        assert!(running
            .next_record(Duration::from_millis(500))
            .await
            .0
            .is_some());
    }
    assert_eq!(running.stop().await.unwrap(), SourceEnd::Stopped);
}

#[tokio::test]
async fn dropped_connections_are_retried_and_records_resume() {
    let mock = mock().await;
    let mut running = spawn(config(&mock, &["BTCUSDT"]));
    assert!(running
        .next_record(Duration::from_secs(2))
        .await
        .0
        .is_some());
    mock.push_fault(Fault::DropConnection, 2);
    let (record, rejected) = running.next_record(Duration::from_secs(3)).await;
    assert!(rejected.is_empty());
    assert_contract(&record.expect("records after dropped connections"));
    let stats = running.stats.snapshot();
    assert_eq!(stats.network_errors, 2);
    assert_eq!(stats.retries, 2);
    let dropped = mock
        .price_requests()
        .iter()
        .filter(|r| r.status.is_none())
        .count();
    assert_eq!(dropped, 2);
    assert_eq!(running.stop().await.unwrap(), SourceEnd::Stopped);
}

#[tokio::test]
async fn a_slow_answer_times_out_and_the_next_request_follows_after_backoff() {
    let mock = mock().await;
    let mut running = spawn(config(&mock, &["BTCUSDT"])); // request_timeout 500ms
    assert!(running
        .next_record(Duration::from_secs(2))
        .await
        .0
        .is_some());
    mock.push_fault(Fault::Slow { delay_ms: 3_000 }, 1);
    let started = Instant::now();
    let (record, rejected) = running.next_record(Duration::from_secs(3)).await;
    assert!(rejected.is_empty());
    assert_contract(&record.expect("records after the timeout"));
    // Timeout (500 ms) + first backoff (<= 50 ms) + one fetch, well before the slow answer.
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "{:?}",
        started.elapsed()
    );
    let stats = running.stats.snapshot();
    assert_eq!(stats.network_errors, 1);
    assert_eq!(stats.retries, 1);
    assert_eq!(running.stop().await.unwrap(), SourceEnd::Stopped);
}

#[tokio::test]
async fn an_unknown_symbol_fails_start_up_fast_naming_the_symbol() {
    let mock = mock().await;
    let started = Instant::now();
    let running = spawn(config(&mock, &["XYZUSDT"]));
    let result = tokio::time::timeout(Duration::from_secs(2), running.task)
        .await
        .expect("fails within 2 s")
        .unwrap();
    let Err(ConnectorError::Fatal(message)) = result else {
        panic!("expected a fatal error, got {result:?}");
    };
    assert_eq!(
        message,
        "binance rejected symbol \"XYZUSDT\" (code -1121: Invalid symbol.) — check config.symbols"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_unknown_symbol_among_several_is_named_alone() {
    let mock = mock().await;
    let running = spawn(config(&mock, &["BTCUSDT", "NOPEUSDT", "ETHUSDT"]));
    let result = tokio::time::timeout(Duration::from_secs(2), running.task)
        .await
        .expect("fails within 2 s")
        .unwrap();
    let Err(ConnectorError::Fatal(message)) = result else {
        panic!("expected a fatal error, got {result:?}");
    };
    assert!(message.contains("\"NOPEUSDT\" (code -1121"), "{message}");
    assert!(!message.contains("\"BTCUSDT\" (code"), "{message}");
    assert!(!message.contains("\"ETHUSDT\" (code"), "{message}");
}

#[tokio::test]
async fn a_lowercase_symbol_is_refused_by_check_before_any_request() {
    let mock = mock().await;
    let config = config(&mock, &["btcusdt"]);
    let issues = config.check();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].path, "symbols[0]");
    let Err(ConnectorError::Config(message)) = BinanceSource::new(config, "test") else {
        panic!("a lowercase symbol must not build");
    };
    assert!(message.contains("btcusdt"), "{message}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn shutdown_during_a_slow_request_returns_stopped_within_200ms() {
    let mock = mock().await;
    mock.push_fault(Fault::Slow { delay_ms: 5_000 }, 1);
    let mut cfg = config(&mock, &["BTCUSDT"]);
    cfg.request_timeout = framework::DurationSpec::from_secs(10);
    let running = spawn(cfg);
    let waited = Instant::now();
    while mock.price_requests().is_empty() {
        assert!(waited.elapsed() < Duration::from_secs(2), "no request sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    running.token.cancel();
    let result = tokio::time::timeout(Duration::from_millis(200), running.task)
        .await
        .expect("stopped within 200 ms")
        .unwrap();
    assert_eq!(result.unwrap(), SourceEnd::Stopped);
    assert!(stopping.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn a_dead_base_url_is_left_for_the_next_one_after_repeated_failures() {
    let mock = mock().await;
    // A port nobody listens on: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut cfg = config(&mock, &["BTCUSDT"]);
    cfg.base_urls = vec![dead_url, mock.base_url()];
    cfg.failures_before_rotate = 2;
    let mut running = spawn(cfg);
    let (record, _) = running.next_record(Duration::from_secs(3)).await;
    assert_contract(&record.expect("records from the second base URL"));
    let stats = running.stats.snapshot();
    assert_eq!(stats.base_url_rotations, 1);
    assert_eq!(stats.network_errors, 2);
    assert_eq!(running.stop().await.unwrap(), SourceEnd::Stopped);
}

#[test]
fn binance_is_registered_as_a_price_source_with_a_documented_schema() {
    let registration = ConnectorRegistration::find("binance").expect("registered");
    assert_eq!(registration.kind, ConnectorKind::Source);
    assert_eq!(registration.output.map(|t| t.name()), Some("price"));
    let schema = (registration.schema)();
    let properties = schema["properties"].as_object().unwrap();
    for field in [
        "base_urls",
        "symbols",
        "interval",
        "request_timeout",
        "backoff_initial",
        "backoff_max",
        "failures_before_rotate",
    ] {
        let description = properties[field]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(!description.is_empty(), "{field} is undocumented");
    }
    let check = (registration.check)(
        &serde_json::json!({"symbols": ["BTCUSDT", "ethusdt"], "interval": "100ms"}),
        &ValidationContext::default(),
    );
    assert_eq!(check.issues.len(), 1);
    assert_eq!(check.issues[0].path, "symbols[1]");
}
