//! A local server's residence alone: each request that came in paired with the reply that goes
//! out, and nothing else the tracker keeps (server health, client analytics, processes,
//! patterns, events). It is what a pcapng file's comments need of pairing, where no other
//! output asks for the tracker: under the bench's flood the whole tracker made `-w
//! FILE.pcapng` cost 1.2 µs a packet (BENCHMARKS.md, "The reader against its floor").
//!
//! It pairs as the tracker does, within the same bounds (requests waiting, the timeout), and a
//! reply's latency is the tracker's ([`super::latency::of_reply`]). One difference: a reply
//! read before its request (another CPU's ring) has no latency in either, but the tracker then
//! takes the request as answered where this keeps it waiting until the timeout.

use std::{net::SocketAddr, time::Duration};

use super::{
    Limits, Observation,
    latency::{Latency, of_reply},
    pending::{Key, Seen, Waiting},
};
use crate::{
    frame::Direction,
    ntp::{Body, Mode},
};

/// A request waiting for its reply.
#[derive(Debug)]
struct Asked {
    seen: Duration,
    mono: Option<u64>,
    direction: Option<Direction>,
}

impl Seen for Asked {
    fn seen(&self) -> Duration {
        self.seen
    }
}

/// Requests waiting for their replies, for the replies' in-host latency.
#[derive(Debug)]
pub struct Residence {
    waiting: Waiting<Asked>,
    /// Most requests waiting.
    most: usize,
    timeout: Duration,
}

impl Residence {
    /// A pairing within the tracker's bounds `limits` (requests waiting, timeout).
    #[must_use]
    pub fn new(limits: &Limits) -> Self {
        Self {
            waiting: Waiting::default(),
            most: limits.pending,
            timeout: limits.timeout,
        }
    }

    /// Take one observed NTP packet; a reply's in-host latency, as the tracker would give it.
    pub fn observe(&mut self, o: &Observation<'_, '_>) -> Latency {
        self.expire(o.ts);
        let Body::Time(h) = &o.ntp.body else {
            return Latency::default();
        };
        match o.ntp.mode {
            Mode::Client | Mode::SymmetricActive => {
                self.wait(
                    (o.src, o.dst, h.transmit.0),
                    o.ts,
                    o.sighting.mono_ns,
                    o.direction,
                );
                Latency::default()
            }
            Mode::Server | Mode::SymmetricPassive => {
                match self.waiting.remove(&Key::new(o.dst, o.src, h.origin.0)) {
                    Some(a) => of_reply(
                        h,
                        (a.seen, a.mono, a.direction),
                        o.ts,
                        o.direction,
                        o.sighting,
                    ),
                    None => Latency::default(),
                }
            }
            _ => Latency::default(),
        }
    }

    /// Take a request (client or symmetric active mode, a whole time header) from `src` to
    /// `dst` that carried `transmit`, seen at `seen` (its record's monotonic time `mono`)
    /// going `direction`: what [`Residence::observe`] does with one, for a request known by
    /// its bytes alone ([`crate::output::Decoded::request`]), which need not be decoded.
    pub fn asked(
        &mut self,
        request: (SocketAddr, SocketAddr, u64),
        seen: Duration,
        mono: Option<u64>,
        direction: Option<Direction>,
    ) {
        self.expire(seen);
        self.wait(request, seen, mono, direction);
    }

    /// A request waits (the oldest evicted when the table is full); expired ones are gone.
    fn wait(
        &mut self,
        (src, dst, transmit): (SocketAddr, SocketAddr, u64),
        seen: Duration,
        mono: Option<u64>,
        direction: Option<Direction>,
    ) {
        if self.waiting.len() >= self.most {
            self.waiting.pop_oldest();
        }
        self.waiting.insert(
            Key::new(src, dst, transmit),
            Asked {
                seen,
                mono,
                direction,
            },
        );
    }

    /// Forget the requests older than the timeout at `now`.
    pub fn expire(&mut self, now: Duration) {
        while self.waiting.pop_expired(now, self.timeout).is_some() {}
    }

    /// Requests waiting.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }
}
