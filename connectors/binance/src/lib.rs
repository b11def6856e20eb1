//! `binance`: a live source polling Binance's spot `GET /api/v3/ticker/price` on a fixed
//! schedule and writing `price` records (`{"symbol","price","timestamp"}`). The local
//! Binance server its tests run against is the separate `binance-mock` crate.

pub mod client;
pub mod config;
pub mod response;
pub mod source;
pub mod stats;

use framework::{connector::StageContext, ConnectorError, RecordType, Source, SourceConnector};

pub use client::{Answer, FetchError, PriceClient};
pub use config::BinanceConfig;
pub use response::{parse_ticker_prices, price_record, Price};
pub use source::BinanceSource;
pub use stats::{SourceStats, StatsSnapshot};

/// The record type of `btc-price`-style topics.
pub use framework::formats::PRICE;

/// The `binance` source connector.
pub struct Binance;

impl SourceConnector for Binance {
    type Config = BinanceConfig;
    const NAME: &'static str = "binance";
    const SUMMARY: &'static str =
        "Polls Binance spot ticker prices (REST) on a fixed schedule; one record per symbol and answer";
    const OUTPUT: RecordType = PRICE;

    fn build(
        config: BinanceConfig,
        stage: &StageContext,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        Ok(Box::new(BinanceSource::from_stage(config, stage)?))
    }
}

framework::register_source!(Binance);
