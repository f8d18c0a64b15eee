//! `--json`: one JSON object per frame (NDJSON). The field names are a stable schema,
//! documented in README.md; numbers are JSON numbers.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat};
use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::{Value, json};

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
            serde_json::to_writer(&mut self.out, &FrameJson(packet))?;
            self.out.write_all(b"\n")?;
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

impl Serialize for FrameJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
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
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("caplen", &frame.data.len())?;
        m.serialize_entry("direction", &frame.direction)?;
        m.serialize_entry("dport", &dport)?;
        m.serialize_entry(
            "drop",
            &frame.drop.map(|d| DropJson {
                location: escape(d.location.as_bytes()),
                reason: escape(d.reason.as_bytes()),
            }),
        )?;
        m.serialize_entry("dst", &dst)?;
        m.serialize_entry("frame", &frame.number)?;
        m.serialize_entry("iface", &frame.iface.map(crate::escape::json))?;
        m.serialize_entry("latency", &packet.latency)?;
        m.serialize_entry("length", &length)?;
        match ntp.map(|n| &n.packet) {
            Some(Ok(ntp)) => m.serialize_entry("ntp", &NtpJson(ntp))?,
            Some(Err(err)) => m.serialize_entry(
                "ntp",
                &ErrorJson {
                    error: err.to_string(),
                },
            )?,
            None => m.serialize_entry("ntp", &())?,
        }
        m.serialize_entry("orig_len", &frame.orig_len)?;
        m.serialize_entry("process", &frame.socket.process().map(ProcessJson))?;
        m.serialize_entry("socket", &frame.socket.label())?;
        m.serialize_entry("sport", &sport)?;
        m.serialize_entry("src", &src)?;
        m.serialize_entry("ts", &ts)?;
        m.serialize_entry("ts_mono_ns", &frame.mono_ns)?;
        m.serialize_entry(
            "ts_unix_ns",
            &u64::try_from(frame.ts.as_nanos()).unwrap_or(u64::MAX),
        )?;
        m.serialize_entry("vlan", vlans)?;
        m.end()
    }
}

/// The JSON object for one frame, as a value (tests, and whoever wants one).
#[must_use]
pub fn frame_json(packet: &Decoded<'_>) -> Value {
    serde_json::to_value(FrameJson(packet)).unwrap_or(Value::Null)
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

impl Serialize for ProcessJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let pod = p.names.and_then(|n| n.pod.as_ref());
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("cgroup", &p.cgroup.map(|c| escape(c.as_bytes())))?;
        m.serialize_entry("cgroup_id", &p.cgroup_id)?;
        m.serialize_entry("comm", &escape(p.comm))?;
        m.serialize_entry("container", &p.container)?;
        m.serialize_entry(
            "container_name",
            &p.names.map(|n| escape(n.name.as_bytes())),
        )?;
        m.serialize_entry("netns", &p.netns)?;
        m.serialize_entry("pid", &p.pid)?;
        m.serialize_entry("pod", &pod.map(|(pod, _)| escape(pod.as_bytes())))?;
        m.serialize_entry("pod_namespace", &pod.map(|(_, ns)| escape(ns.as_bytes())))?;
        m.serialize_entry("tid", &p.tid)?;
        m.serialize_entry("uid", &p.uid)?;
        m.end()
    }
}

/// The `process` object as a value.
#[must_use]
pub fn process_json(p: &Process<'_>) -> Value {
    serde_json::to_value(ProcessJson(p)).unwrap_or(Value::Null)
}

struct TsJson(NtpTimestamp);

impl Serialize for TsJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ts = self.0;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("fraction", &ts.fraction())?;
        m.serialize_entry("raw", &ts.0)?;
        m.serialize_entry("seconds", &ts.seconds())?;
        m.serialize_entry(
            "utc",
            &ts.to_utc()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true)),
        )?;
        m.end()
    }
}

/// The `ntp` object.
struct NtpJson<'a>(&'a Ntp);

impl Serialize for NtpJson<'_> {
    // Keys in sorted order, as the lines always had them; a time packet's fields fall among
    // the common ones.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ntp = self.0;
        let time = match &ntp.body {
            Body::Time(h) => Some(h),
            _ => None,
        };
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("bytes", &ntp.length)?;
        if let Body::Control(c) = &ntp.body {
            m.serialize_entry("control", &ControlJson(c))?;
        }
        m.serialize_entry("error", &ntp.error.as_ref().map(ToString::to_string))?;
        if let Some(h) = time {
            m.serialize_entry("extensions", &extensions(h))?;
            let kiss = ntp.kiss_code();
            m.serialize_entry(
                "kiss_code",
                &kiss.map(|c| String::from_utf8_lossy(&c).into_owned()),
            )?;
            m.serialize_entry(
                "kiss_meaning",
                &kiss.and_then(|c| ntp::names::kiss_code_meaning(&c)),
            )?;
        }
        m.serialize_entry("leap", &ntp.leap.to_bits())?;
        m.serialize_entry("leap_name", &ntp.leap)?;
        if let Some(h) = time {
            m.serialize_entry(
                "mac",
                &h.mac.as_ref().map(|mac| MacJson {
                    digest: to_hex(&mac.digest),
                    digest_length: mac.digest.len(),
                    key_id: mac.key_id,
                }),
            )?;
        }
        m.serialize_entry("mode", &ntp.mode.to_bits())?;
        m.serialize_entry("mode_name", &ntp.mode)?;
        if let Some(h) = time {
            m.serialize_entry("origin_ts", &TsJson(h.origin))?;
            m.serialize_entry("poll", &h.poll)?;
            m.serialize_entry("poll_s", &log2_seconds(h.poll))?;
            m.serialize_entry("precision", &h.precision)?;
            m.serialize_entry("precision_s", &log2_seconds(h.precision))?;
        }
        if let Body::Private(p) = &ntp.body {
            m.serialize_entry("private", &PrivateJson(p))?;
        }
        if let Some(h) = time {
            m.serialize_entry("receive_ts", &TsJson(h.receive))?;
            m.serialize_entry("reference_ts", &TsJson(h.reference))?;
            m.serialize_entry("refid", &h.refid().text())?;
            m.serialize_entry("refid_decoded", &h.refid())?;
            m.serialize_entry("refid_hex", &to_hex(&h.refid))?;
            m.serialize_entry("root_delay", &h.root_delay.seconds())?;
            m.serialize_entry("root_dispersion", &h.root_dispersion.seconds())?;
            m.serialize_entry("stratum", &h.stratum)?;
            m.serialize_entry("transmit_ts", &TsJson(h.transmit))?;
        }
        m.serialize_entry("version", &ntp.version)?;
        m.end()
    }
}

/// The `ntp` object as a value.
#[must_use]
pub fn ntp_json(ntp: &Ntp) -> Value {
    serde_json::to_value(NtpJson(ntp)).unwrap_or(Value::Null)
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
