//! NTP time formats (RFC 5905 §6).

use chrono::{DateTime, Utc};

/// Seconds from the NTP prime epoch (1900-01-01) to the Unix epoch.
pub const NTP_UNIX_OFFSET: i64 = 2_208_988_800;

/// A 64-bit NTP timestamp: 32 bits of seconds, 32 bits of fraction (RFC 5905 §6, Figure 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// From 8 big-endian bytes.
    #[must_use]
    pub fn from_bytes(b: [u8; 8]) -> Self {
        Self(u64::from_be_bytes(b))
    }
    /// Whole seconds.
    #[must_use]
    pub fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// Fraction of a second, in 2^-32 s.
    #[must_use]
    pub fn fraction(self) -> u32 {
        self.0 as u32
    }
    /// A zero timestamp means "unknown or unset" (RFC 5905 §6).
    #[must_use]
    pub fn is_unset(self) -> bool {
        self.0 == 0
    }
    /// The fraction in nanoseconds (rounded down, as tcpdump prints it).
    #[must_use]
    pub fn nanos(self) -> u32 {
        ((u64::from(self.fraction()) * 1_000_000_000) >> 32) as u32
    }
    /// Seconds since the Unix epoch, with era handling: seconds with the top bit clear are taken
    /// to be in era 1 (from 2036-02-07), as RFC 4330 §3 and most implementations do, so that
    /// the 32-bit seconds field keeps working until 2104.
    #[must_use]
    pub fn unix_seconds(self) -> i64 {
        let secs = i64::from(self.seconds());
        let era = if self.seconds() & 0x8000_0000 == 0 {
            1i64 << 32
        } else {
            0
        };
        secs + era - NTP_UNIX_OFFSET
    }
    /// The UTC time this timestamp stands for, or `None` when unset.
    #[must_use]
    pub fn to_utc(self) -> Option<DateTime<Utc>> {
        if self.is_unset() {
            return None;
        }
        DateTime::from_timestamp(self.unix_seconds(), self.nanos())
    }
}

/// Year, month (1-12) and day (1-31) of `days` since 1970-01-01, proleptic Gregorian
/// (H. Hinnant's `civil_from_days`). Cheaper per packet than a calendar library.
#[must_use]
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Append `n` in decimal, zero-padded to `width` digits.
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// Append `YYYY-MM-DD` and, with `sep`, `{sep}HH:MM:SS` for `secs` since the Unix epoch.
pub fn push_date_time(out: &mut String, secs: i64, sep: Option<char>) {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    if y < 0 {
        out.push('-');
    }
    push_padded(out, y.unsigned_abs(), 4);
    out.push('-');
    push_padded(out, u64::from(m), 2);
    out.push('-');
    push_padded(out, u64::from(d), 2);
    if let Some(sep) = sep {
        let sod = secs.rem_euclid(86_400) as u64;
        out.push(sep);
        push_padded(out, sod / 3600, 2);
        out.push(':');
        push_padded(out, sod / 60 % 60, 2);
        out.push(':');
        push_padded(out, sod % 60, 2);
    }
}

/// A 32-bit NTP short format value: 16 bits of seconds, 16 bits of fraction (RFC 5905 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NtpShort(pub u32);

impl NtpShort {
    /// In seconds.
    #[must_use]
    pub fn seconds(self) -> f64 {
        f64::from(self.0) / 65536.0
    }
}

/// `2^exp` seconds, for the poll and precision fields (log2 seconds, RFC 5905 §7.3).
#[must_use]
pub fn log2_seconds(exp: i8) -> f64 {
    2f64.powi(i32::from(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_in_era_0() {
        // tcpdump -v on ntp-time.pcap, packet 2: "Transmit Timestamp: 3712483316.929948437
        // (2017-08-23T13:21:56Z)" for the bytes dd47fff4 ee1119cf.
        let ts = NtpTimestamp(0xdd47_fff4_ee11_19cf);
        assert_eq!((ts.seconds(), ts.nanos()), (3_712_483_316, 929_948_437));
        assert_eq!(
            ts.to_utc()
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
            "2017-08-23T13:21:56Z"
        );
    }

    #[test]
    fn timestamp_after_2036_pivot() {
        // Seconds with the top bit clear belong to era 1: 1802554105 is 2093-03-22T03:56:41Z
        // (tcpdump's ntp-v.out, packet 3).
        let ts = NtpTimestamp(1_802_554_105u64 << 32);
        assert_eq!(
            ts.to_utc()
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
            "2093-03-22T03:56:41Z"
        );
    }

    #[test]
    fn civil_dates_agree_with_chrono() {
        for days in (-800_000i64..800_000).step_by(997) {
            let secs = days * 86_400 + 3723;
            let mut ours = String::new();
            push_date_time(&mut ours, secs, Some('T'));
            let want = DateTime::from_timestamp(secs, 0).unwrap();
            assert_eq!(
                ours,
                want.format("%Y-%m-%dT%H:%M:%S").to_string(),
                "day {days}"
            );
        }
    }

    #[test]
    fn zero_is_unset() {
        assert!(NtpTimestamp(0).to_utc().is_none());
    }
}
