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
pub mod tracker;

pub use self::{
    event::Event,
    health::{Fates, ProcessExchanges, ServerHealth},
    patterns::{PatternLimits, Suspects},
    tracker::{Exchange, Limits, Observation, Observed, Tracker},
};
