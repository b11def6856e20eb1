//! The trades behind the mock's streams: per symbol a trade id, an aggregate-trade id and
//! a price walk, rendered with Binance's payload shapes (binance-api.md §2).

use std::{sync::Arc, time::Duration};

use rand::{rngs::StdRng, Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::{
    rest::{format_ticks, initial_price_ticks, walk},
    ws::Broadcast,
    Shared,
};

/// First trade id of symbol `i` is `TRADE_ID_BASE * (i + 1) + 1`.
const TRADE_ID_BASE: u64 = 1_000_000_000;
/// First aggregate-trade id of symbol `i` is `AGG_ID_BASE * (i + 1) + 1`.
const AGG_ID_BASE: u64 = 100_000_000;
/// Chance the streams' price moves on a tick.
const STREAM_CHANGE_PROBABILITY: f64 = 0.3;

/// One tick: `(stream name, data JSON)` for every symbol and stream kind.
#[derive(Debug)]
pub struct Tick {
    pub events: Vec<(String, String)>,
}

/// The streams' own state (separate from the REST walk so that REST answers stay the same
/// whatever the streams do).
pub(crate) struct Feed {
    symbols: Vec<String>,
    lower: Vec<String>,
    trade_ids: Vec<u64>,
    agg_ids: Vec<u64>,
    update_id: u64,
    prices: Vec<i64>,
    rng: StdRng,
}

/// A quantity in units of 1e-5, padded to 8 decimals.
fn quantity_text(units: u64) -> String {
    format!("{}.{:05}000", units / 100_000, units % 100_000)
}

impl Feed {
    pub(crate) fn new(symbols: &[String], seed: u64) -> Feed {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5745_4253_4f43_4b45);
        let prices = symbols
            .iter()
            .map(|s| initial_price_ticks(s, &mut rng))
            .collect();
        let n = symbols.len() as u64;
        Feed {
            symbols: symbols.to_vec(),
            lower: symbols.iter().map(|s| s.to_ascii_lowercase()).collect(),
            trade_ids: (1..=n).map(|i| TRADE_ID_BASE * i).collect(),
            agg_ids: (1..=n).map(|i| AGG_ID_BASE * i).collect(),
            update_id: 400_000_000,
            prices,
            rng,
        }
    }

    pub(crate) fn last_trade_ids(&self) -> Vec<u64> {
        self.trade_ids.clone()
    }

    /// Loses `count` trades of every symbol (nobody receives them).
    pub(crate) fn skip(&mut self, count: u64) {
        for id in self.trade_ids.iter_mut().chain(self.agg_ids.iter_mut()) {
            *id = id.saturating_add(count);
        }
    }

    /// One trade per symbol at `now_ms`, with its aggTrade and a bookTicker update.
    pub(crate) fn tick(&mut self, now_ms: i64) -> Tick {
        let mut events = Vec::with_capacity(self.symbols.len() * 3);
        for i in 0..self.symbols.len() {
            walk(
                &mut self.prices[i],
                STREAM_CHANGE_PROBABILITY,
                &mut self.rng,
            );
            self.trade_ids[i] += 1;
            self.agg_ids[i] += 1;
            self.update_id += 1;
            let (symbol, lower) = (&self.symbols[i], &self.lower[i]);
            let trade_id = self.trade_ids[i];
            let price = format_ticks(self.prices[i]);
            let quantity = quantity_text(self.rng.random_range(1..=500_000));
            let maker = self.rng.random_bool(0.5);
            // The event is stamped a moment after the trade, as on the exchange.
            let (trade_time, event_time) = (now_ms, now_ms + (trade_id % 3) as i64);
            events.push((
                format!("{lower}@trade"),
                format!(
                    r#"{{"e":"trade","E":{event_time},"s":"{symbol}","t":{trade_id},"p":"{price}","q":"{quantity}","T":{trade_time},"m":{maker},"M":true}}"#
                ),
            ));
            events.push((
                format!("{lower}@aggTrade"),
                format!(
                    r#"{{"e":"aggTrade","E":{event_time},"s":"{symbol}","a":{},"p":"{price}","q":"{quantity}","f":{trade_id},"l":{trade_id},"T":{trade_time},"m":{maker},"M":true}}"#,
                    self.agg_ids[i]
                ),
            ));
            let bid = self.prices[i].max(2) - 1;
            events.push((
                format!("{lower}@bookTicker"),
                format!(
                    r#"{{"u":{},"s":"{symbol}","b":"{}","B":"{}","a":"{}","A":"{}"}}"#,
                    self.update_id,
                    format_ticks(bid),
                    quantity_text(self.rng.random_range(1..=500_000)),
                    format_ticks(bid + 1),
                    quantity_text(self.rng.random_range(1..=500_000)),
                ),
            ));
        }
        Tick { events }
    }
}

/// Publishes `count` ticks to every open stream connection.
pub(crate) fn publish(shared: &Shared, count: u32) {
    for _ in 0..count {
        let tick = shared
            .lock()
            .feed
            .tick(chrono::Utc::now().timestamp_millis());
        // No receiver (no open connection) is not an error: the trades are just unseen.
        let _ = shared.ws_tx.send(Broadcast::Tick(Arc::new(tick)));
    }
}

/// Publishes one tick every `every` until shutdown.
pub(crate) async fn run_ticker(shared: Arc<Shared>, every: Duration, shutdown: CancellationToken) {
    let mut timer = tokio::time::interval(every.max(Duration::from_millis(1)));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = timer.tick() => publish(&shared, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_have_binance_shapes_and_consecutive_ids() {
        let mut feed = Feed::new(&["BTCUSDT".to_string()], 1);
        let first = feed.tick(1_700_000_000_000);
        let second = feed.tick(1_700_000_000_100);
        let names: Vec<&str> = first.events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["btcusdt@trade", "btcusdt@aggTrade", "btcusdt@bookTicker"]
        );
        let trade: serde_json::Value = serde_json::from_str(&first.events[0].1).unwrap();
        assert_eq!(trade["e"], "trade");
        assert_eq!(trade["s"], "BTCUSDT");
        assert_eq!(trade["T"], 1_700_000_000_000_i64);
        assert!(trade["p"].as_str().unwrap().ends_with("000000"));
        let next: serde_json::Value = serde_json::from_str(&second.events[0].1).unwrap();
        assert_eq!(
            next["t"].as_u64().unwrap(),
            trade["t"].as_u64().unwrap() + 1
        );
        let book: serde_json::Value = serde_json::from_str(&first.events[2].1).unwrap();
        assert!(book.get("e").is_none() && book.get("E").is_none());
        assert!(book["u"].is_u64());
    }

    #[test]
    fn skipped_trades_leave_a_gap_in_ids() {
        let mut feed = Feed::new(&["BTCUSDT".to_string()], 1);
        let before = feed.last_trade_ids()[0];
        feed.skip(5);
        let tick = feed.tick(1);
        let trade: serde_json::Value = serde_json::from_str(&tick.events[0].1).unwrap();
        assert_eq!(trade["t"].as_u64().unwrap(), before + 6);
    }

    #[test]
    fn quantities_are_padded_to_eight_decimals() {
        assert_eq!(quantity_text(123), "0.00123000");
        assert_eq!(quantity_text(250_000), "2.50000000");
    }
}
