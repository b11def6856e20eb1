//! The Binance mock over real HTTP: shapes, headers, error codes, weights, faults, binary.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use binance_mock::{Fault, FaultStep, MockBinance, MockConfig, MockHandle};

async fn start(config: MockConfig) -> MockHandle {
    MockBinance::start(config).await.unwrap()
}

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    let value = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
    };
    (status, headers, value)
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn ping_time_and_ticker_answers_have_binance_shapes_and_headers() {
    let mock = start(MockConfig::default()).await;
    let base = mock.base_url();

    let (status, headers, body) = get(&format!("{base}/api/v3/ping")).await;
    assert_eq!((status, body), (200, serde_json::json!({})));
    assert_eq!(
        header(&headers, "content-type").as_deref(),
        Some("application/json;charset=UTF-8")
    );
    assert_eq!(
        header(&headers, "x-mbx-used-weight-1m").as_deref(),
        Some("1")
    );

    let (_, _, body) = get(&format!("{base}/api/v3/time")).await;
    let server_time = body["serverTime"].as_i64().unwrap();
    assert!((server_time - chrono::Utc::now().timestamp_millis()).abs() < 5_000);

    let (status, headers, body) = get(&format!("{base}/api/v3/ticker/price?symbol=BTCUSDT")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"symbol": "BTCUSDT", "price": "97009.02000000"})
    );
    // ping 1 + time 1 + ticker 2
    assert_eq!(
        header(&headers, "x-mbx-used-weight-1m").as_deref(),
        Some("4")
    );
    assert_eq!(header(&headers, "x-mbx-used-weight").as_deref(), Some("4"));

    // Raw JSON array (as curl would send it) and URL-encoded give the same answer shape,
    // in exchange order.
    let raw = format!(r#"{base}/api/v3/ticker/price?symbols=["BNBUSDT","BTCUSDT"]"#);
    let (status, headers, body) = get(&raw).await;
    assert_eq!(status, 200);
    let symbols: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, vec!["BTCUSDT", "BNBUSDT"]);
    for item in body.as_array().unwrap() {
        let price = item["price"].as_str().unwrap();
        assert_eq!(price.split_once('.').unwrap().1.len(), 8, "{price}");
    }
    assert_eq!(
        header(&headers, "x-mbx-used-weight-1m").as_deref(),
        Some("8")
    );

    let (_, _, all) = get(&format!("{base}/api/v3/ticker/price")).await;
    assert_eq!(all.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn bad_parameters_get_binance_error_codes_with_http_400() {
    let mock = start(MockConfig::default()).await;
    let base = mock.base_url();
    let cases = [
        ("symbol=XYZUSDT", -1121, "Invalid symbol."),
        (
            "symbol=btcusdt",
            -1100,
            "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
        ),
        (
            "symbol=BTCUSDT&symbols=%5B%22ETHUSDT%22%5D",
            -1128,
            "Combination of optional parameters invalid.",
        ),
        (
            "symbols=%5B%22BTCUSDT%22,%22BTCUSDT%22%5D",
            -1151,
            "Symbol is present multiple times in the list.",
        ),
        (
            "symbols=%5B%22BTCUSDT%22,%22XYZUSDT%22%5D",
            -1121,
            "Invalid symbol.",
        ),
    ];
    for (query, code, msg) in cases {
        let (status, headers, body) = get(&format!("{base}/api/v3/ticker/price?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(
            body,
            serde_json::json!({"code": code, "msg": msg}),
            "{query}"
        );
        assert!(header(&headers, "x-mbx-used-weight-1m").is_some());
    }
}

#[tokio::test]
async fn exceeding_the_weight_limit_gives_429_with_retry_after_and_code_1003() {
    let mock = start(MockConfig {
        weight_limit: 6,
        ..MockConfig::default()
    })
    .await;
    let url = format!("{}/api/v3/ticker/price?symbol=BTCUSDT", mock.base_url());
    for expected_weight in ["2", "4", "6"] {
        let (status, headers, _) = get(&url).await;
        assert_eq!(status, 200);
        assert_eq!(
            header(&headers, "x-mbx-used-weight-1m").as_deref(),
            Some(expected_weight)
        );
    }
    let (status, headers, body) = get(&url).await;
    // Unless the clock minute rolled over between the requests.
    if header(&headers, "x-mbx-used-weight-1m").as_deref() == Some("6") {
        assert_eq!(status, 429);
        assert_eq!(body["code"], -1003);
        assert!(body["msg"].as_str().unwrap().starts_with(
            "Too much request weight used; current limit is 6 request weight per 1 MINUTE."
        ));
        let retry_after: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
    }
}

#[tokio::test]
async fn faults_apply_in_order_one_per_ticker_request_and_are_logged() {
    let mock = start(MockConfig::default()).await;
    let url = format!("{}/api/v3/ticker/price?symbol=ETHUSDT", mock.base_url());
    mock.set_fault_plan(vec![
        FaultStep {
            fault: Fault::RateLimited {
                retry_after_secs: 7,
            },
            times: 1,
        },
        FaultStep {
            fault: Fault::Banned {
                retry_after_secs: 120,
            },
            times: 1,
        },
        FaultStep {
            fault: Fault::ServerError,
            times: 2,
        },
    ]);
    mock.push_fault(Fault::WrongSymbol, 1);
    mock.push_fault(Fault::NegativePrice, 1);
    mock.push_fault(Fault::ZeroPrice, 1);
    mock.push_fault(Fault::EmptyArray, 1);
    mock.push_fault(Fault::NonNumericPrice, 1);

    let (status, headers, body) = get(&url).await;
    assert_eq!((status, body["code"].as_i64()), (429, Some(-1003)));
    assert_eq!(header(&headers, "retry-after").as_deref(), Some("7"));
    let (status, headers, body) = get(&url).await;
    assert_eq!(status, 418);
    assert!(body["msg"]
        .as_str()
        .unwrap()
        .starts_with("Way too much request weight used; IP banned until "));
    assert_eq!(header(&headers, "retry-after").as_deref(), Some("120"));
    for _ in 0..2 {
        assert_eq!(get(&url).await.0, 500);
    }
    let (_, _, body) = get(&url).await;
    assert_eq!(body["symbol"], "BTCUSDT", "a symbol that was not asked for");
    let (_, _, body) = get(&url).await;
    assert!(body["price"].as_str().unwrap().starts_with("-3500."));
    let (_, _, body) = get(&url).await;
    assert_eq!(body["price"], "0.00000000");
    let (_, _, body) = get(&url).await;
    assert_eq!(body, serde_json::json!([]));
    let (_, _, body) = get(&url).await;
    assert_eq!(body["price"], "NaN");
    let (status, _, body) = get(&url).await;
    assert_eq!(status, 200);
    assert_eq!(body["symbol"], "ETHUSDT");
    assert!(mock.pending_faults().is_empty());

    let statuses: Vec<Option<u16>> = mock.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [429, 418, 500, 500, 200, 200, 200, 200, 200, 200]
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        mock.requests()[0].fault,
        Some(Fault::RateLimited {
            retry_after_secs: 7
        })
    );
}

#[tokio::test]
async fn malformed_dropped_and_slow_faults_misbehave_at_the_transport_level() {
    let mock = start(MockConfig::default()).await;
    let url = format!("{}/api/v3/ticker/price?symbol=BTCUSDT", mock.base_url());
    mock.push_fault(Fault::MalformedJson, 1);
    let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
    assert!(body.starts_with(br#"{"symbol":"BTCUSDT""#));

    mock.push_fault(Fault::DropConnection, 1);
    let error = reqwest::get(&url)
        .await
        .expect_err("no answer on a dropped connection");
    assert!(!error.is_status());

    mock.push_fault(Fault::Slow { delay_ms: 300 }, 1);
    let started = std::time::Instant::now();
    let (status, _, _) = get(&url).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let statuses: Vec<Option<u16>> = mock.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Some(200), None, Some(200)]);
}

#[tokio::test]
async fn prices_walk_on_a_cent_tick_with_long_unchanged_runs_and_repeat_per_seed() {
    async fn walk(seed: u64) -> Vec<String> {
        let mock = start(MockConfig {
            seed,
            ..MockConfig::default()
        })
        .await;
        let client = reqwest::Client::new();
        let url = format!("{}/api/v3/ticker/price?symbol=BTCUSDT", mock.base_url());
        let mut prices = Vec::new();
        for _ in 0..300 {
            let v: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
            prices.push(v["price"].as_str().unwrap().to_string());
        }
        prices
    }
    let a = walk(7).await;
    assert_eq!(a, walk(7).await, "same seed, same prices");
    assert_ne!(a, walk(8).await, "another seed, other prices");
    let cents: Vec<i64> = a
        .iter()
        .map(|p| {
            let (int, frac) = p.split_once('.').unwrap();
            assert_eq!(&frac[2..], "000000", "{p}");
            int.parse::<i64>().unwrap() * 100 + frac[..2].parse::<i64>().unwrap()
        })
        .collect();
    let changes = cents.windows(2).filter(|w| w[0] != w[1]).count();
    // ~10% of requests move the price: 30 of 299 expected; allow wide binomial slack.
    assert!(
        (10..=60).contains(&changes),
        "{changes} changes in 299 steps"
    );
}

#[tokio::test]
async fn control_endpoints_script_faults_and_list_requests_over_http() {
    let mock = start(MockConfig::default()).await;
    let base = mock.base_url();
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/__mock/faults"))
        .body(r#"[{"kind":"server_error","times":2},{"kind":"slow","delay_ms":10}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let pending: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        pending,
        serde_json::json!([{"kind":"server_error","times":2},{"kind":"slow","delay_ms":10,"times":1}])
    );
    let replaced: serde_json::Value = client
        .post(format!("{base}/__mock/faults?replace=true"))
        .body(r#"{"kind":"rate_limited","retry_after_secs":3}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        replaced,
        serde_json::json!([{"kind":"rate_limited","retry_after_secs":3,"times":1}])
    );
    let bad = client
        .post(format!("{base}/__mock/faults"))
        .body(r#"{"kind":"meteor_strike"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    assert_eq!(
        get(&format!("{base}/api/v3/ticker/price?symbol=BTCUSDT"))
            .await
            .0,
        429
    );
    let (status, _, log) = get(&format!("{base}/__mock/requests")).await;
    assert_eq!(status, 200);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 1, "control requests are not logged");
    assert_eq!(log[0]["path"], "/api/v3/ticker/price");
    assert_eq!(log[0]["query"], "symbol=BTCUSDT");
    assert_eq!(log[0]["status"], 429);
    assert_eq!(log[0]["fault"]["kind"], "rate_limited");
    assert!(log[0]["at_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(
        get(&format!("{base}/__mock/faults")).await.2,
        serde_json::json!([])
    );
}

#[test]
fn binary_prints_its_address_first_serves_and_exits_0_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_binance-mock"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "3",
            "--symbols",
            "BTCUSDT,ETHUSDT",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line.trim().parse().expect("first line is the address");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, _, body) = runtime.block_on(get(&format!(
        "http://{addr}/api/v3/ticker/price?symbols=%5B%22ETHUSDT%22,%22BTCUSDT%22%5D"
    )));
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 2);
    let (status, _, _) = runtime.block_on(get(&format!(
        "http://{addr}/api/v3/ticker/price?symbol=BNBUSDT"
    )));
    assert_eq!(status, 400, "only --symbols are known");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
