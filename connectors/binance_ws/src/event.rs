//! Frames of the combined stream endpoint (`{"stream": name, "data": payload}`) turned
//! into records. Pure functions: the source, its tests and benchmarks share them.

use std::collections::HashMap;

use framework::{event_time::write_millis, OutputRecord};
use serde_json::{Map, Value};

use crate::{config::StreamKind, decimal};

/// Stable rejection reasons (metric labels and dead-letter headers).
pub mod reason {
    /// The frame is not JSON.
    pub const MALFORMED_JSON: &str = "malformed_json";
    /// JSON, but not an envelope or payload of the expected shape (missing or mistyped field).
    pub const UNEXPECTED_SHAPE: &str = "unexpected_shape";
    /// A stream the source did not subscribe to, or a payload of another symbol or kind.
    pub const UNEXPECTED_STREAM: &str = "unexpected_stream";
    /// A price or quantity that is not a plain decimal (or is zero where it must not be).
    pub const INVALID_DECIMAL: &str = "invalid_decimal";
    /// An event or trade time outside 2001..2286 in ms (e.g. microseconds).
    pub const INVALID_TIME: &str = "invalid_time";
    /// A binary frame (Binance sends text).
    pub const BINARY_FRAME: &str = "binary_frame";
    /// A message over `max_message_bytes` (its content is not kept).
    pub const OVERSIZED_MESSAGE: &str = "oversized_message";

    /// Every reason, in the order the statistics list them.
    pub const ALL: [&str; 7] = [
        MALFORMED_JSON,
        UNEXPECTED_SHAPE,
        UNEXPECTED_STREAM,
        INVALID_DECIMAL,
        INVALID_TIME,
        BINARY_FRAME,
        OVERSIZED_MESSAGE,
    ];
}

/// Plausible epoch milliseconds: 2001-09-09 to 2286-11-20 (13 digits). Microseconds (16
/// digits) or seconds (10) are refused instead of being misread.
const TIME_RANGE_MS: std::ops::Range<i64> = 1_000_000_000_000..10_000_000_000_000;

/// One subscribed stream.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub name: String,
    /// Uppercase, as configured.
    pub symbol: String,
    pub kind: StreamKind,
}

/// The subscribed streams by name.
#[derive(Debug, Clone)]
pub struct Streams {
    pub list: Vec<StreamInfo>,
    by_name: HashMap<String, usize>,
}

impl Streams {
    pub fn new(list: Vec<StreamInfo>) -> Streams {
        let by_name = list
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Streams { list, by_name }
    }
}

/// A record of stream `stream` with its sequence id (trade id, aggregate id, update id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub stream: usize,
    pub id: u64,
    pub record: OutputRecord,
}

/// What a text frame was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Record(StreamRecord),
    /// Binance announced it will close the connection soon.
    ServerShutdown,
    /// An answer to a control message (`{"result":..,"id":..}` or `{"error":..}`).
    ControlAnswer(String),
}

/// A refused frame: the framework's one refusal type (reason label and detail).
pub use framework::formats::Refusal;

fn refuse(reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal::new(reason, detail)
}

fn field<'a>(data: &'a Map<String, Value>, name: &str) -> Result<&'a Value, Refusal> {
    data.get(name)
        .ok_or_else(|| refuse(reason::UNEXPECTED_SHAPE, format!("missing field {name:?}")))
}

fn id(data: &Map<String, Value>, name: &str) -> Result<u64, Refusal> {
    field(data, name)?.as_u64().ok_or_else(|| {
        refuse(
            reason::UNEXPECTED_SHAPE,
            format!("field {name:?} is not a non-negative integer"),
        )
    })
}

fn time(data: &Map<String, Value>, name: &str) -> Result<i64, Refusal> {
    let value = field(data, name)?;
    let ms = value.as_i64().ok_or_else(|| {
        refuse(
            reason::UNEXPECTED_SHAPE,
            format!("field {name:?} is not an integer"),
        )
    })?;
    if !TIME_RANGE_MS.contains(&ms) {
        return Err(refuse(
            reason::INVALID_TIME,
            format!("field {name:?} = {ms} is not epoch milliseconds"),
        ));
    }
    Ok(ms)
}

fn flag(data: &Map<String, Value>, name: &str) -> Result<bool, Refusal> {
    field(data, name)?.as_bool().ok_or_else(|| {
        refuse(
            reason::UNEXPECTED_SHAPE,
            format!("field {name:?} is not a boolean"),
        )
    })
}

fn text<'a>(data: &'a Map<String, Value>, name: &str) -> Result<&'a str, Refusal> {
    field(data, name)?.as_str().ok_or_else(|| {
        refuse(
            reason::UNEXPECTED_SHAPE,
            format!("field {name:?} is not a string"),
        )
    })
}

fn number(data: &Map<String, Value>, name: &str, positive: bool) -> Result<String, Refusal> {
    let raw = text(data, name)?;
    let parsed = if positive {
        decimal::parse_positive(raw)
    } else {
        decimal::parse(raw)
    };
    parsed
        .map(|d| d.json)
        .map_err(|e| refuse(reason::INVALID_DECIMAL, format!("field {name:?}: {e}")))
}

/// Writes `"name":` then the value, for the record's hand-built JSON (numbers must keep
/// their decimal digits, which serde_json's f64 numbers would not).
struct RecordWriter {
    out: Vec<u8>,
}

impl RecordWriter {
    fn new(symbol: &str) -> RecordWriter {
        let mut w = RecordWriter {
            out: Vec::with_capacity(256),
        };
        w.out.extend_from_slice(b"{\"symbol\":");
        // Symbols are checked to be [A-Z0-9-_.]: no escaping needed, but stay safe.
        w.out
            .extend_from_slice(serde_json::to_string(symbol).unwrap_or_default().as_bytes());
        w
    }
    fn raw(&mut self, name: &str, json: &str) -> &mut Self {
        self.out.push(b',');
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out.extend_from_slice(json.as_bytes());
        self
    }
    fn time(&mut self, name: &str, ms: i64) -> &mut Self {
        self.raw(name, "\"");
        write_millis(&mut self.out, ms);
        self.out.push(b'"');
        self
    }
    fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

fn check_event_type(data: &Map<String, Value>, expected: &str) -> Result<(), Refusal> {
    let e = text(data, "e")?;
    if e != expected {
        return Err(refuse(
            reason::UNEXPECTED_STREAM,
            format!("event type {e:?} on a {expected} stream"),
        ));
    }
    Ok(())
}

/// Builds the record of one payload of `info`'s stream.
fn record(
    info: &StreamInfo,
    stream: usize,
    data: &Map<String, Value>,
    received_ms: i64,
) -> Result<StreamRecord, Refusal> {
    let symbol = text(data, "s")?;
    if symbol != info.symbol {
        return Err(refuse(
            reason::UNEXPECTED_STREAM,
            format!("symbol {symbol:?} on stream {:?}", info.name),
        ));
    }
    let mut w = RecordWriter::new(&info.symbol);
    let (id, event_ms) = match info.kind {
        StreamKind::Trade => {
            check_event_type(data, "trade")?;
            let (trade_id, event, at) = (id(data, "t")?, time(data, "E")?, time(data, "T")?);
            let (price, quantity) = (number(data, "p", true)?, number(data, "q", true)?);
            let maker = flag(data, "m")?;
            w.raw("trade_id", &trade_id.to_string())
                .raw("price", &price)
                .raw("quantity", &quantity)
                .raw("buyer_is_maker", if maker { "true" } else { "false" })
                .time("timestamp", at)
                .time("event_time", event);
            (trade_id, at)
        }
        StreamKind::AggTrade => {
            check_event_type(data, "aggTrade")?;
            let (agg_id, event, at) = (id(data, "a")?, time(data, "E")?, time(data, "T")?);
            let (first, last) = (id(data, "f")?, id(data, "l")?);
            if last < first {
                return Err(refuse(
                    reason::UNEXPECTED_SHAPE,
                    format!("last trade id {last} is before first trade id {first}"),
                ));
            }
            let (price, quantity) = (number(data, "p", true)?, number(data, "q", true)?);
            let maker = flag(data, "m")?;
            w.raw("agg_trade_id", &agg_id.to_string())
                .raw("first_trade_id", &first.to_string())
                .raw("last_trade_id", &last.to_string())
                .raw("price", &price)
                .raw("quantity", &quantity)
                .raw("buyer_is_maker", if maker { "true" } else { "false" })
                .time("timestamp", at)
                .time("event_time", event);
            (agg_id, at)
        }
        StreamKind::BookTicker => {
            let update_id = id(data, "u")?;
            // An empty side of the book has price and quantity 0.
            let bid = number(data, "b", false)?;
            let bid_qty = number(data, "B", false)?;
            let ask = number(data, "a", false)?;
            let ask_qty = number(data, "A", false)?;
            w.raw("update_id", &update_id.to_string())
                .raw("bid_price", &bid)
                .raw("bid_quantity", &bid_qty)
                .raw("ask_price", &ask)
                .raw("ask_quantity", &ask_qty)
                // bookTicker has no exchange time: the receipt time is the event time.
                .time("timestamp", received_ms);
            (update_id, received_ms)
        }
    };
    Ok(StreamRecord {
        stream,
        id,
        record: OutputRecord {
            key: Some(info.symbol.as_bytes().to_vec()),
            payload: w.finish(),
            timestamp_ms: event_ms,
        },
    })
}

/// Parses one text frame received at `received_ms`.
pub fn parse_frame(text: &str, streams: &Streams, received_ms: i64) -> Result<Frame, Refusal> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| refuse(reason::MALFORMED_JSON, format!("not JSON: {e}")))?;
    let Value::Object(envelope) = value else {
        return Err(refuse(
            reason::UNEXPECTED_SHAPE,
            format!("expected an object, got {}", framework::json::kind(&value)),
        ));
    };
    if envelope.contains_key("id")
        && (envelope.contains_key("result") || envelope.contains_key("error"))
    {
        return Ok(Frame::ControlAnswer(text.to_string()));
    }
    let name = match envelope.get("stream") {
        Some(Value::String(s)) => s.as_str(),
        _ => {
            // A raw (unwrapped) serverShutdown event is still a shutdown notice.
            if envelope.get("e").and_then(Value::as_str) == Some("serverShutdown") {
                return Ok(Frame::ServerShutdown);
            }
            return Err(refuse(
                reason::UNEXPECTED_SHAPE,
                "missing \"stream\": not a combined-stream envelope",
            ));
        }
    };
    if name == "!serverShutdown" {
        return Ok(Frame::ServerShutdown);
    }
    let Some(&index) = streams.by_name.get(name) else {
        return Err(refuse(
            reason::UNEXPECTED_STREAM,
            format!("stream {name:?} was not subscribed"),
        ));
    };
    let Some(Value::Object(data)) = envelope.get("data") else {
        return Err(refuse(
            reason::UNEXPECTED_SHAPE,
            "\"data\" is missing or not an object",
        ));
    };
    record(&streams.list[index], index, data, received_ms).map(Frame::Record)
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
