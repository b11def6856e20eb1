//! The REST side: the seeded price walk and the (possibly faulty) `/api/v3/...` answers.

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use rand::{rngs::StdRng, Rng};
use serde::Serialize;

use crate::{
    faults::{Fault, RequestRecord},
    query::{parse_ticker_query, weight_of, ApiFailure, TickerQuery, TICKER_PATH},
    Shared, State,
};

/// Price tick of the random walk: 0.01, prices are kept in ticks to stay exact.
pub(crate) const TICKS_PER_UNIT: i64 = 100;
/// Largest body the `huge_body` fault sends.
const MAX_HUGE_BODY: u64 = 256 << 20;

/// Plausible starting prices for well-known symbols; others get a seeded one.
pub(crate) fn initial_price_ticks(symbol: &str, rng: &mut StdRng) -> i64 {
    match symbol {
        "BTCUSDT" => 9_700_902,
        "ETHUSDT" => 350_010,
        "BNBUSDT" => 60_025,
        _ => rng.random_range(100..100_000),
    }
}

pub(crate) fn format_ticks(ticks: i64) -> String {
    // Binance pads spot prices to 8 decimals: "97009.02000000".
    format!(
        "{}.{:02}000000",
        ticks / TICKS_PER_UNIT,
        ticks % TICKS_PER_UNIT
    )
}

#[derive(Serialize)]
struct TickerItem<'a> {
    symbol: &'a str,
    price: String,
}

/// What to send back.
pub(crate) enum Reply {
    Answer {
        status: StatusCode,
        body: String,
        retry_after: Option<u64>,
        delay: Option<Duration>,
    },
    Drop,
}

/// Binance's 429 answer (-1003) for a weight limit per minute.
fn rate_limited(weight_limit: u32, retry_after_secs: u64) -> Reply {
    Reply::Answer {
        status: StatusCode::TOO_MANY_REQUESTS,
        body: ApiFailure {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: -1003,
            msg: format!(
                "Too much request weight used; current limit is {weight_limit} request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
            ),
        }
        .body(),
        retry_after: Some(retry_after_secs),
        delay: None,
    }
}

fn answer(status: StatusCode, body: String) -> Reply {
    Reply::Answer {
        status,
        body,
        retry_after: None,
        delay: None,
    }
}

/// Decides the reply to an `/api/...` request and logs it, all under the lock, so that
/// fault order and price walk follow request arrival order.
pub(crate) fn plan_api_reply(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
) -> (Reply, u32) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut state = shared.lock();
    let minute = now_ms.div_euclid(60_000);
    if minute != state.weight_minute {
        state.weight_minute = minute;
        state.weight_used = 0;
    }
    let cost = weight_of(path, query);
    let mut fault = None;
    let reply = if state.weight_used.saturating_add(cost) > shared.config.weight_limit {
        let retry_after = ((minute + 1) * 60_000 - now_ms + 999) / 1000;
        rate_limited(shared.config.weight_limit, retry_after.max(1) as u64)
    } else {
        state.weight_used += cost;
        match (method, path) {
            (&Method::GET, "/api/v3/ping") => answer(StatusCode::OK, "{}".into()),
            (&Method::GET, "/api/v3/time") => answer(
                StatusCode::OK,
                serde_json::json!({"serverTime": now_ms}).to_string(),
            ),
            (&Method::GET, TICKER_PATH) => {
                match parse_ticker_query(query, &shared.config.symbols) {
                    Err(failure) => answer(failure.status, failure.body()),
                    Ok(ticker) => {
                        fault = state.next_fault();
                        ticker_reply(shared, &mut state, &ticker, fault.as_ref(), now_ms)
                    }
                }
            }
            (_, "/api/v3/ping" | "/api/v3/time" | TICKER_PATH) => answer(
                StatusCode::METHOD_NOT_ALLOWED,
                ApiFailure::bad_request(-1000, "Method not allowed.").body(),
            ),
            _ => answer(StatusCode::NOT_FOUND, String::new()),
        }
    };
    let used_weight = state.weight_used;
    let record = RequestRecord {
        at: Instant::now(),
        at_ms: now_ms,
        since_start_ms: shared.started.elapsed().as_secs_f64() * 1000.0,
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        status: match &reply {
            Reply::Answer { status, .. } => Some(status.as_u16()),
            Reply::Drop => None,
        },
        fault,
        used_weight,
    };
    state.log(record);
    (reply, used_weight)
}

/// Moves the price walk one step for the asked symbols and renders the (faulty) answer.
fn ticker_reply(
    shared: &Shared,
    state: &mut State,
    ticker: &TickerQuery,
    fault: Option<&Fault>,
    now_ms: i64,
) -> Reply {
    let probability = shared.config.change_probability.clamp(0.0, 1.0);
    for &i in &ticker.indices {
        walk(&mut state.prices[i], probability, &mut state.rng);
    }
    let symbols = &shared.config.symbols;
    let mut items: Vec<TickerItem<'_>> = ticker
        .indices
        .iter()
        .map(|&i| TickerItem {
            symbol: &symbols[i],
            price: format_ticks(state.prices[i]),
        })
        .collect();
    // A symbol that was not asked for: another known one, or an unknown one.
    let unrequested = symbols
        .iter()
        .enumerate()
        .find(|(i, _)| !ticker.indices.contains(i))
        .map(|(_, s)| s.as_str())
        .unwrap_or("WRONGUSDT");
    let render = |items: &[TickerItem<'_>]| -> String {
        let result = if ticker.array {
            serde_json::to_string(items)
        } else {
            match items.first() {
                Some(item) => serde_json::to_string(item),
                None => Ok("{}".to_string()),
            }
        };
        result.unwrap_or_default()
    };
    let Some(fault) = fault else {
        return answer(StatusCode::OK, render(&items));
    };
    match fault {
        Fault::MalformedJson => {
            let body = render(&items);
            let cut = body.len() / 2;
            answer(StatusCode::OK, body[..cut].to_string())
        }
        Fault::WrongSymbol => {
            if let Some(first) = items.first_mut() {
                first.symbol = unrequested;
            }
            answer(StatusCode::OK, render(&items))
        }
        Fault::NonNumericPrice | Fault::NegativePrice | Fault::ZeroPrice => {
            if let Some(first) = items.first_mut() {
                first.price = match fault {
                    Fault::NonNumericPrice => "NaN".to_string(),
                    Fault::NegativePrice => format!("-{}", first.price),
                    _ => "0.00000000".to_string(),
                };
            }
            answer(StatusCode::OK, render(&items))
        }
        Fault::EmptyArray => answer(StatusCode::OK, "[]".into()),
        Fault::RateLimited { retry_after_secs } => {
            rate_limited(shared.config.weight_limit, *retry_after_secs)
        }
        Fault::Banned { retry_after_secs } => {
            let until = now_ms.saturating_add((*retry_after_secs as i64).saturating_mul(1000));
            Reply::Answer {
                status: StatusCode::IM_A_TEAPOT,
                body: ApiFailure {
                    status: StatusCode::IM_A_TEAPOT,
                    code: -1003,
                    msg: format!("Way too much request weight used; IP banned until {until}. Please use WebSocket Streams for live updates to avoid bans."),
                }
                .body(),
                retry_after: Some(*retry_after_secs),
                delay: None,
            }
        }
        Fault::ServerError => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiFailure::bad_request(
                -1000,
                "An unknown error occurred while processing the request.",
            )
            .body(),
        ),
        Fault::Slow { delay_ms } => Reply::Answer {
            status: StatusCode::OK,
            body: render(&items),
            retry_after: None,
            delay: Some(Duration::from_millis(*delay_ms)),
        },
        Fault::DropConnection => Reply::Drop,
        Fault::HugeBody { bytes } => {
            let body = render(&items);
            let pad = usize::try_from((*bytes).min(MAX_HUGE_BODY)).unwrap_or(0);
            answer(
                StatusCode::OK,
                " ".repeat(pad.saturating_sub(body.len())) + &body,
            )
        }
    }
}

/// Moves a price (in ticks) by 1 to 3 ticks up or down with `probability`; never below 1.
pub(crate) fn walk(price: &mut i64, probability: f64, rng: &mut StdRng) {
    if rng.random_bool(probability.clamp(0.0, 1.0)) {
        let step: i64 = rng.random_range(1..=3);
        *price = if rng.random_bool(0.5) {
            *price + step
        } else {
            (*price - step).max(1)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_padded_to_eight_decimals() {
        assert_eq!(format_ticks(9_700_902), "97009.02000000");
        assert_eq!(format_ticks(5), "0.05000000");
        assert_eq!(format_ticks(100), "1.00000000");
    }
}
