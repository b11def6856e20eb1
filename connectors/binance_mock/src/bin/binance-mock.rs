//! `binance-mock`: a local Binance spot server, REST and WebSocket streams (see the
//! `binance_mock` library).
//!
//! Prints the bound address (`127.0.0.1:PORT`) as its first stdout line, then serves until
//! SIGTERM or SIGINT. Faults are scripted with `POST /__mock/faults` (REST) and
//! `POST /__mock/ws` (streams).

use std::{io::Write, net::SocketAddr, process::ExitCode, time::Duration};

use binance_mock::{MockBinance, MockConfig};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "binance-mock",
    about = "Local Binance spot mock (REST ticker and WebSocket streams) with scriptable faults"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Seed of the price random walk.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Known symbols, comma-separated, in exchange order.
    #[arg(long, value_delimiter = ',', default_value = "BTCUSDT,ETHUSDT,BNBUSDT")]
    symbols: Vec<String>,
    /// REQUEST_WEIGHT limit per minute before answering 429.
    #[arg(long, default_value_t = 6000)]
    weight_limit: u32,
    /// Chance that a price moves on each ticker request.
    #[arg(long, default_value_t = 0.1)]
    change_probability: f64,
    /// Streams: milliseconds between two trades of each symbol (0: only scripted trades,
    /// `POST /__mock/ws {"kind":"publish","count":N}`).
    #[arg(long, default_value_t = 100)]
    ws_trade_interval_ms: u64,
    /// Streams: seconds between two server pings.
    #[arg(long, default_value_t = 20)]
    ws_ping_interval_secs: u64,
    /// Streams: seconds after which a connection is closed (Binance: 24 h).
    #[arg(long, default_value_t = 86_400)]
    ws_max_lifetime_secs: u64,
}

async fn wait_for_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.change_probability) {
        eprintln!("binance-mock: --change-probability must be within 0..=1");
        return ExitCode::from(2);
    }
    let config = MockConfig {
        listen: args.listen,
        symbols: args.symbols,
        seed: args.seed,
        weight_limit: args.weight_limit,
        change_probability: args.change_probability,
        ws_trade_interval: (args.ws_trade_interval_ms > 0)
            .then(|| Duration::from_millis(args.ws_trade_interval_ms)),
        ws_ping_interval: Duration::from_secs(args.ws_ping_interval_secs.max(1)),
        ws_max_lifetime: Duration::from_secs(args.ws_max_lifetime_secs.max(1)),
        ..MockConfig::default()
    };
    let handle = match MockBinance::start(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("binance-mock: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "{}", handle.addr())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // Whoever started us reads the address from stdout; without it the mock is useless.
        eprintln!("binance-mock: cannot write the bound address to stdout");
        return ExitCode::FAILURE;
    }
    tracing::info!(addr = %handle.addr(), "binance mock serving");
    let result = wait_for_signal().await;
    handle.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("binance-mock: cannot wait for signals: {e}");
            ExitCode::FAILURE
        }
    }
}
