//! The join's state stays bounded on a long realistic stream.

mod common;

use common::*;
use connector_zscore::{PRICES, STATS};
use framework::{event_time::format_millis, Emitter, Transform};

#[test]
fn state_stays_bounded_over_a_million_prices_at_ten_per_second() {
    const LATENESS: i64 = 10_000;
    let mut transform = transform();
    let mut out = Emitter::new();
    let (mut emitted, mut rejected, mut peak) = (0usize, 0usize, 0usize);
    let mut next_e = T0;
    let mut buf = Vec::with_capacity(512);
    for i in 0..1_000_000i64 {
        let t = T0 + i * 100 + (i * 7919) % 100; // 10/s with jitter inside each 100 ms
        buf.clear();
        buf.extend_from_slice(
            format!(
                r#"{{"symbol":"BTCUSDT","price":{}.5,"timestamp":"{}"}}"#,
                97_000 + i % 50,
                format_millis(t)
            )
            .as_bytes(),
        );
        transform.process(&input(PRICES, "BTCUSDT", &buf, i), &mut out);
        // Statistics come as moving_stats emits them: once its watermark (newest price
        // time - lateness) reaches the window end.
        while next_e <= t - LATENESS {
            let stats = format!(
                r#"{{"timestamp":"{}","symbol":"BTCUSDT","stats":[{{"window":"30s","avg_price":97020.0,"std_price":14.0}},{{"window":"1h","avg_price":97000.0,"std_price":0.0}}]}}"#,
                format_millis(next_e)
            );
            transform.process(&input(STATS, "BTCUSDT", stats.as_bytes(), i), &mut out);
            next_e += 1_000;
        }
        peak = peak.max(transform.buffered().total());
        emitted += out.records.len();
        rejected += out.rejected.len();
        out.clear();
    }
    assert!(peak < 200, "peak buffered prices + statistics: {peak}");
    assert_eq!(rejected, 0);
    // Only the prices of the last `lateness` are still waiting.
    assert!(emitted >= 1_000_000 - 110, "emitted {emitted}");
    transform.end_of_input(&mut out);
    assert_eq!(out.records.len() + out.rejected.len() + emitted, 1_000_000);
}
