//! [`Timestamp`]: a UTC instant with microsecond precision, carried as an ISO-8601 string.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// 0001-01-01T00:00:00Z, in microseconds since the Unix epoch.
const MIN_MICROS: i64 = -62_135_596_800 * MICROS_PER_SEC;
/// 9999-12-31T23:59:59.999999Z, in microseconds since the Unix epoch.
const MAX_MICROS: i64 = 253_402_300_800 * MICROS_PER_SEC - 1;

/// A UTC instant with microsecond precision, between years 1 and 9999 (the range of Python's
/// `datetime`).
///
/// On the wire (in both codecs) it is an ISO-8601 / RFC 3339 string with exactly six
/// fractional digits and a `Z` suffix, e.g. `"2026-11-24T09:00:00.123456Z"` — the form
/// pydantic writes for a UTC `datetime`, and the `time` field of OrangeQS Juice events.
///
/// Parsing is more lenient, to accept what Python produces: the date/time separator may be
/// `T`, `t` or a space; the fraction may have 0 to 9 digits (digits beyond microseconds are
/// truncated); the offset may be `Z`, `z` or `±HH:MM` (any offset, converted to UTC, so
/// Python's `isoformat()` output `+00:00` is accepted). A missing offset (a naive time) is an
/// error, as are leap seconds.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use xbus_schema::Timestamp;
///
/// let t: Timestamp = "2026-11-24T09:00:00.123456Z".parse().unwrap();
/// assert_eq!(t.to_string(), "2026-11-24T09:00:00.123456Z");
/// assert_eq!(t, "2026-11-24T10:00:00.123456+01:00".parse().unwrap());
///
/// let st: SystemTime = t.into();
/// assert_eq!(Timestamp::try_from(st).unwrap(), t);
/// assert_eq!(
///     Timestamp::from_unix_micros(0).unwrap().to_string(),
///     "1970-01-01T00:00:00.000000Z"
/// );
///
/// let err = "2026-11-24T09:00:00".parse::<Timestamp>().unwrap_err();
/// assert!(err.to_string().contains("missing UTC offset"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    micros: i64,
}

impl Timestamp {
    /// The earliest representable instant, `0001-01-01T00:00:00.000000Z`.
    ///
    /// ```
    /// assert_eq!(xbus_schema::Timestamp::MIN.to_string(), "0001-01-01T00:00:00.000000Z");
    /// ```
    pub const MIN: Timestamp = Timestamp { micros: MIN_MICROS };

    /// The latest representable instant, `9999-12-31T23:59:59.999999Z`.
    ///
    /// ```
    /// assert_eq!(xbus_schema::Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999999Z");
    /// ```
    pub const MAX: Timestamp = Timestamp { micros: MAX_MICROS };

    /// The Unix epoch, `1970-01-01T00:00:00.000000Z`.
    ///
    /// ```
    /// assert_eq!(xbus_schema::Timestamp::UNIX_EPOCH.as_unix_micros(), 0);
    /// ```
    pub const UNIX_EPOCH: Timestamp = Timestamp { micros: 0 };

    /// The current time, truncated to microseconds. (A system clock outside years 1–9999
    /// is clamped to [`Timestamp::MIN`] / [`Timestamp::MAX`].)
    ///
    /// ```
    /// use xbus_schema::Timestamp;
    ///
    /// let a = Timestamp::now();
    /// let b = Timestamp::now();
    /// assert!(a <= b);
    /// ```
    pub fn now() -> Self {
        Self::from_system_time_clamped(SystemTime::now())
    }

    fn from_system_time_clamped(t: SystemTime) -> Self {
        let micros = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            // Round towards the past, so truncation is consistent on both sides of 1970.
            Err(e) => {
                let d = e.duration();
                let whole = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
                let extra = i64::from(d.subsec_nanos() % 1000 != 0);
                whole.saturating_add(extra).saturating_neg()
            }
        };
        Self {
            micros: micros.clamp(MIN_MICROS, MAX_MICROS),
        }
    }

    /// Builds a timestamp from microseconds since the Unix epoch; fails outside years 1–9999.
    ///
    /// ```
    /// use xbus_schema::Timestamp;
    ///
    /// let t = Timestamp::from_unix_micros(1_500_000).unwrap();
    /// assert_eq!(t.to_string(), "1970-01-01T00:00:01.500000Z");
    /// assert!(Timestamp::from_unix_micros(i64::MAX).is_err());
    /// ```
    pub fn from_unix_micros(micros: i64) -> Result<Self, Error> {
        if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
            Ok(Self { micros })
        } else {
            Err(Error::InvalidTimestamp {
                input: format!("{micros} µs since the Unix epoch"),
                reason: "outside the supported range (years 1 to 9999)",
            })
        }
    }

    /// Microseconds since the Unix epoch (negative before 1970).
    ///
    /// ```
    /// use xbus_schema::Timestamp;
    ///
    /// let t: Timestamp = "1969-12-31T23:59:59.999999Z".parse().unwrap();
    /// assert_eq!(t.as_unix_micros(), -1);
    /// ```
    pub const fn as_unix_micros(self) -> i64 {
        self.micros
    }

    /// Parses an ISO-8601 / RFC 3339 string; see the [type docs](Timestamp) for the accepted
    /// forms. Same as [`str::parse`].
    ///
    /// ```
    /// use xbus_schema::Timestamp;
    ///
    /// let t = Timestamp::parse("2026-11-24 09:00:00+00:00").unwrap();
    /// assert_eq!(t.to_string(), "2026-11-24T09:00:00.000000Z");
    /// ```
    pub fn parse(s: &str) -> Result<Self, Error> {
        parse(s.as_bytes()).map_err(|reason| Error::InvalidTimestamp {
            input: s.chars().take(64).collect(),
            reason,
        })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.micros.div_euclid(MICROS_PER_SEC);
        let sub = self.micros.rem_euclid(MICROS_PER_SEC);
        let days = secs.div_euclid(SECS_PER_DAY);
        let tod = secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{sub:06}Z",
            tod / 3600,
            tod / 60 % 60,
            tod % 60
        )
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<Timestamp> for SystemTime {
    /// Converts exactly. (On a platform whose `SystemTime` cannot reach the instant — Windows
    /// before 1601 — the result saturates to the earliest time it can represent.)
    fn from(t: Timestamp) -> Self {
        let magnitude = Duration::from_micros(t.micros.unsigned_abs());
        if t.micros >= 0 {
            saturating_step(magnitude, |step| UNIX_EPOCH.checked_add(step))
        } else {
            saturating_step(magnitude, |step| UNIX_EPOCH.checked_sub(step))
        }
    }
}

/// Moves `total` away from the epoch with `step_from_epoch`, going as far as the platform
/// allows (to within a nanosecond) instead of panicking.
fn saturating_step(
    total: Duration,
    step_from_epoch: impl Fn(Duration) -> Option<SystemTime>,
) -> SystemTime {
    if let Some(t) = step_from_epoch(total) {
        return t;
    }
    // Binary search for the largest representable distance.
    let (mut lo, mut hi) = (Duration::ZERO, total);
    while hi - lo > Duration::from_nanos(1) {
        let mid = lo + (hi - lo) / 2;
        if step_from_epoch(mid).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    step_from_epoch(lo).unwrap_or(UNIX_EPOCH)
}

impl TryFrom<SystemTime> for Timestamp {
    type Error = Error;

    /// Converts, truncating to microseconds (towards the past); fails outside years 1–9999.
    fn try_from(t: SystemTime) -> Result<Self, Error> {
        let clamped = Self::from_system_time_clamped(t);
        let back = SystemTime::from(clamped);
        let in_range = match (clamped.micros, t) {
            (MIN_MICROS, t) => t >= back,
            (MAX_MICROS, t) => back
                .checked_add(Duration::from_micros(1))
                .is_none_or(|limit| t < limit),
            _ => true,
        };
        if in_range {
            Ok(clamped)
        } else {
            Err(Error::InvalidTimestamp {
                input: format!("{t:?}"),
                reason: "outside the supported range (years 1 to 9999)",
            })
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an ISO-8601 UTC timestamp string such as \"2026-11-24T09:00:00.123456Z\"",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A tiny cursor over ASCII input.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn digits(&mut self, n: usize, what: &'static str) -> Result<i64, &'static str> {
        let mut v = 0;
        for _ in 0..n {
            match self.peek() {
                Some(c @ b'0'..=b'9') => {
                    v = v * 10 + i64::from(c - b'0');
                    self.pos += 1;
                }
                _ => return Err(what),
            }
        }
        Ok(v)
    }

    fn expect(&mut self, accepted: &[u8], what: &'static str) -> Result<u8, &'static str> {
        match self.peek() {
            Some(c) if accepted.contains(&c) => {
                self.pos += 1;
                Ok(c)
            }
            _ => Err(what),
        }
    }
}

fn parse(s: &[u8]) -> Result<Timestamp, &'static str> {
    let mut c = Cursor { s, pos: 0 };
    let year = c.digits(
        4,
        "expected a four-digit year (YYYY-MM-DDTHH:MM:SS[.ffffff]Z)",
    )?;
    c.expect(b"-", "expected '-' after the year")?;
    let month = c.digits(2, "expected a two-digit month")?;
    c.expect(b"-", "expected '-' after the month")?;
    let day = c.digits(2, "expected a two-digit day")?;
    c.expect(b"Tt ", "expected 'T' between the date and the time")?;
    let hour = c.digits(2, "expected a two-digit hour")?;
    c.expect(b":", "expected ':' after the hour")?;
    let minute = c.digits(2, "expected two-digit minutes")?;
    c.expect(b":", "expected ':' after the minutes")?;
    let second = c.digits(2, "expected two-digit seconds")?;
    let mut micros = 0;
    if c.peek() == Some(b'.') {
        c.pos += 1;
        let mut n = 0;
        while let Some(d @ b'0'..=b'9') = c.peek() {
            if n < 6 {
                micros = micros * 10 + i64::from(d - b'0');
            } else if n >= 9 {
                return Err("more than 9 fractional digits");
            }
            n += 1;
            c.pos += 1;
        }
        if n == 0 {
            return Err("expected digits after '.'");
        }
        for _ in n..6 {
            micros *= 10;
        }
    }
    let offset_secs = match c.peek() {
        Some(b'Z' | b'z') => {
            c.pos += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            c.pos += 1;
            let oh = c.digits(2, "expected a two-digit offset hour (±HH:MM)")?;
            c.expect(b":", "expected ':' in the UTC offset (±HH:MM)")?;
            let om = c.digits(2, "expected two-digit offset minutes (±HH:MM)")?;
            if oh > 23 || om > 59 {
                return Err("UTC offset out of range");
            }
            let secs = oh * 3600 + om * 60;
            if sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        None => {
            return Err(
                "missing UTC offset: expected 'Z' or '+00:00' (naive times are not accepted)",
            )
        }
        Some(_) => {
            return Err("unexpected character where the UTC offset ('Z' or ±HH:MM) should be")
        }
    };
    if c.pos != s.len() {
        return Err("unexpected characters after the UTC offset");
    }
    if year == 0 {
        return Err("year 0 is not supported (years 1 to 9999)");
    }
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range for the month");
    }
    if hour > 23 {
        return Err("hour out of range");
    }
    if minute > 59 {
        return Err("minutes out of range");
    }
    if second > 59 {
        return Err("seconds out of range (leap seconds are not supported)");
    }
    let secs =
        days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60 + second
            - offset_secs;
    let total = secs * MICROS_PER_SEC + micros;
    if (MIN_MICROS..=MAX_MICROS).contains(&total) {
        Ok(Timestamp { micros: total })
    } else {
        Err("outside the supported range (years 1 to 9999) once converted to UTC")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn civil_round_trip_over_the_whole_range() {
        let lo = MIN_MICROS.div_euclid(MICROS_PER_SEC * SECS_PER_DAY);
        let hi = MAX_MICROS.div_euclid(MICROS_PER_SEC * SECS_PER_DAY);
        for days in (lo..=hi).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d >= 1 && d <= days_in_month(y, m));
        }
    }

    #[test]
    fn parses_python_forms() {
        let want = "2026-11-24T09:00:00.123456Z";
        for s in [
            "2026-11-24T09:00:00.123456Z",
            "2026-11-24T09:00:00.123456+00:00",
            "2026-11-24t09:00:00.123456z",
            "2026-11-24 09:00:00.123456-00:00",
            "2026-11-24T09:00:00.123456789Z",
            "2026-11-24T04:30:00.123456-04:30",
        ] {
            assert_eq!(Timestamp::parse(s).unwrap().to_string(), want, "{s}");
        }
        assert_eq!(
            Timestamp::parse("2026-11-24T09:00:00Z")
                .unwrap()
                .to_string(),
            "2026-11-24T09:00:00.000000Z"
        );
        assert_eq!(
            Timestamp::parse("2026-11-24T09:00:00.5Z")
                .unwrap()
                .to_string(),
            "2026-11-24T09:00:00.500000Z"
        );
    }

    #[test]
    fn rejects_garbage_with_reasons() {
        for (s, reason) in [
            ("", "four-digit year"),
            ("2026-11-24T09:00:00", "missing UTC offset"),
            ("2026-02-29T09:00:00Z", "day out of range"),
            ("2026-11-24T24:00:00Z", "hour out of range"),
            ("2026-11-24T23:59:60Z", "leap seconds"),
            ("2026-11-24T09:00:00.Z", "digits after '.'"),
            ("2026-11-24T09:00:00.1234567890Z", "more than 9"),
            ("2026-11-24T09:00:00Zjunk", "after the UTC offset"),
            ("0000-01-01T00:00:00Z", "year 0"),
            ("0001-01-01T00:00:00+00:01", "outside the supported range"),
            ("2026-13-01T00:00:00Z", "month out of range"),
            ("2026-11-24T09:00:00+0100", "':' in the UTC offset"),
            ("२०२६-11-24T09:00:00Z", "four-digit year"),
        ] {
            let err = Timestamp::parse(s).unwrap_err().to_string();
            assert!(err.contains(reason), "{s:?}: {err}");
        }
    }

    #[test]
    fn system_time_edges() {
        let before = UNIX_EPOCH - Duration::from_nanos(1500);
        assert_eq!(Timestamp::try_from(before).unwrap().as_unix_micros(), -2);
        let after = UNIX_EPOCH + Duration::from_nanos(1500);
        assert_eq!(Timestamp::try_from(after).unwrap().as_unix_micros(), 1);
        let max = SystemTime::from(Timestamp::MAX);
        assert_eq!(Timestamp::try_from(max).unwrap(), Timestamp::MAX);
        assert!(Timestamp::try_from(max + Duration::from_micros(1)).is_err());
        let min = SystemTime::from(Timestamp::MIN);
        assert_eq!(Timestamp::try_from(min).unwrap(), Timestamp::MIN);
        if let Some(t) = min.checked_sub(Duration::from_micros(1)) {
            assert!(Timestamp::try_from(t).is_err());
        }
    }
}
