//! A frame as the outputs see it: dissected and NTP-decoded at most once, lazily, whatever
//! number of outputs look at it; a plain frame's datagram is read where it lies, without
//! dissecting it ([`plain`]). An output that only writes bytes (pcap, pcapng) never pays
//! for a decode.

use std::{cell::OnceCell, net::SocketAddr};

use crate::{
    exchange::Event,
    frame::Frame,
    net::{
        Dissected, Transport, dissect,
        plain::{self, Datagram},
    },
    ntp::{Body, Mode, Ntp, NtpError, NtpPacket, view::TimeView},
};

/// One frame, with its layers and NTP packet decoded on first use.
pub struct Decoded<'a> {
    /// The frame as the source made it.
    pub frame: &'a Frame<'a>,
    ports: &'a PortSet,
    plain: OnceCell<Option<Datagram<'a>>>,
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
            plain: OnceCell::new(),
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

    /// A plain frame's UDP datagram, read where it lies without dissecting the frame
    /// ([`plain::udp`]); `None` for any other frame, which [`Decoded::layers`] tells of.
    pub fn plain(&self) -> Option<&Datagram<'a>> {
        self.plain
            .get_or_init(|| plain::udp(self.frame.link, self.frame.data))
            .as_ref()
    }

    /// The transport layer: a plain frame's datagram, else the dissection's.
    pub fn transport(&self) -> Option<Transport<'a>> {
        match self.plain() {
            Some(p) => Some(Transport::Udp {
                sport: p.sport,
                dport: p.dport,
                length: p.payload.len(),
                payload: p.payload,
            }),
            None => self.layers().transport,
        }
    }

    /// The frame's UDP datagram: a plain frame's, else the dissection's.
    fn datagram(&self) -> Option<Datagram<'a>> {
        if let Some(p) = self.plain() {
            return Some(*p);
        }
        self.layers().datagram()
    }

    /// The frame's UDP datagram, if it is on the port set: its payload is NTP.
    fn ntp_datagram(&self) -> Option<Datagram<'a>> {
        self.datagram()
            .filter(|d| self.ports.contains(d.sport) || self.ports.contains(d.dport))
    }

    /// The NTP packet, if the frame is UDP on the port set.
    pub fn ntp(&self) -> Option<&NtpInFrame> {
        self.ntp
            .get_or_init(|| {
                let datagram = self.ntp_datagram()?;
                Some(NtpInFrame {
                    src: SocketAddr::new(datagram.src, datagram.sport),
                    dst: SocketAddr::new(datagram.dst, datagram.dport),
                    hop_limit: datagram.hop_limit,
                    packet: Ntp::decode(datagram.payload),
                })
            })
            .as_ref()
    }

    /// A request the frame carries, known by its bytes alone: client or symmetric active
    /// mode with a whole time header, UDP on the port set; its ends and transmit timestamp.
    /// It is what [`Decoded::ntp`]'s decode would say of such a packet (the test below holds
    /// it to that), without the decode, where pairing wants no more of a request.
    pub fn request(&self) -> Option<(SocketAddr, SocketAddr, u64)> {
        if let Some(n) = self.ntp.get() {
            let n = n.as_ref()?;
            let ntp = n.packet.as_ref().ok()?;
            return match (&ntp.body, ntp.mode) {
                (Body::Time(h), Mode::Client | Mode::SymmetricActive) => {
                    Some((n.src, n.dst, h.transmit.0))
                }
                _ => None,
            };
        }
        let datagram = self.ntp_datagram()?;
        let mode = NtpPacket::new_checked(datagram.payload).ok()?.mode();
        if !matches!(mode, Mode::Client | Mode::SymmetricActive) {
            return None;
        }
        let time = TimeView::new_checked(datagram.payload).ok()?;
        Some((
            SocketAddr::new(datagram.src, datagram.sport),
            SocketAddr::new(datagram.dst, datagram.dport),
            time.transmit().0,
        ))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::net::test_frames::{udp4, udp6};

    /// What the decode says of a request: its ends and transmit timestamp.
    fn decoded_request(packet: &Decoded<'_>) -> Option<(SocketAddr, SocketAddr, u64)> {
        let (src, dst, ntp) = packet.ntp_packet()?;
        match (&ntp.body, ntp.mode) {
            (Body::Time(h), Mode::Client | Mode::SymmetricActive) => Some((src, dst, h.transmit.0)),
            _ => None,
        }
    }

    /// Every first byte (each mode, version and leap), payloads cut short of a time header
    /// and longer than one, ports in and out of the set, plain frames and tagged ones (which
    /// are dissected): a request known by its bytes is the decode's request.
    #[test]
    fn a_request_known_by_its_bytes_is_the_decodes() {
        let ports = PortSet::new(vec![123]);
        let (mut requests, mut others) = (0, 0);
        for len in [0, 1, 12, 47, 48, 49, 68, 120] {
            for first in 0..=255u8 {
                let payload: Vec<u8> = (0..len)
                    .map(|i| if i == 0 { first } else { (i * 37 + 11) as u8 })
                    .collect();
                for (sport, dport) in [(40000, 123), (123, 123), (40000, 124)] {
                    let plain = udp4(sport, dport, &payload);
                    let tagged = udp6(Some(7), sport, dport, &payload);
                    for data in [&plain, &tagged] {
                        let frame = Frame::test(1, Duration::ZERO, data);
                        let want = decoded_request(&Decoded::new(&frame, &ports));
                        let fresh = Decoded::new(&frame, &ports);
                        assert_eq!(fresh.request(), want, "{data:02x?}");
                        // And once the packet is decoded, from the decode.
                        assert_eq!(fresh.ntp().is_some(), dport == 123 || sport == 123);
                        assert_eq!(fresh.request(), want, "{data:02x?}");
                        if want.is_some() {
                            requests += 1;
                        } else {
                            others += 1;
                        }
                    }
                }
            }
        }
        assert!(requests > 1000 && others > 1000, "{requests} {others}");
    }
}
