//! The benchmark's `digest` mode: a hash of everything the transform writes, and hostile
//! input for it to refuse, so that two builds can be shown to behave the same.

use framework::{event_time::write_millis, Emitter};

use super::Rng;

/// FNV-1a (64 bits) of output records and rejections: stable across builds and runs.
pub(super) struct Digest(pub(super) u64);

impl Digest {
    pub(super) fn new() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }

    fn u64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub(super) fn emitted(&mut self, out: &Emitter) {
        for r in &out.records {
            self.bytes(r.key.as_deref().unwrap_or(b"-"));
            self.u64(r.timestamp_ms as u64);
            self.bytes(&r.payload);
        }
        for r in &out.rejected {
            self.bytes(r.reason.as_bytes());
            self.bytes(r.detail.as_bytes());
        }
    }
}

/// A record the transform must refuse, or take, without panicking and the same way in
/// every build: damaged copies of a valid record (invalid UTF-8 included), deep nesting,
/// escapes, numbers too long or too precise to be exact, values that are not numbers,
/// whitespace and nested fields, other symbols, epoch-millisecond timestamps.
pub(super) fn hostile(rng: &mut Rng, t_ms: i64) -> Vec<u8> {
    let r = rng.next();
    let pick = (r >> 8) as usize;
    let t = t_ms - (r % 20_000) as i64;
    let mut ts = Vec::new();
    write_millis(&mut ts, t);
    let ts = String::from_utf8_lossy(&ts).into_owned();
    let record = |symbol: &str, price: &str| {
        format!(r#"{{"symbol":{symbol},"price":{price},"timestamp":"{ts}"}}"#).into_bytes()
    };
    match r % 10 {
        0..=2 => {
            let mut bytes = record(r#""BTCUSDT""#, "97009.02");
            for _ in 0..1 + pick % 3 {
                let x = rng.next();
                let at = (x % bytes.len() as u64) as usize;
                let byte = (x >> 40) as u8;
                match (x >> 32) % 3 {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            bytes
        }
        3 => {
            let depth = pick % 300;
            let (open, close) = ("[".repeat(depth), "]".repeat(depth));
            let mut bytes = format!(r#"{{"x":{open}1{close},"#).into_bytes();
            bytes.extend_from_slice(&record(r#""DEEP""#, "1")[1..]);
            bytes
        }
        4 => {
            let symbols = [
                r#""BT\u0043USDT""#,
                r#""B\"T""#,
                r#""\ud800""#,
                r#""a\u0000""#,
                "\"a\tb\"",
            ];
            record(symbols[pick % symbols.len()], "1.5")
        }
        5 => {
            let mut bytes = record(r#""BTX""#, "2");
            // A raw byte >= 0x80 in the symbol: invalid UTF-8 (mostly).
            bytes[13] = 0x80 | pick as u8;
            bytes
        }
        6 => {
            let prices = [
                "123456789012345678901234567890",
                "1e400",
                "\"1e99\"",
                "97009.0212345678912345",
                "0.000000001",
                "90071992.54740993",
                "90071992.54740992",
                "-0",
                "1E2",
                "\"007.5\"",
                "9999999999999999999.5",
                "1844674407370955.1616",
                "0.00000000000000000001",
            ];
            record(r#""NUM""#, prices[pick % prices.len()])
        }
        7 => {
            let prices = ["null", "true", "[1]", "{}", "\"\"", "\" 1\"", "01", "1.", "-"];
            record(r#""ODD""#, prices[pick % prices.len()])
        }
        8 => format!(
            r#" {{ "symbol" : "ETHUSDT" , "price" : {}.{:02} , "timestamp" : "{ts}" , "x" : {{"y":[1,2]}} }} "#,
            pick % 5000,
            (pick >> 12) % 100
        )
        .into_bytes(),
        _ => format!(
            r#"{{"symbol":"S{}","price":"{}.{}","timestamp":{t}}}"#,
            pick % 5,
            (pick >> 8) % 100,
            (pick >> 16) % 1000
        )
        .into_bytes(),
    }
}
