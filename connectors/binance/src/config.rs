//! The `binance` source's configuration and its checks.

use std::collections::BTreeSet;

use framework::{retry::max_below_initial_issue, ConfigIssue, ConnectorConfig, DurationSpec};
use schemars::JsonSchema;
use serde::Deserialize;

/// The real API first, then the fallbacks Binance documents for the same endpoints
/// (api1-4 are faster but less stable; data-api serves public market data only).
pub const DEFAULT_BASE_URLS: [&str; 7] = [
    "https://api.binance.com",
    "https://api-gcp.binance.com",
    "https://api1.binance.com",
    "https://api2.binance.com",
    "https://api3.binance.com",
    "https://api4.binance.com",
    "https://data-api.binance.vision",
];

/// Longest symbol Binance's `symbol` parameter accepts (`^[A-Z0-9-_.]{1,20}$`).
pub const MAX_SYMBOL_LEN: usize = 20;

/// Polls Binance's spot `GET /api/v3/ticker/price` on a fixed schedule.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BinanceConfig {
    /// Base URLs of the Binance REST API, without the `/api` path, tried in order: after
    /// `failures_before_rotate` consecutive network errors or 5xx answers the source moves
    /// to the next one (wrapping around). Point this at the `binance-mock` server in tests.
    #[serde(default = "default_base_urls")]
    pub base_urls: Vec<String>,
    /// Spot symbols to poll, uppercase as Binance spells them (`BTCUSDT`). One symbol is
    /// fetched with `symbol=`, several with a single `symbols=[...]` request per tick.
    #[serde(default = "default_symbols")]
    pub symbols: Vec<String>,
    /// Time between the starts of two requests. The schedule is fixed: the time a request
    /// takes is absorbed, and after a stall the next request waits for the next slot
    /// instead of catching up with a burst.
    #[serde(default = "default_interval")]
    pub interval: DurationSpec,
    /// Longest time one request may take, from connecting to the last byte of the body;
    /// a slower request counts as a network failure and is retried with backoff.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: DurationSpec,
    /// First delay after a network error or a 5xx answer; it doubles with every
    /// consecutive failure (with random jitter) up to `backoff_max`.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial: DurationSpec,
    /// Longest delay between two retries.
    #[serde(default = "default_backoff_max")]
    pub backoff_max: DurationSpec,
    /// Consecutive network errors or 5xx answers after which the next base URL is used.
    #[serde(default = "default_failures_before_rotate")]
    #[schemars(range(min = 1, max = 1000))]
    pub failures_before_rotate: u32,
    /// Longest wait honoured after a 429/418 answer (1s to 1h): a larger `Retry-After`
    /// is cut to this, so a hostile or broken answer cannot silence the source for good.
    /// The wait is shown in `/ready` and `pipeline top`.
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after: DurationSpec,
    /// Largest answer body accepted, in bytes (1 KiB to 64 MiB). A longer body is refused
    /// while it streams in, never buffered whole: it is counted (`body_too_large`),
    /// dead-lettered without its content and retried with backoff.
    #[serde(default = "default_max_body_bytes")]
    #[schemars(range(min = 1024, max = 67108864))]
    pub max_body_bytes: u64,
}

/// Default `max_body_bytes`: a ticker answer for every Binance symbol is about 200 KB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
/// Range of `max_body_bytes`.
pub const MAX_BODY_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=64 << 20;

fn default_max_body_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}

fn default_max_retry_after() -> DurationSpec {
    DurationSpec::from_secs(300)
}

fn default_base_urls() -> Vec<String> {
    DEFAULT_BASE_URLS.iter().map(|s| s.to_string()).collect()
}
/// Default `symbols` of both Binance sources.
pub fn default_symbols() -> Vec<String> {
    vec!["BTCUSDT".to_string()]
}
fn default_interval() -> DurationSpec {
    DurationSpec::from_millis(100)
}
fn default_request_timeout() -> DurationSpec {
    DurationSpec::from_millis(1_000)
}
fn default_backoff_initial() -> DurationSpec {
    DurationSpec::from_millis(200)
}
fn default_backoff_max() -> DurationSpec {
    DurationSpec::from_secs(10)
}
fn default_failures_before_rotate() -> u32 {
    3
}

impl Default for BinanceConfig {
    fn default() -> Self {
        BinanceConfig {
            base_urls: default_base_urls(),
            symbols: default_symbols(),
            interval: default_interval(),
            request_timeout: default_request_timeout(),
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
            failures_before_rotate: default_failures_before_rotate(),
            max_retry_after: default_max_retry_after(),
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

/// Whether `symbol` is in Binance's legal range `^[A-Z0-9-_.]{1,20}$`.
pub fn is_legal_symbol(symbol: &str) -> bool {
    !symbol.is_empty()
        && symbol.len() <= MAX_SYMBOL_LEN
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// The `symbols` list of both Binance sources: non-empty, legal, no repeats.
pub fn check_symbols(symbols: &[String], issues: &mut Vec<ConfigIssue>) {
    if symbols.is_empty() {
        issues.push(ConfigIssue::new(
            "symbols",
            "at least one symbol is required",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, symbol) in symbols.iter().enumerate() {
        if !is_legal_symbol(symbol) {
            issues.push(ConfigIssue::new(
                format!("symbols[{i}]"),
                format!(
                    "{symbol:?} is not a Binance symbol: 1 to {MAX_SYMBOL_LEN} characters of A-Z, 0-9, '-', '_' or '.' (uppercase, e.g. \"BTCUSDT\")"
                ),
            ));
        }
        if !seen.insert(symbol.as_str()) {
            issues.push(ConfigIssue::new(
                format!("symbols[{i}]"),
                format!("{symbol:?} is listed more than once"),
            ));
        }
    }
}

/// The `base_urls` list of both Binance sources: at least one, each accepted by
/// `check_url` (whose error names the URL).
pub fn check_base_urls<T>(
    urls: &[String],
    check_url: fn(&str) -> Result<T, String>,
    issues: &mut Vec<ConfigIssue>,
) {
    if urls.is_empty() {
        issues.push(ConfigIssue::new(
            "base_urls",
            "at least one base URL is required",
        ));
    }
    for (i, url) in urls.iter().enumerate() {
        if let Err(message) = check_url(url) {
            issues.push(ConfigIssue::new(format!("base_urls[{i}]"), message));
        }
    }
}

impl ConnectorConfig for BinanceConfig {
    fn output_fields(&self) -> framework::contract::OutputFields {
        framework::contract::OutputFields::Known(framework::formats::price::written_fields())
    }

    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        check_symbols(&self.symbols, &mut issues);
        check_base_urls(&self.base_urls, check_base_url, &mut issues);
        if self.interval.as_millis() <= 0 {
            issues.push(ConfigIssue::new(
                "interval",
                "must be positive (e.g. \"100ms\")",
            ));
        }
        if self.request_timeout.as_millis() <= 0 {
            issues.push(ConfigIssue::new("request_timeout", "must be positive"));
        }
        if self.backoff_initial.as_millis() <= 0 {
            issues.push(ConfigIssue::new("backoff_initial", "must be positive"));
        }
        issues.extend(max_below_initial_issue(
            "backoff_initial",
            self.backoff_initial,
            "backoff_max",
            self.backoff_max,
        ));
        if self.failures_before_rotate == 0 {
            issues.push(ConfigIssue::new(
                "failures_before_rotate",
                "must be at least 1",
            ));
        } else if self.failures_before_rotate > 1000 {
            issues.push(ConfigIssue::new(
                "failures_before_rotate",
                "must be at most 1000",
            ));
        }
        if !MAX_BODY_BYTES_RANGE.contains(&self.max_body_bytes) {
            issues.push(ConfigIssue::new(
                "max_body_bytes",
                format!(
                    "must be within {} to {} bytes (1 KiB to 64 MiB)",
                    MAX_BODY_BYTES_RANGE.start(),
                    MAX_BODY_BYTES_RANGE.end()
                ),
            ));
        }
        // Upper bounds: beyond them a setting is a typo or silences the source.
        const HOUR: DurationSpec = DurationSpec::from_secs(3_600);
        for (path, value, min, max) in [
            ("interval", self.interval, 1, HOUR),
            (
                "request_timeout",
                self.request_timeout,
                1,
                DurationSpec::from_secs(300),
            ),
            ("backoff_initial", self.backoff_initial, 1, HOUR),
            ("backoff_max", self.backoff_max, 1, HOUR),
            ("max_retry_after", self.max_retry_after, 1_000, HOUR),
        ] {
            let millis = value.as_millis();
            if millis >= min && value > max {
                issues.push(ConfigIssue::new(path, format!("must be at most {max}")));
            } else if millis < min && path == "max_retry_after" {
                issues.push(ConfigIssue::new(path, "must be at least 1s"));
            }
        }
        issues
    }
}

/// An http(s) URL with a host, no query and no fragment: the API paths are appended to it.
fn check_base_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: only http and https URLs are supported"));
    }
    if url.host_str().is_none() {
        return Err(format!("{text:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?}: a base URL takes no query or fragment"));
    }
    Ok(url)
}

/// Parses a base URL that [`BinanceConfig::check`] accepted.
pub(crate) fn parse_base_url(text: &str) -> Result<reqwest::Url, String> {
    check_base_url(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> BinanceConfig {
        serde_json::from_value(json).unwrap()
    }

    fn paths(issues: &[ConfigIssue]) -> Vec<&str> {
        issues.iter().map(|i| i.path.as_str()).collect()
    }

    #[test]
    fn defaults_poll_btcusdt_every_100ms_from_the_real_api_first() {
        let c = config(serde_json::json!({}));
        assert_eq!(c.symbols, vec!["BTCUSDT"]);
        assert_eq!(c.interval.as_millis(), 100);
        assert_eq!(c.base_urls[0], "https://api.binance.com");
        assert_eq!(c.base_urls.len(), DEFAULT_BASE_URLS.len());
        assert!(c.check().is_empty(), "{:?}", c.check());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<BinanceConfig, _> =
            serde_json::from_value(serde_json::json!({"symbol": "BTCUSDT"}));
        assert!(r.is_err());
    }

    #[test]
    fn lowercase_duplicate_empty_and_too_long_symbols_are_reported_with_their_index() {
        let c = config(serde_json::json!({
            "symbols": ["btcusdt", "ETHUSDT", "ETHUSDT", "", "ABCDEFGHIJKLMNOPQRSTU", "BTC/USDT"]
        }));
        let issues = c.check();
        assert_eq!(
            paths(&issues),
            vec![
                "symbols[0]",
                "symbols[2]",
                "symbols[3]",
                "symbols[4]",
                "symbols[5]"
            ]
        );
        assert!(issues[0].message.contains("\"btcusdt\""));
        assert!(issues[1].message.contains("more than once"));
    }

    #[test]
    fn legal_symbols_include_digits_dash_underscore_and_dot() {
        for s in ["BTCUSDT", "1000SATSUSDT", "A-B_C.D", "ABCDEFGHIJKLMNOPQRST"] {
            assert!(is_legal_symbol(s), "{s}");
        }
    }

    #[test]
    fn empty_symbols_zero_interval_and_bad_urls_are_reported() {
        let c = config(serde_json::json!({
            "symbols": [],
            "interval": "0ms",
            "base_urls": ["ftp://x", "not a url", "http://127.0.0.1:1?x=1", "http://127.0.0.1:8080"],
            "backoff_initial": "2s",
            "backoff_max": "1s",
            "failures_before_rotate": 0
        }));
        let issues = c.check();
        assert_eq!(
            paths(&issues),
            vec![
                "symbols",
                "base_urls[0]",
                "base_urls[1]",
                "base_urls[2]",
                "interval",
                "backoff_max",
                "failures_before_rotate"
            ]
        );
    }
}

#[cfg(test)]
mod body_limit_tests {
    use super::*;

    #[test]
    fn max_body_bytes_defaults_to_1_mib_and_must_stay_within_1_kib_to_64_mib() {
        assert_eq!(BinanceConfig::default().max_body_bytes, 1 << 20);
        for (bytes, ok) in [
            (1023, false),
            (1024, true),
            (64 << 20, true),
            ((64 << 20) + 1, false),
        ] {
            let c = BinanceConfig {
                max_body_bytes: bytes,
                ..BinanceConfig::default()
            };
            let paths: Vec<String> = c.check().into_iter().map(|i| i.path).collect();
            assert_eq!(paths.is_empty(), ok, "{bytes}: {paths:?}");
        }
    }
}
