//! Header parsing for the kernel programs: Ethernet, up to two VLAN tags, IPv4 (with options),
//! IPv6 (with extension headers), UDP.
//!
//! Every read goes through [`at`], which checks the whole header against the end of the
//! packet. Offsets stay below [`MAX_L4_OFFSET`] so the verifier can bound every pointer.

/// Where the IP addresses are, for the host filter.
///
/// A struct whose every field is always written, not an enum: for an enum, the compiler may
/// read a variant's field from the stack before testing the variant, and verifiers before
/// Linux 5.12 refuse any read of a stack slot that was not written on that path.
#[derive(Clone, Copy)]
pub struct Addresses {
    /// [`Addresses::NONE`], [`Addresses::V4`] or [`Addresses::V6`].
    pub family: u8,
    /// The offset of the IP header: its addresses are at bytes 12..20 (IPv4) or 8..40
    /// (IPv6). They are read only when a host filter asks.
    pub header: usize,
}

impl Addresses {
    /// Not IP, or not parsed that far.
    pub const NONE: u8 = 0;
    pub const V4: u8 = 4;
    pub const V6: u8 = 6;
    const NOTHING: Addresses = Addresses {
        family: Self::NONE,
        header: 0,
    };
}

/// What the parser found.
pub enum Verdict {
    /// A UDP datagram (the first fragment, or an unfragmented one).
    Udp { sport: u16, dport: u16 },
    /// Not IP, or IP that is not UDP.
    Other,
    /// A later IP fragment: no UDP header, so no ports.
    LaterFragment,
    /// Headers shorter than they claim, a bad IPv4 header length, or an IPv6 extension
    /// header chain longer than the parser follows.
    Unparsable,
}

/// Header layouts: where each field the parser reads sits, in bytes from its header's start.
pub mod offsets {
    /// Ethernet header (IEEE 802.3): two MAC addresses, then the EtherType.
    pub const ETH_HLEN: usize = 14;
    /// The EtherType after the two MAC addresses.
    pub const ETH_TYPE: usize = 12;
    pub const ETH_P_IP: u16 = 0x0800;
    pub const ETH_P_IPV6: u16 = 0x86dd;
    /// 802.1Q customer tag.
    pub const ETH_P_8021Q: u16 = 0x8100;
    /// 802.1ad service tag (QinQ outer tag).
    pub const ETH_P_8021AD: u16 = 0x88a8;
    /// A VLAN tag: TCI, then the EtherType it wraps.
    pub const VLAN_HLEN: usize = 4;
    pub const VLAN_TYPE: usize = 2;

    /// IPv4 (RFC 791 §3.1): version and header length in 32-bit words.
    pub const IPV4_VERSION_IHL: usize = 0;
    /// Version 4 with the 20-byte header: no options.
    pub const IPV4_PLAIN: u8 = 0x45;
    /// Flags and fragment offset (16 bits).
    pub const IPV4_FRAG: usize = 6;
    /// The fragment offset's 13 bits; non-zero on a later fragment.
    pub const IPV4_FRAG_OFFSET: u16 = 0x1fff;
    pub const IPV4_PROTOCOL: usize = 9;
    /// Source, then destination address.
    pub const IPV4_ADDRESSES: usize = 12;
    pub const IPV4_MIN_HLEN: usize = 20;

    /// IPv6 (RFC 8200 §3).
    pub const IPV6_NEXT_HEADER: usize = 6;
    pub const IPV6_HLEN: usize = 40;
    /// Extension headers (RFC 8200 §4): next header, then length.
    pub const EXT_NEXT_HEADER: usize = 0;
    pub const EXT_LENGTH: usize = 1;
    /// The fragment header (RFC 8200 §4.5): offset and flags (16 bits), 8 bytes in all.
    pub const FRAG_OFFSET_FLAGS: usize = 2;
    /// The fragment offset's 13 bits; non-zero on a later fragment.
    pub const FRAG_OFFSET: u16 = 0xfff8;
    pub const FRAG_HLEN: usize = 8;

    /// UDP (RFC 768): source port, destination port, length, checksum.
    pub const UDP_SPORT: usize = 0;
    pub const UDP_DPORT: usize = 2;
    pub const UDP_HLEN: usize = 8;

    pub const IPPROTO_UDP: u8 = 17;
    // IPv6 extension headers (RFC 8200 §4) that the parser walks.
    pub const IPV6_HOPOPTS: u8 = 0;
    pub const IPV6_ROUTING: u8 = 43;
    pub const IPV6_FRAGMENT: u8 = 44;
    pub const IPV6_AH: u8 = 51;
    pub const IPV6_DSTOPTS: u8 = 60;
}

#[expect(
    clippy::wildcard_imports,
    reason = "the header layouts are this module's vocabulary"
)]
use offsets::*;

/// IPv6 extension headers followed before giving up (counted as unparsable).
const IPV6_MAX_EXT: usize = 6;
/// Largest offset of the UDP header the parser accepts.
pub const MAX_L4_OFFSET: usize = 512;

/// The `N` bytes at `off`, if the packet has them.
#[inline(always)]
pub fn at<const N: usize>(start: usize, end: usize, off: usize) -> Option<&'static [u8; N]> {
    if start + off + N > end {
        return None;
    }
    // SAFETY: the N bytes at start + off lie inside the packet (checked just above), and
    // `[u8; N]` has alignment 1.
    Some(unsafe { &*((start + off) as *const [u8; N]) })
}

#[inline(always)]
pub fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Classify the frame in `start..end`, and say where its addresses are.
#[inline(always)]
pub fn classify(start: usize, end: usize) -> (Verdict, Addresses) {
    let Some(eth) = at::<ETH_HLEN>(start, end, 0) else {
        return (Verdict::Unparsable, Addresses::NOTHING);
    };
    let mut ethertype = be16([eth[ETH_TYPE], eth[ETH_TYPE + 1]]);
    let mut off = ETH_HLEN;
    // Up to two tags: 802.1ad outer + 802.1Q inner, or 802.1Q twice.
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let Some(tag) = at::<VLAN_HLEN>(start, end, off) else {
            return (Verdict::Unparsable, Addresses::NOTHING);
        };
        ethertype = be16([tag[VLAN_TYPE], tag[VLAN_TYPE + 1]]);
        off += VLAN_HLEN;
    }
    let (next, addresses) = match ethertype {
        ETH_P_IP => {
            let addresses = Addresses {
                family: Addresses::V4,
                header: off,
            };
            (ipv4(start, end, off), addresses)
        }
        ETH_P_IPV6 => (
            ipv6(start, end, off),
            Addresses {
                family: Addresses::V6,
                header: off,
            },
        ),
        _ => return (Verdict::Other, Addresses::NOTHING),
    };
    let off = match next {
        Ok(off) => off,
        Err(verdict) => return (verdict, addresses),
    };
    if off > MAX_L4_OFFSET {
        return (Verdict::Unparsable, addresses);
    }
    let Some(udp) = at::<UDP_HLEN>(start, end, off) else {
        return (Verdict::Unparsable, addresses);
    };
    (udp_ports(udp), addresses)
}

/// [`classify`] for the frames most links carry, in fewer steps: untagged IPv4 without
/// options and not a later fragment, untagged IPv6 whose first next header is UDP or not an
/// extension header, and anything untagged that is not IP. `None` for the rest (VLAN tags,
/// IPv4 options or fragments, IPv6 extension headers, headers cut short), which [`classify`]
/// decides; where this decides, it says what [`classify`] would.
///
/// That equivalence is enforced by `tests/tests/verdict.rs`: `every_frame_kind_gets_the_right_verdict`
/// and `truncated_at_every_length_never_a_false_match_never_a_miss` run every frame kind
/// (plain, tagged, with options, fragments, extension headers) and every truncation through
/// the programs with the default filter, where this path decides the plain ones, and compare
/// each verdict with the one expected of [`classify`]; `all_mode_matches_every_frame` and
/// `host_filter_matches_either_address` run frames the general way. A change here that
/// decides a frame differently from [`classify`] fails them.
#[inline(always)]
pub fn quick_classify(start: usize, end: usize) -> Option<(Verdict, Addresses)> {
    let eth = at::<ETH_HLEN>(start, end, 0)?;
    match be16([eth[ETH_TYPE], eth[ETH_TYPE + 1]]) {
        ETH_P_IP => {
            let ip = at::<IPV4_MIN_HLEN>(start, end, ETH_HLEN)?;
            if ip[IPV4_VERSION_IHL] != IPV4_PLAIN {
                return None;
            }
            let addresses = Addresses {
                family: Addresses::V4,
                header: ETH_HLEN,
            };
            if ip[IPV4_PROTOCOL] != IPPROTO_UDP {
                return Some((Verdict::Other, addresses));
            }
            if be16([ip[IPV4_FRAG], ip[IPV4_FRAG + 1]]) & IPV4_FRAG_OFFSET != 0 {
                return None;
            }
            let udp = at::<UDP_HLEN>(start, end, ETH_HLEN + IPV4_MIN_HLEN)?;
            Some((udp_ports(udp), addresses))
        }
        ETH_P_IPV6 => {
            let ip = at::<IPV6_HLEN>(start, end, ETH_HLEN)?;
            if ip[0] >> 4 != 6 {
                return None;
            }
            let addresses = Addresses {
                family: Addresses::V6,
                header: ETH_HLEN,
            };
            match ip[IPV6_NEXT_HEADER] {
                IPPROTO_UDP => {
                    let udp = at::<UDP_HLEN>(start, end, ETH_HLEN + IPV6_HLEN)?;
                    Some((udp_ports(udp), addresses))
                }
                IPV6_HOPOPTS | IPV6_ROUTING | IPV6_FRAGMENT | IPV6_AH | IPV6_DSTOPTS => None,
                _ => Some((Verdict::Other, addresses)),
            }
        }
        ETH_P_8021Q | ETH_P_8021AD => None,
        _ => Some((Verdict::Other, Addresses::NOTHING)),
    }
}

/// The ports of the UDP header `udp`.
#[inline(always)]
fn udp_ports(udp: &[u8; UDP_HLEN]) -> Verdict {
    Verdict::Udp {
        sport: be16([udp[UDP_SPORT], udp[UDP_SPORT + 1]]),
        dport: be16([udp[UDP_DPORT], udp[UDP_DPORT + 1]]),
    }
}

/// The IPv4 source and destination addresses of the header at `off`, as they are in the
/// packet (network byte order).
#[inline(always)]
pub fn ipv4_addresses(start: usize, end: usize, off: usize) -> Option<(u32, u32)> {
    if off > MAX_L4_OFFSET {
        return None;
    }
    let a = at::<8>(start, end, off + IPV4_ADDRESSES)?;
    Some((
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
    ))
}

/// The 16-byte IPv6 address at `off`, copied out of the packet (map keys live on the stack).
#[inline(always)]
pub fn ipv6_address(start: usize, end: usize, off: usize) -> Option<[u8; 16]> {
    if off > MAX_L4_OFFSET {
        return None;
    }
    at::<16>(start, end, off).copied()
}

/// Parse an IPv4 header at `off` (RFC 791); `Ok` holds the offset of the UDP header.
#[inline(always)]
fn ipv4(start: usize, end: usize, off: usize) -> Result<usize, Verdict> {
    let ip = at::<IPV4_MIN_HLEN>(start, end, off).ok_or(Verdict::Unparsable)?;
    if ip[IPV4_VERSION_IHL] >> 4 != 4 {
        return Err(Verdict::Unparsable);
    }
    let ihl = usize::from(ip[IPV4_VERSION_IHL] & 0x0f) * 4;
    if ihl < IPV4_MIN_HLEN {
        return Err(Verdict::Unparsable);
    }
    if ip[IPV4_PROTOCOL] != IPPROTO_UDP {
        return Err(Verdict::Other);
    }
    // Fragment offset non-zero: a later fragment, with no UDP header.
    if be16([ip[IPV4_FRAG], ip[IPV4_FRAG + 1]]) & IPV4_FRAG_OFFSET != 0 {
        return Err(Verdict::LaterFragment);
    }
    Ok(off + ihl)
}

/// Parse an IPv6 header and its extension headers at `off` (RFC 8200 §4); `Ok` holds the
/// offset of the UDP header.
#[inline(always)]
fn ipv6(start: usize, end: usize, off: usize) -> Result<usize, Verdict> {
    let ip = at::<IPV6_HLEN>(start, end, off).ok_or(Verdict::Unparsable)?;
    if ip[0] >> 4 != 6 {
        return Err(Verdict::Unparsable);
    }
    let mut next = ip[IPV6_NEXT_HEADER];
    let mut off = off + IPV6_HLEN;
    for _ in 0..IPV6_MAX_EXT {
        if off > MAX_L4_OFFSET {
            return Err(Verdict::Unparsable);
        }
        match next {
            IPPROTO_UDP => return Ok(off),
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => {
                let ext = at::<2>(start, end, off).ok_or(Verdict::Unparsable)?;
                next = ext[EXT_NEXT_HEADER];
                // In 8-octet units, not counting the first 8 (RFC 8200 §4.3).
                off += (usize::from(ext[EXT_LENGTH]) + 1) * 8;
            }
            IPV6_AH => {
                let ext = at::<2>(start, end, off).ok_or(Verdict::Unparsable)?;
                next = ext[EXT_NEXT_HEADER];
                // In 4-octet units, minus 2 (RFC 4302 §2.2).
                off += (usize::from(ext[EXT_LENGTH]) + 2) * 4;
            }
            IPV6_FRAGMENT => {
                let frag = at::<FRAG_HLEN>(start, end, off).ok_or(Verdict::Unparsable)?;
                if be16([frag[FRAG_OFFSET_FLAGS], frag[FRAG_OFFSET_FLAGS + 1]]) & FRAG_OFFSET != 0 {
                    return Err(Verdict::LaterFragment);
                }
                next = frag[EXT_NEXT_HEADER];
                off += FRAG_HLEN;
            }
            _ => return Err(Verdict::Other),
        }
    }
    match next {
        IPPROTO_UDP => Ok(off),
        IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS | IPV6_AH | IPV6_FRAGMENT => {
            Err(Verdict::Unparsable)
        }
        _ => Err(Verdict::Other),
    }
}
