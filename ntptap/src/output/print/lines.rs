//! A frame's words below NTP, as tcpdump prints them: the link header (`-e`), the IP header
//! (`-v`), and the lines of UDP, TCP, ICMP and ARP. What ntptap does not decode it names by
//! its header alone (`UDP, length N`, `ip-proto-N`, an EtherType), never guessing.

use std::{collections::HashMap, fmt::Write as _, net::IpAddr};

use super::{
    super::decoded::Decoded,
    ntp_text::ntp_summary,
    text::{TextOptions, push_num},
};
use crate::{
    frame::LinkType,
    net::{Dissected, Net, Transport, UdpChecksum},
};

/// The frame's line after its timestamp: link header (`-e`), IP header (`-v`), addresses and
/// what the transport says.
pub(super) fn describe(
    line: &mut String,
    packet: &Decoded<'_>,
    options: &TextOptions,
    tcp: &mut TcpConversations,
) {
    let (frame, d) = (packet.frame, packet.layers());
    let after_link = options.link_header && d.macs.is_some();
    if after_link {
        link_line(line, frame.data, frame.orig_len, options.quick);
    }
    let verbose = options.verbose;
    let Some(Net::Ip {
        src,
        dst,
        protocol,
        later_fragment,
        payload_len,
    }) = d.net
    else {
        not_ip(line, d, frame, options, after_link);
        return;
    };
    if verbose > 0 {
        ip_detail(line, d, !after_link, !options.no_checksum);
    } else {
        line.push_str(ip_prefix(src, after_link));
    }
    // IPv6 extension headers: tcpdump names them after the addresses, then the transport
    // by its ports alone.
    let mut bare = false;
    if !d.ipv6_exts.is_empty() {
        let _ = write!(line, "{src} > {dst}: ");
        if !ipv6_ext_words(line, d, verbose) {
            return;
        }
        bare = true;
    }
    let endpoints = |line: &mut String, sport: u16, dport: u16| {
        if bare {
            let _ = write!(line, "{sport} > {dport}: ");
        } else {
            push_endpoint(line, src, sport);
            line.push_str(" > ");
            push_endpoint(line, dst, dport);
            line.push_str(": ");
        }
    };
    let addresses = |line: &mut String| {
        if !bare {
            let _ = write!(line, "{src} > {dst}: ");
        }
    };
    match d.transport {
        Some(Transport::Udp {
            sport,
            dport,
            length,
            ..
        }) => {
            endpoints(line, sport, dport);
            udp_words(line, packet, options, length);
        }
        Some(Transport::Tcp {
            sport,
            dport,
            segment,
            length,
        }) => {
            endpoints(line, sport, dport);
            let segment = Segment {
                src,
                dst,
                bytes: segment,
                length,
            };
            tcp_line(line, &segment, options, tcp);
        }
        Some(Transport::Icmp { v6, message }) => {
            addresses(line);
            let length = if v6 {
                payload_len.saturating_sub(d.ipv6_exts.len())
            } else {
                payload_len
            };
            // tcpdump checks ICMP checksums with -v, -K or not.
            let check = (verbose > 0)
                .then(|| icmp_checksum(v6, src, dst, message, length))
                .flatten();
            icmp_line(line, v6, message, length, verbose, check);
        }
        None => {
            addresses(line);
            if later_fragment {
                let _ = write!(line, "ip-proto-{protocol}");
            } else {
                let _ = write!(line, "ip-proto-{protocol} {payload_len}");
            }
        }
    }
}

/// After a UDP datagram's ports: its checksum (with -v or -vv, as tcpdump checks it), and
/// NTP's words or `UDP, length N`.
fn udp_words(line: &mut String, packet: &Decoded<'_>, options: &TextOptions, length: usize) {
    let (d, verbose) = (packet.layers(), options.verbose);
    // tcpdump checks UDP checksums with -v over IPv6, -vv over IPv4 (not with -K).
    let check = !options.no_checksum && ((d.ipv6.is_some() && verbose > 0) || verbose > 1);
    let fragment = d
        .ipv4
        .as_ref()
        .is_some_and(|ip| ip.more_fragments || ip.fragment_offset.value() != 0);
    let unset = d.ipv4.is_some() && d.udp.as_ref().is_some_and(|(h, _)| h.checksum == 0);
    if check && unset && !fragment {
        line.push_str("[no cksum] ");
    }
    match check.then(|| d.udp_checksum()).flatten() {
        Some(UdpChecksum::Ok) => line.push_str("[udp sum ok] "),
        // tcpdump says "bad" here; it is the device's to fill in.
        Some(UdpChecksum::Offloaded) => line.push_str("[udp sum offloaded] "),
        Some(UdpChecksum::Bad { stored, correct }) => {
            let _ = write!(line, "[bad udp cksum 0x{stored:04x} -> 0x{correct:04x}!] ");
        }
        None => {}
    }
    if let Some(ntp) = packet.ntp().filter(|_| !options.quick) {
        ntp_summary(line, &ntp.packet, length, verbose);
    } else {
        let _ = write!(line, "UDP, length {length}");
    }
}

/// A frame with no IP: ARP and RARP in tcpdump's words; an EtherType tcpdump does not know
/// as tcpdump shows it (the link header, and the payload in hex unless a dump flag shows the
/// bytes); others by their EtherType; a frame too short for its link header, `[|ether]`.
fn not_ip(
    line: &mut String,
    d: &Dissected<'_>,
    frame: &crate::frame::Frame<'_>,
    options: &TextOptions,
    after_link: bool,
) {
    let header = super::dump::link_header_len(frame.link, &d.vlans);
    let length = (frame.orig_len as usize).saturating_sub(header);
    if let Some(arp) = d.arp
        && arp_line(line, arp, length, options.verbose > 0, after_link)
    {
        return;
    }
    match d.ethertype {
        Some(0x0806) => {
            let _ = write!(line, "ARP, length {length}");
        }
        Some(t) if ethertype_name(t) == "Unknown" && frame.link == LinkType::Ethernet => {
            if !after_link {
                link_line(line, frame.data, frame.orig_len, options.quick);
            }
            // tcpdump's raw print, unless -q, -x or -X (not -A) said otherwise.
            let suppressed = options.quick || options.dump.is_some_and(|dump| dump.hex);
            if !suppressed && let Some(payload) = frame.data.get(header..) {
                super::dump::hex_dump(line, payload);
            }
        }
        Some(t) => {
            let _ = write!(
                line,
                "ethertype {} (0x{t:04x}), length {}",
                ethertype_name(t),
                frame.orig_len
            );
        }
        None => line.push_str(" [|ether]"),
    }
}

/// tcpdump's words for IPv6 extension headers: `HBH `, `DSTOPT `, `frag (0|56) ` (the
/// options and the identification with -v). False where nothing follows (a later fragment,
/// or a header ntptap does not word, named by its number).
fn ipv6_ext_words(line: &mut String, d: &Dissected<'_>, verbose: u8) -> bool {
    let Some(ip) = &d.ipv6 else { return true };
    let (mut exts, mut next) = (d.ipv6_exts, ip.next_header.0);
    while let Some(&[following, hdr_len]) = exts.get(..2) {
        match next {
            0 | 60 => {
                let len = (usize::from(hdr_len) + 1) * 8;
                let Some(body) = exts.get(2..len) else {
                    return false;
                };
                line.push_str(if next == 0 { "HBH " } else { "DSTOPT " });
                ipv6_options(line, body, verbose);
                exts = &exts[len..];
            }
            44 => {
                let Some(h) = exts.get(..8) else { return false };
                let offset = u16::from_be_bytes([h[2], h[3]]) & 0xfff8;
                let ident = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                // tcpdump's fragment length: the payload the IPv6 header claims, past this
                // header and those before it.
                let before = d.ipv6_exts.len() - exts.len();
                let length = usize::from(ip.payload_length).saturating_sub(before + 8);
                let _ = if verbose > 0 {
                    write!(line, "frag (0x{ident:08x}:{offset}|{length})")
                } else {
                    write!(line, "frag ({offset}|{length})")
                };
                if offset != 0 {
                    return false;
                }
                line.push(' ');
                exts = &exts[8..];
            }
            other => {
                let _ = write!(line, "ip-proto-{other}");
                return false;
            }
        }
        next = following;
    }
    true
}
/// The options of a hop-by-hop or destination options header, as tcpdump words them with -v
/// (`(padn)`, `(rtalert: 0x0000) `), then a space; nothing without -v.
fn ipv6_options(line: &mut String, body: &[u8], verbose: u8) {
    if verbose == 0 {
        return;
    }
    let mut at = 0;
    while let Some(&kind) = body.get(at) {
        let len = if kind == 0 {
            1
        } else {
            match body.get(at + 1) {
                Some(&l) => usize::from(l) + 2,
                None => break,
            }
        };
        if at + len > body.len() {
            break;
        }
        match kind {
            0 => line.push_str("(pad1)"),
            1 => line.push_str("(padn)"),
            5 if len == 4 => {
                let _ = write!(
                    line,
                    "(rtalert: 0x{:04x}) ",
                    u16::from_be_bytes([body[at + 2], body[at + 3]])
                );
            }
            _ => {
                let _ = write!(line, "(opt_type 0x{kind:02x}: len={})", len - 2);
            }
        }
        at += len;
    }
    line.push(' ');
}

/// The checksum an ICMP (or ICMPv6, over its pseudo-header) message should carry, and the
/// one it carries; None where the message was not captured whole.
fn icmp_checksum(
    v6: bool,
    src: IpAddr,
    dst: IpAddr,
    message: &[u8],
    length: usize,
) -> Option<(u16, u16)> {
    let m = message.get(..length).filter(|m| m.len() >= 4)?;
    let mut sum = ones_sum(0, &m[..2]);
    sum = ones_sum(sum, &m[4..]);
    if v6 {
        let (IpAddr::V6(a), IpAddr::V6(b)) = (src, dst) else {
            return None;
        };
        sum = ones_sum(sum, &a.octets());
        sum = ones_sum(sum, &b.octets());
        sum = ones_sum(sum, &(length as u32).to_be_bytes());
        sum = ones_sum(sum, &[0, 0, 0, 58]);
    }
    let stored = u16::from_be_bytes([m[2], m[3]]);
    Some((stored, !(sum as u16)))
}

/// `sum` plus the 16-bit words of `data` (an odd last byte padded), folded to 16 bits.
fn ones_sum(mut sum: u32, data: &[u8]) -> u32 {
    for pair in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([
            pair[0],
            pair.get(1).copied().unwrap_or(0),
        ]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// A TCP segment and the addresses it travels between.
struct Segment<'a> {
    src: IpAddr,
    dst: IpAddr,
    /// The header, whole, and the payload as far as it was captured.
    bytes: &'a [u8],
    /// Header and payload, as many bytes as the IP header claims.
    length: usize,
}

/// The conversations seen, each by its first sequence numbers, for tcpdump's relative ones.
/// tcpdump keeps them all; ntptap keeps [`TcpConversations::MAX`] and starts over past that
/// (a conversation then shows absolute numbers once, as a new one does).
#[derive(Debug, Default)]
pub(super) struct TcpConversations {
    /// (lower endpoint, higher endpoint) in tcpdump's collating order → (seq, ack) bases.
    bases: HashMap<(IpAddr, IpAddr, u16, u16), (u32, u32)>,
}

impl TcpConversations {
    const MAX: usize = 65_536;

    /// tcpdump's relative numbers: the first ACK-bearing segment of a conversation (or any
    /// SYN) sets the bases and prints its numbers as they are; later ones print `seq - base`.
    /// Returns (seq, ack, the bases for SACK blocks as (seq, ack), reversed).
    fn relative(
        &mut self,
        s: &Segment<'_>,
        sport: u16,
        dport: u16,
        syn: bool,
        seq: u32,
        ack: u32,
    ) -> (u32, u32, (u32, u32), bool) {
        let rev = sport > dport || (sport == dport && octets(s.src) > octets(s.dst));
        let key = if rev {
            (s.dst, s.src, dport, sport)
        } else {
            (s.src, s.dst, sport, dport)
        };
        match self.bases.get(&key) {
            Some(&(bseq, back)) if !syn => {
                let (seq, ack) = if rev {
                    (seq.wrapping_sub(back), ack.wrapping_sub(bseq))
                } else {
                    (seq.wrapping_sub(bseq), ack.wrapping_sub(back))
                };
                (seq, ack, (bseq, back), rev)
            }
            _ => {
                if self.bases.len() >= Self::MAX {
                    self.bases.clear();
                }
                let bases = if rev {
                    (ack.wrapping_sub(1), seq)
                } else {
                    (seq, ack.wrapping_sub(1))
                };
                self.bases.insert(key, bases);
                (seq, ack, bases, rev)
            }
        }
    }
}

/// An address's bytes, compared as tcpdump compares them (memcmp).
fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// tcpdump's TCP words: `Flags [S.], cksum 0x... (correct), seq 1:101, ack 1, win 512,
/// options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 100`; `tcp 100` with -q.
/// ntptap stops there: it does not decode what TCP carries.
fn tcp_line(
    line: &mut String,
    s: &Segment<'_>,
    options: &TextOptions,
    conversations: &mut TcpConversations,
) {
    let b = s.bytes;
    let be16 = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let be32 = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    // The dissector hands over a whole header only (20 bytes and its options).
    let (sport, dport) = (be16(0), be16(2));
    let hlen = usize::from(b[12] >> 4) * 4;
    let payload = s.length.saturating_sub(hlen);
    if options.quick {
        let _ = write!(line, "tcp {payload}");
        if hlen > s.length {
            let _ = write!(line, " [bad hdr length {hlen} - too long, > {}]", s.length);
        }
        return;
    }
    let flags = b[13];
    line.push_str("Flags [");
    let mut any = false;
    for (bit, word) in [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, '.'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
    ] {
        if flags & bit != 0 {
            line.push(word);
            any = true;
        }
    }
    if !any {
        line.push_str("none");
    }
    line.push(']');
    let (syn, ack_flag) = (flags & 0x02 != 0, flags & 0x10 != 0);
    let (mut seq, mut ack) = (be32(4), be32(8));
    let (mut bases, mut rev) = ((0, 0), false);
    if !options.absolute_seq && ack_flag {
        (seq, ack, bases, rev) = conversations.relative(s, sport, dport, syn, seq, ack);
    }
    if hlen > s.length {
        let _ = write!(line, " [bad hdr length {hlen} - too long, > {}]", s.length);
        return;
    }
    if options.verbose > 0
        && !options.no_checksum
        && b.len() >= s.length
        && let Some(correct) = tcp_checksum(s)
    {
        let stored = be16(16);
        let _ = write!(line, ", cksum 0x{stored:04x}");
        if stored == correct {
            line.push_str(" (correct)");
        } else {
            let _ = write!(line, " (incorrect -> 0x{correct:04x})");
        }
    }
    if options.verbose > 1 || payload > 0 || flags & 0x07 != 0 {
        let _ = write!(line, ", seq {seq}");
        if payload > 0 {
            let _ = write!(line, ":{}", seq.wrapping_add(payload as u32));
        }
    }
    if ack_flag {
        let _ = write!(line, ", ack {ack}");
    }
    let _ = write!(line, ", win {}", be16(14));
    if flags & 0x20 != 0 {
        let _ = write!(line, ", urg {}", be16(18));
    }
    if hlen > 20 {
        let sack_base = if rev { bases.0 } else { bases.1 };
        if !tcp_options(line, &b[20..hlen], sack_base) {
            return;
        }
    }
    let _ = write!(line, ", length {payload}");
}

/// The TCP checksum the segment should carry, over its pseudo-header; None where it cannot be
/// computed (not all of it captured).
fn tcp_checksum(s: &Segment<'_>) -> Option<u16> {
    let tcp = etherparse::TcpSlice::from_slice(s.bytes.get(..s.length)?).ok()?;
    match (s.src, s.dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => tcp.calc_checksum_ipv4(a.octets(), b.octets()).ok(),
        (IpAddr::V6(a), IpAddr::V6(b)) => tcp.calc_checksum_ipv6(a.octets(), b.octets()).ok(),
        _ => None,
    }
}

/// `, options [mss 1460,sackOK,...]` as tcpdump prints them, its quirks included (an option
/// whose length field disagrees with its kind is read at the kind's size and marked
/// `[len N]`); false where tcpdump ends the line at a malformed option (`[bad opt]`).
fn tcp_options(line: &mut String, mut opts: &[u8], sack_base: u32) -> bool {
    line.push_str(", options [");
    let mut previous = false;
    let bad = |line: &mut String, previous: bool| {
        line.push_str("[bad opt]");
        if previous {
            line.push(']');
        }
        false
    };
    while let Some((&kind, rest)) = opts.split_first() {
        if previous {
            line.push(',');
        }
        let (len, data) = if kind <= 1 {
            (1, rest)
        } else {
            match rest.split_first() {
                Some((&len, data)) if len >= 2 && usize::from(len) <= opts.len() => {
                    (usize::from(len), data)
                }
                _ => return bad(line, previous),
            }
        };
        match tcp_option_name(kind) {
            Some(name) => line.push_str(name),
            None => {
                let _ = write!(line, "unknown-{kind}");
            }
        }
        let be32 =
            |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        // How many bytes the kind reads (tcpdump's datalen), if they are there.
        let datalen = match kind {
            0 | 1 | 4 => 0,
            2 | 3 | 6 | 7 | 8 | 11 | 12 | 13 => {
                let n = match kind {
                    2 => 2,
                    3 => 1,
                    8 => 8,
                    _ => 4,
                };
                if n > data.len() {
                    return bad(line, previous);
                }
                let _ = match kind {
                    2 => write!(line, " {}", u16::from_be_bytes([data[0], data[1]])),
                    3 => write!(line, " {}", data[0]),
                    8 => write!(line, " val {} ecr {}", be32(0), be32(4)),
                    _ => write!(line, " {}", be32(0)),
                };
                n
            }
            5 => {
                let n = len - 2;
                if n % 8 == 0 {
                    let _ = write!(line, " {} ", n / 8);
                    for at in (0..n).step_by(8) {
                        let (s, e) = (be32(at), be32(at + 4));
                        let _ = write!(
                            line,
                            "{{{}:{}}}",
                            s.wrapping_sub(sack_base),
                            e.wrapping_sub(sack_base)
                        );
                    }
                } else {
                    line.push_str(" invalid sack");
                }
                n
            }
            _ => {
                // Unknown kinds, and those tcpdump interprets further (md5, uto, tcp-ao,
                // mptcp, tfo, exp), whose bytes ntptap prints as tcpdump prints unknown ones.
                let n = len - 2;
                if n > 0 {
                    line.push_str(" 0x");
                    for b in &data[..n] {
                        let _ = write!(line, "{b:02x}");
                    }
                }
                n
            }
        };
        let read = datalen + if kind <= 1 { 1 } else { 2 };
        if read != len {
            let _ = write!(line, "[len {len}]");
        }
        previous = true;
        opts = opts.get(read..).unwrap_or_default();
        if kind == 0 {
            break;
        }
    }
    line.push(']');
    true
}

/// tcpdump's names of TCP options.
fn tcp_option_name(kind: u8) -> Option<&'static str> {
    const NAMES: [(u8, &str); 19] = [
        (0, "eol"),
        (1, "nop"),
        (2, "mss"),
        (3, "wscale"),
        (4, "sackOK"),
        (5, "sack"),
        (6, "echo"),
        (7, "echoreply"),
        (8, "TS"),
        (11, "cc"),
        (12, "ccnew"),
        (13, ""),
        (19, "md5"),
        (20, "scps"),
        (28, "uto"),
        (29, "tcp-ao"),
        (30, "mptcp"),
        (34, "tfo"),
        (254, "exp"),
    ];
    NAMES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, name)| *name)
}

/// tcpdump's ARP words for Ethernet and IPv4 (`ARP, Request who-has 10.0.0.2 tell 10.0.0.1,
/// length 28`); false for other hardware or protocols, which ntptap names by length only.
fn arp_line(line: &mut String, arp: &[u8], length: usize, verbose: bool, after_link: bool) -> bool {
    let Some(m) = arp.get(..28) else { return false };
    if m[..6] != [0, 1, 0x08, 0, 6, 4] {
        return false;
    }
    let op = u16::from_be_bytes([m[6], m[7]]);
    let (sha, spa, tha, tpa) = (&m[8..14], &m[14..18], &m[18..24], &m[24..28]);
    let ip = |a: &[u8]| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
    let hw = mac_of;
    let words = match op {
        1 => {
            let mut w = format!("Request who-has {}", ip(tpa));
            if tha.iter().any(|&b| b != 0) {
                let _ = write!(w, " ({})", hw(tha));
            }
            let _ = write!(w, " tell {}", ip(spa));
            w
        }
        2 => format!("Reply {} is-at {}", ip(spa), hw(sha)),
        3 => format!("Reverse Request who-is {} tell {}", hw(tha), hw(sha)),
        4 => format!("Reverse Reply {} at {}", hw(tha), ip(tpa)),
        8 => format!("Inverse Request who-is {} tell {}", hw(tha), hw(sha)),
        9 => format!("Inverse Reply {} at {}", hw(sha), ip(spa)),
        _ => return false,
    };
    if !after_link {
        line.push_str("ARP, ");
    }
    if verbose {
        line.push_str("Ethernet (len 6), IPv4 (len 4), ");
    }
    let _ = write!(line, "{words}, length {length}");
    true
}

/// `address.port`, as tcpdump writes an endpoint.
pub(super) fn push_endpoint(line: &mut String, addr: IpAddr, port: u16) {
    let mut buf = itoa::Buffer::new();
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            line.push_str(buf.format(a));
            for octet in [b, c, d] {
                line.push('.');
                line.push_str(buf.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(line, "{v6}");
        }
    }
    line.push('.');
    line.push_str(buf.format(port));
}

/// `-e`: tcpdump's link header words: `MAC > MAC, ethertype IPv4 (0x0800), length 90: `, and
/// for each 802.1Q tag `vlan 100, p 0, ethertype IPv4 (0x0800), `. `quick` (-q): EtherTypes
/// by their names alone (`IPv4`, `Unknown Ethertype (0x88b5)`).
pub(super) fn link_line(line: &mut String, data: &[u8], orig_len: u32, quick: bool) {
    let be16 = |at: usize| {
        data.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (Some(dst), Some(src), Some(mut ty)) = (data.get(..6), data.get(6..12), be16(12)) else {
        return;
    };
    let _ = write!(line, "{} > {}, ", mac_of(src), mac_of(dst));
    ether_type(line, ty, quick);
    let _ = write!(line, ", length {orig_len}: ");
    let mut at = 12;
    while matches!(ty, 0x8100 | 0x88a8 | 0x9100 | 0x9200)
        && let (Some(tci), Some(inner)) = (be16(at + 2), be16(at + 4))
    {
        let _ = write!(line, "vlan {}, p {}", tci & 0x0fff, tci >> 13);
        if tci & 0x1000 != 0 {
            line.push_str(", DEI");
        }
        line.push_str(", ");
        ether_type(line, inner, quick);
        line.push_str(", ");
        ty = inner;
        at += 4;
    }
}

/// `ethertype IPv4 (0x0800)`, or with -q `IPv4`.
fn ether_type(line: &mut String, t: u16, quick: bool) {
    let _ = match (quick, ethertype_name(t)) {
        (true, "Unknown") => write!(line, "Unknown Ethertype (0x{t:04x})"),
        (true, name) => write!(line, "{name}"),
        (false, name) => write!(line, "ethertype {name} (0x{t:04x})"),
    };
}

fn mac_of(b: &[u8]) -> String {
    mac([b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// tcpdump's words for the ICMP messages it is asked about most: echo request and reply,
/// and a port unreachable (IPv4); others by their type number, "length" the message's.
/// `check`: with -v, the checksum carried and the one it should be.
fn icmp_line(
    line: &mut String,
    v6: bool,
    message: &[u8],
    length: usize,
    verbose: u8,
    check: Option<(u16, u16)>,
) {
    let be16 = |at: usize| {
        message
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    if v6 {
        match check {
            Some((stored, correct)) if stored != correct => {
                let _ = write!(
                    line,
                    "[bad icmp6 cksum 0x{stored:04x} -> 0x{correct:04x}!] "
                );
            }
            Some(_) => line.push_str("[icmp6 sum ok] "),
            None => {}
        }
    }
    let kind = message.first().copied();
    let echo = match (v6, kind) {
        (false, Some(8)) | (true, Some(128)) => Some("echo request"),
        (false, Some(0)) | (true, Some(129)) => Some("echo reply"),
        _ => None,
    };
    let family = if v6 { "ICMP6, " } else { "ICMP " };
    if let (Some(what), Some(id), Some(seq)) = (echo, be16(4), be16(6)) {
        let _ = write!(line, "{family}{what}, id {id}, seq {seq}");
        // tcpdump leaves an ICMPv6 echo's length out with -v.
        if !(v6 && verbose > 0) {
            let _ = write!(line, ", length {length}");
        }
    } else if v6 && kind == Some(135) && (verbose == 0 || message.len() <= 24) {
        // A neighbour solicitation: its target (its options, printed with -v, only when
        // it has none).
        line.push_str("ICMP6, neighbor solicitation");
        if verbose > 0 {
            let _ = write!(line, ", length {length}");
        }
        match message.get(8..24) {
            Some(target) => {
                let target: [u8; 16] = target.try_into().unwrap_or_default();
                let _ = write!(line, ", who has {}", std::net::Ipv6Addr::from(target));
                if verbose == 0 {
                    let _ = write!(line, ", length {length}");
                }
            }
            None => line.push_str(" [|icmp6]"),
        }
    } else if let Some(words) = (!v6).then(|| port_unreachable(message)).flatten() {
        let _ = write!(line, "ICMP {words}, length {length}");
    } else if let Some(t) = kind {
        let _ = write!(line, "{family}type {t}, length {length}");
    } else {
        let _ = write!(
            line,
            "{}, length {length}",
            family.trim_end_matches([',', ' '])
        );
    }
    if !v6
        && let Some((stored, correct)) = check
        && stored != correct
    {
        let _ = write!(line, " (wrong icmp cksum {stored:x} (->{correct:x})!)");
    }
}

/// `10.0.0.2 udp port 5353 unreachable`: a port unreachable quotes the datagram's IPv4
/// header and its first 8 bytes.
fn port_unreachable(message: &[u8]) -> Option<String> {
    if message.get(..2) != Some(&[3, 3]) {
        return None;
    }
    let ip = message.get(8..)?;
    let hl = usize::from(ip.first()? & 0x0f) * 4;
    let name = match ip.get(9)? {
        17 => "udp",
        6 => "tcp",
        _ => return None,
    };
    let dst = ip.get(16..20)?;
    let port = ip.get(hl + 2..hl + 4)?;
    Some(format!(
        "{}.{}.{}.{} {name} port {} unreachable",
        dst[0],
        dst[1],
        dst[2],
        dst[3],
        u16::from_be_bytes([port[0], port[1]])
    ))
}

/// "IP " or "IP6 " before an IP line; nothing after `-e`'s link header, as tcpdump prints.
pub(super) fn ip_prefix(addr: IpAddr, after_link: bool) -> &'static str {
    match (after_link, addr.is_ipv4()) {
        (true, _) => "",
        (false, true) => "IP ",
        (false, false) => "IP6 ",
    }
}

pub(super) fn mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

pub(super) fn ethertype_name(t: u16) -> &'static str {
    match t {
        0x0800 => "IPv4",
        0x86dd => "IPv6",
        0x0806 => "ARP",
        0x8035 => "Reverse ARP",
        0x8100 => "802.1Q",
        0x88a8 => "802.1Q-QinQ",
        _ => "Unknown",
    }
}

/// tcpdump's `-v` IP header: `IP (tos 0x0, ttl 64, ..., length 76)` and a line break, or
/// `IP6 (hlim 64, ...) ` on the same line. `labelled`: with "IP "/"IP6 " first (not after
/// `-e`'s link header, which names the EtherType already); `check`: the IPv4 header's
/// checksum is checked (not with `-K`).
pub(super) fn ip_detail(line: &mut String, d: &Dissected<'_>, labelled: bool, check: bool) {
    if let Some(ip) = &d.ipv4 {
        let tos = (ip.dscp.value() << 2) | ip.ecn.value();
        let _ = write!(line, "{}(tos 0x{tos:x}", if labelled { "IP " } else { "" });
        line.push_str(match tos & 3 {
            1 => ",ECT(1)",
            2 => ",ECT(0)",
            3 => ",CE",
            _ => "",
        });
        if ip.time_to_live >= 1 {
            line.push_str(", ttl ");
            push_num(line, ip.time_to_live);
        }
        line.push_str(", id ");
        push_num(line, ip.identification);
        line.push_str(", offset ");
        push_num(line, u32::from(ip.fragment_offset.value()) * 8);
        // tcpdump's bittok2str over (MF "+", DF "DF"); the reserved bit etherparse drops.
        line.push_str(", flags [");
        line.push_str(match (ip.more_fragments, ip.dont_fragment) {
            (true, true) => "+, DF",
            (true, false) => "+",
            (false, true) => "DF",
            (false, false) => "none",
        });
        line.push_str("], proto ");
        push_protocol(line, ip.protocol.0);
        line.push_str(", length ");
        push_num(line, ip.total_len);
        if !ip.options.is_empty() {
            line.push_str(", options (");
            ip_options(line, ip.options.as_slice());
            line.push(')');
        }
        if check && ip.calc_header_checksum() != ip.header_checksum {
            let _ = write!(
                line,
                ", bad cksum {:x} (->{:x})!",
                ip.header_checksum,
                ip.calc_header_checksum()
            );
        }
        line.push_str(")\n    ");
    } else if let Some(ip) = &d.ipv6 {
        line.push_str(if labelled { "IP6 (" } else { "(" });
        if ip.traffic_class != 0 {
            let _ = write!(line, "class 0x{:02x}, ", ip.traffic_class);
        }
        if ip.flow_label.value() != 0 {
            let _ = write!(line, "flowlabel 0x{:05x}, ", ip.flow_label.value());
        }
        line.push_str("hlim ");
        push_num(line, ip.hop_limit);
        line.push_str(", next-header ");
        push_protocol(line, ip.next_header.0);
        line.push_str(", payload length ");
        push_num(line, ip.payload_length);
        line.push_str(") ");
    }
}

/// `UDP (17)`: an IP protocol's name and number, as the `-v` headers give them.
fn push_protocol(line: &mut String, p: u8) {
    line.push_str(protocol_name(p));
    line.push_str(" (");
    push_num(line, p);
    line.push(')');
}

/// tcpdump's IPv4 option names (`NOP,NOP,RA`), and its complaint at a bad length.
fn ip_options(line: &mut String, mut opts: &[u8]) {
    let mut first = true;
    while let Some(&code) = opts.first() {
        if !first {
            line.push(',');
        }
        first = false;
        match code {
            0 => line.push_str("EOL"),
            1 => line.push_str("NOP"),
            7 => line.push_str("RR"),
            68 => line.push_str("timestamp"),
            130 => line.push_str("security"),
            131 => line.push_str("LSRR"),
            137 => line.push_str("SSRR"),
            148 => line.push_str("RA"),
            82 => line.push_str("traceroute"),
            _ => {
                let _ = write!(line, "unknown {code}");
            }
        }
        if code == 0 {
            return;
        }
        let len = if code == 1 {
            1
        } else {
            match opts.get(1) {
                Some(&l) if l >= 2 && usize::from(l) <= opts.len() => usize::from(l),
                Some(&l) => {
                    let _ = write!(line, " [bad length {l}]");
                    return;
                }
                None => return,
            }
        };
        if code == 148 && len >= 4 {
            let value = u16::from_be_bytes([opts[2], opts[3]]);
            if value != 0 {
                let _ = write!(line, " value {value}");
            }
        }
        opts = &opts[len..];
    }
}

/// The names tcpdump (master) gives IP protocol numbers in `-v` headers.
pub(super) fn protocol_name(p: u8) -> &'static str {
    match p {
        0 => "HBH",
        1 => "ICMP",
        2 => "IGMP",
        4 => "IPIP",
        6 => "TCP",
        8 => "EGP",
        9 => "IGRP",
        17 => "UDP",
        33 => "DCCP",
        41 => "IPv6",
        43 => "Routing",
        44 => "Fragment",
        46 => "RSVP",
        47 => "GRE",
        50 => "ESP",
        51 => "AH",
        55 => "Mobile IP",
        58 => "ICMPv6",
        62 => "Mobile IP (old)",
        88 => "EIGRP",
        89 => "OSPF",
        103 => "PIM",
        108 => "Compressed IP",
        112 => "VRRP",
        113 => "PGM",
        132 => "SCTP",
        135 => "Mobility",
        143 => "Ethernet",
        _ => "unknown",
    }
}
