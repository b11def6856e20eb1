//! The source's own counters reach the stage metrics (what `/metrics` renders), with the
//! stage and connector labels, when it is built the way the runtime builds it.

mod common;

use std::time::{Duration, Instant};

use binance_mock::Fault;
use common::mock;
use framework::{
    connector::{Builder, SourceEvent, StageContext},
    ConnectorRegistration, SourceContext,
};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn requests_and_server_errors_are_exported_as_stage_metrics() {
    let mock = mock().await;
    mock.push_fault(Fault::ServerError, 3);
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let Builder::Source(build) = ConnectorRegistration::find("binance").unwrap().builder else {
        panic!("binance is a source");
    };
    let config = serde_json::json!({
        "base_urls": [mock.base_url()],
        "symbols": ["BTCUSDT"],
        "interval": "100ms",
        "request_timeout": "500ms",
        "backoff_initial": "20ms",
        "backoff_max": "100ms",
    });
    let stage = StageContext {
        pipeline: "p".into(),
        stage: "extract".into(),
        connector: "binance",
    };
    // Registered at build time, with the recorder the runtime installs.
    let mut source = metrics::with_local_recorder(&recorder, || build(&config, &stage)).unwrap();
    let token = CancellationToken::new();
    let (mut ctx, mut events) = SourceContext::channel(64, token.clone());
    let task = tokio::spawn(async move { source.run(&mut ctx).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(SourceEvent::Record(_))) => break,
            Ok(Some(_)) => {}
            _ => panic!("no record after the 500s"),
        }
    }
    token.cancel();
    drop(events);
    task.await.unwrap().unwrap();

    let text = handle.render();
    let value = |name: &str, label: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{"))
                    && l.contains("stage=\"extract\"")
                    && l.contains("connector=\"binance\"")
                    && l.contains(label)
            })
            .unwrap_or_else(|| panic!("no {name} {label} series in:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(
        value("pipeline_binance_request_errors_total", "kind=\"server\""),
        3
    );
    assert!(value("pipeline_binance_requests_total", "") >= 4);
    assert_eq!(value("pipeline_source_retries_total", ""), 3);
    let requests = mock.price_requests();
    assert_eq!(
        value("pipeline_binance_requests_total", "") as usize,
        requests.len(),
        "every request the mock saw is counted"
    );
}
