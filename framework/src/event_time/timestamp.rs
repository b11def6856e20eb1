//! ISO 8601 UTC timestamps with millisecond precision (`2025-05-07T15:30:31.891Z`), the
//! format of every `timestamp` field in the pipeline's records.

use chrono::{DateTime, SecondsFormat, Utc};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {text:?}: expected ISO 8601 UTC like \"2025-05-07T15:30:31.891Z\"")]
pub struct TimestampError {
    pub text: String,
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_millis(millis: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_millis(&mut out, millis);
    // `write_millis` writes ASCII only (and chrono's output is UTF-8).
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends [`format_millis`]`(millis)` to `out` without allocating (hot output paths).
pub fn write_millis(out: &mut Vec<u8>, millis: i64) {
    MillisWriter::default().write(out, millis);
}

/// [`write_millis`] for timestamps that mostly fall on the same day (a record's window
/// bounds): the date of the last day written is kept, not computed again.
#[derive(Debug, Default)]
pub struct MillisWriter {
    /// Days since the epoch and their `YYYY-MM-DDT`.
    day: Option<(i64, [u8; 11])>,
}

impl MillisWriter {
    pub fn write(&mut self, out: &mut Vec<u8>, millis: i64) {
        let days = millis.div_euclid(MILLIS_PER_DAY);
        let date = match self.day {
            Some((cached, date)) if cached == days => date,
            _ => match date_of(days) {
                Some(date) => {
                    self.day = Some((days, date));
                    date
                }
                None => {
                    // chrono's own rendering of signed or 5-digit years: rare enough to
                    // not matter.
                    out.extend_from_slice(slow_format(millis).as_bytes());
                    return;
                }
            },
        };
        let in_day = millis.rem_euclid(MILLIS_PER_DAY);
        let secs = in_day / 1000;
        let ms = in_day % 1000;
        let mut buf = [0u8; 24];
        buf[..11].copy_from_slice(&date);
        buf[11..13].copy_from_slice(&two_digits((secs / 3600) as u8));
        buf[13] = b':';
        buf[14..16].copy_from_slice(&two_digits((secs / 60 % 60) as u8));
        buf[16] = b':';
        buf[17..19].copy_from_slice(&two_digits((secs % 60) as u8));
        buf[19] = b'.';
        buf[20] = b'0' + (ms / 100) as u8;
        buf[21] = b'0' + (ms / 10 % 10) as u8;
        buf[22] = b'0' + (ms % 10) as u8;
        buf[23] = b'Z';
        out.extend_from_slice(&buf);
    }
}

/// `YYYY-MM-DDT` of a day since the epoch; `None` outside years 0 to 9999.
fn date_of(days: i64) -> Option<[u8; 11]> {
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut date = [0u8; 11];
    date[0..2].copy_from_slice(&two_digits((year / 100) as u8));
    date[2..4].copy_from_slice(&two_digits((year % 100) as u8));
    date[4] = b'-';
    date[5..7].copy_from_slice(&two_digits(month as u8));
    date[7] = b'-';
    date[8..10].copy_from_slice(&two_digits(day as u8));
    date[10] = b'T';
    Some(date)
}

fn two_digits(v: u8) -> [u8; 2] {
    [b'0' + v / 10, b'0' + v % 10]
}

fn slow_format(millis: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(millis) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        // Out of chrono's range (±262,000 years): not a real event time; keep it visible.
        None => format!("invalid-epoch-ms:{millis}"),
    }
}

/// Parses an RFC 3339 / ISO 8601 timestamp with an offset into epoch milliseconds
/// (sub-millisecond digits are truncated).
pub fn parse_millis(text: &str) -> Result<i64, TimestampError> {
    if let Some(millis) = parse_canonical(text.as_bytes()) {
        return Ok(millis);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| TimestampError {
            text: text.to_string(),
        })
}

const MILLIS_PER_DAY: i64 = 86_400_000;

/// The hot path: exactly `YYYY-MM-DDTHH:MM:SS.mmmZ` with valid fields (what every
/// connector writes). Anything else (offsets, other precisions, leap seconds) returns
/// `None` and goes to chrono, so results never differ from chrono's.
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
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        b[range].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * MILLIS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1000 + ms)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
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

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_that_keeps_its_day_writes_what_write_millis_writes() {
        let mut writer = MillisWriter::default();
        let (mut kept, mut each) = (Vec::new(), Vec::new());
        let mut t: i64 = -62_167_219_200_001; // just before year 0
        for step in [1, 999, 3_599_999, 86_399_999, 1, 86_400_000 * 400 + 7, 13] {
            for _ in 0..40 {
                t = t.saturating_add(step * 7_919);
                for ms in [t, t - 3_600_000, t + 1, i64::MAX - t.abs() % 1000, t / 3] {
                    writer.write(&mut kept, ms);
                    each.extend_from_slice(slow_format(ms).as_bytes());
                }
            }
        }
        assert_eq!(
            String::from_utf8_lossy(&kept),
            String::from_utf8_lossy(&each)
        );
    }

    #[test]
    fn formats_with_millis_and_z_suffix() {
        assert_eq!(format_millis(1_746_631_831_891), "2025-05-07T15:30:31.891Z");
        assert_eq!(format_millis(1_746_631_860_000), "2025-05-07T15:31:00.000Z");
    }

    #[test]
    fn parse_round_trips_and_accepts_offsets() {
        assert_eq!(
            parse_millis("2025-05-07T15:30:31.891Z"),
            Ok(1_746_631_831_891)
        );
        assert_eq!(
            parse_millis("2025-05-07T17:30:31.891+02:00"),
            Ok(1_746_631_831_891)
        );
        assert!(parse_millis("2025-05-07 15:30").is_err());
        assert!(parse_millis("").is_err());
    }

    #[test]
    fn fast_format_and_parse_agree_with_chrono() {
        let samples = [
            i64::MIN / 4,
            -62_167_219_200_001, // 0000-12-31T23:59:59.999 BC side: chrono fallback
            -62_167_219_200_000, // 0000-01-01T00:00:00.000Z
            -1,
            0,
            951_782_400_000, // 2000-02-29
            1_746_631_831_891,
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z
            253_402_300_800_000, // year 10000: chrono fallback
            i64::MAX / 4,
        ];
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        let random = (0..20_000).map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % 400_000_000_000_000) as i64 - 100_000_000_000_000
        });
        for millis in samples.into_iter().chain(random) {
            let fast = format_millis(millis);
            assert_eq!(fast, slow_format(millis), "{millis}");
            let chrono = DateTime::parse_from_rfc3339(&fast).map(|t| t.timestamp_millis());
            assert_eq!(parse_millis(&fast).ok(), chrono.ok(), "{fast}");
        }
    }

    #[test]
    fn fast_parse_leaves_invalid_or_unusual_fields_to_chrono() {
        for text in [
            "2025-02-29T00:00:00.000Z",
            "2024-02-29T00:00:00.000Z",
            "2025-13-01T00:00:00.000Z",
            "2025-12-31T24:00:00.000Z",
            "2016-12-31T23:59:60.000Z",
            "2025-05-07t15:30:31.891Z",
            "2025-05-07T15:30:31.891z",
            "2025-05-07T15:30:31.8912Z",
            "2025-05-07T15:3a:31.891Z",
            "+025-05-07T15:30:31.891Z",
        ] {
            let chrono = DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_millis());
            assert_eq!(parse_millis(text).ok(), chrono.ok(), "{text}");
        }
    }
}
