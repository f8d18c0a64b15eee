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
    /// As seconds (with fraction) since the NTP epoch of its era, for differences.
    #[must_use]
    pub fn as_f64(self) -> f64 {
        f64::from(self.seconds()) + f64::from(self.fraction()) / 4_294_967_296.0
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
    fn zero_is_unset() {
        assert!(NtpTimestamp(0).to_utc().is_none());
    }
}
