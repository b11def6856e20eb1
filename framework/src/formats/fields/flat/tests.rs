//! The flat reader against serde_json: wherever it answers, the answer is serde_json's.
use proptest::prelude::*;

use super::super::{classify, FieldPath, FieldReader};

fn reader(paths: [&str; 3]) -> FieldReader<3> {
    let paths = paths.map(|p| FieldPath::parse(p).unwrap());
    FieldReader::new([&paths[0], &paths[1], &paths[2]]).unwrap()
}

/// Flat; with one path below the top level (which the flat reader leaves to serde); and
/// with names around the 8 and 16 bytes that compare as words.
fn readers() -> [FieldReader<3>; 3] {
    [
        reader(["symbol", "price", "timestamp"]),
        reader(["data.s", "data.p", "T"]),
        reader(["p", "timestamp_ms_utc", "a_very_long_field_name"]),
    ]
}

/// Checks one payload with every reader; whether the flat reader answered, per reader.
fn agree(payload: &[u8]) -> Vec<bool> {
    readers()
        .iter()
        .map(|r| match super::read::<3>(&r.root, payload) {
            Some(flat) => {
                let serde = r
                    .read(payload)
                    .map(|raws| raws.map(|raw| raw.map(classify)));
                assert_eq!(
                    serde.as_ref().ok(),
                    Some(&flat),
                    "payload {:?}: serde_json says {serde:?}",
                    String::from_utf8_lossy(payload)
                );
                true
            }
            None => false,
        })
        .collect()
}

#[test]
fn plain_records_take_the_flat_path_and_others_do_not() {
    for payload in [
        &br#"{"symbol":"BTCUSDT","price":97009.02,"timestamp":"2025-05-07T15:30:31.891Z"}"#[..],
        b" {\t\"price\" : -0.5e+3 ,\r\n\"x\" : null, \"y\":true,\"z\":\"\"} ",
        b"{}",
        b"{\"symbol\":\"\xc3\xa9\",\"\xe2\x82\xac\":1}",
    ] {
        assert!(agree(payload)[0], "{payload:?}");
    }
    let r = &readers()[0];
    for payload in [
        &br#"{"symbol":"A\"B","price":1,"timestamp":2}"#[..],
        br#"{"symbol":"A","symbol":"B"}"#,
        br#"{"symbol":"A","price":01}"#,
        br#"{"symbol":"A","price":1.}"#,
        br#"{"symbol":"A",}"#,
        br#"{"symbol":"A"} x"#,
        br#"{"symbol":"A","x":[1]}"#,
        b"{\"symbol\":\"\xff\"}",
        b"[]",
        b"",
    ] {
        assert_eq!(super::read::<3>(&r.root, payload), None, "{payload:?}");
        agree(payload);
    }
}

/// Raw text between quotes: plain, escaped, non-ASCII, control characters.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 :.-]{0,20}",
        1 => "[a-z\\\\\"\u{e9}\u{1}\u{7f}/]{0,4}",
        1 => "[a-z0-9]{0,12}[\\\\\"\u{1f}\u{e9}][a-z]{0,12}",
        1 => Just(r"\u00e9".to_string()),
        1 => Just(r"\ud800".to_string()),
    ]
    .prop_map(|s| format!("\"{s}\""))
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop_oneof![
            Just("symbol"),
            Just("price"),
            Just("timestamp"),
            Just("data"),
            Just("T"),
            Just("x"),
            Just("p"),
            Just("pric"),
            Just("timestamp_ms_utc"),
            Just("timestamp_ms_utd"),
            Just("uimestamp_ms_utc"),
            Just("timestamp_ms_ut"),
            Just("a_very_long_field_name"),
            Just("a_very_long_field_namf"),
        ]
        .prop_map(|k| format!("\"{k}\"")),
        1 => string(),
        1 => Just(r#""pri\u0063e""#.to_string()),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => string(),
        3 => "-?[0-9]{0,3}(\\.[0-9]{0,3})?([eE][+-]?[0-9]{0,2})?",
        1 => "[0-9]{19,24}(e-?[0-9]{3})?",
        1 => prop_oneof![
            Just("true"),
            Just("false"),
            Just("null"),
            Just("nul"),
            Just("truex"),
            Just("NaN"),
            Just("{}"),
            Just("[1,{\"s\":2}]"),
            Just(r#"{"s":"BTC","p":"1.5"}"#),
            Just(r#"{"s":1,"s":2}"#),
        ]
        .prop_map(String::from),
    ]
}

fn space() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(String::new()),
        2 => "[ \t\n\r]{1,2}",
        1 => "[\u{b}\u{c}\u{a0}]",
    ]
}

/// Records of every kind: half of them flat records of plain values, the rest anything.
fn record() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![plain_record(), any_record()]
}

/// Flat records of plain values: what the flat reader must read itself.
fn plain_record() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        "\"[a-zA-Z0-9 :.\u{e9}-]{0,30}\"",
        "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,12})?([eE][+-]?[0-9]{1,3})?",
        prop_oneof![Just("true"), Just("false"), Just("null")].prop_map(String::from),
    ];
    let member = (key(), "[ \t\n\r]{0,1}", value)
        .prop_filter("plain keys", |(k, _, _)| {
            let inner = &k[1..k.len() - 1];
            !inner.contains(['"', '\\']) && !inner.contains(char::is_control)
        })
        .prop_map(|(k, space, v)| format!("{k}{space}:{space}{v}"));
    prop::collection::vec(member, 0..6)
        .prop_map(|members| format!("{{{}}}", members.join(",")).into_bytes())
}

fn any_record() -> impl Strategy<Value = Vec<u8>> {
    let member = (space(), key(), space(), value(), space())
        .prop_map(|(a, k, b, v, c)| format!("{a}{k}{b}:{c}{v}{a}"));
    (
        space(),
        prop::collection::vec(member, 0..6),
        prop_oneof![6 => Just(","), 1 => Just(";"), 1 => Just(",,")],
        prop_oneof![8 => Just("}"), 1 => Just(""), 1 => Just("} x"), 1 => Just("}}")],
        space(),
    )
        .prop_map(|(lead, members, comma, close, trail)| {
            format!("{lead}{{{}{close}{trail}", members.join(comma)).into_bytes()
        })
}

/// A record with a few bytes replaced, inserted or removed (invalid UTF-8 included).
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        record(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..3),
    )
        .prop_map(|(mut bytes, edits)| {
            for (at, byte, kind) in edits {
                let i = at.index(bytes.len() + 1);
                match kind {
                    0 => bytes.insert(i, byte),
                    1 if i < bytes.len() => bytes[i] = byte,
                    _ if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => {}
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_flat_reader_agrees_with_serde_json_on_records(payload in record()) {
        agree(&payload);
    }

    #[test]
    fn the_flat_reader_agrees_with_serde_json_on_damaged_records(payload in mutated()) {
        agree(&payload);
    }

    #[test]
    fn the_flat_reader_agrees_with_serde_json_on_any_bytes(
        payload in prop::collection::vec(any::<u8>(), 0..48)
    ) {
        agree(&payload);
    }
}

/// The first `"`, `\` or control character, one byte at a time.
fn naive_string_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
}

#[test]
fn string_ends_are_found_at_every_position_after_any_bytes() {
    for filler in [
        b'a', b'!', b'#', b'[', b']', b' ', 0x7f, 0x80, 0xa2, 0xdc, 0xff,
    ] {
        for len in 0..20 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut bytes = vec![filler; len];
                    bytes[at] = byte;
                    assert_eq!(
                        super::string_end(&bytes),
                        naive_string_end(&bytes),
                        "{bytes:?}"
                    );
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn string_ends_agree_with_a_byte_at_a_time_search(
        bytes in prop::collection::vec(
            prop_oneof![4 => 0x20u8..0x7f, 1 => any::<u8>(), 1 => Just(b'"'), 1 => Just(b'\\')],
            0..40,
        )
    ) {
        prop_assert_eq!(super::string_end(&bytes), naive_string_end(&bytes));
    }
}

/// The property above says something only if the flat reader often answers.
#[test]
fn generated_records_often_take_the_flat_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let answered = (0..1000)
        .filter(|_| {
            let payload = record().new_tree(&mut runner).unwrap().current();
            agree(&payload)[0]
        })
        .count();
    assert!(answered > 300, "{answered} of 1000");
}
