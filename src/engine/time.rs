//! Event time: RFC 3339 parsing and formatting, and the compact clock the baselines use.
//!
//! Hand-written rather than pulled from a date crate because it sits on the hot path
//! (one parse per event) and only needs the one RFC 3339 shape the contract allows.

use std::fmt::Write as _;

/// Milliseconds since the Unix epoch, UTC.
pub type EpochMs = i64;

/// 2000-01-01T00:00:00Z in epoch milliseconds: the lower bound of accepted event time and the
/// origin of the compact [`Tick`] clock stored in profiles.
pub const MIN_TS_MS: EpochMs = 946_684_800_000;
/// 2100-01-01T00:00:00Z: the exclusive upper bound of accepted event time.
pub const MAX_TS_MS: EpochMs = 4_102_444_800_000;

/// Seconds since 2000-01-01 UTC. Profiles store times as `u32` ticks (4 bytes instead of 8;
/// good until 2136). `0` means "never".
pub type Tick = u32;

/// The wall clock, in epoch milliseconds (0 if the system clock is before 1970). For the
/// adapters (`replay`, `run`, the demo): the pure core never reads a clock, it is handed
/// `now` by its caller.
pub fn now_ms() -> EpochMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as EpochMs)
        .unwrap_or(0)
}

/// Converts epoch milliseconds to a profile tick (clamped into range; never 0 for a real time).
#[inline]
pub fn to_tick(ms: EpochMs) -> Tick {
    let s = (ms - MIN_TS_MS).div_euclid(1000);
    s.clamp(1, u32::MAX as i64) as Tick
}

/// Converts a profile tick back to epoch milliseconds.
#[inline]
pub fn tick_to_ms(t: Tick) -> EpochMs {
    MIN_TS_MS + t as i64 * 1000
}

/// Why a timestamp string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The text is not `YYYY-MM-DDTHH:MM:SS[.fff]` followed by `Z` or `±HH:MM`.
    #[error("not an RFC 3339 timestamp with offset")]
    Syntax,
    /// Month, day, hour, minute, second or offset out of range.
    #[error("date or time component out of range")]
    Range,
}

#[inline]
fn digits(b: &[u8], at: usize, n: usize) -> Result<u32, TimeError> {
    let mut v = 0u32;
    for i in 0..n {
        let c = *b.get(at + i).ok_or(TimeError::Syntax)?;
        if !c.is_ascii_digit() {
            return Err(TimeError::Syntax);
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Ok(v)
}

#[inline]
fn expect(b: &[u8], at: usize, chars: &[u8]) -> Result<(), TimeError> {
    match b.get(at) {
        Some(c) if chars.contains(c) => Ok(()),
        _ => Err(TimeError::Syntax),
    }
}

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's algorithm).
#[inline]
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date (year, month, day) of a day count since 1970-01-01.
#[inline]
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses an RFC 3339 timestamp with a mandatory offset into epoch milliseconds.
///
/// Accepts `T`, `t` or a space between date and time, `Z`/`z` or `±HH:MM`, and any number of
/// fractional-second digits (truncated to milliseconds). A leap second `:60` is read as `:59.999`.
pub fn parse_rfc3339(s: &str) -> Result<EpochMs, TimeError> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(TimeError::Syntax);
    }
    let year = digits(b, 0, 4)? as i64;
    expect(b, 4, b"-")?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b"-")?;
    let day = digits(b, 8, 2)?;
    expect(b, 10, b"Tt ")?;
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b":")?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b":")?;
    let mut second = digits(b, 17, 2)?;
    let mut i = 19;
    let mut millis = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + (b[i] - b'0') as u32;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return Err(TimeError::Syntax);
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_min: i64 = match b.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2)?;
            expect(b, i + 3, b":")?;
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(TimeError::Range);
            }
            i += 6;
            let v = (oh * 60 + om) as i64;
            if sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return Err(TimeError::Syntax),
    };
    if i != b.len() {
        return Err(TimeError::Syntax);
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(TimeError::Range);
    }
    if second == 60 {
        second = 59;
        millis = 999;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64 - offset_min * 60;
    Ok(secs * 1000 + millis as i64)
}

/// Appends `ms` as an RFC 3339 UTC timestamp with milliseconds, e.g. `2026-10-01T08:15:30.123Z`.
pub fn write_rfc3339(out: &mut String, ms: EpochMs) {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
}

/// Formats `ms` as an RFC 3339 UTC timestamp with milliseconds.
pub fn format_rfc3339(ms: EpochMs) -> String {
    let mut s = String::with_capacity(24);
    write_rfc3339(&mut s, ms);
    s
}

/// Hour of day (0..24) of `ms` in a zone `offset_min` minutes east of UTC.
#[inline]
pub fn local_hour(ms: EpochMs, offset_min: i32) -> usize {
    let local_s = ms.div_euclid(1000) + offset_min as i64 * 60;
    (local_s.rem_euclid(86_400) / 3600) as usize
}

/// Parses a UTC offset such as `+08:00`, `-05:30` or `Z` into minutes east of UTC.
pub fn parse_offset(s: &str) -> Option<i32> {
    if s == "Z" || s == "z" {
        return Some(0);
    }
    let b = s.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h = digits(b, 1, 2).ok()?;
    let m = digits(b, 4, 2).ok()?;
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 60 + m) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("2026-10-01T08:15:30.123Z"),
            Ok(1_790_842_530_123)
        );
        // Same instant written with +08:00.
        assert_eq!(
            parse_rfc3339("2026-10-01T16:15:30.123+08:00"),
            Ok(1_790_842_530_123)
        );
        assert_eq!(
            parse_rfc3339("2026-10-01T03:15:30.1234567-05:00"),
            Ok(1_790_842_530_123)
        );
        assert_eq!(
            parse_rfc3339("2026-10-01 08:15:30.1z"),
            Ok(1_790_842_530_100)
        );
    }

    #[test]
    fn rejects_bad_timestamps() {
        assert_eq!(parse_rfc3339("2026-10-01T08:15:30"), Err(TimeError::Syntax));
        assert_eq!(parse_rfc3339("2026-10-01"), Err(TimeError::Syntax));
        assert_eq!(parse_rfc3339("2026-02-29T08:15:30Z"), Err(TimeError::Range));
        assert_eq!(parse_rfc3339("2026-13-01T08:15:30Z"), Err(TimeError::Range));
        assert_eq!(parse_rfc3339("2026-10-01T24:00:00Z"), Err(TimeError::Range));
        assert_eq!(
            parse_rfc3339("2026-10-01T08:15:30.Z"),
            Err(TimeError::Syntax)
        );
        assert_eq!(
            parse_rfc3339("2026-10-01T08:15:30Zjunk"),
            Err(TimeError::Syntax)
        );
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn civil_round_trip_and_format() {
        for days in [-1000i64, 0, 10_957, 20_000, 47_482] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(
            format_rfc3339(1_790_842_530_123),
            "2026-10-01T08:15:30.123Z"
        );
        let ms = 1_790_842_530_123;
        assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Ok(ms));
    }

    #[test]
    fn ticks_and_hours() {
        let ms = 1_790_842_530_123;
        assert_eq!(tick_to_ms(to_tick(ms)), 1_790_842_530_000);
        assert_eq!(local_hour(ms, 0), 8);
        assert_eq!(local_hour(ms, 480), 16);
        assert_eq!(local_hour(ms, -600), 22);
        assert_eq!(parse_offset("+08:00"), Some(480));
        assert_eq!(parse_offset("-05:30"), Some(-330));
        assert_eq!(parse_offset("08:00"), None);
    }
}
