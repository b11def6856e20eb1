//! Parameter checks of `ticker/price` in Binance's order, its error answers and weights.

use std::collections::BTreeSet;

use hyper::StatusCode;

/// Whether `symbol` is in Binance's legal range `^[A-Z0-9-_.]{1,20}$` (the mock's own
/// copy of the exchange's rule, independent of the connector's check).
pub(crate) fn is_legal_symbol(symbol: &str) -> bool {
    !symbol.is_empty()
        && symbol.len() <= 20
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

pub(crate) const TICKER_PATH: &str = "/api/v3/ticker/price";

/// A Binance error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiFailure {
    pub(crate) status: StatusCode,
    pub(crate) code: i64,
    pub(crate) msg: String,
}

impl ApiFailure {
    pub(crate) fn bad_request(code: i64, msg: impl Into<String>) -> Self {
        ApiFailure {
            status: StatusCode::BAD_REQUEST,
            code,
            msg: msg.into(),
        }
    }
    pub(crate) fn body(&self) -> String {
        serde_json::json!({"code": self.code, "msg": self.msg}).to_string()
    }
}

/// Which symbols a valid `ticker/price` request asks for (indices into the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TickerQuery {
    pub(crate) indices: Vec<usize>,
    /// An array answer (`symbols=` or no parameter).
    pub(crate) array: bool,
}

const SYMBOLS_RANGE: &str = r#"^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$"#;

/// Parses the `symbols` value by Binance's own legal-range regex (no spaces, quoted).
fn parse_symbols_list(text: &str) -> Result<Vec<&str>, ApiFailure> {
    let illegal = || {
        ApiFailure::bad_request(
            -1100,
            format!("Illegal characters found in parameter 'symbols'; legal range is '{SYMBOLS_RANGE}'."),
        )
    };
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(illegal)?;
    if inner.is_empty() {
        return Err(ApiFailure::bad_request(
            -1102,
            "Mandatory parameter 'symbols' was not sent, was empty/null, or malformed.",
        ));
    }
    inner
        .split(',')
        .map(|quoted| {
            quoted
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .filter(|s| is_legal_symbol(s))
                .ok_or_else(illegal)
        })
        .collect()
}

/// Validates `ticker/price` parameters as Binance does, in its order of checks.
pub(crate) fn parse_ticker_query(query: &str, known: &[String]) -> Result<TickerQuery, ApiFailure> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut names = BTreeSet::new();
    for (name, _) in &pairs {
        if !names.insert(name.as_str()) {
            return Err(ApiFailure::bad_request(
                -1101,
                "Duplicate values for a parameter detected.",
            ));
        }
    }
    let unknown = pairs
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "symbol" | "symbols" | "symbolStatus"))
        .count();
    if unknown > 0 {
        return Err(ApiFailure::bad_request(
            -1104,
            format!(
                "Not all sent parameters were read; read '{}' parameter(s) but was sent '{}'.",
                pairs.len() - unknown,
                pairs.len()
            ),
        ));
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let index_of = |symbol: &str| {
        known
            .iter()
            .position(|k| k == symbol)
            .ok_or_else(|| ApiFailure::bad_request(-1121, "Invalid symbol."))
    };
    match (get("symbol"), get("symbols")) {
        (Some(_), Some(_)) => Err(ApiFailure::bad_request(
            -1128,
            "Combination of optional parameters invalid.",
        )),
        (Some(""), None) => Err(ApiFailure::bad_request(
            -1105,
            "Parameter 'symbol' was empty.",
        )),
        (Some(symbol), None) => {
            if !is_legal_symbol(symbol) {
                return Err(ApiFailure::bad_request(
                    -1100,
                    "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
                ));
            }
            Ok(TickerQuery {
                indices: vec![index_of(symbol)?],
                array: false,
            })
        }
        (None, Some("")) => Err(ApiFailure::bad_request(
            -1105,
            "Parameter 'symbols' was empty.",
        )),
        (None, Some(list)) => {
            let symbols = parse_symbols_list(list)?;
            let distinct: BTreeSet<&str> = symbols.iter().copied().collect();
            if distinct.len() != symbols.len() {
                return Err(ApiFailure::bad_request(
                    -1151,
                    "Symbol is present multiple times in the list.",
                ));
            }
            let mut indices = symbols
                .iter()
                .map(|s| index_of(s))
                .collect::<Result<Vec<_>, _>>()?;
            // Answers list symbols in exchange order, not request order.
            indices.sort_unstable();
            Ok(TickerQuery {
                indices,
                array: true,
            })
        }
        (None, None) => Ok(TickerQuery {
            indices: (0..known.len()).collect(),
            array: true,
        }),
    }
}

/// Weight of a request to `path` (per Binance's docs since 2023-08-25).
pub(crate) fn weight_of(path: &str, query: &str) -> u32 {
    match path {
        "/api/v3/ping" | "/api/v3/time" => 1,
        TICKER_PATH => {
            let single = form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "symbol");
            if single {
                2
            } else {
                4
            }
        }
        _ => 1,
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        vec!["BTCUSDT".into(), "ETHUSDT".into(), "BNBUSDT".into()]
    }

    fn code(query: &str) -> i64 {
        parse_ticker_query(query, &known()).unwrap_err().code
    }

    #[test]
    fn ticker_query_accepts_symbol_raw_and_encoded_symbols_and_none() {
        let q = parse_ticker_query("symbol=ETHUSDT", &known()).unwrap();
        assert_eq!(
            q,
            TickerQuery {
                indices: vec![1],
                array: false
            }
        );
        let raw = parse_ticker_query(r#"symbols=["BNBUSDT","BTCUSDT"]"#, &known()).unwrap();
        let encoded =
            parse_ticker_query("symbols=%5B%22BNBUSDT%22,%22BTCUSDT%22%5D", &known()).unwrap();
        assert_eq!(
            raw,
            TickerQuery {
                indices: vec![0, 2],
                array: true
            }
        );
        assert_eq!(raw, encoded);
        let all = parse_ticker_query("", &known()).unwrap();
        assert_eq!(
            all,
            TickerQuery {
                indices: vec![0, 1, 2],
                array: true
            }
        );
    }

    #[test]
    fn ticker_query_errors_use_binance_codes() {
        assert_eq!(code("symbol=XYZUSDT"), -1121);
        assert_eq!(code("symbol=btcusdt"), -1100);
        assert_eq!(code("symbol=BTC%20USDT"), -1100);
        assert_eq!(code("symbol="), -1105);
        assert_eq!(code(r#"symbol=BTCUSDT&symbols=["ETHUSDT"]"#), -1128);
        assert_eq!(code(r#"symbols=["BTCUSDT","BTCUSDT"]"#), -1151);
        assert_eq!(code(r#"symbols=["BTCUSDT","XYZUSDT"]"#), -1121);
        assert_eq!(code(r#"symbols=["BTCUSDT", "ETHUSDT"]"#), -1100);
        assert_eq!(code(r#"symbols=["btcusdt"]"#), -1100);
        assert_eq!(code("symbols=BTCUSDT"), -1100);
        assert_eq!(code("symbols=[]"), -1102);
        assert_eq!(code("symbol=BTCUSDT&symbol=ETHUSDT"), -1101);
        assert_eq!(code("symbol=BTCUSDT&foo=1"), -1104);
    }

    #[test]
    fn weights_follow_the_documented_table() {
        assert_eq!(weight_of("/api/v3/ping", ""), 1);
        assert_eq!(weight_of(TICKER_PATH, "symbol=BTCUSDT"), 2);
        assert_eq!(weight_of(TICKER_PATH, "symbols=%5B%22BTCUSDT%22%5D"), 4);
        assert_eq!(weight_of(TICKER_PATH, ""), 4);
    }
}
