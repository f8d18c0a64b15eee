//! NTP exchange health read off the wire: each request paired with its response, and per
//! server: round-trip delay and offset (RFC 5905 §8), server processing time, stratum,
//! reference ID and leap, unanswered requests, kiss-o'-death codes; plus events worth an
//! operator's attention. Knows NTP and addresses, nothing of BPF or files.
//!
//! T1 and T4 are the capture times of the request and the response, not the client's own
//! timestamps: the numbers describe the server as seen from the capturing host, and stay right
//! when a client fills its transmit timestamp with random bits (as chrony does).

pub mod clients;
pub mod event;
pub mod health;
pub mod latency;
pub mod patterns;
mod pending;
pub mod residence;
pub mod tracker;

/// The tables keyed by what packets say (addresses, ports, requests): foldhash, seeded at
/// random per process, so a forged flood cannot aim at its collisions. SipHash, std's
/// default, was 15 % of the reader's CPU under the bench's flood with a pcapng file.
pub(crate) type Table<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// How much pairing of requests with replies the outputs need.
#[derive(Clone, Copy, Debug)]
pub enum Pairing {
    /// None: no output shows what pairing finds.
    None,
    /// A local server's residence alone, for a pcapng file's comments:
    /// [`residence::Residence`], within these bounds.
    Residence(Limits),
    /// Everything the [`Tracker`] keeps, within these bounds.
    Full(Limits),
}

pub use self::{
    event::Event,
    health::{Fates, ProcessExchanges, ServerHealth},
    patterns::{PatternLimits, Suspects},
    tracker::{Exchange, Limits, Observation, Observed, Tracker},
};

/// What a packet asks or answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Mode 1 or 3, or a mode 6 or 7 query: the mode, and the opcode or request code.
    Request(u8, Option<u8>),
    /// Mode 2 or 4, or a mode 6 or 7 response.
    Response,
}

pub(crate) fn role(ntp: &crate::ntp::Ntp) -> Option<Role> {
    use crate::ntp::{Body, Mode};
    match &ntp.body {
        Body::Control(c) if c.response => Some(Role::Response),
        Body::Control(c) => Some(Role::Request(6, Some(c.opcode))),
        Body::Private(p) if p.response => Some(Role::Response),
        Body::Private(p) => Some(Role::Request(7, Some(p.request_code))),
        _ => match ntp.mode {
            Mode::SymmetricActive => Some(Role::Request(1, None)),
            Mode::Client => Some(Role::Request(3, None)),
            Mode::SymmetricPassive | Mode::Server => Some(Role::Response),
            _ => None,
        },
    }
}
