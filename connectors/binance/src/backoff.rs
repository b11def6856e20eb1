//! Retry delays shared by the Binance sources (REST polling and WebSocket streams).

use std::time::Duration;

use rand::Rng;

/// Delay before retry number `failures` (1-based): `initial` doubled per consecutive
/// failure, capped at `max`, with "equal jitter" (half fixed, half random in
/// `[0, delay/2]`) so that many clients do not retry in lockstep.
pub fn equal_jitter_backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let base = initial.saturating_mul(1u32 << exp).min(max);
    let half = base / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
    half + Duration::from_millis(jitter_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_keep_at_least_half() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_millis(1_000));
        for _ in 0..100 {
            let first = equal_jitter_backoff(initial, max, 1);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let third = equal_jitter_backoff(initial, max, 3);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
            let late = equal_jitter_backoff(initial, max, 40);
            assert!((Duration::from_millis(500)..=Duration::from_millis(1_000)).contains(&late));
        }
    }
}
