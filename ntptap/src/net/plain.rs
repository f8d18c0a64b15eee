//! The UDP datagram of a plain frame, read at fixed offsets: Ethernet II with no tag, IPv4
//! without options and not a fragment, or IPv6 with UDP as its next header, every length field
//! agreeing with the bytes captured. Most NTP frames are such frames, and the outputs that want
//! only their NTP packet (a pcapng file's residence comments, the exchange tracker) need not
//! dissect them: under the bench's flood the dissection and its move into the frame's cell
//! were a fifth of `-w FILE.pcapng` (BENCHMARKS.md, "The reader against its floor").
//!
//! Anything else is `None`, and the caller dissects: where [`udp`] answers, it answers what
//! [`super::dissect`] does (the test below holds it to that over every cut and change of a
//! frame's header bytes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::frame::LinkType;

/// A UDP datagram's ends and its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IPv4's time to live, IPv6's hop limit.
    pub hop_limit: Option<u8>,
    /// The payload, captured whole.
    pub payload: &'a [u8],
}

const ETH_HLEN: usize = 14;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
const UDP: u8 = 17;

/// The datagram of a plain frame (see the module), or `None`.
#[must_use]
pub fn udp(link: LinkType, data: &[u8]) -> Option<Datagram<'_>> {
    if link != LinkType::Ethernet {
        return None;
    }
    let be = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let ip_len = data.len().checked_sub(ETH_HLEN)?;
    let (src, dst, hop_limit, datagram) = match be(data.get(..ETH_HLEN)?, 12) {
        0x0800 => {
            let ip = data.get(ETH_HLEN..ETH_HLEN + IPV4_HLEN)?;
            // Version 4 and a header of five words; no fragment (MF clear, offset zero).
            if ip[0] != 0x45
                || be(ip, 6) & 0x3fff != 0
                || ip[9] != UDP
                || usize::from(be(ip, 2)) != ip_len
            {
                return None;
            }
            let addr = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
            (
                IpAddr::V4(addr(12)),
                IpAddr::V4(addr(16)),
                ip[8],
                &data[ETH_HLEN + IPV4_HLEN..],
            )
        }
        0x86dd => {
            let ip = data.get(ETH_HLEN..ETH_HLEN + IPV6_HLEN)?;
            if ip[0] >> 4 != 6 || ip[6] != UDP || usize::from(be(ip, 4)) != ip_len - IPV6_HLEN {
                return None;
            }
            let addr = |at: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&ip[at..at + 16]);
                Ipv6Addr::from(a)
            };
            (
                IpAddr::V6(addr(8)),
                IpAddr::V6(addr(24)),
                ip[7],
                &data[ETH_HLEN + IPV6_HLEN..],
            )
        }
        _ => return None,
    };
    if datagram.len() < UDP_HLEN || usize::from(be(datagram, 4)) != datagram.len() {
        return None;
    }
    Some(Datagram {
        src,
        dst,
        sport: be(datagram, 0),
        dport: be(datagram, 2),
        hop_limit: Some(hop_limit),
        payload: &datagram[UDP_HLEN..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Transport, dissect, test_frames};

    /// What the dissection says of the frame's UDP datagram.
    fn dissected(link: LinkType, data: &[u8]) -> Option<Datagram<'_>> {
        dissect(link, data).datagram()
    }

    fn frames() -> Vec<Vec<u8>> {
        vec![
            test_frames::udp4(40000, 123, &[0x23; 48]),
            test_frames::udp6(None, 123, 123, &[0x24; 48]),
        ]
    }

    #[test]
    fn a_plain_frame_is_read_without_dissecting_it() {
        for frame in frames() {
            let plain = udp(LinkType::Ethernet, &frame).expect("a plain frame");
            assert_eq!(Some(plain), dissected(LinkType::Ethernet, &frame));
            assert_eq!(plain.payload.len(), 48);
            // The same bytes on another link type are not read here.
            assert_eq!(udp(LinkType::RawIp, &frame), None);
        }
    }

    /// Every cut of the frame, and every header byte (Ethernet, IP, UDP) set to values that
    /// change what it says: where the plain reading answers, the dissection answers the same.
    #[test]
    fn where_the_plain_reading_answers_it_answers_what_the_dissection_does() {
        let mut answered = 0;
        let mut refused = 0;
        for frame in frames() {
            let headers = frame.len() - 48;
            let mut cases: Vec<Vec<u8>> = (0..=frame.len()).map(|n| frame[..n].to_vec()).collect();
            // Padding after the datagram, as short Ethernet frames carry.
            let mut padded = frame.clone();
            padded.extend_from_slice(&[0; 6]);
            cases.push(padded);
            for at in 0..headers {
                for value in [
                    0, 1, 4, 5, 6, 0x11, 0x20, 0x3f, 0x40, 0x46, 0x60, 0x81, 0xff,
                ] {
                    let mut changed = frame.clone();
                    changed[at] = value;
                    cases.push(changed.clone());
                    changed[at] = frame[at] ^ value;
                    cases.push(changed);
                }
            }
            for case in &cases {
                let plain = udp(LinkType::Ethernet, case);
                if let Some(datagram) = plain {
                    answered += 1;
                    assert_eq!(plain, dissected(LinkType::Ethernet, case), "{case:02x?}");
                    // What the outputs take from a plain frame besides (its transport layer
                    // as a whole, no VLAN tags) is the dissection's too.
                    let d = dissect(LinkType::Ethernet, case);
                    assert!(d.vlans.is_empty());
                    assert!(
                        matches!(d.transport, Some(Transport::Udp { length, .. })
                            if length == datagram.payload.len()),
                        "{case:02x?}"
                    );
                } else {
                    refused += 1;
                }
            }
        }
        // Both outcomes happen: the comparison is not vacuous.
        assert!(answered > 100 && refused > 100, "{answered} {refused}");
    }
}
