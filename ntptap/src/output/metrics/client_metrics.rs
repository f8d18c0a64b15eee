//! The client analytics' metrics (a server on this host and its clients): counted per packet
//! from what the tracker made of it, and the distinct-client estimates once a second. No label
//! names a client.

use std::{collections::HashSet, time::Duration};

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::{super::decoded::Decoded, series::Series};
use crate::exchange::{
    Tracker,
    clients::{POLL_BUCKETS, Served},
};

type Labels = Vec<(String, String)>;

/// Server addresses with a `server` label of their own on `server_replies_total`; replies
/// from more (a file without directions) count as `other`.
const SERVER_LABELS: usize = 64;

pub(super) struct ClientMetrics {
    distinct: Family<Labels, Gauge>,
    /// By NTP version, mode, and NTS.
    requests: Series<(u8, u8, bool), Counter>,
    /// By the server's address.
    replies: Series<std::net::IpAddr, Counter>,
    poll: Histogram,
    kisses: Family<Labels, Counter>,
    /// By mode and origin.
    queries: Series<(u8, bool), Counter>,
    servers: HashSet<String>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Bucket bounds of the poll histogram: 2^(k + ½) s, so that a client polling every 2^k s
/// (with a little jitter) falls in the bucket `le` = 2^(k + ½) and not on a boundary.
#[must_use]
pub fn poll_bounds() -> Vec<f64> {
    (0..POLL_BUCKETS)
        .map(|k| 2f64.powf(k as f64 + 0.5))
        .collect()
}

impl ClientMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let distinct = Family::<Labels, Gauge>::default();
        registry.register(
            "clients_distinct",
            "Distinct clients of a server on this host, estimated (HyperLogLog, standard error 0.81 %): since the start (window=\"all\") and over the sliding window (window=\"300s\")",
            distinct.clone(),
        );
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "clients_requests",
            "Requests to a server on this host, by NTP version, mode and whether NTS protects them (they are also in server_requests_total, by server address)",
            requests.clone(),
        );
        let replies = Family::<Labels, Counter>::default();
        registry.register(
            "server_replies",
            "Replies a server on this host sent (kiss-o'-death included), by its address",
            replies.clone(),
        );
        let poll = Histogram::new(poll_bounds());
        registry.register(
            "client_poll_seconds",
            "Intervals between successive mode 3 requests of one client to a server on this host (bucket bounds 2^(k+0.5) s: a client polling every 2^k s falls in le=2^(k+0.5))",
            poll.clone(),
        );
        let kisses = Family::<Labels, Counter>::default();
        registry.register(
            "kiss_of_death_sent",
            "Kiss-o'-death packets a server on this host sent, by code (the first 16 codes, then other)",
            kisses.clone(),
        );
        let queries = Family::<Labels, Counter>::default();
        registry.register(
            "clients_queries",
            "Mode 6 and mode 7 queries to a server on this host, by origin (local: loopback, private or link-local addresses; remote: the rest)",
            queries.clone(),
        );
        Self {
            distinct,
            requests: Series::new(requests),
            replies: Series::new(replies),
            poll,
            kisses,
            queries: Series::new(queries),
            servers: HashSet::new(),
        }
    }

    /// Count one packet.
    pub(super) fn frame(&mut self, packet: &Decoded<'_>) {
        let Some(served) = &packet.served else {
            return;
        };
        let Some((src, _, ntp)) = packet.ntp_packet() else {
            return;
        };
        match served {
            Served::Request { poll, nts, query } => {
                let (version, mode) = (ntp.version, ntp.mode.to_bits());
                self.requests
                    .get((version, mode, *nts), || {
                        labels(&[
                            ("version", &version.to_string()),
                            ("mode", &mode.to_string()),
                            ("nts", if *nts { "true" } else { "false" }),
                        ])
                    })
                    .inc();
                if let Some(seconds) = poll {
                    self.poll.observe(*seconds);
                }
                if let Some((mode, local)) = query {
                    self.queries
                        .get((*mode, *local), || {
                            labels(&[
                                ("mode", &mode.to_string()),
                                ("origin", if *local { "local" } else { "remote" }),
                            ])
                        })
                        .inc();
                }
            }
            Served::Reply { kiss } => {
                let servers = &mut self.servers;
                self.replies
                    .get(src.ip(), || {
                        // Its own label while there is room, and for good: the set only grows.
                        let mut address = src.ip().to_string();
                        if !servers.contains(&address) {
                            if servers.len() < SERVER_LABELS {
                                servers.insert(address.clone());
                            } else {
                                "other".clone_into(&mut address);
                            }
                        }
                        labels(&[("server", &address)])
                    })
                    .inc();
                if let Some(code) = kiss {
                    self.kisses.get_or_create(&labels(&[("code", code)])).inc();
                }
            }
        }
    }

    /// The distinct-client estimates, as of `now`.
    pub(super) fn render(&self, tracker: &Tracker, now: Option<Duration>) {
        let clients = tracker.clients();
        if clients.requests() == 0 {
            return;
        }
        let r = clients.report(now);
        let window = format!("{}s", r.window_seconds);
        for (label, n) in [("all", r.distinct), (window.as_str(), r.window_distinct)] {
            self.distinct
                .get_or_create(&labels(&[("window", label)]))
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
