//! `binance_ws` against the in-process Binance mock's WebSocket streams: records and
//! event times, pings, rotation, reconnects with gaps, malformed frames, limits, stop.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use binance_mock::{MockBinance, MockConfig, MockHandle, WsCommand};
use connector_binance_ws::{event::reason, BinanceWsConfig, BinanceWsSource, StreamKind, WsStats};
use framework::{
    connector::SourceEvent, event_time::format_millis, ConnectorError, DurationSpec, OutputRecord,
    Source, SourceContext, SourceEnd,
};
use serde_json::Value;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// A mock that publishes only scripted trades (unless `trade_every` is given).
async fn mock(trade_every: Option<Duration>, lifetime: Duration) -> MockHandle {
    MockBinance::start(MockConfig {
        symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
        ws_trade_interval: trade_every,
        ws_max_lifetime: lifetime,
        ..MockConfig::default()
    })
    .await
    .unwrap()
}

fn config(mock: &MockHandle, symbols: &[&str], streams: &[StreamKind]) -> BinanceWsConfig {
    BinanceWsConfig {
        base_urls: vec![mock.ws_base_url()],
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        streams: streams.to_vec(),
        backoff_initial: DurationSpec::from_millis(20),
        backoff_max: DurationSpec::from_millis(200),
        connect_timeout: DurationSpec::from_secs(2),
        ..BinanceWsConfig::default()
    }
}

struct Running {
    token: CancellationToken,
    events: mpsc::Receiver<SourceEvent>,
    stats: Arc<WsStats>,
    task: JoinHandle<Result<SourceEnd, ConnectorError>>,
}

fn spawn(config: BinanceWsConfig) -> Running {
    let token = CancellationToken::new();
    let (mut ctx, events) = SourceContext::channel(4096, token.clone());
    let mut source = BinanceWsSource::new(config, "test").unwrap();
    let stats = source.stats();
    let task = tokio::spawn(async move { source.run(&mut ctx).await });
    Running {
        token,
        events,
        stats,
        task,
    }
}

type Rejection = (&'static str, String, Vec<u8>);

impl Running {
    /// Collects `n` records (and the rejections seen meanwhile) within `timeout`.
    async fn records(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> (Vec<OutputRecord>, Vec<Rejection>) {
        let deadline = Instant::now() + timeout;
        let (mut records, mut rejected) = (Vec::new(), Vec::new());
        while records.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(SourceEvent::Record(r))) => records.push(r),
                Ok(Some(SourceEvent::Rejected {
                    reason,
                    detail,
                    payload,
                })) => rejected.push((reason, detail, payload)),
                Ok(Some(SourceEvent::Progress(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        (records, rejected)
    }

    /// Cancels and returns how `run` ended.
    async fn stop(self) -> Result<SourceEnd, ConnectorError> {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the source stops within 5 s")
            .expect("source task panicked")
    }
}

/// Waits until `check` holds (polling), or panics after `timeout`.
async fn until(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn json(record: &OutputRecord) -> Value {
    serde_json::from_slice(&record.payload).unwrap()
}

fn ids(records: &[OutputRecord], field: &str) -> Vec<u64> {
    records
        .iter()
        .map(|r| json(r)[field].as_u64().unwrap())
        .collect()
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn trades_agg_trades_and_book_tickers_become_records_with_exchange_times_and_exact_numbers() {
    let mock = mock(None, DAY).await;
    let all = [
        StreamKind::Trade,
        StreamKind::AggTrade,
        StreamKind::BookTicker,
    ];
    let mut running = spawn(config(&mock, &["BTCUSDT", "ETHUSDT"], &all));
    until("the connection", Duration::from_secs(5), || {
        mock.ws_open_connections() == 1
    })
    .await;
    let connection = &mock.ws_connections()[0];
    assert_eq!(
        connection.streams,
        [
            "btcusdt@trade",
            "btcusdt@aggTrade",
            "btcusdt@bookTicker",
            "ethusdt@trade",
            "ethusdt@aggTrade",
            "ethusdt@bookTicker"
        ]
    );
    let before = chrono::Utc::now().timestamp_millis();
    mock.ws_command(WsCommand::Publish { count: 2 });
    let after = chrono::Utc::now().timestamp_millis();
    let (records, rejected) = running.records(12, Duration::from_secs(5)).await;
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(records.len(), 12);
    let last_ids = mock.last_trade_ids();
    for record in &records {
        let v = json(record);
        let symbol = v["symbol"].as_str().unwrap();
        assert_eq!(record.key.as_deref(), Some(symbol.as_bytes()));
        // The record's event time is its `timestamp`, in the `binance` source's format.
        assert_eq!(v["timestamp"], format_millis(record.timestamp_ms));
        assert!((before..=after + 5).contains(&record.timestamp_ms));
        let text = String::from_utf8(record.payload.clone()).unwrap();
        // Decimals are written as their digits: no float noise, no padding zeros.
        for number in text
            .split([':', ','])
            .filter(|t| t.contains('.') && !t.contains('"'))
        {
            assert!(!number.ends_with('0'), "{number} in {text}");
        }
        let last_trade = last_ids.iter().find(|(s, _)| s == symbol).unwrap().1;
        if let Some(trade_id) = v.get("trade_id") {
            let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), 7, "{text}");
            assert!(trade_id.as_u64().unwrap() > last_trade - 2);
            assert!(v["price"].as_f64().unwrap() > 0.0 && v["quantity"].as_f64().unwrap() > 0.0);
            assert!(v["event_time"].as_str().unwrap() >= v["timestamp"].as_str().unwrap());
        } else if v.get("agg_trade_id").is_some() {
            assert_eq!(v["first_trade_id"], v["last_trade_id"]);
            assert!(v["first_trade_id"].as_u64().unwrap() > last_trade - 2);
        } else {
            assert!(v["update_id"].is_u64(), "{text}");
            assert!(v["bid_price"].as_f64().unwrap() < v["ask_price"].as_f64().unwrap());
        }
    }
    // Per stream, ids follow the exchange's order.
    let btc_trades: Vec<OutputRecord> = records
        .iter()
        .filter(|r| json(r)["symbol"] == "BTCUSDT" && json(r).get("trade_id").is_some())
        .cloned()
        .collect();
    let trade_ids = ids(&btc_trades, "trade_id");
    assert_eq!(trade_ids.len(), 2);
    assert_eq!(trade_ids[1], trade_ids[0] + 1);
    assert_eq!(running.stats.snapshot().records, 12);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn pings_are_answered_with_a_pong_carrying_the_same_payload() {
    let mock = mock(None, DAY).await;
    let running = spawn(config(&mock, &["BTCUSDT"], &[StreamKind::Trade]));
    until("the connection", Duration::from_secs(5), || {
        mock.ws_open_connections() == 1
    })
    .await;
    mock.ws_command(WsCommand::Ping {
        payload: "ping-1746631831891".into(),
    });
    until("the pong", Duration::from_secs(5), || {
        mock.ws_connections()[0].pongs_received == ["ping-1746631831891"]
    })
    .await;
    assert_eq!(running.stats.snapshot().pings, 1);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn rotation_before_the_cut_off_overlaps_and_loses_or_repeats_no_trade() {
    // The mock cuts connections after 1.5 s; the source rotates every second.
    let mock = mock(Some(Duration::from_millis(5)), Duration::from_millis(1_500)).await;
    let mut c = config(
        &mock,
        &["BTCUSDT"],
        &[StreamKind::Trade, StreamKind::AggTrade],
    );
    c.rotate_after = DurationSpec::from_secs(1);
    c.max_overlap = DurationSpec::from_secs(2);
    let mut running = spawn(c);
    let started = Instant::now();
    let mut records = Vec::new();
    while started.elapsed() < Duration::from_millis(3_400) {
        let (batch, rejected) = running.records(50, Duration::from_millis(200)).await;
        assert!(rejected.is_empty(), "{rejected:?}");
        records.extend(batch);
    }
    let stats = running.stats.snapshot();
    running.stop().await.unwrap();
    let trades: Vec<OutputRecord> = records
        .iter()
        .filter(|r| json(r).get("trade_id").is_some())
        .cloned()
        .collect();
    let aggs: Vec<OutputRecord> = records
        .iter()
        .filter(|r| json(r).get("agg_trade_id").is_some())
        .cloned()
        .collect();
    for (name, list) in [("trade_id", &trades), ("agg_trade_id", &aggs)] {
        let got = ids(list, name);
        assert!(got.len() > 200, "{name}: only {} records", got.len());
        let expected: Vec<u64> = (got[0]..got[0] + got.len() as u64).collect();
        assert_eq!(got, expected, "{name}: every id once, in order");
    }
    assert!(stats.rotations >= 2, "{stats:?}");
    assert_eq!((stats.gaps, stats.disconnects), (0, 0), "{stats:?}");
    assert!(
        stats.duplicates > 0,
        "the overlap delivered some trades twice: {stats:?}"
    );
    let connections = mock.ws_connections();
    assert!(connections.len() >= 3, "{connections:?}");
    // Every replaced connection was closed by the client, none hit the cut-off.
    for c in &connections {
        if let Some(reason) = &c.close_reason {
            assert_eq!(reason, "client_close", "{c:?}");
        }
    }
}

#[tokio::test]
async fn a_disconnect_then_reconnect_with_missed_trades_is_counted_as_a_gap() {
    let mock = mock(None, DAY).await;
    let mut running = spawn(config(&mock, &["BTCUSDT"], &[StreamKind::Trade]));
    until("the connection", Duration::from_secs(5), || {
        mock.ws_open_connections() == 1
    })
    .await;
    mock.ws_command(WsCommand::Publish { count: 5 });
    let (first, _) = running.records(5, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 5);
    mock.ws_command(WsCommand::Disconnect);
    until("the reconnection", Duration::from_secs(5), || {
        mock.ws_connections().len() == 2 && mock.ws_open_connections() == 1
    })
    .await;
    // Seven trades happen while nobody listens.
    mock.ws_command(WsCommand::SkipTrades { count: 7 });
    mock.ws_command(WsCommand::Publish { count: 3 });
    let (second, _) = running.records(3, Duration::from_secs(5)).await;
    let before = ids(&first, "trade_id");
    let after = ids(&second, "trade_id");
    assert_eq!(after[0], before[4] + 8, "{before:?} then {after:?}");
    let stats = running.stats.snapshot();
    assert_eq!((stats.gaps, stats.missed_ids), (1, 7), "{stats:?}");
    assert_eq!((stats.disconnects, stats.connections), (1, 2), "{stats:?}");
    assert_eq!(
        mock.ws_connections()[0].close_reason.as_deref(),
        Some("disconnect_command")
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_and_oversized_frames_are_dead_lettered_with_a_reason_and_records_go_on() {
    let mock = mock(None, DAY).await;
    let mut c = config(&mock, &["BTCUSDT"], &[StreamKind::Trade]);
    c.max_message_bytes = 1024;
    let mut running = spawn(c);
    until("the connection", Duration::from_secs(5), || {
        mock.ws_open_connections() == 1
    })
    .await;
    let bad_price = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1746631831895,"s":"BTCUSDT","t":1,"p":"-5","q":"1","T":1746631831891,"m":true,"M":true}}"#;
    for text in [
        "{\"stream\":\"btcusdt@tr",
        bad_price,
        r#"{"stream":"dogeusdt@trade","data":{}}"#,
    ] {
        mock.ws_command(WsCommand::Malformed { text: text.into() });
    }
    mock.ws_command(WsCommand::Publish { count: 1 });
    let (records, rejected) = running.records(1, Duration::from_secs(5)).await;
    assert_eq!(records.len(), 1);
    let reasons: Vec<&str> = rejected.iter().map(|r| r.0).collect();
    assert_eq!(
        reasons,
        [
            reason::MALFORMED_JSON,
            reason::INVALID_DECIMAL,
            reason::UNEXPECTED_STREAM
        ]
    );
    assert_eq!(
        rejected[1].2,
        bad_price.as_bytes(),
        "the raw frame is dead-lettered"
    );
    assert!(rejected[1].1.contains("\"p\""), "{}", rejected[1].1);
    // A message over max_message_bytes is refused without being kept, and the source
    // reconnects.
    mock.ws_command(WsCommand::Malformed {
        text: "x".repeat(4096),
    });
    until("the reconnection", Duration::from_secs(5), || {
        mock.ws_connections().len() == 2 && mock.ws_open_connections() == 1
    })
    .await;
    mock.ws_command(WsCommand::Publish { count: 1 });
    let (records, rejected) = running.records(1, Duration::from_secs(5)).await;
    assert_eq!(records.len(), 1);
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, reason::OVERSIZED_MESSAGE);
    assert!(rejected[0].2.is_empty());
    let stats = running.stats.snapshot();
    assert_eq!(stats.rejected.values().sum::<u64>(), 4, "{stats:?}");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_ping_flood_gets_at_most_four_pongs_per_second_then_the_connection_is_dropped() {
    let mock = mock(None, DAY).await;
    let running = spawn(config(&mock, &["BTCUSDT"], &[StreamKind::Trade]));
    until("the connection", Duration::from_secs(5), || {
        mock.ws_open_connections() == 1
    })
    .await;
    for i in 0..8 {
        mock.ws_command(WsCommand::Ping {
            payload: format!("p{i}"),
        });
    }
    until("the reconnection", Duration::from_secs(5), || {
        mock.ws_connections().len() == 2
    })
    .await;
    let first = &mock.ws_connections()[0];
    assert!(first.pongs_received.len() <= 4, "{first:?}");
    assert!(first.incoming_messages <= 5, "{first:?}");
    assert_ne!(
        first.close_reason.as_deref(),
        Some("rate_limit"),
        "{first:?}"
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_shutdown_notice_rotates_the_connection_without_a_gap() {
    let mock = mock(Some(Duration::from_millis(5)), DAY).await;
    let mut running = spawn(config(&mock, &["BTCUSDT"], &[StreamKind::Trade]));
    until("the connection", Duration::from_secs(5), || {
        mock.ws_open_connections() == 1
    })
    .await;
    let (mut records, _) = running.records(20, Duration::from_secs(5)).await;
    mock.ws_command(WsCommand::ServerShutdown);
    until("the rotation", Duration::from_secs(5), || {
        running.stats.snapshot().rotations == 1
    })
    .await;
    let (more, rejected) = running.records(40, Duration::from_secs(5)).await;
    assert!(rejected.is_empty(), "{rejected:?}");
    records.extend(more);
    let got = ids(&records, "trade_id");
    let expected: Vec<u64> = (got[0]..got[0] + got.len() as u64).collect();
    assert_eq!(got, expected);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_sends_a_close_frame_and_returns_stopped() {
    let mock = mock(Some(Duration::from_millis(10)), DAY).await;
    let mut running = spawn(config(&mock, &["BTCUSDT"], &[StreamKind::Trade]));
    let (records, _) = running.records(3, Duration::from_secs(5)).await;
    assert_eq!(records.len(), 3);
    let asked = Instant::now();
    assert_eq!(running.stop().await.unwrap(), SourceEnd::Stopped);
    assert!(asked.elapsed() < Duration::from_secs(2));
    until("the close", Duration::from_secs(2), || {
        mock.ws_open_connections() == 0
    })
    .await;
    assert_eq!(
        mock.ws_connections()[0].close_reason.as_deref(),
        Some("client_close")
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retried_with_backoff_on_the_next_base_url() {
    let mock = mock(Some(Duration::from_millis(10)), DAY).await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("ws://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut c = config(&mock, &["BTCUSDT"], &[StreamKind::Trade]);
    c.base_urls = vec![dead_url, mock.ws_base_url()];
    let mut running = spawn(c);
    let (records, _) = running.records(3, Duration::from_secs(5)).await;
    assert_eq!(records.len(), 3);
    let stats = running.stats.snapshot();
    assert_eq!(
        (stats.connect_failures, stats.connections),
        (1, 1),
        "{stats:?}"
    );
    running.stop().await.unwrap();
}

#[test]
fn binance_ws_is_registered_with_a_documented_schema() {
    let registration = framework::ConnectorRegistration::find("binance_ws").expect("registered");
    let schema = (registration.schema)();
    let properties = schema["properties"].as_object().unwrap();
    for field in [
        "base_urls",
        "symbols",
        "streams",
        "rotate_after",
        "max_overlap",
        "connect_timeout",
        "idle_timeout",
        "backoff_initial",
        "backoff_max",
        "max_message_bytes",
        "max_buffered_messages",
    ] {
        let doc = properties[field]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(doc.len() > 20, "{field} is documented: {doc:?}");
    }
}
