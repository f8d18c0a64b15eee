//! The events worth an operator's attention that the tracker raises, as they are logged and
//! written in JSON.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use serde::Serialize;

/// Something worth an operator's attention.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A server sent a kiss-o'-death packet (RFC 5905 §7.4).
    KissOfDeath {
        /// The server.
        server: SocketAddr,
        /// The client it answered.
        client: SocketAddr,
        /// The kiss code (RATE, DENY, ...).
        code: String,
    },
    /// A mode 7 MON_GETLIST request: the monlist amplification attack (CVE-2013-5211).
    MonlistRequest {
        /// Sender.
        from: SocketAddr,
        /// Target.
        to: SocketAddr,
        /// 20 (MON_GETLIST) or 42 (MON_GETLIST_1).
        request_code: u8,
    },
    /// A mode 6 control query from an address that is not local.
    RemoteControlQuery {
        /// Sender.
        from: SocketAddr,
        /// Target.
        to: SocketAddr,
        /// The mode 6 opcode.
        opcode: u8,
    },
    /// A response that answers no request seen (possible spoofing, or capture started late).
    UnmatchedResponse {
        /// The responder.
        server: SocketAddr,
        /// Whom it answered.
        client: SocketAddr,
    },
    /// A server announces a leap second (LI 1 or 2).
    LeapAnnounced {
        /// The server.
        server: SocketAddr,
        /// 1: insert, 2: delete.
        leap: u8,
    },
    /// A server says it is not synchronized (stratum 16 or leap indicator 3).
    Unsynchronized {
        /// The server.
        server: SocketAddr,
        /// Its stratum.
        stratum: u8,
        /// Its leap indicator.
        leap: u8,
    },
    /// A server's offset moved by the step threshold or more from one exchange to the next
    /// (ntpd steps the clock past 128 ms).
    OffsetStep {
        /// The server.
        server: SocketAddr,
        /// The offset before, seconds.
        from: f64,
        /// The offset now, seconds.
        to: f64,
    },
    /// Requests to a server went unanswered this many times in a row.
    UnansweredRun {
        /// The server.
        server: IpAddr,
        /// How many.
        unanswered: u64,
    },
    /// A server's leap indicator changed, or its stratum went to or from 16.
    StatusChange {
        /// The server.
        server: SocketAddr,
        /// What changed: `leap 0 -> 1`, `stratum 2 -> 16`.
        what: String,
    },
    /// A version or mode no current implementation sends.
    Anomaly {
        /// Sender.
        from: SocketAddr,
        /// Target.
        to: SocketAddr,
        /// What is odd.
        what: String,
    },
    /// A server on this host sent a client much more than the client sent it, within a window:
    /// reflection and amplification through this host (the client is usually a spoofed
    /// victim). Bytes are frames on the wire.
    Amplification {
        /// The client (the victim, when its address was spoofed).
        client: IpAddr,
        /// The server on this host that answered.
        server: IpAddr,
        /// Bytes out to the client over bytes in from it.
        ratio: f64,
        /// Bytes the client sent.
        bytes_in: u64,
        /// Bytes sent to the client.
        bytes_out: u64,
        /// Requests from the client.
        packets_in: u64,
        /// Replies to the client.
        packets_out: u64,
        /// The requests by kind (`mode 3`, `mode 6 opcode 2`, `mode 7 request 42`).
        requests: BTreeMap<String, u64>,
        /// Seconds the counts cover.
        seconds: f64,
    },
    /// This host receives NTP responses it never asked for, in volume: it is the victim of a
    /// reflection attack through the servers that send them.
    Reflection {
        /// The address the responses go to (this host's).
        victim: IpAddr,
        /// Distinct servers that sent them (estimated past 64).
        reflectors: u64,
        /// Unsolicited responses.
        packets: u64,
        /// Their bytes on the wire.
        bytes: u64,
        /// Seconds the counts cover.
        seconds: f64,
    },
    /// A client's requests arrive with a TTL or hop limit other than the one it settled on:
    /// someone else may be sending with its address.
    HopLimitChange {
        /// The client.
        client: IpAddr,
        /// The value it settled on.
        from: u8,
        /// The value now seen.
        to: u8,
        /// Requests with `from`.
        packets_from: u64,
        /// Requests with `to`.
        packets_to: u64,
    },
    /// A server this host uses disagrees with the majority of the others (the intersection
    /// algorithm of RFC 5905 §11.2.1 over the wire's samples).
    Falseticker {
        /// The server.
        server: IpAddr,
        /// Its offset, seconds.
        offset: f64,
        /// Its interval: offset ± root distance (delay / 2 + root delay / 2 + root
        /// dispersion), seconds.
        low: f64,
        /// Upper end of its interval.
        high: f64,
        /// The interval the majority agrees on.
        majority_low: f64,
        /// Upper end of the majority's interval.
        majority_high: f64,
        /// Servers in use.
        servers: usize,
        /// Servers in the majority.
        agreeing: usize,
    },
    /// A server's delay rose and its offset moved by about half the rise: one direction of
    /// the path is being delayed (an on-path delay attack, or a queue on one way only).
    DelayAsymmetry {
        /// The server.
        server: IpAddr,
        /// The path that got slower: `request` (offset up) or `reply` (offset down).
        path: &'static str,
        /// Delay before, seconds (the least of the recent samples).
        delay_before: f64,
        /// Delay now, seconds.
        delay_after: f64,
        /// Offset before (of the sample with the least delay), seconds.
        offset_before: f64,
        /// Offset now, seconds.
        offset_after: f64,
        /// Samples in a row that showed it.
        samples: u32,
    },
    /// NTS protection went away between a client and a server.
    NtsDowngrade {
        /// The client.
        client: IpAddr,
        /// The server.
        server: IpAddr,
        /// `request_without_nts`: the client, after NTS requests, asks without them;
        /// `reply_without_authenticator`: the server answers an NTS request without its
        /// authenticator; `nts_nak`: the server sent an NTSN kiss-o'-death.
        what: &'static str,
    },
}

impl Event {
    /// The event's name, as its `event` field in JSON and its label in the metrics.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Event::KissOfDeath { .. } => "kiss_of_death",
            Event::MonlistRequest { .. } => "monlist_request",
            Event::RemoteControlQuery { .. } => "remote_control_query",
            Event::UnmatchedResponse { .. } => "unmatched_response",
            Event::LeapAnnounced { .. } => "leap_announced",
            Event::Unsynchronized { .. } => "unsynchronized",
            Event::OffsetStep { .. } => "offset_step",
            Event::UnansweredRun { .. } => "unanswered_run",
            Event::StatusChange { .. } => "status_change",
            Event::Anomaly { .. } => "anomaly",
            Event::Amplification { .. } => "amplification",
            Event::Reflection { .. } => "reflection",
            Event::HopLimitChange { .. } => "hop_limit_change",
            Event::Falseticker { .. } => "falseticker",
            Event::DelayAsymmetry { .. } => "delay_asymmetry",
            Event::NtsDowngrade { .. } => "nts_downgrade",
        }
    }

    /// The address the event is about, without a port (a forged flood varies the ports): the
    /// server, the client, the sender or the victim, as the event's kind says.
    #[must_use]
    pub fn subject(&self) -> IpAddr {
        match self {
            Event::KissOfDeath { server, .. }
            | Event::UnmatchedResponse { server, .. }
            | Event::LeapAnnounced { server, .. }
            | Event::Unsynchronized { server, .. }
            | Event::OffsetStep { server, .. }
            | Event::StatusChange { server, .. } => server.ip(),
            Event::MonlistRequest { from, .. }
            | Event::RemoteControlQuery { from, .. }
            | Event::Anomaly { from, .. } => from.ip(),
            Event::UnansweredRun { server, .. }
            | Event::Falseticker { server, .. }
            | Event::DelayAsymmetry { server, .. } => *server,
            Event::Amplification { client, .. }
            | Event::HopLimitChange { client, .. }
            | Event::NtsDowngrade { client, .. } => *client,
            Event::Reflection { victim, .. } => *victim,
        }
    }
}
