//! What the mock can be told to do wrong, and what it logs.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A misbehaviour of the next `ticker/price` answer(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// 200 with a truncated JSON body.
    MalformedJson,
    /// 200 with a symbol that was not asked for (first element for `symbols=`).
    WrongSymbol,
    /// 200 with `"price":"NaN"` (first element).
    NonNumericPrice,
    /// 200 with a negative price (first element).
    NegativePrice,
    /// 200 with `"price":"0.00000000"` (first element).
    ZeroPrice,
    /// 200 with `[]`.
    EmptyArray,
    /// 429, `Retry-After`, -1003 "Too much request weight used".
    RateLimited { retry_after_secs: u64 },
    /// 418, `Retry-After`, -1003 "IP banned until".
    Banned { retry_after_secs: u64 },
    /// 500 with a -1000 body.
    ServerError,
    /// The normal answer, after a delay.
    Slow { delay_ms: u64 },
    /// The connection is closed without any answer.
    DropConnection,
    /// 200 with a body of `bytes` spaces around a valid answer (at most 256 MiB), to
    /// exercise a client's body-size limit.
    HugeBody { bytes: u64 },
}

/// A fault and how many consecutive requests it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStep {
    #[serde(flatten)]
    pub fault: Fault,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// One request the mock received on `/api/...`.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// When the request arrived (monotonic; for in-process assertions).
    #[serde(skip)]
    pub at: Instant,
    /// When the request arrived, epoch ms.
    pub at_ms: i64,
    /// When the request arrived, ms since the mock started.
    pub since_start_ms: f64,
    pub method: String,
    pub path: String,
    /// Raw (still encoded) query string.
    pub query: String,
    /// Status answered; `None` when the connection was dropped.
    pub status: Option<u16>,
    pub fault: Option<Fault>,
    /// Used weight of the minute after this request.
    pub used_weight: u32,
}

/// A command for the WebSocket streams, applied at once to every open stream connection
/// (or, for `skip_trades` and `publish`, to the feed they all share).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WsCommand {
    /// Drop every open connection without a close frame (a network cut).
    Disconnect,
    /// Advance every symbol's trade and aggregate-trade ids by `count` without publishing
    /// them: the trades are lost for every client (a scripted gap).
    SkipTrades { count: u64 },
    /// Publish `count` ticks now (one trade, aggTrade and bookTicker update per symbol
    /// each), whatever `ws_trade_interval` says.
    Publish { count: u32 },
    /// Send this text as one frame, as it is (not wrapped), on every connection.
    Malformed { text: String },
    /// Send a ping frame with this payload (at most 125 bytes) on every connection.
    Ping { payload: String },
    /// Send `{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":ms}}`.
    ServerShutdown,
}

/// One WebSocket connection the mock accepted, for assertions.
#[derive(Debug, Clone, Serialize)]
pub struct WsConnectionRecord {
    /// Connection number, from 1, in accept order.
    pub id: u64,
    /// The subscribed stream names, as the client spelled them.
    pub streams: Vec<String>,
    pub opened_ms: i64,
    /// `None` while open.
    pub closed_ms: Option<i64>,
    /// Why it ended: `client_close`, `lifetime`, `disconnect_command`, `pong_timeout`,
    /// `rate_limit`, `slow_client`, `error: ...`, `shutdown`.
    pub close_reason: Option<String>,
    /// Payloads of the pings the mock sent, and of the pongs it got back, in order.
    pub pings_sent: Vec<String>,
    pub pongs_received: Vec<String>,
    /// Frames received from the client (pongs, text, close), for the 5/s limit.
    pub incoming_messages: u64,
    /// Data frames sent.
    pub frames_sent: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_steps_round_trip_as_flat_json() {
        let step: FaultStep =
            serde_json::from_str(r#"{"kind":"rate_limited","retry_after_secs":2,"times":3}"#)
                .unwrap();
        assert_eq!(
            step,
            FaultStep {
                fault: Fault::RateLimited {
                    retry_after_secs: 2
                },
                times: 3
            }
        );
        let step: FaultStep = serde_json::from_str(r#"{"kind":"drop_connection"}"#).unwrap();
        assert_eq!(step.times, 1);
        let back = serde_json::to_value(&step).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"kind":"drop_connection","times":1})
        );
    }
}
