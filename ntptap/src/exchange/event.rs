//! The events worth an operator's attention that the tracker raises, as they are logged and
//! written in JSON.

use std::net::{IpAddr, SocketAddr};

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
        }
    }
}
