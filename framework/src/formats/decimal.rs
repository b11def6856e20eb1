//! Exact parsing of decimal numbers (JSON number text or a decimal string) into
//! [`Decimal`]: the scaled integer `value * 10^8` when the value has at most 8 fractional
//! digits and fits, and always the correctly rounded `f64`.

use crate::event_time::exact::{Decimal, MAX_SCALED, SCALE_DIGITS};

/// Longest accepted number text: bounds the work per value.
pub const MAX_TEXT_LEN: usize = 64;

/// Parses `-?digits(.digits)?([eE][+-]?digits)?` (JSON's number grammar, leading zeros
/// allowed); `None` for anything else, including `NaN`, `inf` and over-long text.
pub fn parse(text: &str) -> Option<Decimal> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_TEXT_LEN {
        return None;
    }
    parse_short(bytes).or_else(|| parse_any(text))
}

/// [`parse`] of any text (bounded by the caller), with a 128-bit mantissa.
fn parse_any(text: &str) -> Option<Decimal> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let negative = bytes[0] == b'-';
    if negative {
        i += 1;
    }
    // Significant digits as an integer; None once more than 38 digits (not exact).
    let mut mantissa: Option<u128> = Some(0);
    let mut digits = 0;
    let mut fraction_digits: i64 = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        mantissa = push_digit(mantissa, bytes[i]);
        digits += 1;
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            mantissa = push_digit(mantissa, bytes[i]);
            i += 1;
        }
        if i == start {
            return None;
        }
        fraction_digits = (i - start) as i64;
    }
    let mut exponent: i64 = 0;
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        i += 1;
        let exp_negative = match bytes.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            // Saturates: the text is at most 64 bytes, so this stays far from overflow.
            exponent = (exponent * 10 + i64::from(bytes[i] - b'0')).min(1_000_000);
            i += 1;
        }
        if i == start {
            return None;
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    if i != bytes.len() {
        return None;
    }
    if let Some(scaled) = mantissa.and_then(|m| scale(m, exponent - fraction_digits)) {
        let signed = if negative { -scaled } else { scaled };
        return Decimal::from_scaled(signed);
    }
    // The grammar above is a subset of what `f64::from_str` accepts, and it rounds
    // correctly; out-of-range text becomes an infinity for the caller's range check.
    text.parse::<f64>().ok().map(Decimal::inexact)
}

/// The common case in 64-bit arithmetic: `-?digits(.digits)?` with at most 19 digits
/// (below 2^64) and an exact value. `None` leaves everything else, exponents included, to
/// the general path, which gives the same result for what this accepts.
fn parse_short(bytes: &[u8]) -> Option<Decimal> {
    let (negative, digits) = match bytes.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, bytes),
    };
    let mut mantissa: u64 = 0;
    let mut count = 0;
    let mut point = None;
    for (i, &b) in digits.iter().enumerate() {
        match b {
            b'0'..=b'9' if count < 19 => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                count += 1;
            }
            b'.' if point.is_none() && i > 0 => point = Some(i),
            _ => return None,
        }
    }
    let fraction = match point {
        Some(at) if at + 1 == digits.len() => return None,
        Some(at) => digits.len() - at - 1,
        None if count == 0 => return None,
        None => 0,
    };
    // At most 18 fractional digits (one is before the point): the powers fit 64 bits.
    let scaled = if fraction <= SCALE_DIGITS as usize {
        mantissa.checked_mul(10u64.pow(SCALE_DIGITS - fraction as u32))?
    } else {
        let divisor = 10u64.pow((fraction - SCALE_DIGITS as usize) as u32);
        if !mantissa.is_multiple_of(divisor) {
            return None;
        }
        mantissa / divisor
    };
    if scaled > MAX_SCALED {
        return None;
    }
    // Below 2^53: the cast and the negation are exact.
    let signed = scaled as i64;
    Decimal::from_scaled(if negative { -signed } else { signed })
}

fn push_digit(mantissa: Option<u128>, digit: u8) -> Option<u128> {
    mantissa?
        .checked_mul(10)?
        .checked_add(u128::from(digit - b'0'))
}

/// `mantissa * 10^(power + 8)` when it is an integer of at most [`MAX_SCALED`].
fn scale(mantissa: u128, power: i64) -> Option<i64> {
    if mantissa == 0 {
        return Some(0);
    }
    let shift = power + i64::from(SCALE_DIGITS);
    let scaled = if shift >= 0 {
        mantissa.checked_mul(10u128.checked_pow(u32::try_from(shift).ok()?)?)?
    } else {
        let divisor = 10u128.checked_pow(u32::try_from(-shift).ok()?)?;
        if !mantissa.is_multiple_of(divisor) {
            return None;
        }
        mantissa / divisor
    };
    (scaled <= u128::from(MAX_SCALED)).then_some(scaled as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_with_up_to_8_fractional_digits_become_exact_scaled_integers() {
        for (text, scaled) in [
            ("97000.01", 9_700_001_000_000),
            ("97000.01000000", 9_700_001_000_000),
            ("0.00000001", 1),
            ("-21.5", -2_150_000_000),
            ("1e3", 100_000_000_000),
            ("12.5e-2", 12_500_000),
            ("0", 0),
            ("-0.0", 0),
            ("007", 700_000_000),
            ("90071992.54740992", 9_007_199_254_740_992),
        ] {
            let d = parse(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(d.scaled, Some(scaled), "{text}");
            assert_eq!(d.value, text.parse::<f64>().unwrap(), "{text}");
        }
    }

    #[test]
    fn values_that_do_not_fit_keep_their_correctly_rounded_float_only() {
        for text in [
            "0.000000001",
            "90071992.54740993",
            "1e200",
            "123456789012345678901234567890123456789012",
        ] {
            let d = parse(text).unwrap();
            assert_eq!(d.scaled, None, "{text}");
            assert_eq!(d.value, text.parse::<f64>().unwrap(), "{text}");
        }
        assert!(parse("1e400").unwrap().value.is_infinite());
    }

    #[test]
    fn anything_but_the_number_grammar_is_refused() {
        for text in [
            "", "-", "+1", "1.", ".5", "1e", "1e+", "NaN", "inf", "1,5", " 1", "1 ", "0x10",
            "1.5.2",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        assert_eq!(parse(&"1".repeat(MAX_TEXT_LEN + 1)), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// The 64-bit path answers as the general one wherever it answers.
        #[test]
        fn the_short_path_agrees_with_the_general_one(
            text in "-?[0-9]{0,21}(\\.[0-9]{0,21})?([eE][+-]?[0-9]{1,3})?|-?9007199[0-9]{0,10}\\.?[0-9]{0,10}"
        ) {
            if let Some(short) = parse_short(text.as_bytes()) {
                proptest::prop_assert_eq!(Some(short), parse_any(&text), "{}", text);
            }
        }
    }
}
