//! The `binance_ws` source's configuration and its checks.

use std::collections::BTreeSet;

use connector_binance::config::{check_base_urls, check_symbols};
use framework::{
    contract::{JsonType, OutputFields, WrittenField},
    retry::max_below_initial_issue,
    ConfigIssue, ConnectorConfig, DurationSpec,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Binance's stream endpoints, tried in order (the market-data-only host last).
pub const DEFAULT_BASE_URLS: [&str; 3] = [
    "wss://stream.binance.com:9443",
    "wss://stream.binance.com:443",
    "wss://data-stream.binance.vision",
];

/// Binance's limit of streams on one connection.
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;

/// A market stream of each symbol.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum StreamKind {
    /// Every trade (`<symbol>@trade`): one record per trade, keyed by trade id.
    #[serde(rename = "trade")]
    Trade,
    /// Trades aggregated per taker order and price (`<symbol>@aggTrade`).
    #[serde(rename = "aggTrade")]
    AggTrade,
    /// Best bid and ask, on every change (`<symbol>@bookTicker`).
    #[serde(rename = "bookTicker")]
    BookTicker,
}

impl StreamKind {
    /// The suffix of the stream name (`btcusdt@aggTrade`).
    pub fn suffix(self) -> &'static str {
        match self {
            StreamKind::Trade => "trade",
            StreamKind::AggTrade => "aggTrade",
            StreamKind::BookTicker => "bookTicker",
        }
    }

    /// The fields of this stream's records (docs/semantics.md), written by `event.rs`.
    pub fn written_fields(self) -> Vec<WrittenField> {
        use JsonType::{Boolean, Number, String};
        let fields: &[(&str, JsonType)] = match self {
            StreamKind::Trade => &[
                ("trade_id", Number),
                ("price", Number),
                ("quantity", Number),
                ("buyer_is_maker", Boolean),
                ("event_time", String),
            ],
            StreamKind::AggTrade => &[
                ("agg_trade_id", Number),
                ("first_trade_id", Number),
                ("last_trade_id", Number),
                ("price", Number),
                ("quantity", Number),
                ("buyer_is_maker", Boolean),
                ("event_time", String),
            ],
            StreamKind::BookTicker => &[
                ("update_id", Number),
                ("bid_price", Number),
                ("bid_quantity", Number),
                ("ask_price", Number),
                ("ask_quantity", Number),
            ],
        };
        [("symbol", String), ("timestamp", String)]
            .iter()
            .chain(fields)
            .map(|(name, json_type)| WrittenField::new(*name, *json_type))
            .collect()
    }

    /// Whether consecutive messages carry consecutive ids (trade ids, aggregate ids), so
    /// a jump is a gap; bookTicker update ids only increase.
    pub fn has_consecutive_ids(self) -> bool {
        !matches!(self, StreamKind::BookTicker)
    }
}

/// Reads Binance's WebSocket market streams (trade, aggTrade, bookTicker).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BinanceWsConfig {
    /// Stream endpoints (`ws://` or `wss://`, without a path): the source connects to
    /// `<base>/stream?streams=...`. After a failed connection attempt the next one is
    /// tried (wrapping around). Point this at the `binance-mock` server in tests.
    #[serde(default = "default_base_urls")]
    pub base_urls: Vec<String>,
    /// Spot symbols, uppercase as Binance spells them (`BTCUSDT`); lowercased in stream
    /// names. Each must match `^[A-Z0-9-_.]{1,20}$`, listed once.
    #[serde(default = "connector_binance::config::default_symbols")]
    pub symbols: Vec<String>,
    /// Streams of every symbol: `trade`, `aggTrade`, `bookTicker`. Symbols × streams is
    /// at most 1024 (Binance's limit per connection).
    #[serde(default = "default_streams")]
    pub streams: Vec<StreamKind>,
    /// A connection is replaced this long after it opened (1s to 23h50m), before
    /// Binance's 24 h cut-off: a new one is opened, both run until the new one has
    /// caught up, duplicates are dropped by id, then the old one is closed.
    #[serde(default = "default_rotate_after")]
    pub rotate_after: DurationSpec,
    /// Longest time the old and the new connection both run during a rotation (100ms to
    /// 5m); after it the old one is closed even if a quiet stream has not proven overlap.
    #[serde(default = "default_max_overlap")]
    pub max_overlap: DurationSpec,
    /// Longest time a connection attempt (TCP, TLS, WebSocket handshake) may take
    /// (100ms to 5m).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: DurationSpec,
    /// A connection that receives no frame at all (data or ping) for this long is
    /// considered dead and replaced (1s to 10m; Binance pings every 20 s).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: DurationSpec,
    /// First delay before reconnecting after a failure (10ms to 1h); it doubles with
    /// every consecutive failure, with equal jitter, up to `backoff_max`.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial: DurationSpec,
    /// Longest delay between two connection attempts (at least `backoff_initial`, at
    /// most 1h).
    #[serde(default = "default_backoff_max")]
    pub backoff_max: DurationSpec,
    /// Largest WebSocket message (and frame) accepted, in bytes (1 KiB to 16 MiB). A
    /// larger one is refused before it is buffered: dead-lettered as
    /// `oversized_message` and the connection is replaced.
    #[serde(default = "default_max_message_bytes")]
    #[schemars(range(min = 1024, max = 16777216))]
    pub max_message_bytes: u64,
    /// Messages the new connection may hold back during a rotation until the old one is
    /// closed (100 to 1000000); when full, the rotation completes at once.
    #[serde(default = "default_max_buffered_messages")]
    #[schemars(range(min = 100, max = 1000000))]
    pub max_buffered_messages: u32,
}

fn default_base_urls() -> Vec<String> {
    DEFAULT_BASE_URLS.iter().map(|s| s.to_string()).collect()
}
fn default_streams() -> Vec<StreamKind> {
    vec![StreamKind::AggTrade]
}
fn default_rotate_after() -> DurationSpec {
    DurationSpec::from_secs(23 * 3600)
}
fn default_max_overlap() -> DurationSpec {
    DurationSpec::from_secs(10)
}
fn default_connect_timeout() -> DurationSpec {
    DurationSpec::from_secs(10)
}
fn default_idle_timeout() -> DurationSpec {
    DurationSpec::from_secs(60)
}
fn default_backoff_initial() -> DurationSpec {
    DurationSpec::from_secs(1)
}
fn default_backoff_max() -> DurationSpec {
    DurationSpec::from_secs(60)
}
fn default_max_message_bytes() -> u64 {
    64 * 1024
}
fn default_max_buffered_messages() -> u32 {
    10_000
}

impl Default for BinanceWsConfig {
    fn default() -> Self {
        BinanceWsConfig {
            base_urls: default_base_urls(),
            symbols: connector_binance::config::default_symbols(),
            streams: default_streams(),
            rotate_after: default_rotate_after(),
            max_overlap: default_max_overlap(),
            connect_timeout: default_connect_timeout(),
            idle_timeout: default_idle_timeout(),
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
            max_message_bytes: default_max_message_bytes(),
            max_buffered_messages: default_max_buffered_messages(),
        }
    }
}

impl BinanceWsConfig {
    /// Every stream name, symbol-major: `btcusdt@trade`, `btcusdt@aggTrade`, ...
    pub fn stream_names(&self) -> Vec<(String, String, StreamKind)> {
        self.symbols
            .iter()
            .flat_map(|symbol| {
                self.streams.iter().map(move |kind| {
                    (
                        format!("{}@{}", symbol.to_ascii_lowercase(), kind.suffix()),
                        symbol.clone(),
                        *kind,
                    )
                })
            })
            .collect()
    }
}

/// An `ws`/`wss` URL with a host and nothing after it but an optional `/`.
pub(crate) fn check_base_url(text: &str) -> Result<(), String> {
    let (scheme, rest) = text.split_once("://").ok_or_else(|| {
        format!("{text:?} is not a URL (expected e.g. \"wss://stream.binance.com:9443\")")
    })?;
    if !matches!(scheme, "ws" | "wss") {
        return Err(format!(
            "{text:?}: only ws:// and wss:// URLs are supported"
        ));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    if authority.contains(['/', '?', '#', ' ', '@']) {
        return Err(format!(
            "{text:?}: a base URL is a host and port only (the source adds /stream?streams=...)"
        ));
    }
    Ok(())
}

impl ConnectorConfig for BinanceWsConfig {
    /// The union of the configured streams' fields: one topic may carry several kinds.
    fn output_fields(&self) -> OutputFields {
        let mut fields: Vec<WrittenField> = Vec::new();
        for field in self.streams.iter().flat_map(|kind| kind.written_fields()) {
            if !fields.iter().any(|f| f.path == field.path) {
                fields.push(field);
            }
        }
        OutputFields::Known(fields)
    }

    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        check_symbols(&self.symbols, &mut issues);
        if self.streams.is_empty() {
            issues.push(ConfigIssue::new(
                "streams",
                "at least one stream is required (trade, aggTrade or bookTicker)",
            ));
        }
        let mut kinds = BTreeSet::new();
        for (i, kind) in self.streams.iter().enumerate() {
            if !kinds.insert(kind) {
                issues.push(ConfigIssue::new(
                    format!("streams[{i}]"),
                    format!("{:?} is listed more than once", kind.suffix()),
                ));
            }
        }
        let count = self.symbols.len().saturating_mul(self.streams.len());
        if count > MAX_STREAMS_PER_CONNECTION {
            issues.push(ConfigIssue::new(
                "symbols",
                format!(
                    "{} symbols × {} streams = {count} streams: Binance allows at most {MAX_STREAMS_PER_CONNECTION} per connection (split them across stages)",
                    self.symbols.len(),
                    self.streams.len()
                ),
            ));
        }
        check_base_urls(&self.base_urls, check_base_url, &mut issues);
        let ms = DurationSpec::from_millis;
        let s = DurationSpec::from_secs;
        for (path, value, min, max) in [
            (
                "rotate_after",
                self.rotate_after,
                s(1),
                s(23 * 3600 + 50 * 60),
            ),
            ("max_overlap", self.max_overlap, ms(100), s(300)),
            ("connect_timeout", self.connect_timeout, ms(100), s(300)),
            ("idle_timeout", self.idle_timeout, s(1), s(600)),
            ("backoff_initial", self.backoff_initial, ms(10), s(3600)),
            ("backoff_max", self.backoff_max, ms(10), s(3600)),
        ] {
            if value < min || value > max {
                issues.push(ConfigIssue::new(
                    path,
                    format!("must be within {min} to {max}"),
                ));
            }
        }
        issues.extend(max_below_initial_issue(
            "backoff_initial",
            self.backoff_initial,
            "backoff_max",
            self.backoff_max,
        ));
        if !(1024..=16 << 20).contains(&self.max_message_bytes) {
            issues.push(ConfigIssue::new(
                "max_message_bytes",
                "must be within 1024 to 16777216 bytes (1 KiB to 16 MiB)",
            ));
        }
        if !(100..=1_000_000).contains(&self.max_buffered_messages) {
            issues.push(ConfigIssue::new(
                "max_buffered_messages",
                "must be within 100 to 1000000",
            ));
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> BinanceWsConfig {
        serde_json::from_value(json).unwrap()
    }

    fn paths(c: &BinanceWsConfig) -> Vec<String> {
        c.check().into_iter().map(|i| i.path).collect()
    }

    #[test]
    fn defaults_read_btcusdt_agg_trades_from_the_real_endpoint_and_pass_the_checks() {
        let c = config(serde_json::json!({}));
        assert_eq!(c.base_urls[0], "wss://stream.binance.com:9443");
        assert_eq!(c.streams, vec![StreamKind::AggTrade]);
        assert_eq!(c.rotate_after.as_millis(), 23 * 3600 * 1000);
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert_eq!(
            c.stream_names()[0],
            (
                "btcusdt@aggTrade".to_string(),
                "BTCUSDT".to_string(),
                StreamKind::AggTrade
            )
        );
    }

    #[test]
    fn stream_kinds_are_an_enum_spelled_like_binance() {
        let c = config(serde_json::json!({"streams": ["trade", "aggTrade", "bookTicker"]}));
        assert_eq!(c.streams.len(), 3);
        for bad in ["aggtrade", "kline_1m", "depth"] {
            let r: Result<BinanceWsConfig, _> =
                serde_json::from_value(serde_json::json!({ "streams": [bad] }));
            assert!(r.is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_symbols_duplicate_streams_and_urls_are_reported_at_their_path() {
        let c = config(serde_json::json!({
            "symbols": ["btcusdt", "ETHUSDT", "ETHUSDT"],
            "streams": ["trade", "trade"],
            "base_urls": ["https://stream.binance.com", "wss://host/ws", "ws://127.0.0.1:9"]
        }));
        assert_eq!(
            paths(&c),
            [
                "symbols[0]",
                "symbols[2]",
                "streams[1]",
                "base_urls[0]",
                "base_urls[1]"
            ]
        );
    }

    #[test]
    fn more_than_1024_streams_is_a_config_error_and_1024_is_fine() {
        let symbols = |n: usize| -> Vec<String> { (0..n).map(|i| format!("S{i}USDT")).collect() };
        let c = BinanceWsConfig {
            symbols: symbols(512),
            streams: vec![StreamKind::Trade, StreamKind::AggTrade],
            ..BinanceWsConfig::default()
        };
        assert!(c.check().is_empty());
        let c = BinanceWsConfig {
            symbols: symbols(342),
            streams: vec![
                StreamKind::Trade,
                StreamKind::AggTrade,
                StreamKind::BookTicker,
            ],
            ..BinanceWsConfig::default()
        };
        let issues = c.check();
        assert_eq!(issues.len(), 1);
        assert!(
            issues[0].message.contains("1026 streams"),
            "{}",
            issues[0].message
        );
    }

    #[test]
    fn durations_and_sizes_have_ranges() {
        let c = config(serde_json::json!({
            "rotate_after": "24h",
            "max_overlap": "0ms",
            "connect_timeout": "10m",
            "idle_timeout": "500ms",
            "backoff_initial": "2s",
            "backoff_max": "1s",
            "max_message_bytes": 100,
            "max_buffered_messages": 10
        }));
        assert_eq!(
            paths(&c),
            [
                "rotate_after",
                "max_overlap",
                "connect_timeout",
                "idle_timeout",
                "backoff_max",
                "max_message_bytes",
                "max_buffered_messages"
            ]
        );
        let ok = config(serde_json::json!({"rotate_after": "1s", "max_overlap": "100ms"}));
        assert!(ok.check().is_empty());
    }
}
