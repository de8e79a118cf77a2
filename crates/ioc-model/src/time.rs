//! RFC 3339 UTC timestamps as they travel in every message.
//!
//! Wraps milliseconds since the Unix epoch so the engine can do arithmetic on
//! them without a clock, while the wire format stays an RFC 3339 string.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A point in time, millisecond precision, always UTC on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Builds a timestamp from milliseconds since the Unix epoch.
    pub const fn from_unix_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// The current wall-clock time. Only adapters call this: the engine gets
    /// its time from events.
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        Self((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// This timestamp moved by `ms` milliseconds (negative moves back).
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Parses an RFC 3339 string (any offset; converted to UTC).
    pub fn parse(s: &str) -> Result<Self, String> {
        match parse_utc_fast(s.as_bytes()) {
            Some(t) => Ok(t),
            None => Self::parse_general(s),
        }
    }

    /// Any RFC 3339 string, through the `time` crate.
    fn parse_general(s: &str) -> Result<Self, String> {
        let dt = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| format!("expected an RFC 3339 timestamp, got {s:?}: {e}"))?;
        Ok(Self((dt.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    /// Formats as RFC 3339 UTC with millisecond precision.
    pub fn to_rfc3339(self) -> String {
        let mut buf = [0u8; RFC3339_LEN];
        match self.write_rfc3339(&mut buf) {
            Some(s) => s.to_string(),
            None => self.to_rfc3339_general(),
        }
    }

    /// Formats years 0000–9999 into `buf` without allocating (every message
    /// carries timestamps, so this is on the hot path); `None` outside.
    fn write_rfc3339(self, buf: &mut [u8; RFC3339_LEN]) -> Option<&str> {
        let days = self.0.div_euclid(MILLIS_PER_DAY);
        let ms_of_day = self.0.rem_euclid(MILLIS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return None;
        }
        let (secs, ms) = (ms_of_day / 1000, ms_of_day % 1000);
        let fields: [(usize, i64, usize); 7] = [
            (0, year, 4),
            (5, i64::from(month), 2),
            (8, i64::from(day), 2),
            (11, secs / 3600, 2),
            (14, secs / 60 % 60, 2),
            (17, secs % 60, 2),
            (20, ms, 3),
        ];
        *buf = *b"0000-00-00T00:00:00.000Z";
        for (at, mut v, width) in fields {
            for i in (at..at + width).rev() {
                buf[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        std::str::from_utf8(buf).ok()
    }

    /// Any representable time, through the `time` crate.
    fn to_rfc3339_general(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(dt) => {
                let date = dt.date();
                let t = dt.time();
                format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                    date.year(),
                    u8::from(date.month()),
                    date.day(),
                    t.hour(),
                    t.minute(),
                    t.second(),
                    t.millisecond()
                )
            }
            Err(_) => "1970-01-01T00:00:00.000Z".to_string(),
        }
    }
}

const RFC3339_LEN: usize = 24;
const MILLIS_PER_DAY: i64 = 86_400_000;

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Day count since 1970-01-01 of a proleptic Gregorian date (Howard
/// Hinnant's `days_from_civil`, the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The common case of every message, without the `time` crate:
/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` in UTC, from 1970 to 9999. `None` for
/// anything else (other offsets, leap seconds, earlier years, malformed
/// input), which the general parser then accepts or rejects with its
/// message. Agrees with it wherever both accept (property test below).
fn parse_utc_fast(b: &[u8]) -> Option<Timestamp> {
    if b.len() < 20 || !matches!(b[b.len() - 1], b'Z' | b'z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1970 || day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Fraction: 1 to 9 digits, truncated to milliseconds (as the general
    // path does for times after the epoch).
    let frac = &b[19..b.len() - 1];
    let ms = match frac {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let mut ms = 0u32;
            for (i, &c) in digits.iter().enumerate() {
                if !c.is_ascii_digit() {
                    return None;
                }
                if i < 3 {
                    ms = ms * 10 + u32::from(c - b'0');
                }
            }
            ms * 10u32.pow(3u32.saturating_sub(digits.len() as u32))
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(Timestamp(secs * 1000 + i64::from(ms)))
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; RFC3339_LEN];
        match self.write_rfc3339(&mut buf) {
            Some(text) => s.serialize_str(text),
            None => s.serialize_str(&self.to_rfc3339_general()),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 timestamp; UTC on output"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rfc3339() {
        let t = Timestamp::parse("2026-11-23T08:15:30.250Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T08:15:30.250Z");
        let offset = Timestamp::parse("2026-11-23T15:15:30.250+07:00").unwrap();
        assert_eq!(offset, t);
    }

    proptest::proptest! {
        /// The allocation-free formatter writes what the `time` crate writes,
        /// from year 0 to 9999 (leap years, centuries, epoch, negatives).
        #[test]
        fn fast_format_agrees_with_the_time_crate(
            ms in -62_167_219_200_000i64..253_402_300_800_000,
        ) {
            let t = Timestamp::from_unix_millis(ms);
            let mut buf = [0u8; RFC3339_LEN];
            let fast = t.write_rfc3339(&mut buf).map(str::to_string);
            proptest::prop_assert_eq!(fast, Some(t.to_rfc3339_general()));
            proptest::prop_assert_eq!(Timestamp::parse(&t.to_rfc3339()), Ok(t));
        }
    }

    #[test]
    fn formats_edges_and_falls_back_outside_four_digit_years() {
        for (ms, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(Timestamp::from_unix_millis(ms).to_rfc3339(), want);
            let json = serde_json::to_string(&Timestamp::from_unix_millis(ms)).unwrap();
            assert_eq!(json, format!("\"{want}\""));
        }
        let far = Timestamp::from_unix_millis(253_402_300_800_000);
        assert_eq!(far.to_rfc3339(), far.to_rfc3339_general());
        // Beyond year 9999 the time crate cannot represent it: the epoch, as before.
        assert_eq!(far.to_rfc3339(), "1970-01-01T00:00:00.000Z");
    }

    proptest::proptest! {
        /// The fast UTC parser agrees with the `time` crate on every string
        /// it accepts, and hands everything else to it: all fraction
        /// lengths, impossible dates (31 April, 29 February off leap years),
        /// out-of-range fields, lower-case separators, other offsets.
        #[test]
        fn fast_parse_agrees_with_the_time_crate(
            year in 1900u32..=9999, month in 0u32..=13, day in 0u32..=32,
            hour in 0u32..=24, minute in 0u32..=60, second in 0u32..=60,
            frac in proptest::option::of("[0-9]{1,10}"),
            t in proptest::sample::select(vec!["T", "t", " "]),
            zone in proptest::sample::select(vec!["Z", "z", "+00:00", "+07:00", "-03:30", ""]),
        ) {
            let s = format!(
                "{year:04}-{month:02}-{day:02}{t}{hour:02}:{minute:02}:{second:02}{}{zone}",
                frac.map(|f| format!(".{f}")).unwrap_or_default()
            );
            let general = Timestamp::parse_general(&s);
            match parse_utc_fast(s.as_bytes()) {
                Some(fast) => proptest::prop_assert_eq!(Ok(fast), general, "{}", s),
                None => proptest::prop_assert_eq!(Timestamp::parse(&s), general, "{}", s),
            }
        }
    }

    #[test]
    fn fast_parse_takes_the_common_form() {
        let t = parse_utc_fast(b"2026-11-23T08:15:30.250Z");
        assert_eq!(t, Some(Timestamp::from_unix_millis(1_795_421_730_250)));
        assert_eq!(
            parse_utc_fast(b"1970-01-01T00:00:00Z"),
            Some(Timestamp::from_unix_millis(0))
        );
        assert_eq!(parse_utc_fast(b"2026-11-23T15:15:30.250+07:00"), None);
        assert_eq!(parse_utc_fast(b"2026-02-29T00:00:00Z"), None);
        assert!(Timestamp::parse("2026-02-29T00:00:00Z").is_err());
    }

    #[test]
    fn rejects_non_rfc3339() {
        assert!(Timestamp::parse("23/11/2026").is_err());
        assert!(Timestamp::parse("").is_err());
    }
}
