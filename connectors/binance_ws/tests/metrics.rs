//! The source's gap, reconnect and duplicate counters reach the stage metrics (what
//! `/metrics` renders) with the stage and connector labels, when it is built the way the
//! runtime builds it.

use std::time::{Duration, Instant};

use binance_mock::{MockBinance, MockConfig, WsCommand};
use framework::{
    connector::{Builder, SourceEvent, StageContext},
    ConnectorRegistration, SourceContext,
};
use tokio_util::sync::CancellationToken;

async fn records(events: &mut tokio::sync::mpsc::Receiver<SourceEvent>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    while seen < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(SourceEvent::Record(_))) => seen += 1,
            Ok(Some(_)) => {}
            _ => panic!("{seen} of {n} records within 5 s"),
        }
    }
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn gaps_and_reconnects_are_exported_with_the_stage_and_connector_labels() {
    let mock = MockBinance::start(MockConfig {
        symbols: vec!["BTCUSDT".into()],
        ws_trade_interval: None,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // Links the crate, and with it its registration.
    let _ = connector_binance_ws::BinanceWs;
    let Builder::Source(build) = ConnectorRegistration::find("binance_ws").unwrap().builder else {
        panic!("binance_ws is a source");
    };
    let config = serde_json::json!({
        "base_urls": [mock.ws_base_url()],
        "symbols": ["BTCUSDT"],
        "streams": ["trade"],
        "backoff_initial": "20ms",
        "backoff_max": "200ms",
    });
    let stage = StageContext {
        pipeline: "p".into(),
        stage: "trades".into(),
        connector: "binance_ws",
    };
    let mut source = metrics::with_local_recorder(&recorder, || build(&config, &stage)).unwrap();
    let token = CancellationToken::new();
    let (mut ctx, mut events) = SourceContext::channel(4096, token.clone());
    let task = tokio::spawn(async move { source.run(&mut ctx).await });
    until("the connection", || mock.ws_open_connections() == 1).await;
    mock.ws_command(WsCommand::Publish { count: 5 });
    records(&mut events, 5).await;
    mock.ws_command(WsCommand::Disconnect);
    until("the reconnection", || {
        mock.ws_connections().len() == 2 && mock.ws_open_connections() == 1
    })
    .await;
    mock.ws_command(WsCommand::SkipTrades { count: 7 });
    mock.ws_command(WsCommand::Publish { count: 3 });
    records(&mut events, 3).await;
    token.cancel();
    drop(events);
    task.await.unwrap().unwrap();

    let text = handle.render();
    let value = |name: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{"))
                    && l.contains("stage=\"trades\"")
                    && l.contains("connector=\"binance_ws\"")
            })
            .unwrap_or_else(|| panic!("no {name} series with both labels in:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("binance_ws_trade_id_gaps_total"), 1);
    assert_eq!(value("binance_ws_missed_trade_ids_total"), 7);
    assert_eq!(value("binance_ws_reconnects_total"), 1);
    assert_eq!(value("pipeline_source_retries_total"), 1);
}
