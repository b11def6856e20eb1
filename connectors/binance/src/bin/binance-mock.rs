//! `binance-mock`: a local Binance spot REST server (see `connector_binance::mock`).
//!
//! Prints the bound address (`127.0.0.1:PORT`) as its first stdout line, then serves until
//! SIGTERM or SIGINT. Faults are scripted with `POST /__mock/faults`.

use std::{io::Write, net::SocketAddr, process::ExitCode};

use clap::Parser;
use connector_binance::mock::{MockBinance, MockConfig};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "binance-mock",
    about = "Local Binance spot REST mock with scriptable faults"
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
