//! Tests of `event.rs`: frames to records and refusals.

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
    // A BTCUSDT trade frame whose id, price and quantity fields are `fields`.
    let btc_trade = |fields: &str| {
        trade(&format!(
            r#"{{"e":"trade","E":1746631831895,"s":"BTCUSDT",{fields},"T":1746631831891,"m":true}}"#
        ))
    };
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
        (&btc_trade(r#""p":"1","q":"1""#), reason::UNEXPECTED_SHAPE),
        (
            &btc_trade(r#""t":-1,"p":"1","q":"1""#),
            reason::UNEXPECTED_SHAPE,
        ),
        (
            &btc_trade(r#""t":1,"p":"NaN","q":"1""#),
            reason::INVALID_DECIMAL,
        ),
        (
            &btc_trade(r#""t":1,"p":"1e5","q":"1""#),
            reason::INVALID_DECIMAL,
        ),
        (
            &btc_trade(r#""t":1,"p":"0.000","q":"1""#),
            reason::INVALID_DECIMAL,
        ),
        (
            &btc_trade(r#""t":1,"p":83034.29,"q":"1""#),
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
