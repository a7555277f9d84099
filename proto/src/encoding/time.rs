//! RFC 3339 time, parsed and formatted in one place: the records' times, the
//! request windows and the times rkmd writes in audit entries. A proleptic
//! Gregorian calendar in Unix seconds is all rkm needs, so it is written out
//! here (H. Hinnant's civil-date algorithms) rather than pulled in as a crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds of an RFC 3339 (§5.6) date-time such as
/// `2026-11-27T00:00:00Z` or `2026-11-27T01:00:00.5+01:00`; a fraction is
/// dropped (rounded towards the past), a leap second counts as the next
/// second. `None` if it is not RFC 3339 or the year is outside 0000..=9999.
pub fn unix_time_from_rfc3339(text: &str) -> Option<i64> {
    parse_rfc3339(text).ok().map(|t| t.unix)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time; `None` outside years 0000..=9999.
pub fn rfc3339_from_unix(unix: i64) -> Option<String> {
    let (year, _, _) = civil_from_days(unix.div_euclid(86_400));
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!("{}Z", civil_text(unix)))
}

/// A parsed RFC 3339 date-time, with what a caller may want to refuse.
pub(crate) struct ParsedTime {
    /// Unix seconds, the fraction dropped, a leap second counted as the next.
    pub(crate) unix: i64,
    /// Whether a non-zero fraction of a second was given.
    pub(crate) fraction: bool,
    /// Whether the second was 60.
    pub(crate) leap_second: bool,
}

/// RFC 3339 §5.6 `date-time`, with `T`/`t` and `Z`/`z`, day of month
/// checked against the month and leap years.
pub(crate) fn parse_rfc3339(text: &str) -> Result<ParsedTime, &'static str> {
    const SHAPE: &str = "it is not an RFC 3339 time such as 2026-11-27T00:00:00Z";
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<i64, &'static str> {
        let part = b.get(range).ok_or(SHAPE)?;
        if part.iter().all(u8::is_ascii_digit) {
            Ok(part.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
        } else {
            Err(SHAPE)
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(SHAPE);
    }
    if !(1..=12).contains(&month) {
        return Err("the month is out of range");
    }
    let leap_year = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap_year => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=month_days).contains(&day) {
        return Err("the day is out of range for the month");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("the time of day is out of range");
    }
    let mut rest = &b[19..];
    let mut fraction = false;
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let len = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return Err(SHAPE);
        }
        fraction = after_dot[..len].iter().any(|&d| d != b'0');
        rest = &after_dot[len..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            if ![h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()) {
                return Err(SHAPE);
            }
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if hours > 23 || minutes > 59 {
                return Err("the UTC offset is out of range");
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        [] => return Err("it has no UTC offset; end it with Z or ±HH:MM"),
        _ => return Err(SHAPE),
    };
    let days = days_from_civil(year, month, day);
    let unix = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Ok(ParsedTime {
        unix,
        fraction,
        leap_second: second == 60,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of `time`, the same text as
/// `humantime::format_rfc3339_seconds`.
pub fn format_rfc3339_seconds(time: SystemTime) -> String {
    let (unix, _) = unix_parts(time);
    format!("{}Z", civil_text(unix))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of `time` (always three digits, truncated), the
/// same text as `humantime::format_rfc3339_millis`.
pub fn format_rfc3339_millis(time: SystemTime) -> String {
    let (unix, nanos) = unix_parts(time);
    format!("{}.{:03}Z", civil_text(unix), nanos / 1_000_000)
}

/// Whole Unix seconds (rounded towards the past) and the nanoseconds after.
fn unix_parts(time: SystemTime) -> (i64, u32) {
    let seconds = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => (seconds(after), after.subsec_nanos()),
        Err(before) => {
            let before = before.duration();
            match before.subsec_nanos() {
                0 => (-seconds(before), 0),
                nanos => (-seconds(before) - 1, 1_000_000_000 - nanos),
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time, UTC.
fn civil_text(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_accepts_and_refuses() {
        for ok in [
            "2025-01-31T12:00:00Z",
            "2025-01-31T12:00:00.123456Z",
            "2025-01-31t23:59:60+01:00",
            "1999-12-31T00:00:00-05:30",
        ] {
            assert!(unix_time_from_rfc3339(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "2025-01-31",
            "2025-01-31 12:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-01-00T00:00:00Z",
            "2025-01-31T24:00:00Z",
            "2025-01-31T12:00:00",
            "2025-01-31T12:00:00.Z",
            "2025-01-31T12:00:00+0100",
            "2025-01-31T12:00:00Z ",
            "２０25-01-31T12:00:00Z",
        ] {
            assert!(unix_time_from_rfc3339(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn civil_days_round_trip_and_known_answers() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        for days in [-719_528, -1, 0, 1, 11_016, 11_017, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{days}");
        }
        assert_eq!(
            rfc3339_from_unix(1_795_737_600).as_deref(),
            Some("2026-11-27T00:00:00Z")
        );
        assert_eq!(rfc3339_from_unix(-62_167_219_201), None);
        assert_eq!(
            rfc3339_from_unix(253_402_300_799).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(rfc3339_from_unix(253_402_300_800), None);
    }

    #[test]
    fn rfc3339_parses_offsets_fractions_and_refuses_bad_dates() {
        assert_eq!(
            unix_time_from_rfc3339("2026-11-27T01:30:00+01:30"),
            Some(1_795_737_600)
        );
        assert_eq!(
            unix_time_from_rfc3339("2026-11-26t19:00:00.999-05:00"),
            Some(1_795_737_600)
        );
        assert_eq!(
            unix_time_from_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800)
        );
        for bad in [
            "2025-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2025-04-31T00:00:00Z",
            "2025-01-01T00:00:00",
            "2025-01-01 00:00:00Z",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+1:00",
            "2025-01-01T00:00:00+24:00",
            "",
        ] {
            assert_eq!(unix_time_from_rfc3339(bad), None, "{bad}");
        }
    }
}
