//! `reflection`: NTP responses reaching this host from servers it never asked. The requests this
//! host sends are remembered by (client address, server address) for [`ASKED_FOR`]; a response
//! from a server to an address that did not ask it is unsolicited, and counted per victim
//! address over a window with the distinct servers that sent them. An event when
//! [`PatternLimits::reflection`] arrive within one window.
//!
//! A response can be read before its request (each CPU has its ring): the first exchange with
//! a new server may count one response as unsolicited, which no threshold above one notices.
//!
//! [`PatternLimits::reflection`]: super::PatternLimits::reflection

use std::{net::IpAddr, time::Duration};

use cardinality_estimator::CardinalityEstimator;

use super::{Observation, Table, WINDOW, busiest};
use crate::exchange::Event;

/// How long a request makes its server's responses solicited: past the longest poll interval
/// (2^17 s in RFC 5905) a client that still uses a server has asked again.
pub const ASKED_FOR: Duration = Duration::from_secs(1 << 17);

/// Distinct reflectors: HyperLogLog of 2^10 registers (3 % error), exact up to a few.
type Reflectors = CardinalityEstimator<IpAddr, std::hash::DefaultHasher, 10, 6>;
/// Bytes one [`Reflectors`] sketch takes at most on the heap.
const SKETCH_BYTES: usize = (1 << 10) * 6 / 8 + 64;

/// One victim's window.
pub struct Window {
    start: Duration,
    packets: u64,
    bytes: u64,
    reflectors: Reflectors,
    said: bool,
}

impl Window {
    fn new(start: Duration) -> Self {
        Self {
            start,
            packets: 0,
            bytes: 0,
            reflectors: Reflectors::new(),
            said: false,
        }
    }

    fn current(&self, now: Duration) -> bool {
        now.saturating_sub(self.start) < WINDOW
    }
}

/// See the module's text.
pub struct Reflection {
    /// (client, server) -> when the client last asked the server.
    asked: Table<(IpAddr, IpAddr), Duration>,
    victims: Table<IpAddr, Window>,
}

impl Reflection {
    pub fn new(pairs: usize, victims: usize) -> Self {
        Self {
            asked: Table::new(pairs),
            victims: Table::new(victims),
        }
    }

    pub fn bound(pairs: usize, victims: usize) -> usize {
        Table::<(IpAddr, IpAddr), Duration>::bound(pairs)
            + Table::<IpAddr, Window>::bound(victims)
            + victims * SKETCH_BYTES
    }

    /// A request went out from this host.
    pub fn asked(&mut self, p: &Observation<'_, '_>) {
        // The oldest request goes first when the table is full.
        let at = self.asked.entry(
            (p.src.ip(), p.dst.ip()),
            || p.ts,
            |&t| u64::MAX - t.as_secs(),
        );
        *at = (*at).max(p.ts);
    }

    /// A response came in.
    pub fn response(&mut self, p: &Observation<'_, '_>, threshold: u64, events: &mut Vec<Event>) {
        let (victim, server) = (p.dst.ip(), p.src.ip());
        if self
            .asked
            .get(&(victim, server))
            .is_some_and(|&t| p.ts.saturating_sub(t) < ASKED_FOR)
        {
            return;
        }
        let w = self.victims.entry(
            victim,
            || Window::new(p.ts),
            |w| if w.current(p.ts) { w.packets } else { 0 },
        );
        if !w.current(p.ts) {
            *w = Window::new(p.ts);
        }
        w.packets += 1;
        w.bytes += u64::from(p.wire_len);
        w.reflectors.insert(&server);
        if w.said || w.packets < threshold {
            return;
        }
        w.said = true;
        events.push(Event::Reflection {
            victim,
            reflectors: w.reflectors.estimate() as u64,
            packets: w.packets,
            bytes: w.bytes,
            seconds: p.ts.saturating_sub(w.start).as_secs_f64(),
        });
    }

    /// Victims past the threshold this window: (victim, packets, reflectors).
    pub fn suspects(&self, now: Duration) -> Vec<(IpAddr, u64, u64)> {
        let v = self
            .victims
            .iter()
            .filter(|(_, w)| w.current(now) && w.said)
            .map(|(v, w)| (*v, w.packets, w.reflectors.estimate() as u64))
            .collect();
        busiest(v, |s| s.1)
    }
}
