//! `hop_limit_change`: a client's requests all arrive with the same TTL (IPv4) or hop limit
//! (IPv6) while the path stays the same. Once [`SETTLE`] requests in a row agree, that value is
//! the client's; [`PatternLimits::hop_limit`] requests with another value make an event naming
//! the client, both values and how many requests had each: a classic sign that someone else
//! sends with the client's address. A route that really changed shows [`RESETTLE`] requests in
//! a row with the new value, which becomes the client's (after one event).
//!
//! Hosts behind one NAT address with different operating systems (64 and 128) look the same;
//! the event says what it saw, the investigator decides.
//!
//! [`PatternLimits::hop_limit`]: super::PatternLimits::hop_limit

use std::{net::IpAddr, time::Duration};

use super::{Observation, Table, busiest};
use crate::exchange::Event;

/// Requests in a row with one value before it is the client's.
pub const SETTLE: u32 = 4;
/// Requests in a row with another value before that one becomes the client's.
pub const RESETTLE: u32 = 16;
/// A client silent this long weighs nothing when room is needed.
const FORGET: Duration = Duration::from_hours(1);

/// One client's values.
#[derive(Debug, Default)]
pub struct Hops {
    last_seen: Duration,
    /// The value it settled on (while `settled`), or the one being counted.
    value: u8,
    settled: bool,
    /// Requests with `value`.
    count: u32,
    /// Another value, and requests with it since the settling.
    other: u8,
    other_count: u32,
    /// Requests in a row with `other`.
    run: u32,
    said: bool,
}

impl Hops {
    fn weight(&self, now: Duration) -> u64 {
        if now.saturating_sub(self.last_seen) > FORGET {
            0
        } else {
            u64::from(self.count) + u64::from(self.other_count)
        }
    }

    /// Take one request's value; whether it makes the event.
    fn take(&mut self, hops: u8, threshold: u64) -> bool {
        if !self.settled {
            if self.count > 0 && hops == self.value {
                self.count += 1;
            } else {
                (self.value, self.count) = (hops, 1);
            }
            self.settled = self.count >= SETTLE;
            return false;
        }
        if hops == self.value {
            self.count = self.count.saturating_add(1);
            self.run = 0;
            return false;
        }
        if hops != self.other {
            (self.other, self.other_count, self.run) = (hops, 0, 0);
        }
        self.other_count = self.other_count.saturating_add(1);
        self.run += 1;
        let event = !self.said && u64::from(self.other_count) >= threshold;
        self.said |= event;
        if self.run >= RESETTLE {
            // The path changed: the new value is the client's.
            *self = Hops {
                last_seen: self.last_seen,
                value: hops,
                settled: true,
                count: self.run,
                ..Hops::default()
            };
        }
        event
    }
}

/// See the module's text.
pub struct HopLimits {
    clients: Table<IpAddr, Hops>,
}

impl HopLimits {
    pub fn new(clients: usize) -> Self {
        Self {
            clients: Table::new(clients),
        }
    }

    pub fn bound(clients: usize) -> usize {
        Table::<IpAddr, Hops>::bound(clients)
    }

    /// A request came in from a client with `hops`.
    pub fn request(
        &mut self,
        p: &Observation<'_, '_>,
        hops: u8,
        threshold: u64,
        events: &mut Vec<Event>,
    ) {
        let client = p.src.ip();
        let h = self
            .clients
            .entry(client, Hops::default, |h| h.weight(p.ts));
        h.last_seen = h.last_seen.max(p.ts);
        let (from, count) = (h.value, h.count);
        if h.take(hops, threshold) {
            events.push(Event::HopLimitChange {
                client,
                from,
                to: hops,
                packets_from: u64::from(count),
                packets_to: u64::from(h.other_count),
            });
        }
    }

    /// Clients with requests of another value than theirs: (client, theirs, other, requests).
    pub fn suspects(&self) -> Vec<(IpAddr, u8, u8, u64)> {
        let v = self
            .clients
            .iter()
            .filter(|(_, h)| h.said)
            .map(|(c, h)| (*c, h.value, h.other, u64::from(h.other_count)))
            .collect();
        busiest(v, |s| s.3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_sender_is_told_once_and_a_new_path_settles() {
        let mut h = Hops::default();
        let said: Vec<bool> = [64, 64, 64, 64, 64, 64, 200, 64, 200, 200, 200]
            .into_iter()
            .map(|v| h.take(v, 3))
            .collect();
        assert_eq!(said.iter().filter(|s| **s).count(), 1);
        assert!(said[9], "the third request with 200 makes the event");
        // Noise before settling makes nothing.
        let mut h = Hops::default();
        assert!(![64, 63, 64, 62, 64].into_iter().any(|v| h.take(v, 1)));
        // A route change: one event, then the new value is the client's.
        let mut h = Hops::default();
        let n = [64; 8]
            .into_iter()
            .chain([63; 40])
            .filter(|v| h.take(*v, 3))
            .count();
        assert_eq!(n, 1);
        assert_eq!((h.value, h.settled, h.said), (63, true, false));
    }
}
