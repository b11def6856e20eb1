//! The HTTP side: one pooled client, the ticker URL per base URL, one request at a time.

use std::time::Duration;

use bytes::Bytes;
use framework::ConnectorError;
use reqwest::{header::RETRY_AFTER, StatusCode, Url};

use crate::config::{parse_base_url, BinanceConfig};

/// The used-weight header of the 1-minute window (header names are case-insensitive).
pub const USED_WEIGHT_HEADER: &str = "x-mbx-used-weight-1m";
/// Binance's REQUEST_WEIGHT limit per minute (since 2023-08-25).
pub const WEIGHT_LIMIT_PER_MINUTE: u64 = 6_000;

/// An HTTP answer, body fully received.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    /// `Retry-After` in whole seconds, when present and numeric.
    pub retry_after_secs: Option<u64>,
    /// `x-mbx-used-weight-1m`, when present and numeric.
    pub used_weight: Option<u64>,
    pub body: Bytes,
    /// Wall-clock instant (epoch ms) at which the last byte of the body arrived.
    pub received_ms: i64,
}

/// A request that got no complete HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url} timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The answer's body is longer than `max_body_bytes`: refused without being buffered.
    #[error("GET {url}: the answer's body is larger than max_body_bytes ({limit} bytes){}", declared.map(|n| format!(" (Content-Length {n})")).unwrap_or_default())]
    BodyTooLarge {
        url: String,
        limit: u64,
        declared: Option<u64>,
    },
    #[error("GET {url} failed: {source}")]
    Network {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Fetches `ticker/price` for the configured symbols from the current base URL.
#[derive(Debug, Clone)]
pub struct PriceClient {
    http: reqwest::Client,
    bases: Vec<Url>,
    tickers: Vec<Url>,
    current: usize,
    symbols: Vec<String>,
    timeout: Duration,
    max_body_bytes: u64,
}

/// `base` + `path`, keeping any path prefix of the base (`http://host/prefix`).
fn join(base: &Url, path_and_query: &str) -> Result<Url, String> {
    let text = format!("{}{}", base.as_str().trim_end_matches('/'), path_and_query);
    Url::parse(&text).map_err(|e| format!("{text:?}: {e}"))
}

impl PriceClient {
    /// Builds the client. Expects a config that passed [`framework::ConnectorConfig::check`].
    pub fn new(config: &BinanceConfig) -> Result<Self, ConnectorError> {
        let timeout = config.request_timeout.as_std();
        let http = reqwest::Client::builder()
            // The timeout covers connect, headers and body, so a trickling body is caught.
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(2)
            .user_agent(concat!(
                "pipeline-connector-binance/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| ConnectorError::Fatal(format!("cannot build the HTTP client: {e}")))?;
        let query = match config.symbols.as_slice() {
            [one] => format!("?symbol={one}"),
            many => {
                let list = serde_json::to_string(many).map_err(|e| {
                    ConnectorError::Config(format!("cannot encode symbols as JSON: {e}"))
                })?;
                let encoded: String = form_urlencoded::byte_serialize(list.as_bytes()).collect();
                format!("?symbols={encoded}")
            }
        };
        let mut bases = Vec::with_capacity(config.base_urls.len());
        let mut tickers = Vec::with_capacity(config.base_urls.len());
        for text in &config.base_urls {
            let base = parse_base_url(text).map_err(ConnectorError::Config)?;
            let ticker = join(&base, &format!("/api/v3/ticker/price{query}"))
                .map_err(ConnectorError::Config)?;
            bases.push(base);
            tickers.push(ticker);
        }
        if tickers.is_empty() {
            return Err(ConnectorError::Config("base_urls is empty".into()));
        }
        Ok(PriceClient {
            http,
            bases,
            tickers,
            current: 0,
            symbols: config.symbols.clone(),
            timeout,
            max_body_bytes: config.max_body_bytes,
        })
    }

    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// Whether requests use `symbols=[...]` (and answers are arrays).
    pub fn is_multi(&self) -> bool {
        self.symbols.len() > 1
    }

    /// The URL the next request goes to.
    pub fn current_url(&self) -> &Url {
        &self.tickers[self.current]
    }

    /// Moves to the next base URL (wrapping); returns the new one.
    pub fn rotate(&mut self) -> &Url {
        self.current = (self.current + 1) % self.tickers.len();
        &self.bases[self.current]
    }

    pub fn base_count(&self) -> usize {
        self.bases.len()
    }

    /// One `ticker/price` request for every configured symbol.
    pub async fn fetch(&self) -> Result<Answer, FetchError> {
        self.get(self.current_url().clone()).await
    }

    /// One `ticker/price?symbol=...` request for a single symbol (to find which symbol of a
    /// list Binance refuses).
    pub async fn fetch_one(&self, symbol: &str) -> Result<Answer, FetchError> {
        let mut url = self.current_url().clone();
        url.query_pairs_mut().clear().append_pair("symbol", symbol);
        self.get(url).await
    }

    async fn get(&self, url: Url) -> Result<Answer, FetchError> {
        let wrap = |url: &Url, e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::Timeout {
                    url: url.to_string(),
                    timeout: self.timeout,
                }
            } else {
                FetchError::Network {
                    url: url.to_string(),
                    source: e,
                }
            }
        };
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| wrap(&url, e))?;
        let status = response.status();
        let headers = response.headers();
        let header_u64 = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let retry_after_secs = header_u64(RETRY_AFTER.as_str());
        let used_weight = header_u64(USED_WEIGHT_HEADER);
        let body = self
            .read_capped(response)
            .await
            .map_err(|e| e.unwrap_or_else(|e| wrap(&url, e)))?;
        Ok(Answer {
            status,
            retry_after_secs,
            used_weight,
            body,
            received_ms: chrono::Utc::now().timestamp_millis(),
        })
    }
}

impl PriceClient {
    /// The body, chunk by chunk, refused as soon as it passes `max_body_bytes` (or when
    /// `Content-Length` already says it will), so a huge or endless answer is never held
    /// in memory. `Err(Ok(_))` is the size refusal, `Err(Err(_))` a transport error.
    async fn read_capped(
        &self,
        mut response: reqwest::Response,
    ) -> Result<Bytes, Result<FetchError, reqwest::Error>> {
        let limit = self.max_body_bytes;
        let url = response.url().to_string();
        let too_large = |declared| {
            Err(Ok(FetchError::BodyTooLarge {
                url: url.clone(),
                limit,
                declared,
            }))
        };
        let declared = response.content_length();
        if declared.is_some_and(|n| n > limit) {
            return too_large(declared);
        }
        let mut body = bytes::BytesMut::with_capacity(
            usize::try_from(declared.unwrap_or(0).min(limit)).unwrap_or(0),
        );
        while let Some(chunk) = response.chunk().await.map_err(Err)? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return too_large(declared);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(symbols: &[&str], bases: &[&str]) -> PriceClient {
        let config = BinanceConfig {
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            base_urls: bases.iter().map(|s| s.to_string()).collect(),
            ..BinanceConfig::default()
        };
        PriceClient::new(&config).unwrap()
    }

    #[test]
    fn one_symbol_uses_symbol_and_several_use_an_encoded_json_array() {
        let c = client(&["BTCUSDT"], &["https://api.binance.com"]);
        assert_eq!(
            c.current_url().as_str(),
            "https://api.binance.com/api/v3/ticker/price?symbol=BTCUSDT"
        );
        let c = client(&["BTCUSDT", "ETHUSDT"], &["http://127.0.0.1:9/"]);
        assert_eq!(
            c.current_url().as_str(),
            "http://127.0.0.1:9/api/v3/ticker/price?symbols=%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D"
        );
        assert!(c.is_multi());
    }

    #[test]
    fn rotation_wraps_around_the_base_urls() {
        let mut c = client(&["BTCUSDT"], &["http://a.test", "http://b.test/prefix"]);
        assert_eq!(c.rotate().as_str(), "http://b.test/prefix");
        assert_eq!(
            c.current_url().as_str(),
            "http://b.test/prefix/api/v3/ticker/price?symbol=BTCUSDT"
        );
        assert_eq!(c.rotate().as_str(), "http://a.test/");
    }
}
