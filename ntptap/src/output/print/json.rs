//! `--json`: one JSON object per frame (NDJSON). The field names are a stable schema,
//! documented in README.md; numbers are JSON numbers.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat};
use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::{Value, json};

use super::object::{self, Fields, Object, Serde};
use crate::process::{Process, escape};

use super::super::{decoded::Decoded, sink::Control as SinkControl, sink::Filter, sink::Sink};
use crate::{
    exchange::Tracker,
    net::{Net, Transport},
    ntp::{
        self, Body, Ntp, NtpTimestamp,
        packet::{Control, ControlData, Private, TimeHeader, to_hex},
        time::log2_seconds,
    },
};

/// Writes one JSON object per frame.
pub struct JsonSink<W: Write> {
    out: W,
    filter: Filter,
    /// With `--stats N`: a `server` event per server every N seconds and at the end.
    stats_every: Option<std::time::Duration>,
    last_stats: Option<std::time::Duration>,
    /// Frames too, not only events (`--no-print` leaves them out).
    frames: bool,
    /// The line being written.
    line: Vec<u8>,
}

impl<W: Write> JsonSink<W> {
    /// A JSON writer to `out`, showing what `filter` lets through. Exchange events
    /// (kiss-o'-death, monlist requests, ...) come out inline, as objects with an `event`
    /// field, when the pipeline keeps an exchange tracker.
    pub fn new(out: W, filter: Filter) -> Self {
        Self {
            out,
            filter,
            stats_every: None,
            last_stats: None,
            frames: true,
            line: Vec::new(),
        }
    }

    /// Only the events (`--json --no-print`): exchange events, `server` and `clients`.
    #[must_use]
    pub fn events_only(mut self) -> Self {
        self.frames = false;
        self
    }

    /// Also write the exchange health of every server as `server` events, every `every`.
    #[must_use]
    pub fn with_server_stats(mut self, every: std::time::Duration) -> Self {
        self.stats_every = Some(every);
        self
    }

    /// A `server` event per server, and a `clients` event when a server on this host served
    /// any (as of `now`; `None`: the last packet).
    fn server_events(
        &mut self,
        exchanges: Option<&Tracker>,
        now: Option<std::time::Duration>,
    ) -> io::Result<()> {
        for server in exchanges.map(Tracker::servers).unwrap_or_default() {
            let mut event = serde_json::to_value(server)?;
            event["event"] = json!("server");
            serde_json::to_writer(&mut self.out, &event)?;
            self.out.write_all(b"\n")?;
        }
        if let Some(clients) = exchanges.map(Tracker::clients)
            && clients.requests() > 0
        {
            let mut event = serde_json::to_value(clients.report(now))?;
            event["event"] = json!("clients");
            serde_json::to_writer(&mut self.out, &event)?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        if self.frames {
            if !self.filter.shows(packet.transport().as_ref()) {
                return Ok(false);
            }
            self.line.clear();
            object::write(&mut self.line, &FrameJson(packet))?;
            self.line.push(b'\n');
            self.out.write_all(&self.line)?;
        }
        for event in &packet.events {
            let mut event = serde_json::to_value(event)?;
            event["frame"] = json!(packet.frame.number);
            serde_json::to_writer(&mut self.out, &event)?;
            self.out.write_all(b"\n")?;
        }
        Ok(self.frames)
    }

    fn control(&mut self, control: &SinkControl<'_>) -> io::Result<()> {
        match *control {
            SinkControl::Tick { now, exchanges } => {
                let Some(every) = self.stats_every else {
                    return Ok(());
                };
                if self
                    .last_stats
                    .is_some_and(|l| now.saturating_sub(l) < every)
                {
                    return Ok(());
                }
                self.last_stats = Some(now);
                self.server_events(exchanges, Some(now))
            }
            SinkControl::Close { exchanges, stats } => {
                if self.stats_every.is_some() {
                    self.server_events(exchanges, Some(stats.end))?;
                }
                self.out.flush()
            }
            SinkControl::Flush => self.out.flush(),
            SinkControl::Kernel(_) | SinkControl::Rotate(_) | SinkControl::Trigger(..) => Ok(()),
        }
    }

    fn unwritten(&self) -> u64 {
        0
    }
}

/// The JSON object for one frame, serialized as it is written: no `serde_json::Value` built on
/// the way. Building one (a sorted map with an allocated key per field, then dropped) was 7 µs
/// a frame under the bench's flood and kept 14 % of it (`perf`: map inserts, key compares,
/// allocation). Keys come out sorted, as the `Value` had them, except inside objects of the
/// decoder's own types (`latency`, a control packet's `status_word`), which keep the order
/// their types declare; JSON objects have no order, and readers compare them as values.
pub struct FrameJson<'p, 'a>(pub &'p Decoded<'a>);

impl Object for FrameJson<'_, '_> {
    fn fields<F: Fields>(&self, m: &mut F) -> Result<(), F::Error> {
        let packet = self.0;
        let frame = packet.frame;
        let ts = DateTime::from_timestamp(frame.ts.as_secs() as i64, frame.ts.subsec_nanos())
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true));
        // A plain frame is not dissected: its addresses and ports are where they lie, and it
        // has no VLAN tag.
        let (src, dst, vlans) = if let Some(p) = packet.plain() {
            (Some(p.src), Some(p.dst), &[][..])
        } else {
            let d = packet.layers();
            match d.net {
                Some(Net::Ip { src, dst, .. }) => (Some(src), Some(dst), &d.vlans[..]),
                _ => (None, None, &d.vlans[..]),
            }
        };
        let transport = packet.transport();
        let (sport, dport, length) = match transport {
            Some(Transport::Udp {
                sport,
                dport,
                length,
                ..
            }) => (Some(sport), Some(dport), Some(length)),
            Some(Transport::Tcp { sport, dport, .. }) => (Some(sport), Some(dport), None),
            _ => (None, None, None),
        };
        let ntp = match transport {
            Some(Transport::Udp { .. }) => packet.ntp(),
            _ => None,
        };
        m.field("caplen", &frame.data.len())?;
        m.field("direction", &frame.direction)?;
        m.field("dport", &dport)?;
        m.field(
            "drop",
            &frame.drop.map(|d| DropJson {
                location: escape(d.location.as_bytes()),
                reason: escape(d.reason.as_bytes()),
            }),
        )?;
        m.field("dst", &dst)?;
        m.field("frame", &frame.number)?;
        m.field("iface", &frame.iface.map(crate::escape::json))?;
        m.field("latency", &packet.latency)?;
        m.field("length", &length)?;
        match ntp.map(|n| &n.packet) {
            Some(Ok(ntp)) => m.object("ntp", Some(&NtpJson(ntp)))?,
            Some(Err(err)) => m.field(
                "ntp",
                &ErrorJson {
                    error: err.to_string(),
                },
            )?,
            None => m.field("ntp", &())?,
        }
        m.field("orig_len", &frame.orig_len)?;
        m.object("process", frame.socket.process().map(ProcessJson).as_ref())?;
        m.field("socket", &frame.socket.label())?;
        m.field("sport", &sport)?;
        m.field("src", &src)?;
        m.field("ts", &ts)?;
        m.field("ts_mono_ns", &frame.mono_ns)?;
        m.field(
            "ts_unix_ns",
            &u64::try_from(frame.ts.as_nanos()).unwrap_or(u64::MAX),
        )?;
        m.field("vlan", vlans)
    }
}

/// The JSON object for one frame, as a value (tests, and whoever wants one).
#[must_use]
pub fn frame_json(packet: &Decoded<'_>) -> Value {
    serde_json::to_value(Serde(&FrameJson(packet))).unwrap_or(Value::Null)
}

#[derive(Serialize)]
struct DropJson {
    location: String,
    reason: String,
}

#[derive(Serialize)]
struct ErrorJson {
    error: String,
}

/// The `process` object: the owner of the frame's socket. `comm` and `cgroup` are escaped as
/// [`crate::process::escape`] does (untrusted bytes).
struct ProcessJson<'p, 'a>(&'p Process<'a>);

impl Object for ProcessJson<'_, '_> {
    fn fields<F: Fields>(&self, m: &mut F) -> Result<(), F::Error> {
        let p = self.0;
        let pod = p.names.and_then(|n| n.pod.as_ref());
        m.field("cgroup", &p.cgroup.map(|c| escape(c.as_bytes())))?;
        m.field("cgroup_id", &p.cgroup_id)?;
        m.field("comm", &escape(p.comm))?;
        m.field("container", &p.container)?;
        m.field(
            "container_name",
            &p.names.map(|n| escape(n.name.as_bytes())),
        )?;
        m.field("netns", &p.netns)?;
        m.field("pid", &p.pid)?;
        m.field("pod", &pod.map(|(pod, _)| escape(pod.as_bytes())))?;
        m.field("pod_namespace", &pod.map(|(_, ns)| escape(ns.as_bytes())))?;
        m.field("tid", &p.tid)?;
        m.field("uid", &p.uid)
    }
}

/// The `process` object as a value.
#[must_use]
pub fn process_json(p: &Process<'_>) -> Value {
    serde_json::to_value(Serde(&ProcessJson(p))).unwrap_or(Value::Null)
}

struct TsJson(NtpTimestamp);

impl Object for TsJson {
    fn fields<F: Fields>(&self, m: &mut F) -> Result<(), F::Error> {
        let ts = self.0;
        m.field("fraction", &ts.fraction())?;
        m.field("raw", &ts.0)?;
        m.field("seconds", &ts.seconds())?;
        m.field(
            "utc",
            &ts.to_utc()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true)),
        )
    }
}

/// The `ntp` object.
struct NtpJson<'a>(&'a Ntp);

impl Object for NtpJson<'_> {
    // Keys in sorted order, as the lines always had them; a time packet's fields fall among
    // the common ones.
    fn fields<F: Fields>(&self, m: &mut F) -> Result<(), F::Error> {
        let ntp = self.0;
        let time = match &ntp.body {
            Body::Time(h) => Some(h),
            _ => None,
        };
        m.field("bytes", &ntp.length)?;
        if let Body::Control(c) = &ntp.body {
            m.field("control", &ControlJson(c))?;
        }
        m.field("error", &ntp.error.as_ref().map(ToString::to_string))?;
        if let Some(h) = time {
            m.field("extensions", &extensions(h))?;
            let kiss = ntp.kiss_code();
            m.field(
                "kiss_code",
                &kiss.map(|c| String::from_utf8_lossy(&c).into_owned()),
            )?;
            m.field(
                "kiss_meaning",
                &kiss.and_then(|c| ntp::names::kiss_code_meaning(&c)),
            )?;
        }
        m.field("leap", &ntp.leap.to_bits())?;
        m.field("leap_name", &ntp.leap)?;
        if let Some(h) = time {
            m.field(
                "mac",
                &h.mac.as_ref().map(|mac| MacJson {
                    digest: to_hex(&mac.digest),
                    digest_length: mac.digest.len(),
                    key_id: mac.key_id,
                }),
            )?;
        }
        m.field("mode", &ntp.mode.to_bits())?;
        m.field("mode_name", &ntp.mode)?;
        if let Some(h) = time {
            m.object("origin_ts", Some(&TsJson(h.origin)))?;
            m.field("poll", &h.poll)?;
            m.field("poll_s", &log2_seconds(h.poll))?;
            m.field("precision", &h.precision)?;
            m.field("precision_s", &log2_seconds(h.precision))?;
        }
        if let Body::Private(p) = &ntp.body {
            m.field("private", &PrivateJson(p))?;
        }
        if let Some(h) = time {
            m.object("receive_ts", Some(&TsJson(h.receive)))?;
            m.object("reference_ts", Some(&TsJson(h.reference)))?;
            m.field("refid", &h.refid().text())?;
            m.field("refid_decoded", &h.refid())?;
            m.field("refid_hex", &to_hex(&h.refid))?;
            m.field("root_delay", &h.root_delay.seconds())?;
            m.field("root_dispersion", &h.root_dispersion.seconds())?;
            m.field("stratum", &h.stratum)?;
            m.object("transmit_ts", Some(&TsJson(h.transmit)))?;
        }
        m.field("version", &ntp.version)
    }
}

/// The `ntp` object as a value.
#[must_use]
pub fn ntp_json(ntp: &Ntp) -> Value {
    serde_json::to_value(Serde(&NtpJson(ntp))).unwrap_or(Value::Null)
}

/// A time packet's extension fields.
fn extensions(h: &TimeHeader) -> Vec<ExtensionJson> {
    h.extensions
        .iter()
        .map(|e| {
            let auth = e.nts_authenticator();
            ExtensionJson {
                ciphertext_length: auth.as_ref().map(|a| a.ciphertext_length),
                length: e.length,
                name: e.name(),
                nonce_length: auth.as_ref().map(|a| a.nonce_length),
                field_type: e.field_type,
            }
        })
        .collect()
}

#[derive(Serialize)]
struct ExtensionJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphertext_length: Option<u16>,
    length: u16,
    name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce_length: Option<u16>,
    #[serde(rename = "type")]
    field_type: u16,
}

#[derive(Serialize)]
struct MacJson {
    digest: String,
    digest_length: usize,
    key_id: u32,
}

struct ControlJson<'a>(&'a Control);

impl Serialize for ControlJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("association_id", &c.association_id)?;
        m.serialize_entry("count", &c.count)?;
        match c.data_view() {
            ControlData::None => m.serialize_entry("data", &())?,
            ControlData::Text(text) => m.serialize_entry("data", &crate::escape::json(&text))?,
            ControlData::Associations(list) => m.serialize_entry(
                "data",
                &list
                    .iter()
                    .map(|&(association_id, status_word)| AssociationJson {
                        association_id,
                        status_word,
                    })
                    .collect::<Vec<_>>(),
            )?,
            ControlData::Binary(bytes) => m.serialize_entry("data", &to_hex(bytes))?,
        }
        m.serialize_entry("error", &c.error)?;
        m.serialize_entry("more", &c.more)?;
        m.serialize_entry("offset", &c.offset)?;
        m.serialize_entry("opcode", &c.opcode)?;
        m.serialize_entry("opcode_name", &ntp::names::control_opcode_name(c.opcode))?;
        m.serialize_entry("response", &c.response)?;
        m.serialize_entry("sequence", &c.sequence)?;
        m.serialize_entry("status", &c.status)?;
        m.serialize_entry("status_word", &c.status_word())?;
        m.end()
    }
}

#[derive(Serialize)]
struct AssociationJson<W> {
    association_id: u16,
    status_word: W,
}

struct PrivateJson<'a>(&'a Private);

impl Serialize for PrivateJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("auth", &p.auth)?;
        m.serialize_entry("error_code", &p.error_code)?;
        m.serialize_entry("implementation", &p.implementation)?;
        m.serialize_entry("item_count", &p.item_count)?;
        m.serialize_entry("item_size", &p.item_size)?;
        m.serialize_entry("more", &p.more)?;
        m.serialize_entry("request_code", &p.request_code)?;
        m.serialize_entry(
            "request_name",
            &ntp::names::private_request_name(p.request_code),
        )?;
        m.serialize_entry("response", &p.response)?;
        m.serialize_entry("sequence", &p.sequence)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        containers::ContainerNames,
        frame::{Direction, Frame, KernelDrop, LinkType},
        net::test_frames::{udp4, udp6},
        output::{PortSet, sink::SinkExt as _},
        process::Socket,
    };

    /// An NTP payload of `len` bytes whose first byte is `first`.
    fn payload(first: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| if i == 0 { first } else { (i * 29 + 3) as u8 })
            .collect()
    }

    /// Frames of every shape the line has: each NTP mode and length (a time header with
    /// extension fields or a MAC, control and private packets, an empty payload), IPv4 and
    /// IPv6, a VLAN tag, TCP, a frame with no IP, an owner with its container, a drop record.
    fn frames() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (first, len) in [
            (0x23, 48),
            (0x24, 48),
            (0x21, 68),
            (0x22, 72),
            (0x25, 52),
            (0x16, 12),
            (0x16, 40),
            (0x17, 8),
            (0x27, 4),
            (0x23, 0),
            (0x1c, 47),
        ] {
            let p = payload(first, len);
            out.extend([udp4(40000, 123, &p), udp6(Some(9), 123, 123, &p)]);
        }
        let mut tcp = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 123, 1, 1000)
            .write(&mut tcp, b"GET")
            .unwrap();
        out.push(tcp);
        out.push(vec![0xff; 42]);
        out
    }

    #[test]
    fn a_line_is_the_value_of_its_frame() {
        let ports = PortSet::new(vec![123]);
        let names = ContainerNames {
            name: "ntp\"probe".into(),
            pod: Some(("pod\\1".into(), "kube-system".into())),
        };
        let mut lines = 0;
        for (n, data) in frames().iter().enumerate() {
            let owned = Socket::Owned(Process {
                pid: 4242,
                tid: 4243,
                uid: 0,
                comm: b"chronyd\x1b[31m",
                cgroup_id: 99,
                cgroup: Some("/system.slice/chronyd.service"),
                container: Some("0123abcd"),
                names: Some(&names),
                netns: Some(4_026_531_840),
            });
            for socket in [Socket::Unknown, Socket::None, owned] {
                let frame = Frame {
                    mono_ns: Some(123_456_789),
                    ifindex: Some(2),
                    iface: Some("eth\"0"),
                    direction: Some(Direction::In),
                    socket,
                    drop: (n % 3 == 1).then_some(KernelDrop {
                        reason: "NO_SOCKET",
                        location: "udp_queue_rcv_one_skb+0x1c",
                    }),
                    link: if n % 5 == 4 {
                        LinkType::Null
                    } else {
                        LinkType::Ethernet
                    },
                    ..Frame::test(n as u64 + 1, Duration::from_millis(1_700_000_000_123), data)
                };
                let all = Filter {
                    ports: ports.clone(),
                    all: true,
                };
                let mut sink = JsonSink::new(Vec::new(), all);
                sink.take(&frame).unwrap();
                let line = String::from_utf8(sink.out).unwrap();
                let want = frame_json(&Decoded::new(&frame, &ports));
                assert_eq!(
                    serde_json::from_str::<Value>(line.trim_end()).unwrap(),
                    want,
                    "{line}"
                );
                assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
                lines += 1;
            }
        }
        assert_eq!(lines, 3 * 24);
    }
}
