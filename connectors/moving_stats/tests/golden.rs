//! Golden tests on a virtual clock: hand-made records, exact expected output.

mod common;

use common::{config, parsed, payloads, run, Msg, T0};
use framework::{event_time::format_millis, Emitter, InputRecord, Transform};

fn ts(ms: i64) -> String {
    format_millis(ms)
}

fn entry(window: &str, start: i64, count: u64, avg: &str, std: &str) -> String {
    format!(
        r#"{{"window":"{window}","window_start":"{}","count":{count},"avg_price":{avg},"std_price":{std}}}"#,
        ts(start)
    )
}

fn record(symbol: &str, end: i64, entries: &[String]) -> String {
    format!(
        r#"{{"timestamp":"{}","symbol":"{symbol}","stats":[{}]}}"#,
        ts(end),
        entries.join(",")
    )
}

fn s(ms: i64) -> i64 {
    T0 + ms
}

#[test]
fn in_order_prices_produce_exact_records_as_the_watermark_passes_each_end() {
    let cfg = config(&["2s", "4s"], "1s", "1s");
    let prices = [
        (0, 100.0),
        (500, 102.0),
        (1_500, 104.0),
        (2_200, 106.0),
        (3_100, 108.0),
    ];
    let msgs: Vec<Msg> = prices
        .iter()
        .map(|&(t, p)| Msg::price("BTCUSDT", p, s(t)))
        .collect();

    // Before end of input, only ends e <= W = 3100 - 1000 have closed.
    let live = run(&cfg, &msgs, false);
    let sqrt_8_3 = (8.0f64 / 3.0).sqrt().to_string();
    let expected_live = vec![
        record(
            "BTCUSDT",
            s(1_000),
            &[
                entry("2s", s(-1_000), 2, "101.0", "1.0"),
                entry("4s", s(-3_000), 2, "101.0", "1.0"),
            ],
        ),
        record(
            "BTCUSDT",
            s(2_000),
            &[
                entry("2s", s(0), 3, "102.0", &sqrt_8_3),
                entry("4s", s(-2_000), 3, "102.0", &sqrt_8_3),
            ],
        ),
    ];
    assert_eq!(payloads(&live.records), expected_live);
    assert!(live.rejected.is_empty());

    let all = run(&cfg, &msgs, true);
    let mut expected = expected_live;
    expected.extend([
        record(
            "BTCUSDT",
            s(3_000),
            &[
                entry("2s", s(1_000), 2, "105.0", "1.0"),
                entry("4s", s(-1_000), 4, "103.0", &5f64.sqrt().to_string()),
            ],
        ),
        record(
            "BTCUSDT",
            s(4_000),
            &[
                entry("2s", s(2_000), 2, "107.0", "1.0"),
                entry("4s", s(0), 5, "104.0", &8f64.sqrt().to_string()),
            ],
        ),
        record(
            "BTCUSDT",
            s(5_000),
            &[
                entry("2s", s(3_000), 1, "108.0", "0.0"),
                entry("4s", s(1_000), 3, "106.0", &sqrt_8_3),
            ],
        ),
        // The 2s window [4s, 6s) is empty: no entry for it.
        record(
            "BTCUSDT",
            s(6_000),
            &[entry("4s", s(2_000), 2, "107.0", "1.0")],
        ),
        record(
            "BTCUSDT",
            s(7_000),
            &[entry("4s", s(3_000), 1, "108.0", "0.0")],
        ),
    ]);
    assert_eq!(payloads(&all.records), expected);
    for r in &all.records {
        assert_eq!(r.key.as_deref(), Some(&b"BTCUSDT"[..]));
    }
    let ends: Vec<i64> = all.records.iter().map(|r| r.timestamp_ms).collect();
    assert_eq!(ends, (1..=7).map(|i| s(i * 1_000)).collect::<Vec<_>>());
}

#[test]
fn out_of_order_prices_within_lateness_give_the_same_records_as_sorted_input() {
    let cfg = config(&["2s"], "1s", "1900ms");
    let shuffled = [
        (1_500, 3.0),
        (200, 1.0),
        (2_500, 4.0),
        (900, 2.0),
        (600, 3.0),
    ];
    let mut sorted = shuffled;
    sorted.sort_by_key(|p| p.0);
    let msgs = |ps: &[(i64, f64)]| -> Vec<Msg> {
        ps.iter().map(|&(t, p)| Msg::price("A", p, s(t))).collect()
    };
    let out = run(&cfg, &msgs(&shuffled), true);
    assert!(out.rejected.is_empty(), "every record is within lateness");
    assert_eq!(
        payloads(&out.records),
        vec![
            // [-1s, 1s): 1, 2, 3
            record(
                "A",
                s(1_000),
                &[entry(
                    "2s",
                    s(-1_000),
                    3,
                    "2.0",
                    &(2.0f64 / 3.0).sqrt().to_string()
                )]
            ),
            // [0, 2s): 1, 2, 3, 3
            record(
                "A",
                s(2_000),
                &[entry("2s", s(0), 4, "2.25", &0.6875f64.sqrt().to_string())]
            ),
            // [1s, 3s): 3, 4
            record("A", s(3_000), &[entry("2s", s(1_000), 2, "3.5", "0.5")]),
            // [2s, 4s): 4
            record("A", s(4_000), &[entry("2s", s(2_000), 1, "4.0", "0.0")]),
        ]
    );
    let in_order = run(&cfg, &msgs(&sorted), true);
    assert_eq!(in_order.records, out.records);
}

#[test]
fn records_later_than_the_lateness_are_refused_as_late_and_join_no_window() {
    let cfg = config(&["2s"], "1s", "1s");
    let msgs = vec![
        Msg::price("A", 10.0, s(5_000)),
        Msg::price("A", 99.0, s(3_999)), // W = 4000: late
        Msg::price("A", 20.0, s(4_000)), // exactly at W: on time
    ];
    let out = run(&cfg, &msgs, true);
    assert_eq!(out.rejected.len(), 1);
    let late = &out.rejected[0];
    assert_eq!(late.reason, "late");
    assert_eq!(late.payload, msgs[1].payload);
    assert_eq!(late.key.as_deref(), Some(&b"A"[..]));
    assert!(late.detail.contains(&ts(s(4_000))), "{}", late.detail);
    let counts: u64 = parsed(&out.records)
        .iter()
        .flat_map(|r| r["stats"].as_array().unwrap().clone())
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counts, 4, "two on-time records, two windows each");
    assert!(!payloads(&out.records).iter().any(|p| p.contains("99")));
}

#[test]
fn a_window_of_equal_prices_has_exactly_zero_deviation_and_exactly_that_average() {
    let cfg = config(&["30s", "1m"], "1s", "10s");
    let msgs: Vec<Msg> = (0..1_000)
        .map(|i| Msg::price("BTCUSDT", 97_009.02, s(i * 100)))
        .collect();
    let out = run(&cfg, &msgs, true);
    // Data in 100 one-second panes: ends 1s ..= 99s + 60s.
    assert_eq!(out.records.len(), 159);
    for (text, value) in payloads(&out.records).iter().zip(parsed(&out.records)) {
        for e in value["stats"].as_array().unwrap() {
            assert_eq!(e["std_price"].as_f64().unwrap().to_bits(), 0f64.to_bits());
            assert_eq!(e["avg_price"].as_f64().unwrap(), 97_009.02);
        }
        assert!(!text.contains("e-"), "no tiny residue like 1e-12: {text}");
    }
}

#[test]
fn a_single_record_window_has_zero_deviation() {
    let cfg = config(&["1s", "3s"], "1s", "0ms");
    let out = run(&cfg, &[Msg::price("A", 42.5, s(1_234))], true);
    assert_eq!(
        payloads(&out.records),
        vec![
            record(
                "A",
                s(2_000),
                &[
                    entry("1s", s(1_000), 1, "42.5", "0.0"),
                    entry("3s", s(-1_000), 1, "42.5", "0.0")
                ]
            ),
            record("A", s(3_000), &[entry("3s", s(0), 1, "42.5", "0.0")]),
            record("A", s(4_000), &[entry("3s", s(1_000), 1, "42.5", "0.0")]),
        ]
    );
}

#[test]
fn gaps_longer_than_every_window_produce_no_records_for_the_empty_ends() {
    let cfg = config(&["2s", "4s"], "1s", "1s");
    let msgs = vec![
        Msg::price("A", 1.0, s(0)),
        Msg::price("A", 2.0, s(3_600_000)),
        Msg::price("A", 3.0, s(86_400_000)),
    ];
    let live = run(&cfg, &msgs, false);
    let ends: Vec<i64> = live.records.iter().map(|r| r.timestamp_ms - T0).collect();
    assert_eq!(
        ends,
        vec![1_000, 2_000, 3_000, 4_000, 3_601_000, 3_602_000, 3_603_000, 3_604_000]
    );
    let all = run(&cfg, &msgs, true);
    assert_eq!(all.records.len(), 12);
    assert_eq!(
        all.records.last().map(|r| r.timestamp_ms),
        Some(s(86_404_000))
    );
}

#[test]
fn each_symbol_has_its_own_watermark() {
    let cfg = config(&["2s"], "1s", "1s");
    let msgs = vec![
        Msg::price("A", 1.0, s(0)),
        Msg::price("B", 5.0, s(0)),
        Msg::price("A", 2.0, s(60_000)), // closes A's windows only
        Msg::price("B", 6.0, s(500)),    // far behind A's watermark, on time for B
    ];
    let out = run(&cfg, &msgs, false);
    assert!(out.rejected.is_empty());
    let symbols: Vec<String> = parsed(&out.records)
        .iter()
        .map(|r| r["symbol"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(symbols, vec!["A", "A"], "B's windows are still open");
    let all = run(&cfg, &msgs, true);
    let b: Vec<String> = payloads(&all.records)
        .into_iter()
        .filter(|p| p.contains("\"B\""))
        .collect();
    assert_eq!(
        b,
        vec![
            record("B", s(1_000), &[entry("2s", s(-1_000), 2, "5.5", "0.5")]),
            record("B", s(2_000), &[entry("2s", s(0), 2, "5.5", "0.5")]),
        ]
    );
    for r in &all.records {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(
            r.key.as_deref(),
            Some(v["symbol"].as_str().unwrap().as_bytes())
        );
    }
}

#[test]
fn end_of_input_closes_every_open_window_of_every_symbol() {
    let cfg = config(&["2s", "1m"], "1s", "50s");
    let msgs = vec![Msg::price("B", 2.0, s(0)), Msg::price("A", 1.0, s(10_000))];
    let live = run(&cfg, &msgs, false);
    assert!(
        live.records.is_empty(),
        "the 50s lateness keeps everything open"
    );
    let all = run(&cfg, &msgs, true);
    // Each record is in 60 ends of the 1m window.
    assert_eq!(all.records.len(), 120);
    let v = parsed(&all.records);
    assert_eq!(
        v[0]["symbol"], "A",
        "keys are closed in a deterministic order"
    );
    assert_eq!(v[59]["timestamp"], ts(s(70_000)));
    assert_eq!(v[60]["symbol"], "B");
}

#[test]
fn prices_near_1e5_with_tiny_spread_match_exact_arithmetic() {
    // 100000 + k/1024 is an exact double, so integer sums give the exact statistics.
    let cfg = config(&["1m"], "1m", "0ms");
    let ks: Vec<i64> = (0..600).map(|i| (i * 37 + i * i) % 5).collect();
    let msgs: Vec<Msg> = ks
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            Msg::price(
                "A",
                100_000.0 + k as f64 / 1024.0,
                s(30_000 + i as i64 * 100),
            )
        })
        .collect();
    let out = run(&cfg, &msgs, true);
    assert_eq!(out.records.len(), 1);
    let e = &parsed(&out.records)[0]["stats"][0];
    let n = ks.len() as i128;
    let s1: i128 = ks.iter().map(|&k| k as i128).sum();
    let s2: i128 = ks.iter().map(|&k| (k as i128) * (k as i128)).sum();
    let exact_std = ((n * s2 - s1 * s1) as f64).sqrt() / (n as f64 * 1024.0);
    let exact_avg = 100_000.0 + s1 as f64 / (n as f64 * 1024.0);
    assert_eq!(e["count"], 600);
    let std = e["std_price"].as_f64().unwrap();
    let avg = e["avg_price"].as_f64().unwrap();
    assert!(
        ((std - exact_std) / exact_std).abs() < 1e-9,
        "{std} vs {exact_std}"
    );
    assert!(
        ((avg - exact_avg) / exact_avg).abs() < 1e-12,
        "{avg} vs {exact_avg}"
    );
    // The naive formula is useless here: the check above is meaningful.
    let ps: Vec<f64> = ks.iter().map(|&k| 100_000.0 + k as f64 / 1024.0).collect();
    let naive = (ps.iter().map(|p| p * p).sum::<f64>() / 600.0
        - (ps.iter().sum::<f64>() / 600.0).powi(2))
    .max(0.0)
    .sqrt();
    assert!(((naive - exact_std) / exact_std).abs() > 1e-6);
}

#[test]
fn bad_records_are_refused_by_reason_and_do_not_disturb_good_ones() {
    let cfg = config(&["2s"], "1s", "1s");
    let good = Msg::price("A", 7.0, s(100));
    let bad: Vec<(&[u8], &str)> = vec![
        (b"{oops", "malformed_json"),
        (
            br#"{"symbol":"A","timestamp":"2025-05-07T15:30:30.000Z"}"#,
            "missing_field",
        ),
        (
            br#"{"symbol":"A","price":"7 USD","timestamp":"2025-05-07T15:30:30.000Z"}"#,
            "invalid_price",
        ),
        (
            br#"{"symbol":"A","price":-1,"timestamp":"2025-05-07T15:30:30.000Z"}"#,
            "invalid_price",
        ),
        (
            br#"{"symbol":"A","price":1,"timestamp":"07/05/2025"}"#,
            "invalid_timestamp",
        ),
    ];
    let mut t = connector_moving_stats::MovingStats::new(&cfg).unwrap();
    let mut out = Emitter::new();
    for (i, (payload, _)) in bad.iter().enumerate() {
        let record = InputRecord {
            port: 0,
            key: Some(b"A"),
            payload,
            timestamp_ms: None,
            partition: 0,
            offset: i as i64,
        };
        t.process(&record, &mut out);
    }
    common::feed(&mut t, std::slice::from_ref(&good), 10, &mut out);
    t.end_of_input(&mut out);
    let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason).collect();
    assert_eq!(reasons, bad.iter().map(|b| b.1).collect::<Vec<_>>());
    for (r, (payload, _)) in out.rejected.iter().zip(&bad) {
        assert_eq!(&r.payload[..], *payload);
    }
    assert_eq!(
        payloads(&out.records),
        vec![
            record("A", s(1_000), &[entry("2s", s(-1_000), 1, "7.0", "0.0")]),
            record("A", s(2_000), &[entry("2s", s(0), 1, "7.0", "0.0")]),
        ]
    );
}

#[test]
fn negative_event_times_use_floor_alignment() {
    let cfg = config(&["2s"], "1s", "0ms");
    let out = run(&cfg, &[Msg::price("A", 3.0, -1_500)], true);
    assert_eq!(
        payloads(&out.records),
        vec![
            record("A", -1_000, &[entry("2s", -3_000, 1, "3.0", "0.0")]),
            record("A", 0, &[entry("2s", -2_000, 1, "3.0", "0.0")]),
        ]
    );
}

#[test]
fn field_mapped_records_write_names_derived_from_the_fields() {
    let cfg = connector_moving_stats::MovingStatsConfig {
        fields: framework::formats::FieldMapping {
            key_field: "data.s".into(),
            value_field: "data.p".into(),
            timestamp_field: "data.T".into(),
        },
        ..config(&["2s"], "1s", "0ms")
    };
    let msgs: Vec<Msg> = [
        (0, "\"97000.01\""),
        (300, "97000.02"),
        (600, "\"97000.03000000\""),
    ]
    .iter()
    .map(|&(t, p)| Msg {
        key: b"BTCUSDT".to_vec(),
        payload: format!(r#"{{"data":{{"s":"BTCUSDT","p":{p},"T":{}}}}}"#, s(t)).into_bytes(),
        timestamp_ms: s(t),
    })
    .collect();
    let out = run(&cfg, &msgs, true);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    // avg 97000.02 exactly; std sqrt(2/3) cents, correctly rounded.
    let std = "0.00816496580927726";
    assert_eq!(
        payloads(&out.records)[0],
        format!(
            r#"{{"timestamp":"{}","s":"BTCUSDT","stats":[{{"window":"2s","window_start":"{}","count":3,"avg_p":97000.02,"std_p":{std}}}]}}"#,
            ts(s(1_000)),
            ts(s(-1_000))
        )
    );
}
