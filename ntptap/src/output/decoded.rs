//! A frame as the outputs see it: dissected and NTP-decoded at most once, lazily, whatever
//! number of outputs look at it. An output that only writes bytes (pcap, pcapng) never pays
//! for a decode.

use std::{cell::OnceCell, net::SocketAddr};

use crate::{
    exchange::Event,
    frame::Frame,
    net::{
        Dissected, Net, Transport, dissect,
        plain::{self, Datagram},
    },
    ntp::{Ntp, NtpError},
};

/// One frame, with its layers and NTP packet decoded on first use.
pub struct Decoded<'a> {
    /// The frame as the source made it.
    pub frame: &'a Frame<'a>,
    ports: &'a PortSet,
    layers: OnceCell<Dissected<'a>>,
    ntp: OnceCell<Option<NtpInFrame>>,
    /// What the exchange tracker noticed on this frame (kiss-o'-death, monlist, ...), when
    /// the outputs keep a tracker.
    pub events: Vec<Event>,
    /// The packet's in-host latency, where the tracker knows some of it.
    pub latency: Option<crate::exchange::latency::Latency>,
    /// What the packet was to a server on this host (client analytics), when the outputs keep
    /// a tracker.
    pub served: Option<crate::exchange::clients::Served>,
    /// The exchange this response completed (delay and offset), when the outputs keep a
    /// tracker.
    pub exchange: Option<crate::exchange::Exchange>,
}

/// The NTP packet a frame carries: UDP to or from a port in the port set.
#[derive(Debug)]
pub struct NtpInFrame {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// IPv4's time to live, IPv6's hop limit.
    pub hop_limit: Option<u8>,
    /// The decode; `Err` only for an empty payload.
    pub packet: Result<Ntp, NtpError>,
}

impl<'a> Decoded<'a> {
    /// `frame`, whose UDP payloads on `ports` are NTP. Nothing is decoded yet.
    #[must_use]
    pub fn new(frame: &'a Frame<'a>, ports: &'a PortSet) -> Self {
        Self {
            frame,
            ports,
            layers: OnceCell::new(),
            ntp: OnceCell::new(),
            events: Vec::new(),
            latency: None,
            served: None,
            exchange: None,
        }
    }

    /// Link, network and transport layers.
    pub fn layers(&self) -> &Dissected<'a> {
        self.layers
            .get_or_init(|| dissect(self.frame.link, self.frame.data))
    }

    /// The NTP packet, if the frame is UDP on the port set. A plain frame's datagram is read
    /// where it lies ([`plain::udp`]); any other frame is dissected.
    pub fn ntp(&self) -> Option<&NtpInFrame> {
        self.ntp
            .get_or_init(|| {
                let datagram = plain::udp(self.frame.link, self.frame.data).or_else(|| {
                    let d = self.layers();
                    match (d.net, d.transport) {
                        (
                            Some(Net::Ip { src, dst, .. }),
                            Some(Transport::Udp {
                                sport,
                                dport,
                                payload,
                                ..
                            }),
                        ) => Some(Datagram {
                            src,
                            dst,
                            sport,
                            dport,
                            hop_limit: d.hop_limit(),
                            payload,
                        }),
                        _ => None,
                    }
                })?;
                if !self.ports.contains(datagram.sport) && !self.ports.contains(datagram.dport) {
                    return None;
                }
                Some(NtpInFrame {
                    src: SocketAddr::new(datagram.src, datagram.sport),
                    dst: SocketAddr::new(datagram.dst, datagram.dport),
                    hop_limit: datagram.hop_limit,
                    packet: Ntp::decode(datagram.payload),
                })
            })
            .as_ref()
    }

    /// The NTP packet, if the frame carries one that decodes (every non-empty payload does).
    pub fn ntp_packet(&self) -> Option<(SocketAddr, SocketAddr, &Ntp)> {
        let n = self.ntp()?;
        n.packet.as_ref().ok().map(|p| (n.src, n.dst, p))
    }
}

/// The set of UDP ports whose payload is NTP (the `--port` set).
#[derive(Clone, Debug)]
pub struct PortSet(Vec<u16>);

impl PortSet {
    /// From the configured ports.
    #[must_use]
    pub fn new(mut ports: Vec<u16>) -> Self {
        ports.sort_unstable();
        ports.dedup();
        Self(ports)
    }
    /// Whether `port` is in the set.
    #[must_use]
    pub fn contains(&self, port: u16) -> bool {
        self.0.binary_search(&port).is_ok()
    }
    /// The ports, sorted.
    #[must_use]
    pub fn ports(&self) -> &[u16] {
        &self.0
    }
}
