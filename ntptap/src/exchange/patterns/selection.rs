//! What the servers this host uses say against each other, from the wire's own samples (capture
//! times as T1 and T4).
//!
//! `falseticker`: each server's latest sample is the interval offset ± root distance (delay / 2,
//! plus root delay / 2 and root dispersion as the server gives them, RFC 5905 §10); with
//! [`PatternLimits::falseticker`] servers or more in use, the intersection algorithm (RFC 5905
//! §11.2.1, after Marzullo) finds the interval that most of them share, allowing f falsetickers
//! for f = 0, 1, ... while 2f < m; a server whose interval misses it is a falseticker. An event
//! when a server becomes one; none when no majority agrees.
//!
//! `delay_asymmetry`: delaying one direction of a path by d raises the delay by d and moves the
//! offset by d / 2 (up when the request is late, down when the reply is). Against the sample
//! with the least delay of the last [`HISTORY`], [`IN_A_ROW`] samples in a row whose delay rose
//! by [`PatternLimits::asymmetry`] or more with the offset moved by 0.3 to 0.7 of the rise make
//! an event; another only after the delay came back.
//!
//! [`PatternLimits::falseticker`]: super::PatternLimits::falseticker
//! [`PatternLimits::asymmetry`]: super::PatternLimits::asymmetry

use std::{collections::VecDeque, net::IpAddr, time::Duration};

use super::{Sample, Table};
use crate::exchange::Event;

/// Samples a server's baseline is taken from.
pub const HISTORY: usize = 32;
/// Samples in a row that must show the asymmetry.
pub const IN_A_ROW: u32 = 3;
/// A server whose last sample is older than this is not in use: past chronyd's and ntpd's
/// longest default poll (1024 s), four times over.
const IN_USE: Duration = Duration::from_secs(4096);

/// One server's samples.
#[derive(Debug, Default)]
pub struct Server {
    last: Option<Sample>,
    history: VecDeque<(f64, f64)>,
    falseticker: bool,
    /// Samples in a row showing asymmetry, and whether it was told.
    asymmetric: u32,
    episode: bool,
}

/// See the module's text.
pub struct Selection {
    servers: Table<IpAddr, Server>,
}

impl Selection {
    pub fn new(servers: usize) -> Self {
        Self {
            servers: Table::new(servers),
        }
    }

    pub fn bound(servers: usize) -> usize {
        Table::<IpAddr, Server>::bound(servers)
            + servers * HISTORY.next_power_of_two() * size_of::<(f64, f64)>()
    }

    pub fn sample(&mut self, s: &Sample, (needed, rise): (usize, f64), events: &mut Vec<Event>) {
        if !(s.delay.is_finite() && s.offset.is_finite() && s.root.is_finite()) {
            return;
        }
        let server = self.servers.entry(s.server, Server::default, |v| {
            v.last
                .map_or(0, |l| u64::MAX - l.ts.as_secs().min(u64::MAX / 2))
        });
        server.last = Some(*s);
        if rise > 0.0 {
            asymmetry(server, s, rise, events);
        }
        if server.history.len() == HISTORY {
            server.history.pop_front();
        }
        server.history.push_back((s.delay, s.offset));
        if needed > 0 {
            self.select(s.ts, needed.max(3), events);
        }
    }

    /// The intersection algorithm over the servers in use at `now`.
    fn select(&mut self, now: Duration, needed: usize, events: &mut Vec<Event>) {
        if self.servers.len() < needed {
            return;
        }
        let samples: Vec<Sample> = self
            .servers
            .iter()
            .filter_map(|(_, v)| v.last)
            .filter(|l| now.saturating_sub(l.ts) <= IN_USE)
            .collect();
        let m = samples.len();
        if m < needed {
            return;
        }
        let interval = |s: &Sample| {
            let r = s.delay.max(0.0) / 2.0 + s.root.max(0.0);
            (s.offset - r, s.offset + r)
        };
        let Some((low, high)) = intersection(&samples.iter().map(interval).collect::<Vec<_>>())
        else {
            return;
        };
        let outside = |s: &Sample| {
            let (l, h) = interval(s);
            h < low || l > high
        };
        let agreeing = samples.iter().filter(|s| !outside(s)).count();
        for s in &samples {
            let Some(v) = self.servers.get_mut(&s.server) else {
                continue;
            };
            let now_false = outside(s);
            if now_false && !v.falseticker {
                let (l, h) = interval(s);
                events.push(Event::Falseticker {
                    server: s.server,
                    offset: s.offset,
                    low: l,
                    high: h,
                    majority_low: low,
                    majority_high: high,
                    servers: m,
                    agreeing,
                });
            }
            v.falseticker = now_false;
        }
    }

    /// Servers that are falsetickers now.
    pub fn falsetickers(&self) -> Vec<IpAddr> {
        self.servers_where(|s| s.falseticker)
    }

    /// Servers whose path is asymmetric now.
    pub fn asymmetric(&self) -> Vec<IpAddr> {
        self.servers_where(|s| s.episode)
    }

    /// The first [`super::SUSPECTS`] servers, in address order, that `now` holds for.
    fn servers_where(&self, now: impl Fn(&Server) -> bool) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .servers
            .iter()
            .filter(|(_, s)| now(s))
            .map(|(a, _)| *a)
            .collect();
        v.sort_unstable();
        v.truncate(super::SUSPECTS);
        v
    }
}

/// The delay-asymmetry test of one new sample against the server's history.
fn asymmetry(server: &mut Server, s: &Sample, rise: f64, events: &mut Vec<Event>) {
    let Some(&(delay_before, offset_before)) =
        server.history.iter().min_by(|a, b| a.0.total_cmp(&b.0))
    else {
        return;
    };
    let risen = s.delay - delay_before;
    let moved = s.offset - offset_before;
    if risen < rise / 2.0 {
        server.episode = false;
    }
    let shows = risen >= rise && (0.3..=0.7).contains(&(moved.abs() / risen));
    server.asymmetric = if shows { server.asymmetric + 1 } else { 0 };
    if server.asymmetric >= IN_A_ROW && !server.episode {
        server.episode = true;
        events.push(Event::DelayAsymmetry {
            server: s.server,
            path: if moved > 0.0 { "request" } else { "reply" },
            delay_before,
            delay_after: s.delay,
            offset_before,
            offset_after: s.offset,
            samples: server.asymmetric,
        });
    }
}

/// RFC 5905 §11.2.1: the interval shared by the most intervals, allowing f outliers for f =
/// 0, 1, ... while 2f < m; `None` when no majority shares one.
fn intersection(intervals: &[(f64, f64)]) -> Option<(f64, f64)> {
    let m = intervals.len();
    // Ends sorted; a low end before a high end at the same value (closed intervals).
    let mut ends: Vec<(f64, i32)> = intervals
        .iter()
        .flat_map(|&(l, h)| [(l, 1), (h, -1)])
        .collect();
    ends.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut f = 0;
    while 2 * f < m {
        let want = (m - f) as i32;
        let mut depth = 0;
        let low = ends.iter().find_map(|&(v, e)| {
            depth += e;
            (depth >= want).then_some(v)
        });
        depth = 0;
        let high = ends.iter().rev().find_map(|&(v, e)| {
            depth -= e;
            (depth >= want).then_some(v)
        });
        if let (Some(l), Some(h)) = (low, high)
            && l <= h
        {
            return Some((l, h));
        }
        f += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(server: u8, ts: u64, delay: f64, offset: f64) -> Sample {
        Sample {
            ts: Duration::from_secs(ts),
            server: IpAddr::from([192, 0, 2, server]),
            delay,
            offset,
            root: 0.0001,
        }
    }

    #[test]
    fn the_intersection_allows_a_minority_of_outliers() {
        assert_eq!(
            intersection(&[(-1.0, 1.0), (-0.5, 2.0), (0.0, 3.0)]),
            Some((0.0, 1.0))
        );
        assert_eq!(
            intersection(&[(-1.0, 1.0), (-0.5, 0.5), (10.0, 11.0)]),
            Some((-0.5, 0.5))
        );
        // Two against two: no majority.
        assert_eq!(
            intersection(&[(0.0, 1.0), (0.0, 1.0), (5.0, 6.0), (5.0, 6.0)]),
            None
        );
    }

    #[test]
    fn one_server_a_second_away_is_the_falseticker() {
        let mut sel = Selection::new(16);
        let mut events = Vec::new();
        for round in 0..5u64 {
            for (server, offset) in [(1, 0.0001), (2, -0.0002), (3, 0.0), (4, 1.0)] {
                sel.sample(
                    &sample(server, round * 64, 0.002, offset),
                    (3, 0.0),
                    &mut events,
                );
            }
        }
        let named: Vec<IpAddr> = events.iter().map(Event::subject).collect();
        assert_eq!(named, vec![IpAddr::from([192, 0, 2, 4])], "{events:?}");
        assert_eq!(sel.falsetickers(), named);
    }

    #[test]
    fn a_delayed_reply_path_is_an_asymmetry_and_jitter_is_not() {
        let mut sel = Selection::new(16);
        let mut events = Vec::new();
        for round in 0..20u64 {
            let jitter = (round % 3) as f64 * 0.0002;
            sel.sample(
                &sample(1, round, 0.001 + jitter, jitter / 2.0),
                (0, 0.005),
                &mut events,
            );
        }
        assert!(events.is_empty(), "{events:?}");
        for round in 20..30u64 {
            sel.sample(&sample(1, round, 0.051, -0.025), (0, 0.005), &mut events);
        }
        assert_eq!(events.len(), 1, "{events:?}");
        let Event::DelayAsymmetry { path, samples, .. } = &events[0] else {
            panic!("{events:?}");
        };
        assert_eq!((*path, *samples), ("reply", IN_A_ROW));
    }
}
