//! `binance_ws`: a live source reading Binance's WebSocket market streams (`trade`,
//! `aggTrade`, `bookTicker`) of any number of symbols over the combined-stream endpoint,
//! writing one record per message with exact decimal numbers and the exchange's times.
//!
//! - [`config`]: settings and their checks; [`event`]: frames to records (pure);
//! - [`decimal`]: Binance's decimal strings as exact JSON numbers; [`sequence`]:
//!   de-duplication and gap detection by id;
//! - [`connection`]: one WebSocket connection; [`source`]: rotation, reconnects, stop.

pub mod config;
pub mod connection;
pub mod decimal;
pub mod event;
pub mod sequence;
pub mod source;
pub mod stats;

use framework::{connector::StageContext, ConnectorError, RecordType, Source, SourceConnector};

pub use config::{BinanceWsConfig, StreamKind};
pub use source::BinanceWsSource;
pub use stats::{WsStats, WsStatsSnapshot};

/// The `binance_ws` source connector.
pub struct BinanceWs;

impl SourceConnector for BinanceWs {
    type Config = BinanceWsConfig;
    const NAME: &'static str = "binance_ws";
    const SUMMARY: &'static str =
        "Reads Binance WebSocket market streams (trade, aggTrade, bookTicker); one record per message, exact decimals";
    // Record shapes depend on the stream kinds (docs/semantics.md): any JSON object.
    const OUTPUT: RecordType = RecordType::ANY_JSON;

    fn build(
        config: BinanceWsConfig,
        stage: &StageContext,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        Ok(Box::new(BinanceWsSource::from_checked(config, stage)?))
    }
}

framework::register_source!(BinanceWs);
