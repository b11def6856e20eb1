//! Golden tests of the z-score transform through the `Transform` trait.

mod common;

use common::*;
use connector_zscore::{ZScore, ZScoreConfig, ZScoreTransform, PRICES, STATS};
use framework::{
    connector::{Attributes, Resume},
    ConnectorConfig, ConnectorRegistration, Transform, TransformConnector, ValidationContext,
};

const W: [(&str, f64, f64); 2] = [("30s", 100.0, 0.25), ("1m", 99.0, 0.5)];

#[test]
fn stats_arriving_first_match_the_price_immediately() {
    let mut d = Driver::new(transform());
    d.stats("BTCUSDT", T0, &W);
    d.price("BTCUSDT", T0 + 123, 100.5);
    assert_eq!(
        d.outputs(),
        vec![
            r#"{"timestamp":"2025-05-07T15:31:00.123Z","symbol":"BTCUSDT","price":100.5,"zscores":[{"window":"30s","zscore_price":2.0},{"window":"1m","zscore_price":3.0}]}"#
        ]
    );
    let record = &d.records[0];
    assert_eq!(record.key.as_deref(), Some(&b"BTCUSDT"[..]));
    assert_eq!(record.timestamp_ms, T0 + 123);
    assert!(d.rejected.is_empty());
}

#[test]
fn price_arriving_first_is_emitted_when_its_stats_arrive() {
    let mut d = Driver::new(transform());
    d.price("BTCUSDT", T0 + 999, 99.75);
    assert!(d.records.is_empty());
    assert_eq!(d.transform.buffered().probes, 1);
    d.stats("BTCUSDT", T0, &W);
    assert_eq!(
        d.outputs(),
        vec![
            r#"{"timestamp":"2025-05-07T15:31:00.999Z","symbol":"BTCUSDT","price":99.75,"zscores":[{"window":"30s","zscore_price":-1.0},{"window":"1m","zscore_price":1.5}]}"#
        ]
    );
    assert_eq!(d.transform.buffered().probes, 0);
}

#[test]
fn price_exactly_on_a_slide_boundary_uses_the_stats_ending_at_it() {
    let mut d = Driver::new(transform());
    d.stats("BTCUSDT", T0 - 1_000, &[("30s", 1.0, 1.0)]);
    d.price("BTCUSDT", T0, 101.0);
    assert!(
        d.records.is_empty(),
        "must not use the record ending at t - S"
    );
    d.stats("BTCUSDT", T0, &[("30s", 100.0, 0.5)]);
    assert_eq!(
        d.outputs(),
        vec![
            r#"{"timestamp":"2025-05-07T15:31:00.000Z","symbol":"BTCUSDT","price":101.0,"zscores":[{"window":"30s","zscore_price":2.0}]}"#
        ]
    );
}

#[test]
fn zero_standard_deviation_gives_a_zero_zscore() {
    let mut d = Driver::new(transform());
    d.stats(
        "BTCUSDT",
        T0,
        &[("30s", 97_009.02, 0.0), ("1m", 97_000.0, 0.0)],
    );
    d.price("BTCUSDT", T0 + 5, 97_009.02);
    d.price("BTCUSDT", T0 + 6, 97_100.0);
    assert_eq!(
        d.outputs(),
        vec![
            r#"{"timestamp":"2025-05-07T15:31:00.005Z","symbol":"BTCUSDT","price":97009.02,"zscores":[{"window":"30s","zscore_price":0.0},{"window":"1m","zscore_price":0.0}]}"#,
            r#"{"timestamp":"2025-05-07T15:31:00.006Z","symbol":"BTCUSDT","price":97100.0,"zscores":[{"window":"30s","zscore_price":0.0},{"window":"1m","zscore_price":0.0}]}"#,
        ]
    );
}

#[test]
fn only_the_windows_present_in_the_stats_record_appear_in_its_order() {
    let mut d = Driver::new(transform());
    // The 1m and 15m windows were empty, so moving_stats left them out.
    d.stats(
        "BTCUSDT",
        T0,
        &[("30s", 10.0, 1.0), ("5m", 8.0, 2.0), ("1h", 12.0, 4.0)],
    );
    d.price("BTCUSDT", T0 + 10, 14.0);
    assert_eq!(
        d.outputs(),
        vec![
            r#"{"timestamp":"2025-05-07T15:31:00.010Z","symbol":"BTCUSDT","price":14.0,"zscores":[{"window":"30s","zscore_price":4.0},{"window":"5m","zscore_price":3.0},{"window":"1h","zscore_price":0.5}]}"#
        ]
    );
}

#[test]
fn late_prices_are_dropped_and_counted_as_late_with_their_original_bytes() {
    let mut d = Driver::new(transform());
    d.price("BTCUSDT", T0 + 20_000, 100.0); // watermark T0 + 10 s
    d.price("BTCUSDT", T0 + 10_000, 100.0); // exactly at the watermark: on time
    let late = price_json("BTCUSDT", T0 + 9_999, 100.0);
    d.feed(PRICES, "BTCUSDT", &late);
    assert_eq!(d.reasons(), vec!["late"]);
    assert_eq!(d.rejected[0].payload, late);
    assert_eq!(d.rejected[0].port, PRICES);
    assert_eq!(d.rejected[0].key.as_deref(), Some(&b"BTCUSDT"[..]));
    // Statistics for the late price's second come: only the on-time prices are joined.
    d.stats("BTCUSDT", T0 + 9_000, &W);
    d.stats("BTCUSDT", T0 + 10_000, &W);
    d.stats("BTCUSDT", T0 + 20_000, &W);
    assert_eq!(d.records.len(), 2);
    assert_eq!(d.reasons(), vec!["late"]);
}

#[test]
fn price_whose_stats_were_skipped_is_unmatched_once_later_stats_arrive() {
    let mut d = Driver::new(transform());
    let waiting = price_json("BTCUSDT", T0 + 500, 100.0);
    d.feed(PRICES, "BTCUSDT", &waiting);
    d.stats("BTCUSDT", T0 + 1_000, &W); // no record at T0: every window was empty
    d.price("BTCUSDT", T0 + 700, 100.0); // arrives after: decided at once
    assert!(d.records.is_empty());
    assert_eq!(d.reasons(), vec!["unmatched", "unmatched"]);
    assert_eq!(
        d.rejected[0].payload, waiting,
        "dead letter keeps the original"
    );
    assert!(d.rejected[0].detail.contains("2025-05-07T15:31:00.000Z"));
    assert_eq!(d.transform.buffered().probes, 0);
}

#[test]
fn prices_still_waiting_at_end_of_input_are_unmatched() {
    let mut d = Driver::new(transform());
    d.stats("BTCUSDT", T0, &W);
    d.price("BTCUSDT", T0 + 100, 100.0);
    d.price("BTCUSDT", T0 + 1_100, 100.0);
    d.price("BTCUSDT", T0 + 2_100, 100.0);
    d.end();
    assert_eq!(d.records.len(), 1);
    assert_eq!(d.reasons(), vec!["unmatched", "unmatched"]);
    assert_eq!(d.transform.buffered().total(), 0);
}

#[test]
fn symbols_are_joined_independently() {
    let mut d = Driver::new(transform());
    d.stats("BTCUSDT", T0, &[("30s", 100.0, 1.0)]);
    d.price("ETHUSDT", T0 + 1, 50.0); // ETH's statistics not there yet
    d.price("BTCUSDT", T0 + 2, 101.0);
    d.price("ETHUSDT", T0 + 60_000, 50.0); // ETH's watermark only
    d.price("BTCUSDT", T0 + 3, 102.0); // not late: BTC's watermark is its own
    d.stats("ETHUSDT", T0, &[("30s", 40.0, 5.0)]);
    assert_eq!(
        d.outputs(),
        vec![
            r#"{"timestamp":"2025-05-07T15:31:00.002Z","symbol":"BTCUSDT","price":101.0,"zscores":[{"window":"30s","zscore_price":1.0}]}"#,
            r#"{"timestamp":"2025-05-07T15:31:00.003Z","symbol":"BTCUSDT","price":102.0,"zscores":[{"window":"30s","zscore_price":2.0}]}"#,
            r#"{"timestamp":"2025-05-07T15:31:00.001Z","symbol":"ETHUSDT","price":50.0,"zscores":[{"window":"30s","zscore_price":2.0}]}"#,
        ]
    );
    assert!(d.rejected.is_empty());
}

#[test]
fn redelivered_stats_records_never_produce_a_second_output() {
    let mut d = Driver::new(transform());
    d.price("BTCUSDT", T0 + 100, 101.0);
    d.stats("BTCUSDT", T0, &[("30s", 100.0, 1.0)]);
    d.stats("BTCUSDT", T0, &[("30s", 100.0, 1.0)]);
    d.price("BTCUSDT", T0 + 200, 102.0);
    d.stats("BTCUSDT", T0, &[("30s", 100.0, 1.0)]);
    assert_eq!(d.records.len(), 2);
    assert!(d.rejected.is_empty(), "duplicates are not errors");
    assert_eq!(d.transform.buffered().table_records, 1);
}

#[test]
fn stats_not_on_a_slide_multiple_are_rejected_as_misaligned() {
    let mut d = Driver::new(transform());
    d.price("BTCUSDT", T0 + 600, 101.0);
    d.stats("BTCUSDT", T0 + 500, &W);
    assert_eq!(d.reasons(), vec!["misaligned_stats"]);
    assert_eq!(d.rejected[0].port, STATS);
    assert!(d.records.is_empty());
    assert_eq!(d.transform.buffered().probes, 1, "the price keeps waiting");
}

#[test]
fn out_of_order_and_late_stats_are_rejected_not_joined() {
    let mut d = Driver::new(transform());
    d.stats("BTCUSDT", T0 + 20_000, &W);
    d.stats("BTCUSDT", T0 + 15_000, &W);
    d.stats("BTCUSDT", T0 + 5_000, &W);
    assert_eq!(d.reasons(), vec!["stale_stats", "late"]);
}

#[test]
fn bad_input_is_rejected_per_reason_and_good_input_still_flows() {
    let mut d = Driver::new(transform());
    let ts = "2025-05-07T15:31:00.100Z";
    let bad: [(usize, String); 7] = [
        (PRICES, "not json".into()),
        (PRICES, format!(r#"{{"symbol":"BTCUSDT","timestamp":"{ts}"}}"#)),
        (PRICES, format!(r#"{{"symbol":"BTCUSDT","price":"97009.02 USDT","timestamp":"{ts}"}}"#)),
        (PRICES, format!(r#"{{"symbol":"BTCUSDT","price":1e400,"timestamp":"{ts}"}}"#)),
        (PRICES, r#"{"symbol":"BTCUSDT","price":1.0,"timestamp":"07/05/2025"}"#.into()),
        (STATS, r#"{"symbol":"BTCUSDT","timestamp":"2025-05-07T15:31:00.000Z","stats":[{"window":"30s"}]}"#.into()),
        (STATS, r#"{"symbol":"BTCUSDT","timestamp":"2025-05-07T15:31:00.000Z","stats":[{"window":"30s","avg_price":1.0,"std_price":-2.0}]}"#.into()),
    ];
    for (port, payload) in &bad {
        d.feed(*port, "BTCUSDT", payload.as_bytes());
    }
    assert_eq!(
        d.reasons(),
        vec![
            "malformed_json",
            "missing_field",
            "invalid_price",
            "invalid_price", // 1e400: beyond the value range, like in moving_stats
            "invalid_timestamp",
            "missing_field",
            "invalid_stats"
        ]
    );
    d.stats("BTCUSDT", T0, &W);
    d.price("BTCUSDT", T0 + 100, 100.0);
    assert_eq!(d.records.len(), 1);
}

#[test]
fn timestamps_with_offsets_are_rewritten_in_canonical_utc() {
    let mut d = Driver::new(transform());
    d.stats("BTCUSDT", T0, &[("30s", 100.0, 1.0)]);
    d.feed(
        PRICES,
        "BTCUSDT",
        br#"{"symbol":"BTCUSDT","price":100.0,"timestamp":"2025-05-07T17:31:00.4567+02:00"}"#,
    );
    assert_eq!(
        d.outputs(),
        vec![
            r#"{"timestamp":"2025-05-07T15:31:00.456Z","symbol":"BTCUSDT","price":100.0,"zscores":[{"window":"30s","zscore_price":0.0}]}"#
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Configuration and registration

#[test]
fn config_defaults_to_one_second_slide_and_ten_second_lateness() {
    let config: ZScoreConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config.slide.as_millis(), 1_000);
    assert_eq!(config.lateness.as_millis(), 10_000);
    assert!(config.check().is_empty());
    assert!(serde_json::from_str::<ZScoreConfig>(r#"{"slid":"1s"}"#).is_err());
}

#[test]
fn config_check_rejects_a_zero_slide() {
    let config: ZScoreConfig = serde_json::from_str(r#"{"slide":"0s","lateness":"0s"}"#).unwrap();
    let issues = config.check();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].path, "slide");
    assert!(ZScoreTransform::new(&config, "t").is_err());
}

fn with_stats_writer(attributes: &[(&str, &str)]) -> ValidationContext {
    let attributes: Attributes = attributes
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ValidationContext {
        input_attributes: vec![None, Some(attributes)],
    }
}

#[test]
fn check_inputs_flags_a_slide_different_from_the_statistics_writer() {
    let config: ZScoreConfig = serde_json::from_str(r#"{"slide":"2s"}"#).unwrap();
    let issues = config.check_inputs(&with_stats_writer(&[
        ("slide", "1s"),
        ("windows", "30s,1m"),
    ]));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].path, "slide");
    assert_eq!(
        issues[0].message,
        "slide 2s differs from the slide 1s of the statistics writer; z-scores would match no statistics"
    );
}

#[test]
fn check_inputs_accepts_an_equal_slide_in_any_spelling_or_no_attributes() {
    let config: ZScoreConfig = serde_json::from_str(r#"{"slide":"60s"}"#).unwrap();
    assert!(config
        .check_inputs(&with_stats_writer(&[("slide", "1m")]))
        .is_empty());
    assert!(config.check_inputs(&with_stats_writer(&[])).is_empty());
    assert!(config
        .check_inputs(&ValidationContext::default())
        .is_empty());
}

#[test]
fn zscore_is_registered_with_its_ports_and_a_documented_schema() {
    let registration = ConnectorRegistration::find("zscore").expect("registered");
    let ports: Vec<_> = registration
        .inputs
        .iter()
        .map(|p| (p.name, p.record_type.name()))
        .collect();
    assert_eq!(ports, vec![("prices", "price"), ("stats", "moving-stats")]);
    assert_eq!(registration.output.map(|t| t.name()), Some("zscore"));
    assert_eq!(ZScore::OUTPUT.name(), "zscore");
    let schema = (registration.schema)();
    for field in ["slide", "lateness"] {
        let description = schema["properties"][field]["description"]
            .as_str()
            .unwrap_or("");
        assert!(!description.is_empty(), "{field} undocumented: {schema}");
    }
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
}

// ---------------------------------------------------------------------------------------
// Restart

#[test]
fn resume_without_a_checkpoint_starts_at_the_committed_offsets() {
    assert_eq!(transform().resume(None).unwrap(), Resume::FromCommitted);
}

#[test]
fn checkpoint_is_small_json_and_resume_replays_from_p_c_minus_slide() {
    let mut d = Driver::new(transform());
    d.price("BTCUSDT", T0 + 20_500, 100.0); // pending; W = T0 + 10.5 s
    d.price("BTCUSDT", T0 + 15_200, 100.0); // pending, oldest
    d.price("ETHUSDT", T0 + 5_000, 100.0); // pending; W = T0 - 5 s
    let checkpoint = d.transform.checkpoint().unwrap();
    assert_eq!(
        checkpoint,
        format!(
            r#"{{"decided_before":{{"BTCUSDT":{},"ETHUSDT":{}}}}}"#,
            T0 + 10_500,
            T0 - 5_000
        )
    );
    // The runtime asks the running instance, without building one, at every commit.
    assert_eq!(
        d.transform.replay_from(&checkpoint).unwrap(),
        Resume::ReplayFrom {
            event_time_ms: T0 - 6_000
        }
    );
    let mut restarted = transform();
    assert_eq!(
        restarted.resume(Some(&checkpoint)).unwrap(),
        Resume::ReplayFrom {
            event_time_ms: T0 - 6_000
        }
    );
    assert!(d.transform.replay_from("{not json").is_err());
    assert!(transform().resume(Some("{not json")).is_err());
    let empty = transform().checkpoint().unwrap();
    assert_eq!(
        transform().resume(Some(&empty)).unwrap(),
        Resume::FromCommitted
    );
}

#[test]
fn check_inputs_flags_value_and_key_fields_the_statistics_writer_does_not_write() {
    let config: ZScoreConfig =
        serde_json::from_str(r#"{"value_field":"prise","key_field":"data.s"}"#).unwrap();
    let writer = with_stats_writer(&[("slide", "1s"), ("key", "symbol"), ("value", "price")]);
    let issues = config.check_inputs(&writer);
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["value_field", "key_field"]);
    assert!(issues[0].message.contains("`prise`") && issues[0].message.contains("`price`"));
    // The last segment is what the writer writes: `data.p` matches a writer of `p`.
    let nested: ZScoreConfig =
        serde_json::from_str(r#"{"value_field":"data.p","key_field":"data.s"}"#).unwrap();
    let writer = with_stats_writer(&[("key", "s"), ("value", "p")]);
    assert!(nested.check_inputs(&writer).is_empty());
}

#[test]
fn field_settings_with_bad_paths_are_config_issues() {
    for (json, path) in [
        (r#"{"value_field":""}"#, "value_field"),
        (r#"{"key_field":"data..s"}"#, "key_field"),
        (r#"{"timestamp_field":"ts."}"#, "timestamp_field"),
        (r#"{"timestamp_field":"price"}"#, "timestamp_field"),
    ] {
        let config: ZScoreConfig = serde_json::from_str(json).unwrap();
        let issues = config.check();
        assert_eq!(issues.len(), 1, "{json}: {issues:?}");
        assert_eq!(issues[0].path, path, "{json}");
        assert!(ZScoreTransform::new(&config, "test").is_err(), "{json}");
    }
}
