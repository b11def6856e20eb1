//! Fast paths for the canonical record timestamp `YYYY-MM-DDTHH:MM:SS.mmmZ`.
//!
//! Every price goes through one parse and one format; chrono's general RFC 3339 code
//! costs a good share of the per-record budget, so the canonical form is handled here
//! and anything else falls back to [`framework::event_time`] (same results, tested).

use framework::event_time::{format_millis, parse_millis, TimestampError};

const MS_PER_DAY: i64 = 86_400_000;
/// 0001-01-01T00:00:00.000Z and 10000-01-01T00:00:00.000Z: the four-digit-year range.
const MIN_FAST_MS: i64 = -62_135_596_800_000;
const MAX_FAST_MS: i64 = 253_402_300_800_000;

/// Parses an ISO 8601 / RFC 3339 timestamp into epoch milliseconds.
pub fn parse_timestamp(text: &str) -> Result<i64, TimestampError> {
    match parse_canonical(text.as_bytes()) {
        Some(ms) => Ok(ms),
        None => parse_millis(text),
    }
}

/// Appends `ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (the same text as `format_millis`).
pub fn write_timestamp(ms: i64, out: &mut Vec<u8>) {
    if !(MIN_FAST_MS..MAX_FAST_MS).contains(&ms) {
        out.extend_from_slice(format_millis(ms).as_bytes());
        return;
    }
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let mut buf = *b"0000-00-00T00:00:00.000Z";
    put_digits(&mut buf[0..4], year);
    put_digits(&mut buf[5..7], month);
    put_digits(&mut buf[8..10], day);
    put_digits(&mut buf[11..13], in_day / 3_600_000);
    put_digits(&mut buf[14..16], in_day / 60_000 % 60);
    put_digits(&mut buf[17..19], in_day / 1_000 % 60);
    put_digits(&mut buf[20..23], in_day % 1_000);
    out.extend_from_slice(&buf);
}

fn put_digits(slot: &mut [u8], mut value: i64) {
    for b in slot.iter_mut().rev() {
        *b = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |acc, &b| {
        let d = b.wrapping_sub(b'0');
        (d < 10).then(|| acc * 10 + i64::from(d))
    })
}

/// Exactly `YYYY-MM-DDTHH:MM:SS.mmmZ` with a valid date and time (no leap second);
/// `None` for anything else, which the general parser then handles.
fn parse_canonical(b: &[u8]) -> Option<i64> {
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    let milli = digits(&b[20..23])?;
    if year == 0
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * MS_PER_DAY + hour * 3_600_000 + minute * 60_000 + second * 1_000 + milli)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn formatted(ms: i64) -> String {
        let mut out = Vec::new();
        write_timestamp(ms, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn canonical_examples_round_trip() {
        assert_eq!(
            parse_timestamp("2025-05-07T15:30:31.891Z"),
            Ok(1_746_631_831_891)
        );
        assert_eq!(formatted(1_746_631_831_891), "2025-05-07T15:30:31.891Z");
        assert_eq!(formatted(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(formatted(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            parse_timestamp("2024-02-29T00:00:00.000Z"),
            parse_millis("2024-02-29T00:00:00.000Z")
        );
    }

    #[test]
    fn invalid_dates_fall_back_to_the_general_parser_and_fail_there() {
        for text in [
            "2025-02-29T00:00:00.000Z",
            "2025-13-01T00:00:00.000Z",
            "2025-04-31T00:00:00.000Z",
            "2025-05-07T24:00:00.000Z",
            "2025-05-07T15:30:31.89xZ",
            "0000-01-01T00:00:00.000Z",
        ] {
            assert_eq!(parse_canonical(text.as_bytes()), None, "{text}");
        }
        assert!(parse_timestamp("2025-02-29T00:00:00.000Z").is_err());
    }

    #[test]
    fn non_canonical_forms_use_the_general_parser() {
        assert_eq!(
            parse_timestamp("2025-05-07T17:30:31.891+02:00"),
            Ok(1_746_631_831_891)
        );
        assert_eq!(
            parse_timestamp("2025-05-07T15:30:31Z"),
            Ok(1_746_631_831_000)
        );
        assert_eq!(formatted(MAX_FAST_MS), format_millis(MAX_FAST_MS));
    }

    proptest! {
        #[test]
        fn fast_paths_agree_with_chrono(ms in MIN_FAST_MS..MAX_FAST_MS) {
            let text = format_millis(ms);
            prop_assert_eq!(formatted(ms), text.clone());
            prop_assert_eq!(parse_canonical(text.as_bytes()), Some(ms));
        }

        #[test]
        fn fast_paths_agree_with_chrono_near_now(ms in 1_600_000_000_000i64..1_900_000_000_000) {
            let text = format_millis(ms);
            prop_assert_eq!(formatted(ms), text.clone());
            prop_assert_eq!(parse_canonical(text.as_bytes()), Some(ms));
        }
    }
}
