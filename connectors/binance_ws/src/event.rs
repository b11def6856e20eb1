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

/// A refused frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub detail: String,
}

fn refuse(reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        detail: detail.into(),
    }
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
mod tests {
    use super::*;

    fn streams() -> Streams {
        Streams::new(
            [
                ("btcusdt@trade", StreamKind::Trade),
                ("btcusdt@aggTrade", StreamKind::AggTrade),
                ("btcusdt@bookTicker", StreamKind::BookTicker),
            ]
            .into_iter()
            .map(|(name, kind)| StreamInfo {
                name: name.into(),
                symbol: "BTCUSDT".into(),
                kind,
            })
            .collect(),
        )
    }

    fn record_of(frame: &str) -> StreamRecord {
        match parse_frame(frame, &streams(), 1_746_631_831_999).unwrap() {
            Frame::Record(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn refusal(frame: &str) -> Refusal {
        parse_frame(frame, &streams(), 1).unwrap_err()
    }

    #[test]
    fn a_trade_becomes_a_record_with_the_trade_time_as_event_time_and_exact_numbers() {
        let r = record_of(
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1746631831895,"s":"BTCUSDT","t":12345,"p":"83034.29000000","q":"0.00062000","T":1746631831891,"m":true,"M":true}}"#,
        );
        assert_eq!(r.id, 12345);
        assert_eq!(r.record.timestamp_ms, 1_746_631_831_891);
        assert_eq!(r.record.key.as_deref(), Some(&b"BTCUSDT"[..]));
        assert_eq!(
            String::from_utf8(r.record.payload).unwrap(),
            r#"{"symbol":"BTCUSDT","trade_id":12345,"price":83034.29,"quantity":0.00062,"buyer_is_maker":true,"timestamp":"2025-05-07T15:30:31.891Z","event_time":"2025-05-07T15:30:31.895Z"}"#
        );
    }

    #[test]
    fn an_agg_trade_keeps_its_trade_id_range() {
        let r = record_of(
            r#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1746631831895,"s":"BTCUSDT","a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27783,"T":1746631831891,"m":false,"M":true}}"#,
        );
        assert_eq!(r.id, 26129);
        assert_eq!(
            String::from_utf8(r.record.payload).unwrap(),
            r#"{"symbol":"BTCUSDT","agg_trade_id":26129,"first_trade_id":27781,"last_trade_id":27783,"price":0.01633102,"quantity":4.70443515,"buyer_is_maker":false,"timestamp":"2025-05-07T15:30:31.891Z","event_time":"2025-05-07T15:30:31.895Z"}"#
        );
    }

    #[test]
    fn a_book_ticker_has_no_exchange_time_and_is_stamped_on_receipt() {
        let r = record_of(
            r#"{"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"0.00000000"}}"#,
        );
        assert_eq!(r.id, 400_900_217);
        assert_eq!(r.record.timestamp_ms, 1_746_631_831_999);
        assert_eq!(
            String::from_utf8(r.record.payload).unwrap(),
            r#"{"symbol":"BTCUSDT","update_id":400900217,"bid_price":25.3519,"bid_quantity":31.21,"ask_price":25.3652,"ask_quantity":0,"timestamp":"2025-05-07T15:30:31.999Z"}"#
        );
    }

    #[test]
    fn malformed_frames_get_a_reason_each() {
        let trade = |data: &str| format!(r#"{{"stream":"btcusdt@trade","data":{data}}}"#);
        let cases = [
            ("{\"stream\":", reason::MALFORMED_JSON),
            ("[1,2]", reason::UNEXPECTED_SHAPE),
            (r#"{"data":{}}"#, reason::UNEXPECTED_SHAPE),
            (
                r#"{"stream":"ethusdt@trade","data":{}}"#,
                reason::UNEXPECTED_STREAM,
            ),
            (
                r#"{"stream":"btcusdt@trade","data":[]}"#,
                reason::UNEXPECTED_SHAPE,
            ),
            (
                &trade(
                    r#"{"e":"trade","E":1746631831895,"s":"ETHUSDT","t":1,"p":"1","q":"1","T":1746631831891,"m":true}"#,
                ),
                reason::UNEXPECTED_STREAM,
            ),
            (
                &trade(
                    r#"{"e":"aggTrade","E":1746631831895,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":1746631831891,"m":true}"#,
                ),
                reason::UNEXPECTED_STREAM,
            ),
            (
                &trade(
                    r#"{"e":"trade","E":1746631831895,"s":"BTCUSDT","p":"1","q":"1","T":1746631831891,"m":true}"#,
                ),
                reason::UNEXPECTED_SHAPE,
            ),
            (
                &trade(
                    r#"{"e":"trade","E":1746631831895,"s":"BTCUSDT","t":-1,"p":"1","q":"1","T":1746631831891,"m":true}"#,
                ),
                reason::UNEXPECTED_SHAPE,
            ),
            (
                &trade(
                    r#"{"e":"trade","E":1746631831895,"s":"BTCUSDT","t":1,"p":"NaN","q":"1","T":1746631831891,"m":true}"#,
                ),
                reason::INVALID_DECIMAL,
            ),
            (
                &trade(
                    r#"{"e":"trade","E":1746631831895,"s":"BTCUSDT","t":1,"p":"1e5","q":"1","T":1746631831891,"m":true}"#,
                ),
                reason::INVALID_DECIMAL,
            ),
            (
                &trade(
                    r#"{"e":"trade","E":1746631831895,"s":"BTCUSDT","t":1,"p":"0.000","q":"1","T":1746631831891,"m":true}"#,
                ),
                reason::INVALID_DECIMAL,
            ),
            (
                &trade(
                    r#"{"e":"trade","E":1746631831895,"s":"BTCUSDT","t":1,"p":83034.29,"q":"1","T":1746631831891,"m":true}"#,
                ),
                reason::UNEXPECTED_SHAPE,
            ),
            (
                &trade(
                    r#"{"e":"trade","E":1746631831895,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":1746631831891000,"m":true}"#,
                ),
                reason::INVALID_TIME,
            ),
            (
                &trade(
                    r#"{"e":"trade","E":1746631831895,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":1746631831891,"m":"yes"}"#,
                ),
                reason::UNEXPECTED_SHAPE,
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(refusal(frame).reason, expected, "{frame}");
        }
    }

    #[test]
    fn shutdown_notices_and_control_answers_are_recognised() {
        let s = streams();
        assert_eq!(
            parse_frame(
                r#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1746631831895}}"#,
                &s,
                1
            ),
            Ok(Frame::ServerShutdown)
        );
        assert_eq!(
            parse_frame(r#"{"e":"serverShutdown","E":1746631831895}"#, &s, 1),
            Ok(Frame::ServerShutdown)
        );
        assert!(matches!(
            parse_frame(r#"{"result":null,"id":1}"#, &s, 1),
            Ok(Frame::ControlAnswer(_))
        ));
    }
}
