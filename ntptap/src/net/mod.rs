//! Link, network and transport layers of a frame, as far as the captured bytes go.
//!
//! Built on etherparse's lax slicing, which decodes truncated frames up to where they end.
//! Knows nothing of NTP: the printer asks the NTP decoder for the UDP payload.

use std::net::IpAddr;

use etherparse::{EtherType, IpNumber, LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};

use crate::frame::LinkType;

pub mod plain;

/// The layers of one frame.
#[derive(Debug, Default)]
pub struct Dissected<'a> {
    /// Source and destination MAC addresses (Ethernet only).
    pub macs: Option<([u8; 6], [u8; 6])>,
    /// EtherType after any VLAN tags (Ethernet and SLL).
    pub ethertype: Option<u16>,
    /// VLAN IDs, outermost first.
    pub vlans: Vec<u16>,
    /// The network layer.
    pub net: Option<Net>,
    /// The transport layer.
    pub transport: Option<Transport<'a>>,
    /// The IPv4 header, for verbose output and checksums.
    pub ipv4: Option<etherparse::Ipv4Header>,
    /// The IPv6 header, for verbose output and checksums.
    pub ipv6: Option<etherparse::Ipv6Header>,
    /// The UDP header, with the whole UDP payload when it was captured whole.
    pub udp: Option<(etherparse::UdpHeader, Option<&'a [u8]>)>,
    /// An ARP or RARP message (EtherType 0x0806 or 0x8035), as far as it was captured.
    pub arp: Option<&'a [u8]>,
    /// IPv6 extension headers (hop-by-hop, destination options, fragment, ...), whole.
    pub ipv6_exts: &'a [u8],
}

/// What a UDP checksum check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpChecksum {
    /// The checksum is right.
    Ok,
    /// It holds only the sum of the pseudo-header (addresses, protocol, length): the mark of a
    /// checksum a device fills in later (offload: `CHECKSUM_PARTIAL`), as on frames this host
    /// sends, seen before the device.
    Offloaded,
    /// It is `stored`, and should be `correct`.
    Bad {
        /// The checksum in the header.
        stored: u16,
        /// The checksum the datagram should carry.
        correct: u16,
    },
}

impl<'a> Dissected<'a> {
    /// The UDP datagram, when the frame carries one over IP.
    #[must_use]
    pub fn datagram(&self) -> Option<plain::Datagram<'a>> {
        match (self.net, self.transport) {
            (
                Some(Net::Ip { src, dst, .. }),
                Some(Transport::Udp {
                    sport,
                    dport,
                    payload,
                    ..
                }),
            ) => Some(plain::Datagram {
                src,
                dst,
                sport,
                dport,
                hop_limit: self.hop_limit(),
                payload,
            }),
            _ => None,
        }
    }

    /// IPv4's time to live, IPv6's hop limit.
    #[must_use]
    pub fn hop_limit(&self) -> Option<u8> {
        self.ipv4
            .as_ref()
            .map(|h| h.time_to_live)
            .or(self.ipv6.as_ref().map(|h| h.hop_limit))
    }

    /// Check the UDP checksum, when there is one to check (not zero over IPv4) and the whole
    /// datagram was captured.
    #[must_use]
    pub fn udp_checksum(&self) -> Option<UdpChecksum> {
        let (udp, Some(payload)) = self.udp.as_ref()? else {
            return None;
        };
        let correct = if let Some(ip) = &self.ipv4 {
            if udp.checksum == 0 {
                return None;
            }
            udp.calc_checksum_ipv4(ip, payload).ok()?
        } else {
            udp.calc_checksum_ipv6(self.ipv6.as_ref()?, payload).ok()?
        };
        Some(if correct == udp.checksum {
            UdpChecksum::Ok
        } else if self.udp_pseudo_sum() == Some(udp.checksum) {
            UdpChecksum::Offloaded
        } else {
            UdpChecksum::Bad {
                stored: udp.checksum,
                correct,
            }
        })
    }
}

impl Dissected<'_> {
    /// The UDP pseudo-header's sum, folded and not complemented: what the kernel leaves in the
    /// checksum field for the device to finish (`udp4_hwcsum`, `udp6_hwcsum`).
    fn udp_pseudo_sum(&self) -> Option<u16> {
        let (udp, _) = self.udp.as_ref()?;
        let mut sum: u32 = 17 + u32::from(udp.length);
        let mut add = |bytes: &[u8]| {
            for pair in bytes.chunks(2) {
                sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            }
        };
        if let Some(ip) = &self.ipv4 {
            add(&ip.source);
            add(&ip.destination);
        } else {
            let ip = self.ipv6.as_ref()?;
            add(&ip.source);
            add(&ip.destination);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        Some(sum as u16)
    }
}

/// Network layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// IPv4 or IPv6, with the protocol number of the payload.
    Ip {
        /// Source address.
        src: IpAddr,
        /// Destination address.
        dst: IpAddr,
        /// Protocol of the payload (after IPv6 extension headers).
        protocol: u8,
        /// A later fragment: no transport header.
        later_fragment: bool,
        /// Bytes of IP payload the header claims.
        payload_len: usize,
    },
    /// ARP.
    Arp,
}

/// Transport layer.
#[derive(Debug, Clone, Copy)]
pub enum Transport<'a> {
    /// UDP.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Payload length from the UDP header (length field minus 8).
        length: usize,
        /// The payload bytes captured.
        payload: &'a [u8],
    },
    /// TCP.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// The header (whole, with its options) and the payload as far as it was captured.
        segment: &'a [u8],
        /// Bytes of segment (header and payload) the IP header claims.
        length: usize,
    },
    /// ICMP or ICMPv6: the message as far as it was captured.
    Icmp {
        /// ICMPv6.
        v6: bool,
        /// Type, code, checksum, then the rest.
        message: &'a [u8],
    },
}

/// The transport layer etherparse found, and the UDP header for checksums.
fn transport<'a>(
    sliced: &LaxSlicedPacket<'a>,
    udp_header: &mut Option<(etherparse::UdpHeader, Option<&'a [u8]>)>,
) -> Option<Transport<'a>> {
    match &sliced.transport {
        Some(TransportSlice::Udp(udp)) => {
            let whole = udp.payload().len() + 8 == usize::from(udp.length());
            *udp_header = Some((udp.to_header(), whole.then(|| udp.payload())));
            Some(Transport::Udp {
                sport: udp.source_port(),
                dport: udp.destination_port(),
                length: usize::from(udp.length()).saturating_sub(8),
                payload: udp.payload(),
            })
        }
        Some(TransportSlice::Tcp(tcp)) => Some(Transport::Tcp {
            sport: tcp.source_port(),
            dport: tcp.destination_port(),
            segment: tcp.slice(),
            length: declared_payload(sliced).unwrap_or(tcp.slice().len()),
        }),
        Some(TransportSlice::Icmpv4(icmp)) => Some(Transport::Icmp {
            v6: false,
            message: icmp.slice(),
        }),
        Some(TransportSlice::Icmpv6(icmp)) => Some(Transport::Icmp {
            v6: true,
            message: icmp.slice(),
        }),
        _ => None,
    }
}

/// The IP payload's length as its header claims (IPv6: past the extension headers).
fn declared_payload(sliced: &LaxSlicedPacket<'_>) -> Option<usize> {
    match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            usize::from(h.total_len()).checked_sub(h.slice().len())
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            usize::from(ip.header().payload_length()).checked_sub(ip.extensions().slice().len())
        }
        _ => None,
    }
}

/// Dissect `data` of link type `link`.
#[must_use]
pub fn dissect(link: LinkType, data: &[u8]) -> Dissected<'_> {
    let sliced = match link {
        LinkType::Ethernet => LaxSlicedPacket::from_ethernet(data).ok(),
        LinkType::RawIp => LaxSlicedPacket::from_ip(data).ok(),
        LinkType::Null => data
            .get(4..)
            .and_then(|ip| LaxSlicedPacket::from_ip(ip).ok()),
        LinkType::LinuxSll => data.get(14..16).zip(data.get(16..)).map(|(t, rest)| {
            LaxSlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([t[0], t[1]])), rest)
        }),
        LinkType::LinuxSll2 => data.get(0..2).zip(data.get(20..)).map(|(t, rest)| {
            LaxSlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([t[0], t[1]])), rest)
        }),
        LinkType::Other(_) => None,
    };
    let Some(sliced) = sliced else {
        return Dissected::default();
    };
    let mut out = Dissected::default();
    if let Some(LinkSlice::Ethernet2(eth)) = &sliced.link {
        out.macs = Some((eth.source(), eth.destination()));
        out.ethertype = Some(eth.ether_type().0);
    }
    out.vlans = sliced.vlan_ids().iter().map(|id| id.value()).collect();
    if let Some(payload) = sliced.ether_payload() {
        out.ethertype = Some(payload.ether_type.0);
        if matches!(payload.ether_type.0, 0x0806 | 0x8035) {
            out.arp = Some(payload.payload);
        }
    }
    out.net = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            out.ipv4 = Some(h.to_header());
            Some(Net::Ip {
                src: IpAddr::V4(h.source_addr()),
                dst: IpAddr::V4(h.destination_addr()),
                protocol: ip.payload_ip_number().0,
                later_fragment: h.fragments_offset().value() != 0,
                payload_len: usize::from(h.total_len()).saturating_sub(h.slice().len()),
            })
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            out.ipv6 = Some(h.to_header());
            out.ipv6_exts = ip.extensions().slice();
            let payload = ip.payload();
            Some(Net::Ip {
                src: IpAddr::V6(h.source_addr()),
                dst: IpAddr::V6(h.destination_addr()),
                protocol: payload.ip_number.0,
                later_fragment: payload.fragmented
                    && ip.extensions().is_fragmenting_payload()
                    && is_later_v6_fragment(ip.extensions()),
                payload_len: usize::from(h.payload_length()),
            })
        }
        Some(LaxNetSlice::Arp(_)) => Some(Net::Arp),
        None => None,
    };
    out.transport = transport(&sliced, &mut out.udp);
    // etherparse stops at a UDP header that its length field contradicts; take what was
    // captured in that case, since a dissector shows what is there.
    if out.transport.is_none()
        && let Some(Net::Ip {
            protocol,
            later_fragment: false,
            ..
        }) = out.net
        && protocol == IpNumber::UDP.0
        && let Some(payload) = sliced.ip_payload()
        && payload.payload.len() >= 8
    {
        let p = payload.payload;
        out.transport = Some(Transport::Udp {
            sport: u16::from_be_bytes([p[0], p[1]]),
            dport: u16::from_be_bytes([p[2], p[3]]),
            length: usize::from(u16::from_be_bytes([p[4], p[5]])).saturating_sub(8),
            payload: &p[8..],
        });
    }
    out
}

/// Whether the extension headers hold a fragment header with a non-zero offset.
///
/// The chain is walked here, every length checked against the bytes etherparse kept: its own
/// iterator trusts header lengths that lax parsing did not check, and reads past the slice
/// (etherparse 0.21, found by `cargo xtask fuzz`; `fuzz/regressions/print_frame`).
fn is_later_v6_fragment(ext: &etherparse::Ipv6ExtensionsSlice<'_>) -> bool {
    let mut next = ext.first_header();
    let mut rest = ext.slice();
    while let Some(header) = next {
        let (Some(&following), Some(&size)) = (rest.first(), rest.get(1)) else {
            return false;
        };
        let len = match header {
            IpNumber::IPV6_FRAGMENTATION_HEADER => {
                if rest
                    .get(2..4)
                    .is_some_and(|f| u16::from_be_bytes([f[0], f[1]]) >> 3 != 0)
                {
                    return true;
                }
                8
            }
            IpNumber::IPV6_HEADER_HOP_BY_HOP
            | IpNumber::IPV6_ROUTE_HEADER
            | IpNumber::IPV6_DESTINATION_OPTIONS => (usize::from(size) + 1) * 8,
            IpNumber::AUTHENTICATION_HEADER => (usize::from(size) + 2) * 4,
            _ => return false,
        };
        let Some(after) = rest.get(len..) else {
            return false;
        };
        next = Some(IpNumber(following));
        rest = after;
    }
    false
}

/// Frames the unit tests build: NTP's UDP between two fixed hosts.
#[cfg(test)]
pub(crate) mod test_frames {
    /// Ethernet, IPv4 10.0.0.1 to 10.0.0.2, UDP `sport` to `dport` carrying `payload`.
    pub fn udp4(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(sport, dport)
            .write(&mut frame, payload)
            .unwrap();
        frame
    }

    /// Ethernet (with an 802.1Q tag of `vlan`, if any), IPv6 fd.. to fe.., UDP `sport` to
    /// `dport` carrying `payload`.
    pub fn udp6(vlan: Option<u16>, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        let eth = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let ip = match vlan {
            Some(id) => eth
                .single_vlan(id.try_into().unwrap())
                .ipv6([0xfd; 16], [0xfe; 16], 64),
            None => eth.ipv6([0xfd; 16], [0xfe; 16], 64),
        };
        ip.udp(sport, dport).write(&mut frame, payload).unwrap();
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offloaded_checksum_is_told_from_a_bad_one() {
        let mut frame = test_frames::udp4(40000, 123, &[0x23; 48]);
        let check = |frame: &[u8]| dissect(LinkType::Ethernet, frame).udp_checksum();
        assert_eq!(check(&frame), Some(UdpChecksum::Ok));
        // The pseudo-header's sum, by hand: 10.0+0.1+10.0+0.2 + 17 + 56.
        let pseudo: u16 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 56;
        let at = 14 + 20 + 6;
        frame[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
        assert_eq!(check(&frame), Some(UdpChecksum::Offloaded));
        frame[at..at + 2].copy_from_slice(&0x1234u16.to_be_bytes());
        assert!(matches!(
            check(&frame),
            Some(UdpChecksum::Bad { stored: 0x1234, .. })
        ));
    }

    /// An Ethernet frame with an IPv6 header whose chain starts with `next`, then `exts`,
    /// then 16 bytes of payload.
    fn ipv6(next: u8, exts: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        let payload = exts.len() + 16;
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(payload as u16).to_be_bytes());
        f.extend_from_slice(&[next, 64]);
        f.extend_from_slice(&[0xfd; 16]);
        f.extend_from_slice(&[0xfe; 16]);
        f.extend_from_slice(exts);
        f.extend_from_slice(&[0xab; 16]);
        f
    }

    /// A fragment header: next header UDP, `offset` in 8-byte units, more fragments set.
    fn fragment(offset: u16) -> [u8; 8] {
        let [a, b] = ((offset << 3) | 1).to_be_bytes();
        [17, 0, a, b, 0, 0, 0x12, 0x34]
    }

    fn later_fragment(frame: &[u8]) -> Option<bool> {
        match dissect(LinkType::Ethernet, frame).net {
            Some(Net::Ip { later_fragment, .. }) => Some(later_fragment),
            _ => None,
        }
    }

    #[test]
    fn ipv6_later_fragments_are_told_from_first_ones() {
        assert_eq!(later_fragment(&ipv6(44, &fragment(185))), Some(true));
        assert_eq!(later_fragment(&ipv6(44, &fragment(0))), Some(false));
        // Behind a hop-by-hop header (8 bytes, next: fragment).
        let mut chain = vec![44, 0, 0, 0, 0, 0, 0, 0];
        chain.extend_from_slice(&fragment(10));
        assert_eq!(later_fragment(&ipv6(0, &chain)), Some(true));
        // Two fragment headers, the second with the offset.
        let mut two = fragment(0).to_vec();
        two[0] = 44;
        two.extend_from_slice(&fragment(3));
        assert_eq!(later_fragment(&ipv6(44, &two)), Some(true));
    }

    #[test]
    fn a_first_fragment_whose_next_header_is_an_extension_header_reads_nothing_past_it() {
        // A first fragment (offset 0, more to come) announcing a hop-by-hop header next: lax
        // parsing stops at the fragment header, and etherparse's own iterator then read a
        // header out of the bytes after the chain, past its slice (the fuzz regression).
        let mut first = fragment(0);
        first[0] = 0;
        assert_eq!(later_fragment(&ipv6(44, &first)), Some(false));
        // Behind an authentication header, as in the fuzzer's frame.
        let mut chain = vec![44, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        chain.extend_from_slice(&first);
        assert_eq!(later_fragment(&ipv6(51, &chain)), Some(false));
        // And cut at every length: no panic.
        let frame = ipv6(51, &chain);
        for cut in 54..frame.len() {
            let _ = later_fragment(&frame[..cut]);
        }
    }
}
