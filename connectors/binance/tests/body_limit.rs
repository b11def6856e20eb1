//! `max_body_bytes`: an oversized answer is refused while it streams in, counted,
//! dead-lettered without its content, and the source goes on.

mod common;

use std::time::Duration;

use binance_mock::Fault;
use connector_binance::{response::reason, BinanceConfig, FetchError, PriceClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server whose answer is an endless chunked body: only a streaming cap survives it.
async fn endless_body_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 4096, " ".repeat(4096));
                while socket.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_endless_chunked_body_is_refused_at_max_body_bytes_without_buffering_it() {
    let base = endless_body_server().await;
    let config = BinanceConfig {
        base_urls: vec![base],
        max_body_bytes: 64 * 1024,
        ..BinanceConfig::default()
    };
    let client = PriceClient::new(&config).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), client.fetch())
        .await
        .expect("the capped read ends although the body never does");
    match result {
        Err(FetchError::BodyTooLarge {
            limit, declared, ..
        }) => {
            assert_eq!(limit, 64 * 1024);
            assert_eq!(declared, None);
        }
        other => panic!("expected BodyTooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_dead_lettered_counted_and_the_source_recovers() {
    let mock = common::mock().await;
    mock.push_fault(Fault::HugeBody { bytes: 2 << 20 }, 1);
    let mut config = common::config(&mock, &["BTCUSDT"]);
    config.max_body_bytes = 1 << 20;
    let mut running = common::spawn(config);
    let (record, rejected) = running.next_record(Duration::from_secs(5)).await;
    assert!(record.is_some(), "the source recovers after the refusal");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let (why, detail, payload) = &rejected[0];
    assert_eq!(*why, reason::BODY_TOO_LARGE);
    assert!(
        detail.contains("max_body_bytes (1048576 bytes)"),
        "{detail}"
    );
    assert!(
        detail.contains("Content-Length 2097152"),
        "the declared size is reported: {detail}"
    );
    assert!(payload.is_empty(), "the oversized body is not kept");
    let stats = running.stats.snapshot();
    assert_eq!(stats.rejected(reason::BODY_TOO_LARGE), 1);
    assert!(stats.retries >= 1);
    running.stop().await.unwrap();
}
