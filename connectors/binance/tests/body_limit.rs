//! `max_body_bytes`: an answer larger than the limit is refused with a reason instead of
//! being read into memory whole (issue 15).

mod common;

use connector_binance::{FetchError, PriceClient};
use framework::ConnectorConfig;

#[tokio::test]
async fn an_answer_larger_than_max_body_bytes_is_refused_and_a_smaller_one_is_read() {
    let mock = common::mock().await;
    let mut config = common::config(&mock, &["BTCUSDT", "ETHUSDT", "BNBUSDT"]);
    let client = PriceClient::new(&config).expect("client");
    let answer = client
        .fetch()
        .await
        .expect("an answer within the default limit");
    assert!(answer.status.is_success());
    let size = answer.body.len();
    assert!(size > 64, "three symbols take more than 64 bytes: {size}");

    config.max_body_bytes = 64;
    assert!(config.check().is_empty(), "64 bytes is in range");
    let client = PriceClient::new(&config).expect("client");
    match client.fetch().await {
        Err(FetchError::TooLarge { limit, .. }) => assert_eq!(limit, 64),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    config.max_body_bytes = size;
    let client = PriceClient::new(&config).expect("client");
    assert_eq!(
        client
            .fetch()
            .await
            .expect("exactly at the limit")
            .body
            .len(),
        size
    );
}

#[test]
fn max_body_bytes_out_of_range_is_a_config_issue() {
    for bad in [0, 63, 64 * 1024 * 1024 + 1] {
        let config = connector_binance::BinanceConfig {
            max_body_bytes: bad,
            ..Default::default()
        };
        let issues = config.check();
        assert!(
            issues.iter().any(|i| i.path == "max_body_bytes"),
            "{bad}: {issues:?}"
        );
    }
}
