//! Records with other field names go through `moving_stats` and `zscore` in process; every
//! average, deviation and z-score is checked against exact rational arithmetic: the
//! average and deviation must be the correctly rounded values, not merely close ones.

use std::collections::BTreeMap;

use connector_moving_stats::{MovingStats, MovingStatsConfig};
use connector_zscore::{ZScoreConfig, ZScoreTransform, PRICES, STATS};
use framework::{event_time::parse_millis, DurationSpec, Emitter, InputRecord, Transform};
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{FromPrimitive, Signed, ToPrimitive, Zero};
use serde_json::Value;

const T0: i64 = 1_746_631_860_000; // 2025-05-07T15:31:00.000Z

fn record<'a>(port: usize, payload: &'a [u8], offset: i64) -> InputRecord<'a> {
    InputRecord {
        port,
        key: None,
        payload,
        timestamp_ms: None,
        partition: 0,
        offset,
    }
}

/// `value` as an exact rational, from its decimal text.
fn exact(text: &str) -> BigRational {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits: BigInt = format!("{int}{frac}").parse().unwrap();
    BigRational::new(digits, BigInt::from(10).pow(frac.len() as u32))
}

fn rational(x: f64) -> BigRational {
    BigRational::from_float(x).unwrap()
}

/// Whether `x` is the correctly rounded f64 of `sqrt(variance)`: the exact variance lies
/// between the squares of the midpoints to `x`'s neighbours.
fn is_rounded_sqrt(x: f64, variance: &BigRational) -> bool {
    if variance.is_zero() {
        return x == 0.0;
    }
    let up = f64::from_bits(x.to_bits() + 1);
    let down = f64::from_bits(x.to_bits() - 1);
    let two = BigRational::from_u8(2).unwrap();
    let hi = (rational(x) + rational(up)) / &two;
    let lo = (rational(x) + rational(down)) / &two;
    &lo * &lo <= *variance && *variance <= &hi * &hi
}

struct Series {
    /// (time ms, value text) of one key.
    points: Vec<(i64, String)>,
}

impl Series {
    /// Exact (average, variance) of the values in `[start, end)`.
    fn moments(&self, start: i64, end: i64) -> (usize, BigRational, BigRational) {
        let values: Vec<BigRational> = self
            .points
            .iter()
            .filter(|(t, _)| (start..end).contains(t))
            .map(|(_, v)| exact(v))
            .collect();
        let n = BigRational::from_usize(values.len()).unwrap();
        let mean = values.iter().cloned().sum::<BigRational>() / &n;
        let var = values
            .iter()
            .map(|v| (v - &mean) * (v - &mean))
            .sum::<BigRational>()
            / &n;
        (values.len(), mean, var)
    }
}

/// Runs both stages over `prices` (payloads) with the given field settings, checks every
/// statistic and z-score against `series`, and returns how many of each were checked.
fn run_and_check(
    fields: [&str; 3],
    names: (&str, &str),
    prices: &[Vec<u8>],
    series: &BTreeMap<String, Series>,
) -> (usize, usize) {
    let [key_field, value_field, timestamp_field] = fields.map(str::to_string);
    let mapping = framework::formats::FieldMapping {
        key_field,
        value_field,
        timestamp_field,
    };
    let (key_name, value_name) = names;
    let stats_config = MovingStatsConfig {
        windows: vec![DurationSpec::from_secs(2), DurationSpec::from_secs(5)],
        slide: DurationSpec::from_secs(1),
        lateness: DurationSpec::from_millis(0),
        fields: mapping.clone(),
        positive_only: false,
        ..MovingStatsConfig::default()
    };
    let mut stats_stage = MovingStats::new(&stats_config).unwrap();
    let mut stats_out = Emitter::new();
    for (i, payload) in prices.iter().enumerate() {
        stats_stage.process(&record(0, payload, i as i64), &mut stats_out);
    }
    stats_stage.end_of_input(&mut stats_out);
    assert!(stats_out.rejected.is_empty(), "{:?}", stats_out.rejected);

    let mut checked_stats = 0;
    for r in &stats_out.records {
        let v: Value = serde_json::from_slice(&r.payload).unwrap();
        let end = parse_millis(v["timestamp"].as_str().unwrap()).unwrap();
        let key = v[key_name].as_str().unwrap();
        for w in v["stats"].as_array().unwrap() {
            let length = w["window"]
                .as_str()
                .unwrap()
                .parse::<DurationSpec>()
                .unwrap();
            let (count, mean, var) = series[key].moments(end - length.as_millis(), end);
            assert_eq!(w["count"].as_u64().unwrap() as usize, count);
            let avg = w[format!("avg_{value_name}")].as_f64().unwrap();
            let std = w[format!("std_{value_name}")].as_f64().unwrap();
            assert_eq!(avg, mean.to_f64().unwrap(), "avg of {key} at {end}: {v}");
            assert!(
                is_rounded_sqrt(std, &var),
                "std {std} of {key} at {end}: {v}"
            );
            checked_stats += 1;
        }
    }

    let z_config = ZScoreConfig {
        lateness: DurationSpec::from_millis(0),
        fields: mapping,
        positive_only: false,
        ..ZScoreConfig::default()
    };
    let mut z = ZScoreTransform::new(&z_config, "test").unwrap();
    let mut out = Emitter::new();
    let stats_payloads: Vec<Vec<u8>> = stats_out
        .records
        .iter()
        .map(|r| r.payload.clone())
        .collect();
    // All statistics first: every price finds its record already there.
    for (i, payload) in stats_payloads.iter().enumerate() {
        z.process(&record(STATS, payload, i as i64), &mut out);
    }
    for (i, payload) in prices.iter().enumerate() {
        z.process(&record(PRICES, payload, i as i64), &mut out);
    }
    z.end_of_input(&mut out);

    let mut checked_z = 0;
    for r in &out.records {
        let v: Value = serde_json::from_slice(&r.payload).unwrap();
        let t = parse_millis(v["timestamp"].as_str().unwrap()).unwrap();
        let key = v[key_name].as_str().unwrap();
        let value = v[value_name].as_f64().unwrap();
        let point = series[key].points.iter().find(|(pt, _)| *pt == t).unwrap();
        assert_eq!(value, exact(&point.1).to_f64().unwrap());
        let e = t.div_euclid(1_000) * 1_000;
        for zs in v["zscores"].as_array().unwrap() {
            let length = zs["window"]
                .as_str()
                .unwrap()
                .parse::<DurationSpec>()
                .unwrap();
            let (_, mean, var) = series[key].moments(e - length.as_millis(), e);
            let got = zs[format!("zscore_{value_name}")].as_f64().unwrap();
            // The z-score is (value - avg) / std in f64 from the published (correctly
            // rounded) avg and std: its error is what rounding avg and the value to f64
            // leaves in their difference, plus a few rounding steps.
            let std = var.to_f64().unwrap().sqrt();
            if std == 0.0 {
                assert_eq!(got, 0.0);
                continue;
            }
            let want = ((exact(&point.1) - &mean).to_f64().unwrap()) / std;
            let ulp = |x: f64| f64::from_bits(x.abs().to_bits() + 1) - x.abs();
            let avg = mean.to_f64().unwrap();
            let bound = (ulp(avg) + ulp(value)) / std + 4.0 * f64::EPSILON * want.abs();
            assert!(
                (got - want).abs() <= bound,
                "zscore {got} vs {want} (bound {bound}): {v}"
            );
            checked_z += 1;
        }
    }
    assert!(
        out.rejected.iter().all(|r| r.reason == "unmatched"),
        "{:?}",
        out.rejected
    );
    (checked_stats, checked_z)
}

/// Temperatures around 21.5 that move by hundredths (std/mean ~ 1e-4 .. 1e-3), one of
/// them negative, for two sensors.
fn sensor_series() -> BTreeMap<String, Series> {
    let mut series = BTreeMap::new();
    for (s, base) in [("s1", 2150i64), ("s2", -125)] {
        let points = (0..60)
            .map(|i| {
                let hundredths = base + (i * 7 % 5) - 2;
                let text = format!(
                    "{}{}.{:02}",
                    if hundredths < 0 { "-" } else { "" },
                    hundredths.abs() / 100,
                    hundredths.abs() % 100
                );
                (T0 + i * 250, text)
            })
            .collect();
        series.insert(s.to_string(), Series { points });
    }
    series
}

#[test]
fn sensor_records_with_other_field_names_give_exact_statistics_and_zscores() {
    let series = sensor_series();
    let mut prices = Vec::new();
    for i in 0..60 {
        for (sensor, s) in &series {
            let (t, text) = &s.points[i];
            let ts = framework::event_time::format_millis(*t);
            prices.push(
                format!(r#"{{"sensor":"{sensor}","temp_c":{text},"ts":"{ts}"}}"#).into_bytes(),
            );
        }
    }
    let (stats, z) = run_and_check(
        ["sensor", "temp_c", "ts"],
        ("sensor", "temp_c"),
        &prices,
        &series,
    );
    assert!(
        stats > 60 && z > 200,
        "{stats} statistics, {z} z-scores checked"
    );
}

#[test]
fn nested_binance_trades_with_decimal_strings_and_epoch_ms_give_exact_statistics() {
    // A symbol that sits still and then ticks by a cent: std/mean ~ 1e-7.
    let mut points = Vec::new();
    for i in 0..80i64 {
        let cents = 9_700_001 + i64::from(i >= 40) + i64::from(i % 9 == 0 && i > 40);
        points.push((
            T0 + i * 100,
            format!("{}.{:02}000000", cents / 100, cents % 100),
        ));
    }
    let prices: Vec<Vec<u8>> = points
        .iter()
        .map(|(t, p)| {
            format!(r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","s":"BTCUSDT","p":"{p}","q":"0.001","T":{t}}}}}"#)
                .into_bytes()
        })
        .collect();
    let series = BTreeMap::from([("BTCUSDT".to_string(), Series { points })]);
    let (stats, z) = run_and_check(["data.s", "data.p", "data.T"], ("s", "p"), &prices, &series);
    assert!(
        stats > 10 && z > 50,
        "{stats} statistics, {z} z-scores checked"
    );
}

#[test]
fn exact_rational_helpers_are_themselves_exact() {
    assert_eq!(
        exact("-1.25"),
        BigRational::new(BigInt::from(-5), BigInt::from(4))
    );
    assert!(is_rounded_sqrt(
        1.5,
        &BigRational::new(BigInt::from(9), BigInt::from(4))
    ));
    assert!(!is_rounded_sqrt(
        f64::from_bits(1.5f64.to_bits() + 1),
        &BigRational::new(BigInt::from(9), BigInt::from(4))
    ));
    assert!(exact("0.1").abs() < BigRational::from_u8(1).unwrap());
}

#[test]
fn both_stages_refuse_the_same_bad_values_for_the_same_reason_and_detail() {
    let ts = "2025-05-07T15:31:00.100Z";
    let cases = [
        format!(r#"{{"symbol":"A","price":1e200,"timestamp":"{ts}"}}"#),
        format!(r#"{{"symbol":"A","price":"1e200","timestamp":"{ts}"}}"#),
        format!(r#"{{"symbol":"A","price":0,"timestamp":"{ts}"}}"#),
        format!(r#"{{"symbol":"A","price":"12,5","timestamp":"{ts}"}}"#),
        format!(r#"{{"symbol":"","price":1,"timestamp":"{ts}"}}"#),
        r#"{"symbol":"A","price":1,"timestamp":1.5}"#.to_string(),
        r#"{"symbol":"A","price":1}"#.to_string(),
    ];
    for payload in &cases {
        let mut stats = MovingStats::new(&MovingStatsConfig::default()).unwrap();
        let mut z = ZScoreTransform::new(&ZScoreConfig::default(), "test").unwrap();
        let (mut a, mut b) = (Emitter::new(), Emitter::new());
        stats.process(&record(0, payload.as_bytes(), 0), &mut a);
        z.process(&record(PRICES, payload.as_bytes(), 0), &mut b);
        assert_eq!(a.rejected.len(), 1, "{payload}");
        assert_eq!(b.rejected.len(), 1, "{payload}");
        assert_eq!(a.rejected[0].reason, b.rejected[0].reason, "{payload}");
        assert_eq!(a.rejected[0].detail, b.rejected[0].detail, "{payload}");
    }
}
