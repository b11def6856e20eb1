//! Per-record overhead of fetch -> validate -> emit against the in-process mock.
//!
//! `cargo run --release -p connector-binance --example bench_fetch [seconds]`
//!
//! 1. interval 0: the source's own steps back to back (`PriceClient::fetch`,
//!    `parse_ticker_prices`, `price_record`, `SourceContext::emit`), each iteration timed.
//! 2. interval 1ms: the real `BinanceSource` loop, schedule included.

use std::time::{Duration, Instant};

use binance_mock::{MockBinance, MockConfig};
use connector_binance::{
    parse_ticker_prices, price_record, BinanceConfig, BinanceSource, PriceClient,
};
use framework::{DurationSpec, Source, SourceContext};
use tokio_util::sync::CancellationToken;

fn config(base_url: String, symbols: &[&str], interval_ms: i64) -> BinanceConfig {
    BinanceConfig {
        base_urls: vec![base_url],
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        interval: DurationSpec::from_millis(interval_ms.max(1)),
        ..BinanceConfig::default()
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

async fn back_to_back(base_url: String, symbols: &[&str], run_for: Duration) {
    let config = config(base_url, symbols, 1);
    let client = PriceClient::new(&config).expect("client");
    let token = CancellationToken::new();
    let (mut ctx, mut events) = SourceContext::channel(4096, token);
    let drain = tokio::spawn(async move {
        let mut n = 0u64;
        while events.recv().await.is_some() {
            n += 1;
        }
        n
    });
    let mut per_record_us = Vec::new();
    let mut requests = 0u64;
    let started = Instant::now();
    while started.elapsed() < run_for {
        let t0 = Instant::now();
        let answer = client.fetch().await.expect("fetch");
        let parsed = parse_ticker_prices(&answer.body, client.symbols(), client.is_multi());
        assert!(parsed.rejections.is_empty());
        let n = parsed.prices.len();
        for price in &parsed.prices {
            ctx.emit(price_record(price, answer.received_ms))
                .await
                .expect("emit");
        }
        let elapsed_us = t0.elapsed().as_secs_f64() * 1e6;
        per_record_us.extend(std::iter::repeat_n(elapsed_us / n as f64, n));
        requests += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(ctx);
    let received = drain.await.expect("drain");
    per_record_us.sort_by(f64::total_cmp);
    let mean = per_record_us.iter().sum::<f64>() / per_record_us.len() as f64;
    println!(
        "interval 0   symbols={:<2} requests/s={:>8.0} records/s={:>8.0} per record: mean={:>6.1} µs p50={:>6.1} µs p99={:>6.1} µs (records received: {received})",
        symbols.len(),
        requests as f64 / secs,
        per_record_us.len() as f64 / secs,
        mean,
        percentile(&per_record_us, 0.50),
        percentile(&per_record_us, 0.99),
    );
}

async fn scheduled(base_url: String, symbols: &[&str], run_for: Duration) {
    let token = CancellationToken::new();
    let (mut ctx, mut events) = SourceContext::channel(4096, token.clone());
    let mut source = BinanceSource::new(config(base_url, symbols, 1), "bench").expect("source");
    let stats = source.stats();
    let task = tokio::spawn(async move { source.run(&mut ctx).await });
    let drain = tokio::spawn(async move {
        let mut n = 0u64;
        while events.recv().await.is_some() {
            n += 1;
        }
        n
    });
    tokio::time::sleep(run_for).await;
    token.cancel();
    task.await.expect("join").expect("run");
    let received = drain.await.expect("drain");
    let s = stats.snapshot();
    let secs = run_for.as_secs_f64();
    println!(
        "interval 1ms symbols={:<2} requests/s={:>8.0} records/s={:>8.0} (records received: {received}, rejected: {}, retries: {})",
        symbols.len(),
        s.requests as f64 / secs,
        s.records as f64 / secs,
        s.rejected_total(),
        s.retries,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let run_for = Duration::from_secs(seconds);
    let mock = MockBinance::start(MockConfig {
        // Far above what the bench sends, so no 429 skews the numbers.
        weight_limit: u32::MAX,
        ..MockConfig::default()
    })
    .await
    .expect("mock");
    for symbols in [&["BTCUSDT"][..], &["BTCUSDT", "ETHUSDT"][..]] {
        back_to_back(mock.base_url(), symbols, run_for).await;
        scheduled(mock.base_url(), symbols, run_for).await;
    }
}
