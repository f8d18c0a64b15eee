//! In-host latency: how long an NTP packet spent inside this host, from kernel timestamps on
//! one clock (`CLOCK_MONOTONIC`). What no daemon shows: the time between ntptap's hooks and
//! the daemon's own read and send, and on a server the whole residence time beside the
//! T3 − T2 the daemon wrote in its reply.
//!
//! Stages (each `None` where its stamps are missing):
//! - `in_queue`: a request at ntptap's ingress hook → queued on the socket (the stack's part);
//! - `in_read`: a request at ntptap's ingress hook → read by the process (`recvmsg` returned;
//!   `in_read − in_queue` is its wait in the socket's queue);
//! - `daemon`: that read → the process's send of the reply (`sendmsg`);
//! - `out_send`: the process's send → ntptap's egress hook;
//! - `residence`: the request at the ingress hook → its reply at the egress hook;
//! - `hidden`: residence − (T3 − T2): the part of the host's delay the daemon's timestamps
//!   leave out (positive: the daemon stamped late on receive or early on transmit).

use std::{collections::VecDeque, fmt::Write as _, time::Duration};

use serde::{Serialize, Serializer, ser::SerializeMap};

use crate::{
    frame::Direction,
    ntp::{NtpTimestamp, packet::TimeHeader},
};

/// What the capture knows of one packet's times, beside its capture time, and where it was.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sighting {
    /// Seen on the loopback interface, where only ingress is attached: its direction says
    /// nothing of which side of a local exchange sent it.
    pub loopback: bool,
    /// Kernel monotonic time of the capture, ns (live captures).
    pub mono_ns: Option<u64>,
    /// Egress: ns from the process's send to the capture.
    pub send_before: Option<u32>,
    /// Egress: ns from the process's last read from this destination to the capture.
    pub read_before: Option<u32>,
    /// Egress: ns from the last datagram from this destination queued on the socket to the
    /// capture.
    pub queued_before: Option<u32>,
}

/// One packet's in-host latency, ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Request at the ingress hook → queued on the socket (the stack's part of `in_read`).
    #[serde(rename = "in_queue_ns", skip_serializing_if = "Option::is_none")]
    pub in_queue: Option<u64>,
    /// Request at the ingress hook → read by the process.
    #[serde(rename = "in_read_ns", skip_serializing_if = "Option::is_none")]
    pub in_read: Option<u64>,
    /// Read → the process's send of the reply.
    #[serde(rename = "daemon_ns", skip_serializing_if = "Option::is_none")]
    pub daemon: Option<u64>,
    /// The process's send → the egress hook.
    #[serde(rename = "out_send_ns", skip_serializing_if = "Option::is_none")]
    pub out_send: Option<u64>,
    /// Request at the ingress hook → reply at the egress hook.
    #[serde(rename = "residence_ns", skip_serializing_if = "Option::is_none")]
    pub residence: Option<u64>,
    /// T3 − T2 of the reply: the daemon's own account of its residence.
    #[serde(rename = "t3_minus_t2_ns", skip_serializing_if = "Option::is_none")]
    pub t3_minus_t2: Option<i64>,
    /// residence − (T3 − T2).
    #[serde(rename = "hidden_ns", skip_serializing_if = "Option::is_none")]
    pub hidden: Option<i64>,
}

impl Latency {
    /// Whether any stage is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Each known stage: (direction, stage, ns); `hidden` may be negative.
    #[must_use]
    pub fn stages(&self) -> Vec<(&'static str, &'static str, i64)> {
        let mut out = Vec::new();
        let mut put = |dir, stage, v: Option<i64>| {
            if let Some(v) = v {
                out.push((dir, stage, v));
            }
        };
        let signed = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        put("in", "in_queue", signed(self.in_queue));
        put("in", "in_read", signed(self.in_read));
        put("in", "daemon", signed(self.daemon));
        put("out", "out_send", signed(self.out_send));
        put("in", "residence", signed(self.residence));
        put("in", "hidden", self.hidden);
        out
    }

    /// The pcapng comment: `latency: in_read=NS daemon=NS ...`.
    #[must_use]
    pub fn comment(&self) -> String {
        let mut s = "latency:".to_owned();
        for (_, stage, v) in self.stages() {
            let _ = write!(s, " {stage}={v}");
        }
        if let Some(v) = self.t3_minus_t2 {
            let _ = write!(s, " t3_minus_t2={v}");
        }
        s
    }
}

/// What a reply captured at `ts` going `direction` with `sighting` tells of its time in this
/// host, given its request's capture time (wall, and kernel monotonic when live) and
/// direction: a server on this host (the request came in, its reply goes out) has its
/// residence; any reply sent here, the time from its send to the hook (with --latency).
pub(crate) fn of_reply(
    h: &TimeHeader,
    (sent, mono, asked): (Duration, Option<u64>, Option<Direction>),
    ts: Duration,
    direction: Option<Direction>,
    sighting: Sighting,
) -> Latency {
    if asked == Some(Direction::In) && direction == Some(Direction::Out) {
        host_latency(h, (sent, mono), ts, sighting)
    } else {
        Latency {
            out_send: sighting.send_before.map(u64::from),
            ..Latency::default()
        }
    }
}

/// A server's reply, captured at `reply` (wall) with `sighting`, to a request captured at
/// `request` (wall, and kernel monotonic when live): the stages of its time in this host.
fn host_latency(
    h: &TimeHeader,
    request: (Duration, Option<u64>),
    reply: Duration,
    sighting: Sighting,
) -> Latency {
    let residence = match (request.1, sighting.mono_ns) {
        (Some(a), Some(b)) => b.checked_sub(a),
        _ => reply
            .checked_sub(request.0)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    };
    let t3_minus_t2 = (!h.receive.is_unset() && !h.transmit.is_unset())
        .then(|| i64::try_from(ntp_ns(h.transmit) - ntp_ns(h.receive)).ok())
        .flatten();
    let in_read = match (request.1, sighting.mono_ns, sighting.read_before) {
        (Some(a), Some(b), Some(read)) => b
            .checked_sub(u64::from(read))
            .and_then(|t| t.checked_sub(a)),
        _ => None,
    };
    let in_queue = match (request.1, sighting.mono_ns, sighting.queued_before) {
        (Some(a), Some(b), Some(queued)) => b
            .checked_sub(u64::from(queued))
            .and_then(|t| t.checked_sub(a)),
        _ => None,
    };
    Latency {
        in_queue,
        in_read,
        daemon: sighting
            .read_before
            .zip(sighting.send_before)
            .and_then(|(r, s)| r.checked_sub(s))
            .map(u64::from),
        out_send: sighting.send_before.map(u64::from),
        residence,
        t3_minus_t2,
        hidden: residence
            .and_then(|r| i64::try_from(r).ok())
            .zip(t3_minus_t2)
            .map(|(r, t)| r - t),
    }
}

pub(crate) fn ntp_ns(ts: NtpTimestamp) -> i128 {
    i128::from(ts.unix_seconds()) * 1_000_000_000 + i128::from(ts.nanos())
}

/// The last samples of each stage, for percentiles.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    stages: Vec<(&'static str, &'static str, VecDeque<i64>)>,
}

/// Samples kept per stage and server.
const KEPT: usize = 1024;

impl Samples {
    /// Add a packet's stages.
    pub fn add(&mut self, latency: &Latency) {
        for (dir, stage, v) in latency.stages() {
            let slot = if let Some(i) = self.stages.iter().position(|(_, s, _)| *s == stage) {
                i
            } else {
                self.stages.push((dir, stage, VecDeque::new()));
                self.stages.len() - 1
            };
            let q = &mut self.stages[slot].2;
            if q.len() == KEPT {
                q.pop_front();
            }
            q.push_back(v);
        }
    }

    /// (direction, stage, p50, p99, samples) of each stage seen.
    #[must_use]
    pub fn percentiles(&self) -> Vec<(&'static str, &'static str, i64, i64, usize)> {
        self.stages
            .iter()
            .filter(|(_, _, q)| !q.is_empty())
            .map(|(dir, stage, q)| {
                let mut v: Vec<i64> = q.iter().copied().collect();
                v.sort_unstable();
                let at = |p: usize| v[(v.len() * p / 100).min(v.len() - 1)];
                (*dir, *stage, at(50), at(99), v.len())
            })
            .collect()
    }
}

impl Serialize for Samples {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let all = self.percentiles();
        let mut map = serializer.serialize_map(Some(all.len()))?;
        for (dir, stage, p50, p99, n) in all {
            map.serialize_entry(
                stage,
                &serde_json::json!({"direction": dir, "p50_ns": p50, "p99_ns": p99, "samples": n}),
            )?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_last_samples() {
        let mut s = Samples::default();
        for i in 0..2000 {
            s.add(&Latency {
                in_read: Some(i),
                ..Latency::default()
            });
        }
        let p = s.percentiles();
        assert_eq!(p.len(), 1);
        let (dir, stage, p50, p99, n) = p[0];
        assert_eq!((dir, stage, n), ("in", "in_read", KEPT));
        // The last 1024 samples: 976..2000.
        assert_eq!(p50, 976 + 512);
        assert_eq!(p99, 976 + 1013);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["in_read"]["p50_ns"], 1488);
    }

    #[test]
    fn the_comment_names_each_known_stage() {
        let l = Latency {
            in_read: Some(5),
            out_send: Some(7),
            t3_minus_t2: Some(-1),
            ..Latency::default()
        };
        assert_eq!(l.comment(), "latency: in_read=5 out_send=7 t3_minus_t2=-1");
        assert!(Latency::default().is_empty());
    }
}
