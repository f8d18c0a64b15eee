//! What the tracker knows of each server: its exchanges' health, the fates of requests
//! without a real answer, and per process.

use std::{collections::BTreeMap, net::IpAddr};

use serde::Serialize;

use super::latency::Samples;

/// One process's exchanges with one server (process attribution).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcessExchanges {
    /// The process, as `comm[pid]` (escaped).
    pub process: String,
    /// The server.
    pub server: Option<IpAddr>,
    /// Requests the process sent the server.
    pub requests: u64,
    /// Their responses.
    pub responses: u64,
    /// Requests without a response within the timeout (or evicted).
    pub unanswered: u64,
}

/// What became of the requests to one server that got no real answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Fates {
    /// The request or its reply was dropped in this host, by the kernel's reason.
    pub dropped: BTreeMap<String, u64>,
    /// The request came in and was not dropped (it reached the socket, or nothing took it
    /// that the kernel calls a drop), and no reply left: the daemon ignored it or rate-limited it.
    pub ignored: u64,
    /// The request went out (a client on this host) and no reply came back to this host.
    pub no_reply_seen: u64,
    /// No reply, and which way the request went is unknown (a capture file without
    /// directions).
    pub unknown: u64,
    /// The request was answered with a kiss-o'-death (counted as a response too).
    pub kiss_of_death: u64,
}

impl Fates {
    /// Every fate with its count, `dropped` once per reason as `dropped:REASON`.
    #[must_use]
    pub fn each(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .dropped
            .iter()
            .map(|(r, n)| (format!("dropped:{r}"), *n))
            .collect();
        all.extend([
            ("ignored".to_owned(), self.ignored),
            ("no_reply_seen".to_owned(), self.no_reply_seen),
            ("unknown".to_owned(), self.unknown),
            ("kiss_of_death".to_owned(), self.kiss_of_death),
        ]);
        all
    }

    /// Drops over every reason.
    #[must_use]
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// What the tracker knows of one server.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerHealth {
    /// Server address.
    pub server: Option<IpAddr>,
    /// A server on this host: requests to it came in (not on loopback) or it answered them on
    /// the way out. Its exchanges are served traffic (the clients table); as seen from the
    /// host it runs on they say nothing of a delay, which stays unset (its offset, its
    /// timestamps against this host's clock, is kept for `offset_step`, not shown as a
    /// server's).
    pub local: bool,
    /// Requests seen to it.
    pub requests: u64,
    /// Responses paired with a request.
    pub responses: u64,
    /// Requests without a response within the timeout (or evicted).
    pub unanswered: u64,
    /// Last round-trip delay, seconds.
    pub delay: Option<f64>,
    /// Smallest delay seen, seconds.
    pub min_delay: Option<f64>,
    /// Last offset of the server's clock from the capturing host's, seconds.
    pub offset: Option<f64>,
    /// Offset at the smallest delay (the best estimate, as NTP's clock filter picks it).
    pub best_offset: Option<f64>,
    /// Last server processing time (T3 - T2), seconds.
    pub processing: Option<f64>,
    /// Last stratum.
    pub stratum: Option<u8>,
    /// Last reference ID, as text.
    pub refid: Option<String>,
    /// Last reference ID, the four bytes as one big-endian number (changes show as a new
    /// value).
    pub refid_raw: Option<u32>,
    /// Last root delay the server reported, seconds.
    pub root_delay: Option<f64>,
    /// Last root dispersion the server reported, seconds.
    pub root_dispersion: Option<f64>,
    /// Last leap indicator.
    pub leap: Option<u8>,
    /// Kiss-o'-death codes received, by code.
    pub kiss_codes: BTreeMap<String, u64>,
    /// What became of the unanswered requests (and those answered with a kiss-o'-death).
    pub fates: Fates,
    /// In-host latency of its exchanges through this host, by stage: p50 and p99 of the
    /// last samples (see [`latency`]).
    pub latency: Samples,
    /// Requests to it unanswered in a row, up to now.
    pub unanswered_run: u64,
}
