//! Patterns across packets that an investigator of suspicious NTP asks about, where single
//! packets say nothing: amplification through a server on this host, reflection onto this host,
//! a client's TTL or hop limit changing (a second sender with its address), a falseticker among
//! the servers this host uses, one direction of a server's path being delayed, and NTS given
//! up between a client and a server.
//!
//! Every detector keeps its state in a [`Table`] of fixed capacity: memory is bounded whatever
//! the traffic (see [`PatternLimits::bound`]), and a flood of spoofed sources churns only the
//! light entries.

mod amplification;
mod hops;
mod nts;
mod reflection;
mod selection;
pub mod table;

use std::{net::IpAddr, time::Duration};

use serde::Serialize;

pub use self::table::Table;
use super::{Event, Observation, Role};
use crate::frame::Direction;

/// How long the windows of the amplification and reflection counts are.
pub const WINDOW: Duration = Duration::from_secs(10);

/// The thresholds of the events (0: that event never) and the detectors' capacities.
#[derive(Clone, Copy, Debug)]
pub struct PatternLimits {
    /// `amplification` when a client is sent this many times the bytes it sent, and at least
    /// [`amplification::LEAST_BYTES`], within a window.
    pub amplification: f64,
    /// `reflection` when this many unsolicited responses reach one address within a window.
    pub reflection: u64,
    /// `hop_limit_change` when this many requests of a client arrive with a TTL or hop limit
    /// other than the one it settled on.
    pub hop_limit: u64,
    /// `falseticker` when at least this many servers are in use.
    pub falseticker: usize,
    /// `delay_asymmetry` when a server's delay rises by at least this many seconds with its
    /// offset moving by half of it.
    pub asymmetry: f64,
    /// `nts_downgrade` on.
    pub nts: bool,
    /// Clients followed by the amplification and hop-limit detectors, each.
    pub clients: usize,
    /// (client, server) pairs remembered: requests this host sent (reflection), and NTS
    /// associations.
    pub pairs: usize,
    /// Addresses followed as reflection victims.
    pub victims: usize,
    /// Servers followed by the selection detectors.
    pub servers: usize,
}

impl Default for PatternLimits {
    fn default() -> Self {
        Self {
            amplification: 10.0,
            reflection: 100,
            hop_limit: 3,
            falseticker: 3,
            asymmetry: 0.005,
            nts: true,
            clients: 16_384,
            pairs: 16_384,
            victims: 256,
            servers: 256,
        }
    }
}

impl PatternLimits {
    /// An upper bound of the bytes the detectors take, whatever the traffic.
    #[must_use]
    pub fn bound(&self) -> usize {
        amplification::Amplification::bound(self.clients)
            + hops::HopLimits::bound(self.clients)
            + reflection::Reflection::bound(self.pairs, self.victims)
            + nts::Nts::bound(self.pairs)
            + selection::Selection::bound(self.servers)
    }
}

/// A completed exchange of this host with a server it uses, for the selection detectors.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// When the response was captured.
    pub ts: Duration,
    /// The server.
    pub server: IpAddr,
    /// Round-trip delay, seconds.
    pub delay: f64,
    /// Offset, seconds.
    pub offset: f64,
    /// What the server says of its own distance to the reference: root delay / 2 + root
    /// dispersion, seconds.
    pub root: f64,
}

/// The detectors; see the module's text.
pub struct Patterns {
    limits: PatternLimits,
    amplification: amplification::Amplification,
    reflection: reflection::Reflection,
    hops: hops::HopLimits,
    nts: nts::Nts,
    selection: selection::Selection,
}

impl std::fmt::Debug for Patterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patterns")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for Patterns {
    fn default() -> Self {
        Self::new(PatternLimits::default())
    }
}

impl Patterns {
    /// Detectors with `limits`.
    #[must_use]
    pub fn new(limits: PatternLimits) -> Self {
        Self {
            limits,
            amplification: amplification::Amplification::new(limits.clients),
            reflection: reflection::Reflection::new(limits.pairs, limits.victims),
            hops: hops::HopLimits::new(limits.clients),
            nts: nts::Nts::new(limits.pairs),
            selection: selection::Selection::new(limits.servers),
        }
    }

    /// Take one NTP packet; events go to `events`.
    pub fn packet(&mut self, p: &Observation<'_, '_>, events: &mut Vec<Event>) {
        let Some(role) = super::role(p.ntp) else {
            return;
        };
        let l = &self.limits;
        // A request this host received (a file has no directions: every one). On loopback a
        // server here and its client both are this host: each packet counts both ways.
        let direction = p.direction.filter(|_| !p.sighting.loopback);
        let came_in = direction != Some(Direction::Out);
        let went_out = direction != Some(Direction::In);
        match role {
            Role::Request(mode, code) => {
                if came_in {
                    self.amplification.request(p, (mode, code), l.amplification);
                    if l.hop_limit > 0
                        && let Some(hops) = p.hop_limit
                    {
                        self.hops.request(p, hops, l.hop_limit, events);
                    }
                }
                if went_out && l.reflection > 0 {
                    self.reflection.asked(p);
                }
            }
            Role::Response => {
                if went_out {
                    self.amplification.reply(p, l.amplification, events);
                }
                if came_in && l.reflection > 0 {
                    self.reflection.response(p, l.reflection, events);
                }
            }
        }
        if l.nts {
            self.nts.packet(p, role, events);
        }
    }

    /// Take one completed exchange of this host with a server it uses.
    pub fn sample(&mut self, s: &Sample, events: &mut Vec<Event>) {
        self.selection
            .sample(s, (self.limits.falseticker, self.limits.asymmetry), events);
    }

    /// What the detectors suspect now, for `--stats`.
    #[must_use]
    pub fn suspects(&self, now: Duration) -> Suspects {
        Suspects {
            amplification: self.amplification.suspects(now, self.limits.amplification),
            reflection: self.reflection.suspects(now),
            hop_limits: self.hops.suspects(),
            falsetickers: self.selection.falsetickers(),
            asymmetric: self.selection.asymmetric(),
            nts_downgrades: self.nts.suspects(),
        }
    }
}

/// The current suspects, busiest first, at most [`SUSPECTS`] of each kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Suspects {
    /// (client, bytes out / bytes in, bytes out) this window, past the ratio.
    pub amplification: Vec<(IpAddr, f64, u64)>,
    /// (victim, unsolicited responses, distinct reflectors) this window.
    pub reflection: Vec<(IpAddr, u64, u64)>,
    /// (client, settled value, other value, requests with the other).
    pub hop_limits: Vec<(IpAddr, u8, u8, u64)>,
    /// Servers outside the majority now.
    pub falsetickers: Vec<IpAddr>,
    /// Servers whose path is asymmetric now.
    pub asymmetric: Vec<IpAddr>,
    /// (client, server) pairs whose NTS went away.
    pub nts_downgrades: Vec<(IpAddr, IpAddr)>,
}

/// Suspects of each kind listed at most.
pub const SUSPECTS: usize = 10;

impl Suspects {
    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.amplification.is_empty()
            && self.reflection.is_empty()
            && self.hop_limits.is_empty()
            && self.falsetickers.is_empty()
            && self.asymmetric.is_empty()
            && self.nts_downgrades.is_empty()
    }
}

/// The busiest `SUSPECTS` of `v` by `key`, largest first.
fn busiest<T, K: PartialOrd>(mut v: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    v.sort_by(|a, b| {
        key(b)
            .partial_cmp(&key(a))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    v.truncate(SUSPECTS);
    v
}
