//! A capture of NTP among other traffic, for the tests that run tcpdump beside ntptap over
//! it (`filter.rs`: expressions; `lines.rs`: the lines printed): TCP conversations with
//! options, DNS, ICMP and ICMPv6, ARP and RARP, 802.1Q, IPv4 and IPv6 fragments, IPv6
//! extension headers, broadcast and multicast, SCTP, ESP, GRE, IGMP, frames cut short.

use std::path::Path;

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const BROADCAST: [u8; 6] = [0xff; 6];
const MCAST4: [u8; 6] = [0x01, 0, 0x5e, 0, 1, 1];
const MCAST6: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

fn eth(dst: [u8; 6], src: [u8; 6], ty: u16, payload: &[u8]) -> Vec<u8> {
    [&dst[..], &src, &ty.to_be_bytes(), payload].concat()
}

fn vlan(dst: [u8; 6], src: [u8; 6], id: u16, ty: u16, payload: &[u8]) -> Vec<u8> {
    [
        &dst[..],
        &src,
        &0x8100u16.to_be_bytes(),
        &id.to_be_bytes(),
        &ty.to_be_bytes(),
        payload,
    ]
    .concat()
}

/// An IPv4 header (with `options` 4-byte words of NOPs) and its payload.
pub fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    frag: u16,
    options: usize,
    payload: &[u8],
) -> Vec<u8> {
    let ihl = 5 + options;
    let total = (ihl * 4 + payload.len()) as u16;
    let mut h = vec![(0x40 | ihl) as u8, 0];
    h.extend(total.to_be_bytes());
    h.extend([0x12, 0x34]);
    h.extend(frag.to_be_bytes());
    h.extend([64, proto, 0, 0]);
    h.extend(src);
    h.extend(dst);
    h.extend(std::iter::repeat_n(1u8, options * 4));
    h.extend(payload);
    h
}

fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend([next, 64]);
    h.extend(src);
    h.extend(dst);
    h.extend(payload);
    h
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(sport.to_be_bytes());
    h.extend(dport.to_be_bytes());
    h.extend(((8 + payload.len()) as u16).to_be_bytes());
    h.extend([0, 0]);
    h.extend(payload);
    h
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(sport.to_be_bytes());
    h.extend(dport.to_be_bytes());
    h.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    h
}

/// A TCP segment between IPv4 or IPv6 addresses (4 or 16 bytes each), its checksum right.
struct Segment<'a> {
    src: &'a [u8],
    dst: &'a [u8],
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    urgent: u16,
    options: &'a [u8],
    payload: &'a [u8],
}

impl Segment<'_> {
    fn bytes(&self) -> Vec<u8> {
        assert_eq!(self.options.len() % 4, 0, "options fill whole words");
        let offset = (5 + self.options.len() / 4) as u8;
        let mut h = Vec::new();
        h.extend(self.ports.0.to_be_bytes());
        h.extend(self.ports.1.to_be_bytes());
        h.extend(self.seq.to_be_bytes());
        h.extend(self.ack.to_be_bytes());
        h.extend([offset << 4, self.flags, 0x01, 0xf5, 0, 0]);
        h.extend(self.urgent.to_be_bytes());
        h.extend(self.options);
        h.extend(self.payload);
        let mut pseudo = [self.src, self.dst].concat();
        pseudo.extend([0, 6]);
        pseudo.extend((h.len() as u16).to_be_bytes());
        let sum = !ones_sum(&[pseudo, h.clone()].concat());
        h[16..18].copy_from_slice(&sum.to_be_bytes());
        h
    }
}

/// The 16-bit one's complement sum of `data`, folded.
fn ones_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

const SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 7, 0, 0, 0, 0, 1, 3, 3, 7,
];
const TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 8, 0, 0, 0, 9];
const SACK: [u8; 12] = [1, 1, 5, 10, 0, 0, 0x04, 0x4d, 0, 0, 0x04, 0xb1];
const DATA: [u8; 100] = [0x61; 100];

/// A TCP conversation with the options a Linux host sends (mss, sackOK, TS, nop, wscale),
/// data, a SACK block, urgent data, ECN, FIN and RST; segments with malformed options, an
/// unknown option and no flags at all; SYN over IPv6; HTTP on port 80 (which tcpdump decodes
/// further than ntptap).
fn tcp_conversation() -> Vec<Vec<u8>> {
    let (c, s) = ([10u8, 0, 0, 1], [10u8, 0, 0, 2]);
    let (syn_options, ts, sack, data) = (&SYN_OPTIONS[..], &TS[..], &SACK[..], &DATA[..]);
    let segment = |out: bool, seq, ack, flags, options: &'static [u8], payload: &'static [u8]| {
        let (src, dst, ports) = if out {
            (&c[..], &s[..], (50010, 8443))
        } else {
            (&s[..], &c[..], (8443, 50010))
        };
        Segment {
            src,
            dst,
            ports,
            seq,
            ack,
            flags,
            urgent: if flags & 0x20 != 0 { 10 } else { 0 },
            options,
            payload,
        }
        .bytes()
    };
    let segments = [
        (true, segment(true, 1000, 0, 0x02, syn_options, &[])),
        (false, segment(false, 5000, 1001, 0x12, syn_options, &[])),
        (true, segment(true, 1001, 5001, 0x10, ts, &[])),
        (true, segment(true, 1001, 5001, 0x18, ts, data)),
        (false, segment(false, 5001, 1001, 0x10, sack, &[])),
        (true, segment(true, 1101, 5001, 0x38, ts, &data[..10])),
        (false, segment(false, 5001, 1111, 0xd0, ts, &[])),
        // mss with a length of 5: tcpdump reads it at its size and says so, then goes on
        // from there; a length of 1, which it calls a bad option; an unknown kind.
        (
            true,
            segment(true, 1111, 5001, 0x10, &[2, 5, 0x05, 0xb4, 1, 1, 1, 0], &[]),
        ),
        (true, segment(true, 1111, 5001, 0x10, &[1, 2, 1, 0], &[])),
        (true, segment(true, 1111, 5001, 0x10, &[99, 4, 1, 2], &[])),
        (true, segment(true, 1111, 5001, 0x00, &[], &[])),
        (true, segment(true, 1111, 5001, 0x11, ts, &[])),
        (false, segment(false, 5001, 1112, 0x04, &[], &[])),
    ];
    let mut frames: Vec<Vec<u8>> = segments
        .into_iter()
        .map(|(out, seg)| {
            let (from, to, (a, b)) = if out {
                (MAC_A, MAC_B, (c, s))
            } else {
                (MAC_B, MAC_A, (s, c))
            };
            eth(to, from, 0x0800, &ipv4_with(a, b, 6, 0x4000, &seg))
        })
        .collect();
    let (a6, b6) = (v6(1), v6(2));
    let syn6 = Segment {
        src: &a6,
        dst: &b6,
        ports: (50011, 8443),
        seq: 7,
        ack: 0,
        flags: 0x02,
        urgent: 0,
        options: syn_options,
        payload: &[],
    };
    frames.push(eth(MAC_B, MAC_A, 0x86dd, &ipv6(a6, b6, 6, &syn6.bytes())));
    let http = Segment {
        src: &c,
        dst: &s,
        ports: (50012, 80),
        seq: 1,
        ack: 1,
        flags: 0x18,
        urgent: 0,
        options: &[],
        payload: b"GET / HTTP/1.1\r\nHost: b\r\n\r\n",
    };
    frames.push(eth(
        MAC_B,
        MAC_A,
        0x0800,
        &ipv4_with(c, s, 6, 0x4000, &http.bytes()),
    ));
    frames
}

/// An IPv4 header with its checksum right, and its payload.
fn ipv4_with(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let mut ip = ipv4(src, dst, proto, frag, 0, payload);
    let sum = !ones_sum(&ip[..20]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip
}

pub fn ntp(mode: u8) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = 0x20 | mode;
    p[1] = if mode == 4 { 2 } else { 0 };
    p
}

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = last;
    a
}

fn arp(op: u16, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0, 1, 0x08, 0, 6, 4];
    p.extend(op.to_be_bytes());
    p.extend(MAC_A);
    p.extend(spa);
    p.extend([0; 6]);
    p.extend(tpa);
    p
}

/// The frames of the capture: UDP of several kinds, then the rest.
fn frames() -> Vec<Vec<u8>> {
    let mut frames = udp_frames();
    frames.extend(other_frames());
    frames.extend(odd_frames());
    frames.extend(tcp_conversation());
    // An NTP reply cut short by a snapshot length (the UDP header only).
    let (a4, b4) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let mut cut = eth(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4(b4, a4, 17, 0, 0, &udp(123, 40007, &ntp(4))),
    );
    cut.truncate(14 + 20 + 8);
    frames.push(cut);
    frames
}

fn ipv6_all_nodes() -> [u8; 16] {
    let mut all = [0u8; 16];
    all[0] = 0xff;
    all[1] = 0x02;
    all[15] = 1;
    all
}

/// NTP, DNS, mDNS, DHCP, NTP multicast, over IPv4 (with and without options) and IPv6.
fn udp_frames() -> Vec<Vec<u8>> {
    let (a4, b4, c4) = ([10, 0, 0, 1], [10, 0, 0, 2], [192, 168, 7, 9]);
    let (a6, b6) = (v6(1), v6(2));
    let ll_all = ipv6_all_nodes();
    vec![
        // NTP over IPv4 and IPv6, both ways.
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(a4, b4, 17, 0x4000, 0, &udp(40000, 123, &ntp(3))),
        ),
        eth(
            MAC_A,
            MAC_B,
            0x0800,
            &ipv4(b4, a4, 17, 0x4000, 0, &udp(123, 40000, &ntp(4))),
        ),
        eth(
            MAC_B,
            MAC_A,
            0x86dd,
            &ipv6(a6, b6, 17, &udp(40001, 123, &ntp(3))),
        ),
        eth(
            MAC_A,
            MAC_B,
            0x86dd,
            &ipv6(b6, a6, 17, &udp(123, 40001, &ntp(4))),
        ),
        // Symmetric NTP (123 both ways), and NTP to a third host.
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(a4, c4, 17, 0, 0, &udp(123, 123, &ntp(1))),
        ),
        // IPv4 with options: ports after a longer header.
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(a4, b4, 17, 0, 2, &udp(40002, 123, &ntp(3))),
        ),
        // DNS, mDNS (multicast), DHCP (broadcast).
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(a4, b4, 17, 0, 0, &udp(53000, 53, &[0; 30])),
        ),
        eth(
            MCAST4,
            MAC_A,
            0x0800,
            &ipv4(a4, [224, 0, 0, 251], 17, 0, 0, &udp(5353, 5353, &[0; 20])),
        ),
        eth(
            BROADCAST,
            MAC_A,
            0x0800,
            &ipv4([0; 4], [255; 4], 17, 0, 0, &udp(68, 67, &[0; 240])),
        ),
        // NTP multicast (224.0.1.1), and IPv6 multicast.
        eth(
            MCAST4,
            MAC_A,
            0x0800,
            &ipv4(a4, [224, 0, 1, 1], 17, 0, 0, &udp(123, 123, &ntp(5))),
        ),
        eth(
            MCAST6,
            MAC_A,
            0x86dd,
            &ipv6(a6, ll_all, 58, &[128, 0, 0, 0, 0, 1, 0, 1]),
        ),
    ]
}

/// TCP, ICMP and ICMPv6, ARP and RARP.
fn other_frames() -> Vec<Vec<u8>> {
    let (a4, b4, c4) = ([10, 0, 0, 1], [10, 0, 0, 2], [192, 168, 7, 9]);
    let (a6, b6) = (v6(1), v6(2));
    let ll_all = ipv6_all_nodes();
    vec![
        // TCP: a SYN, a SYN-ACK, data, over IPv4 and IPv6; TCP on port 123.
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(a4, b4, 6, 0x4000, 0, &tcp(50000, 443, 0x02)),
        ),
        eth(
            MAC_A,
            MAC_B,
            0x0800,
            &ipv4(b4, a4, 6, 0x4000, 0, &tcp(443, 50000, 0x12)),
        ),
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(
                a4,
                b4,
                6,
                0x4000,
                0,
                &[tcp(50000, 443, 0x18), vec![0x41; 100]].concat(),
            ),
        ),
        eth(
            MAC_B,
            MAC_A,
            0x86dd,
            &ipv6(a6, b6, 6, &tcp(50001, 22, 0x02)),
        ),
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(a4, b4, 6, 0, 0, &tcp(50002, 123, 0x02)),
        ),
        // ICMP echo and reply; ICMPv6 echo; a neighbour solicitation.
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(a4, b4, 1, 0, 0, &[8, 0, 0, 0, 0, 1, 0, 1, 0, 0]),
        ),
        eth(
            MAC_A,
            MAC_B,
            0x0800,
            &ipv4(b4, a4, 1, 0, 0, &[0, 0, 0, 0, 0, 1, 0, 1, 0, 0]),
        ),
        eth(
            MAC_B,
            MAC_A,
            0x86dd,
            &ipv6(a6, b6, 58, &[128, 0, 0, 0, 0, 2, 0, 1]),
        ),
        eth(
            MCAST6,
            MAC_A,
            0x86dd,
            &ipv6(a6, ll_all, 58, &[135, 0, 0, 0, 0, 0, 0, 0]),
        ),
        // A port unreachable, quoting the datagram that had nowhere to go.
        eth(
            MAC_A,
            MAC_B,
            0x0800,
            &ipv4(
                b4,
                a4,
                1,
                0,
                0,
                &[
                    &[3, 3, 0, 0, 0, 0, 0, 0][..],
                    &ipv4(a4, b4, 17, 0, 0, &udp(40010, 5353, &[]))[..28],
                ]
                .concat(),
            ),
        ),
        // ARP request and reply; RARP.
        eth(BROADCAST, MAC_A, 0x0806, &arp(1, a4, b4)),
        eth(MAC_A, MAC_B, 0x0806, &arp(2, b4, a4)),
        eth(BROADCAST, MAC_A, 0x8035, &arp(3, c4, a4)),
    ]
}

/// Fragments, IPv6 extension headers, 802.1Q, other IP protocols, an unknown EtherType, a
/// runt.
fn odd_frames() -> Vec<Vec<u8>> {
    let (a4, b4, c4) = ([10, 0, 0, 1], [10, 0, 0, 2], [192, 168, 7, 9]);
    let (a6, b6) = (v6(1), v6(2));
    vec![
        // IPv4 fragments: the first of an NTP datagram, a later one (offset 185*8).
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(a4, b4, 17, 0x2000, 0, &udp(40003, 123, &ntp(3))),
        ),
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(a4, b4, 17, 185, 0, &[0x00, 0x7b, 0x00, 0x7b, 0, 0, 0, 0]),
        ),
        // IPv6 with a fragment header (first fragment of UDP to 123), a later fragment, and
        // a hop-by-hop header before UDP.
        eth(
            MAC_B,
            MAC_A,
            0x86dd,
            &ipv6(
                a6,
                b6,
                44,
                &[&[17, 0, 0, 1, 0, 0, 0, 9][..], &udp(40004, 123, &ntp(3))].concat(),
            ),
        ),
        eth(
            MAC_B,
            MAC_A,
            0x86dd,
            &ipv6(
                a6,
                b6,
                44,
                &[17, 0, 0x05, 0xc8, 0, 0, 0, 9, 0, 0x7b, 0, 0x7b],
            ),
        ),
        eth(
            MAC_B,
            MAC_A,
            0x86dd,
            &ipv6(
                a6,
                b6,
                0,
                &[&[17, 0, 1, 4, 0, 0, 0, 0][..], &udp(40005, 123, &ntp(3))].concat(),
            ),
        ),
        // 802.1Q-tagged NTP (VLAN 100) and ARP (VLAN 200).
        vlan(
            MAC_B,
            MAC_A,
            100,
            0x0800,
            &ipv4(a4, b4, 17, 0, 0, &udp(40006, 123, &ntp(3))),
        ),
        vlan(BROADCAST, MAC_A, 200, 0x0806, &arp(1, a4, c4)),
        // SCTP to port 123; ESP; GRE; IGMP.
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(
                a4,
                b4,
                132,
                0,
                0,
                &[0x13, 0x88, 0x00, 0x7b, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
        ),
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(a4, b4, 50, 0, 0, &[0, 0, 1, 0, 0, 0, 0, 1]),
        ),
        eth(
            MAC_B,
            MAC_A,
            0x0800,
            &ipv4(a4, b4, 47, 0, 0, &[0, 0, 0x08, 0]),
        ),
        eth(
            MCAST4,
            MAC_A,
            0x0800,
            &ipv4(a4, [224, 0, 0, 1], 2, 0, 0, &[0x11, 0, 0, 0, 0, 0, 0, 0]),
        ),
        // An unknown EtherType, and a frame too short for any header.
        eth(MAC_B, MAC_A, 0x88b5, &[1, 2, 3, 4]),
        vec![0x02, 0, 0, 0, 0, 0x0b, 0x02],
    ]
}

/// Write the capture: every frame whole, but the last, cut to 42 of its 90 bytes.
pub fn write_capture(path: &Path) {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let header = PcapHeader {
        snaplen: 65535,
        ts_resolution: pcap_file::pcap::PcapTsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let file = std::fs::File::create(path).expect("create the capture");
    let mut w = PcapWriter::with_header(file, header).expect("pcap header");
    let frames = frames();
    let last = frames.len() - 1;
    for (i, f) in frames.iter().enumerate() {
        let orig = if i == last { 90 } else { f.len() as u32 };
        let ts = std::time::Duration::new(1_700_000_000 + i as u64, 1000 * i as u32);
        w.write_packet(&PcapPacket::new(ts, orig, f).expect("a valid packet"))
            .expect("write a frame");
    }
}

/// The installed tcpdump.
pub fn tcpdump() -> std::path::PathBuf {
    ["/usr/sbin/tcpdump", "/usr/bin/tcpdump"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .expect("tcpdump is not installed: `cargo xtask setup` installs it")
}
