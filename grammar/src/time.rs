//! The time forms of `Context(t[, d])` / `At(t[, d])` (skydive-behaviour.md §2.7).
//!
//! A time point `t` is one of:
//! - `NOW` (keyword or string);
//! - a duration relative to now, `'-1m'`, `'-90s'`, `'-1h30m'` (Go duration syntax:
//!   `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`; a leading `-` or `+`);
//! - Unix seconds, an integer (above 2^31-1 it is taken as milliseconds, as Skydive
//!   does) or a numeric string;
//! - an RFC 3339 date and time, `'2026-12-06T07:00:00Z'` (fractional seconds and
//!   `+hh:mm` offsets allowed).
//!
//! A window `d` is a duration back from `t`: integer seconds, a duration string
//! (`'5m'`) or `FOREVER`.
//!
//! Parsing is pure: a relative time is kept relative and resolved against a clock by
//! the evaluator.

use std::fmt;

/// One line listing the accepted time forms, for error messages.
pub const ACCEPTED_TIMES: &str = "expected NOW, a relative duration like '-1m' or '-90s', Unix seconds like 1700000000, or an RFC 3339 time like '2026-12-06T07:00:00Z'";

/// One line listing the accepted window forms, for error messages.
pub const ACCEPTED_WINDOWS: &str =
    "expected a duration like '5m' or '90s', integer seconds, or FOREVER";

/// A time point, not yet resolved against a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePoint {
    Now,
    /// Milliseconds relative to now (negative: in the past).
    Relative(i64),
    /// Milliseconds since the Unix epoch.
    Absolute(i64),
}

impl TimePoint {
    /// Milliseconds since the Unix epoch, given now in the same unit.
    pub fn resolve(self, now_ms: i64) -> i64 {
        match self {
            TimePoint::Now => now_ms,
            TimePoint::Relative(d) => now_ms.saturating_add(d),
            TimePoint::Absolute(t) => t,
        }
    }
}

/// How far back from the time point a window reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Milliseconds (not negative).
    Duration(i64),
    Forever,
}

/// Why a time or window did not parse: one line with the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTime(pub String);

impl fmt::Display for BadTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadTime {}

/// Integer seconds as Skydive reads them: above 2^31-1, milliseconds.
pub fn time_from_int(n: i64) -> Result<TimePoint, BadTime> {
    if n < 0 {
        return Err(BadTime(format!("invalid time {n}: {ACCEPTED_TIMES}")));
    }
    if n > i64::from(i32::MAX) {
        Ok(TimePoint::Absolute(n))
    } else {
        Ok(TimePoint::Absolute(n * 1000))
    }
}

/// A time point written as a string.
pub fn parse_time(s: &str) -> Result<TimePoint, BadTime> {
    let t = s.trim();
    let bad = || BadTime(format!("invalid time {s:?}: {ACCEPTED_TIMES}"));
    if t.eq_ignore_ascii_case("now") {
        return Ok(TimePoint::Now);
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<i64>().map_err(|_| bad()).and_then(time_from_int);
    }
    if let Some(rest) = t.strip_prefix('-') {
        return parse_duration_ms(rest)
            .map(|d| TimePoint::Relative(-d))
            .ok_or_else(bad);
    }
    if let Some(rest) = t.strip_prefix('+') {
        return parse_duration_ms(rest)
            .map(TimePoint::Relative)
            .ok_or_else(bad);
    }
    if let Some(ms) = parse_rfc3339_ms(t) {
        return Ok(TimePoint::Absolute(ms));
    }
    Err(bad())
}

/// A window written as a string.
pub fn parse_window(s: &str) -> Result<Window, BadTime> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("forever") {
        return Ok(Window::Forever);
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = t.parse::<i64>() {
            return Ok(Window::Duration(n.saturating_mul(1000)));
        }
    }
    parse_duration_ms(t)
        .map(Window::Duration)
        .ok_or_else(|| BadTime(format!("invalid window {s:?}: {ACCEPTED_WINDOWS}")))
}

/// Go's duration syntax without a sign (`1h30m`, `1.5s`, `500ms`), in milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * ms;
    }
    if !total.is_finite() || total > 1e15 {
        return None;
    }
    Some(total.round() as i64)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (a space may stand for `T`), in milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return None;
        }
        let digits = &s[start..end.min(start + 3)];
        frac_ms = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
        i = end;
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 60 + m;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_min * 60;
    Some(secs * 1000 + frac_ms)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_forms() {
        assert_eq!(parse_time("NOW"), Ok(TimePoint::Now));
        assert_eq!(parse_time("now"), Ok(TimePoint::Now));
        assert_eq!(parse_time("-1m"), Ok(TimePoint::Relative(-60_000)));
        assert_eq!(parse_time("-1h30m"), Ok(TimePoint::Relative(-5_400_000)));
        assert_eq!(parse_time("-1.5s"), Ok(TimePoint::Relative(-1500)));
        assert_eq!(
            parse_time("1700000000"),
            Ok(TimePoint::Absolute(1_700_000_000_000))
        );
        assert_eq!(
            parse_time("1700000000123"),
            Ok(TimePoint::Absolute(1_700_000_000_123))
        );
        assert_eq!(
            parse_time("1970-01-01T00:00:01Z"),
            Ok(TimePoint::Absolute(1000))
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5Z"),
            Ok(TimePoint::Absolute(1_700_000_000_500))
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20+01:00"),
            Ok(TimePoint::Absolute(1_700_000_000_000))
        );
        for bad in [
            "",
            "-",
            "yesterday",
            "-1x",
            "1m",
            "2023-13-01T00:00:00Z",
            "2023-02-30T00:00:00Z",
            "2023-11-14T22:13:20",
            "-m",
        ] {
            let e = parse_time(bad).unwrap_err();
            assert!(e.0.contains("RFC 3339"), "{bad}: {e}");
        }
    }

    #[test]
    fn window_forms() {
        assert_eq!(parse_window("FOREVER"), Ok(Window::Forever));
        assert_eq!(parse_window("5m"), Ok(Window::Duration(300_000)));
        assert_eq!(parse_window("30"), Ok(Window::Duration(30_000)));
        assert!(parse_window("-5m").is_err());
        assert!(parse_window("soon").unwrap_err().0.contains("FOREVER"));
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
    }
}
