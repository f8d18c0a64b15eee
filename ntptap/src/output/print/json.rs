//! `--json`: one JSON object per frame (NDJSON). The field names are a stable schema,
//! documented in README.md; numbers are JSON numbers.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat};
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
            if !self.filter.shows(packet.layers().transport.as_ref()) {
                return Ok(false);
            }
            let value = frame_json(packet);
            serde_json::to_writer(&mut self.out, &value)?;
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

/// The JSON object for one frame.
#[must_use]
pub fn frame_json(packet: &Decoded<'_>) -> Value {
    let (frame, d) = (packet.frame, packet.layers());
    let ts = DateTime::from_timestamp(frame.ts.as_secs() as i64, frame.ts.subsec_nanos())
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true));
    let mut obj = json!({
        "frame": frame.number,
        "ts": ts,
        "ts_unix_ns": u64::try_from(frame.ts.as_nanos()).unwrap_or(u64::MAX),
        "ts_mono_ns": frame.mono_ns,
        "iface": frame.iface.map(crate::escape::json),
        "direction": frame.direction,
        "orig_len": frame.orig_len,
        "caplen": frame.data.len(),
        "vlan": &d.vlans,
        "src": null, "dst": null, "sport": null, "dport": null, "length": null,
        "socket": frame.socket.label(),
        "process": frame.socket.process().map(process_json),
        "drop": frame.drop.map(|d| json!({
            "reason": escape(d.reason.as_bytes()),
            "location": escape(d.location.as_bytes()),
        })),
        "latency": packet.latency,
        "ntp": null,
    });
    if let Some(Net::Ip { src, dst, .. }) = d.net {
        obj["src"] = json!(src.to_string());
        obj["dst"] = json!(dst.to_string());
    }
    if let Some(Transport::Udp {
        sport,
        dport,
        length,
        ..
    }) = d.transport
    {
        obj["sport"] = json!(sport);
        obj["dport"] = json!(dport);
        obj["length"] = json!(length);
        if let Some(ntp) = packet.ntp() {
            obj["ntp"] = match &ntp.packet {
                Ok(ntp) => ntp_json(ntp),
                Err(err) => json!({ "error": err.to_string() }),
            };
        }
    } else if let Some(Transport::Tcp { sport, dport, .. }) = d.transport {
        obj["sport"] = json!(sport);
        obj["dport"] = json!(dport);
    }
    obj
}

/// The `process` object: the owner of the frame's socket. `comm` and `cgroup` are escaped as
/// [`crate::process::escape`] does (untrusted bytes).
#[must_use]
pub fn process_json(p: &Process<'_>) -> Value {
    json!({
        "pid": p.pid,
        "tid": p.tid,
        "comm": escape(p.comm),
        "uid": p.uid,
        "cgroup_id": p.cgroup_id,
        "cgroup": p.cgroup.map(|c| escape(c.as_bytes())),
        "container": p.container,
        "container_name": p.names.map(|n| escape(n.name.as_bytes())),
        "pod": p.names.and_then(|n| n.pod.as_ref()).map(|(pod, _)| escape(pod.as_bytes())),
        "pod_namespace": p.names.and_then(|n| n.pod.as_ref()).map(|(_, ns)| escape(ns.as_bytes())),
        "netns": p.netns,
    })
}

fn ts_json(ts: NtpTimestamp) -> Value {
    json!({
        "raw": ts.0,
        "seconds": ts.seconds(),
        "fraction": ts.fraction(),
        "utc": ts.to_utc().map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true)),
    })
}

/// The `ntp` object.
#[must_use]
pub fn ntp_json(ntp: &Ntp) -> Value {
    let mut obj = json!({
        "bytes": ntp.length,
        "leap": ntp.leap.to_bits(),
        "leap_name": ntp.leap,
        "version": ntp.version,
        "mode": ntp.mode.to_bits(),
        "mode_name": ntp.mode,
        "error": ntp.error.as_ref().map(ToString::to_string),
    });
    match &ntp.body {
        Body::Time(h) => time_json(&mut obj, h, ntp),
        Body::Control(c) => obj["control"] = control_json(c),
        Body::Private(p) => obj["private"] = private_json(p),
        Body::None => {}
    }
    obj
}

fn time_json(obj: &mut Value, h: &TimeHeader, ntp: &Ntp) {
    obj["stratum"] = json!(h.stratum);
    obj["poll"] = json!(h.poll);
    obj["poll_s"] = json!(log2_seconds(h.poll));
    obj["precision"] = json!(h.precision);
    obj["precision_s"] = json!(log2_seconds(h.precision));
    obj["root_delay"] = json!(h.root_delay.seconds());
    obj["root_dispersion"] = json!(h.root_dispersion.seconds());
    obj["refid_hex"] = json!(to_hex(&h.refid));
    obj["refid"] = json!(h.refid().text());
    obj["refid_decoded"] = json!(h.refid());
    obj["kiss_code"] = json!(
        ntp.kiss_code()
            .map(|c| String::from_utf8_lossy(&c).into_owned())
    );
    obj["kiss_meaning"] = json!(
        ntp.kiss_code()
            .and_then(|c| ntp::names::kiss_code_meaning(&c))
    );
    obj["reference_ts"] = ts_json(h.reference);
    obj["origin_ts"] = ts_json(h.origin);
    obj["receive_ts"] = ts_json(h.receive);
    obj["transmit_ts"] = ts_json(h.transmit);
    obj["extensions"] = h
        .extensions
        .iter()
        .map(|e| {
            let mut ext = json!({ "type": e.field_type, "name": e.name(), "length": e.length });
            if let Some(auth) = e.nts_authenticator() {
                ext["nonce_length"] = json!(auth.nonce_length);
                ext["ciphertext_length"] = json!(auth.ciphertext_length);
            }
            ext
        })
        .collect();
    obj["mac"] = match &h.mac {
        Some(mac) => json!({
            "key_id": mac.key_id,
            "digest": to_hex(&mac.digest),
            "digest_length": mac.digest.len(),
        }),
        None => Value::Null,
    };
}

fn control_json(c: &Control) -> Value {
    json!({
        "response": c.response,
        "error": c.error,
        "more": c.more,
        "opcode": c.opcode,
        "opcode_name": ntp::names::control_opcode_name(c.opcode),
        "sequence": c.sequence,
        "status": c.status,
        "status_word": c.status_word(),
        "association_id": c.association_id,
        "offset": c.offset,
        "count": c.count,
        "data": match c.data_view() {
            ControlData::None => Value::Null,
            ControlData::Text(text) => json!(crate::escape::json(&text)),
            ControlData::Associations(list) => list
                .iter()
                .map(|(id, status)| json!({ "association_id": id, "status_word": status }))
                .collect(),
            ControlData::Binary(bytes) => json!(to_hex(bytes)),
        },
    })
}

fn private_json(p: &Private) -> Value {
    json!({
        "response": p.response,
        "more": p.more,
        "auth": p.auth,
        "sequence": p.sequence,
        "implementation": p.implementation,
        "request_code": p.request_code,
        "request_name": ntp::names::private_request_name(p.request_code),
        "error_code": p.error_code,
        "item_count": p.item_count,
        "item_size": p.item_size,
    })
}
