use mongodb::bson::{doc, Bson, DateTime};

use super::*;

fn layout(collection: &str, explode: Option<&str>, key: &[&str], dates: &[&str]) -> Layout {
    Layout {
        collection: Template::parse(collection).unwrap(),
        explode: explode.map(str::to_string),
        key: key.iter().map(|s| s.to_string()).collect(),
        date_fields: dates.iter().map(|s| s.to_string()).collect(),
    }
}

fn btc() -> Layout {
    layout(
        "btc-price-zscore-{window}",
        Some("zscores"),
        &["symbol", "timestamp"],
        &["timestamp"],
    )
}

fn sensors() -> Layout {
    layout(
        "sensors-{sensor}",
        Some("stats"),
        &["sensor", "ts", "window"],
        &["ts"],
    )
}

const ZSCORE: &str = r#"{"timestamp":"2025-05-07T15:31:00.123Z","symbol":"BTCUSDT","price":97009.05,
    "zscores":[{"window":"30s","zscore_price":1.52},{"window":"1m","zscore_price":-0.97}]}"#;

#[test]
fn a_zscore_record_becomes_one_document_per_window_in_the_historic_field_order() {
    let docs = btc().documents(ZSCORE.as_bytes()).unwrap();
    let ts = Bson::DateTime(DateTime::from_millis(1_746_631_860_123));
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].collection, "btc-price-zscore-30s");
    assert_eq!(docs[1].collection, "btc-price-zscore-1m");
    assert_eq!(
        docs[0].filter,
        doc! {"symbol": "BTCUSDT", "timestamp": ts.clone()}
    );
    let expected = doc! {
        "timestamp": ts, "symbol": "BTCUSDT", "window": "1m", "zscore_price": -0.97, "price": 97009.05,
    };
    // Document equality ignores order: compare the field lists too.
    assert_eq!(docs[1].document, expected);
    let order: Vec<&str> = docs[1].document.keys().map(String::as_str).collect();
    assert_eq!(
        order,
        ["timestamp", "symbol", "window", "zscore_price", "price"]
    );
}

#[test]
fn a_sensor_record_explodes_with_the_window_in_the_key_and_the_element_fields_after_it() {
    let payload = r#"{"sensor":"s1","ts":"2026-01-01T00:00:00Z","stats":[{"window":"1m","avg_temp_c":1.5},{"window":"5m","avg_temp_c":2}]}"#;
    let docs = sensors().documents(payload.as_bytes()).unwrap();
    let ts = DateTime::from_millis(1_767_225_600_000);
    assert_eq!(docs[0].collection, "sensors-s1");
    assert_eq!(
        docs[0].filter,
        doc! {"sensor": "s1", "ts": ts, "window": "1m"}
    );
    let order: Vec<&str> = docs[1].document.keys().map(String::as_str).collect();
    assert_eq!(order, ["sensor", "ts", "window", "avg_temp_c"]);
    // An integer stays an integer (Int64), a fraction is a Double.
    assert_eq!(docs[0].document.get("avg_temp_c"), Some(&Bson::Double(1.5)));
    assert_eq!(docs[1].document.get("avg_temp_c"), Some(&Bson::Int64(2)));
}

#[test]
fn an_element_field_overrides_the_parents_field_of_the_same_name() {
    let l = layout("c", Some("items"), &["id"], &[]);
    let payload = r#"{"id":1,"source":"parent","items":[{"source":"element","n":1},{"n":2}]}"#;
    let docs = l.documents(payload.as_bytes()).unwrap();
    assert_eq!(
        docs[0].document,
        doc! {"id": 1i64, "source": "element", "n": 1i64}
    );
    assert_eq!(
        docs[1].document,
        doc! {"id": 1i64, "n": 2i64, "source": "parent"}
    );
}

#[test]
fn without_a_parent_key_field_the_element_takes_the_place_of_the_array() {
    let l = layout("c", Some("items"), &["k"], &[]);
    let docs = l
        .documents(br#"{"a":1,"items":[{"k":"x"}],"b":2}"#)
        .unwrap();
    let order: Vec<&str> = docs[0].document.keys().map(String::as_str).collect();
    assert_eq!(order, ["a", "k", "b"]);
}

#[test]
fn without_explode_a_record_is_one_document_as_it_is() {
    let l = layout("plain", None, &["id"], &[]);
    let docs = l
        .documents(br#"{"id":"a","n":{"x":[1,2.5,null,true]},"big":18446744073709551615}"#)
        .unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(
        docs[0].document,
        doc! {"id": "a", "n": {"x": [1i64, 2.5, Bson::Null, true]}, "big": 18446744073709551615.0}
    );
}

#[test]
fn an_empty_array_writes_no_document() {
    let payload = r#"{"timestamp":"2025-05-07T15:31:00Z","symbol":"X","price":1.0,"zscores":[]}"#;
    assert!(btc().documents(payload.as_bytes()).unwrap().is_empty());
}

#[test]
fn each_kind_of_hostile_record_gets_its_stable_reason() {
    let cases: &[(&str, &str)] = &[
        ("{not json", reason::MALFORMED_JSON),
        ("[1,2]", reason::NOT_AN_OBJECT),
        ("\"text\"", reason::NOT_AN_OBJECT),
        (
            r#"{"sensor":"s1","ts":"2026-01-01T00:00:00Z"}"#,
            reason::BAD_EXPLODE,
        ),
        (
            r#"{"sensor":"s1","ts":"2026-01-01T00:00:00Z","stats":{}}"#,
            reason::BAD_EXPLODE,
        ),
        (
            r#"{"sensor":"s1","ts":"2026-01-01T00:00:00Z","stats":[1]}"#,
            reason::BAD_EXPLODE,
        ),
        (
            r#"{"ts":"2026-01-01T00:00:00Z","stats":[{"window":"1m"}]}"#,
            reason::MISSING_TEMPLATE_FIELD,
        ),
        (
            r#"{"sensor":"a$b","ts":"2026-01-01T00:00:00Z","stats":[{"window":"1m"}]}"#,
            "ok: checked by the planner",
        ),
        (
            r#"{"sensor":"","ts":"2026-01-01T00:00:00Z","stats":[{"window":"1m"}]}"#,
            reason::INVALID_COLLECTION,
        ),
        (
            r#"{"sensor":{"a":1},"ts":"2026-01-01T00:00:00Z","stats":[{"window":"1m"}]}"#,
            reason::INVALID_COLLECTION,
        ),
        (
            r#"{"sensor":"s1","ts":"2026-01-01T00:00:00Z","stats":[{"avg":1}]}"#,
            reason::MISSING_KEY_FIELD,
        ),
        (
            r#"{"sensor":"s1","ts":"2026-01-01T00:00:00Z","stats":[{"window":null}]}"#,
            reason::MISSING_KEY_FIELD,
        ),
        (
            r#"{"sensor":"s1","ts":"yesterday","stats":[{"window":"1m"}]}"#,
            reason::BAD_DATE,
        ),
        (
            r#"{"sensor":"s1","ts":1767225600000,"stats":[{"window":"1m"}]}"#,
            reason::BAD_DATE,
        ),
        (
            r#"{"sensor":"s1","stats":[{"window":"1m"}]}"#,
            reason::BAD_DATE,
        ),
        (
            r#"{"sensor":"s1","ts":"2026-01-01T00:00:00Z","stats":[{"window":"1m","_id":1}]}"#,
            reason::RESERVED_FIELD,
        ),
    ];
    for (payload, expected) in cases {
        let result = sensors().documents(payload.as_bytes());
        match result {
            Ok(_) => assert!(expected.starts_with("ok"), "{payload} was accepted"),
            Err(e) => assert_eq!(e.reason, *expected, "{payload}: {}", e.detail),
        }
    }
}

#[test]
fn a_bad_element_rejects_the_whole_record_and_names_the_element() {
    let payload =
        r#"{"sensor":"s1","ts":"2026-01-01T00:00:00Z","stats":[{"window":"1m"},{"x":1}]}"#;
    let e = sensors().documents(payload.as_bytes()).unwrap_err();
    assert_eq!(e.reason, reason::MISSING_KEY_FIELD);
    assert!(e.detail.starts_with("`stats[1]`"), "{}", e.detail);
}
