//! Binance's decimal strings (`"83034.29000000"`) written as exact JSON numbers
//! (`83034.29`), never through f64.

/// Longest decimal string accepted (Binance's are at most ~30 characters).
pub const MAX_DECIMAL_LEN: usize = 40;

/// Why a decimal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("{0:?} is not a plain decimal (digits, optionally '.' and digits)")]
    NotPlain(String),
    #[error("a decimal of {0} characters is longer than {MAX_DECIMAL_LEN}")]
    TooLong(usize),
    #[error("{0:?} is zero, expected a positive value")]
    Zero(String),
}

/// A validated decimal in canonical JSON-number form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    /// No leading zeros in the integer part (but one `0`), no trailing zeros in the
    /// fraction, no `.` without digits after it: `0.00062`, `83034.29`, `100`.
    pub json: String,
    pub is_zero: bool,
}

/// Validates `text` as a plain decimal (`^[0-9]+(\.[0-9]+)?$`) and returns its canonical
/// JSON number text. Signs, exponents, `NaN`, `inf`, spaces and empty parts are refused.
pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
    if text.len() > MAX_DECIMAL_LEN {
        return Err(DecimalError::TooLong(text.len()));
    }
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (text.contains('.') && frac.is_empty()) {
        return Err(DecimalError::NotPlain(text.to_string()));
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let is_zero = int.is_empty() && frac.is_empty();
    let mut json = String::with_capacity(int.len() + frac.len() + 2);
    json.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        json.push('.');
        json.push_str(frac);
    }
    Ok(Decimal { json, is_zero })
}

/// [`parse`], refusing zero.
pub fn parse_positive(text: &str) -> Result<Decimal, DecimalError> {
    let d = parse(text)?;
    if d.is_zero {
        return Err(DecimalError::Zero(text.to_string()));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binance_decimals_become_canonical_json_numbers_digit_for_digit() {
        for (text, json) in [
            ("83034.29000000", "83034.29"),
            ("0.00062000", "0.00062"),
            ("100", "100"),
            ("100.00000000", "100"),
            ("007.50", "7.5"),
            ("0.10000000", "0.1"),
            // More digits than f64 holds stay exact.
            (
                "12345678901234567890.123456789",
                "12345678901234567890.123456789",
            ),
        ] {
            let d = parse(text).unwrap();
            assert_eq!(d.json, json, "{text}");
            assert!(!d.is_zero);
            // The text is a valid JSON number.
            assert!(serde_json::from_str::<serde_json::Number>(&d.json).is_ok());
        }
        assert!(parse("0.00000000").unwrap().is_zero);
        assert_eq!(parse("0.00000000").unwrap().json, "0");
    }

    #[test]
    fn anything_but_a_plain_decimal_is_refused() {
        for text in [
            "", ".", "1.", ".5", "-1", "+1", "1e5", "NaN", "inf", " 1", "1 ", "1,5", "0x10",
            "1.2.3", "١٢",
        ] {
            assert!(
                matches!(parse(text), Err(DecimalError::NotPlain(_))),
                "{text:?}"
            );
        }
        assert_eq!(parse(&"1".repeat(41)), Err(DecimalError::TooLong(41)));
        assert!(matches!(
            parse_positive("0.000"),
            Err(DecimalError::Zero(_))
        ));
    }
}
