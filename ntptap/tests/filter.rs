//! Filter expressions against libpcap, frame for frame: a capture of NTP among other traffic
//! (TCP, DNS, ICMP and ICMPv6, ARP and RARP, 802.1Q, IPv4 and IPv6 fragments, IPv6 extension
//! headers, broadcast and multicast, SCTP, frames cut short), and hundreds of expressions
//! (pcap-filter(7)'s examples, tcpdump's habits, and combinations of every primitive). For
//! each, `ntptap -r CAP -w OUT EXPR` writes the same bytes as `tcpdump -r CAP -w REF EXPR`.
//! The same programs run in the kernel (`tests/tests/capture.rs` compares them live).
//!
//! Needs tcpdump (`cargo xtask setup` installs it); without it the test says so and fails.

use std::{path::Path, process::Command};

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
fn ipv4(
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

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
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

fn ntp(mode: u8) -> Vec<u8> {
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
fn write_capture(path: &Path) {
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

/// One primitive or relation each: every kind pcap-filter(7) has that ntptap evaluates.
const ATOMS: &[&str] = &[
    "udp port 123",
    "port 123",
    "port ntp",
    "src port 123",
    "dst port 123",
    "udp src port 123",
    "tcp dst port 443",
    "tcp port 22",
    "sctp port 123",
    "portrange 120-130",
    "udp portrange 50000-60000",
    "src portrange 1-1024",
    "host 10.0.0.1",
    "src host 10.0.0.1",
    "dst host 10.0.0.2",
    "ip host 10.0.0.2",
    "arp host 10.0.0.2",
    "host fd00::1",
    "ip6 src host fd00::2",
    "net 10.0.0.0/8",
    "net 10",
    "dst net 192.168.7.0 mask 255.255.255.0",
    "src net 192.168",
    "net fd00::/8",
    "net fd00::/127",
    "ip",
    "ip6",
    "arp",
    "rarp",
    "udp",
    "tcp",
    "icmp",
    "icmp6",
    "sctp",
    "igmp",
    "esp",
    "ip proto 47",
    "ip proto \\udp",
    "ip6 proto 17",
    "proto 17",
    "ip6 proto 58",
    "ether proto 0x88b5",
    "ether proto \\arp",
    "ether host 02:00:00:00:00:0a",
    "ether src 02:00:00:00:00:0b",
    "ether dst ff:ff:ff:ff:ff:ff",
    "broadcast",
    "ether broadcast",
    "multicast",
    "ether multicast",
    "ip multicast",
    "ip6 multicast",
    "greater 100",
    "less 60",
    "len >= 90",
    "len = 42",
    "udp[8] & 7 = 4",
    "udp[8] & 7 = 3",
    "udp[8:1] & 0x38 = 0x20",
    "ip[6:2] & 0x1fff != 0",
    "ip[9] = 17",
    "ip[0] & 0xf > 5",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) = (tcp-syn|tcp-ack)",
    "tcp[13] = 2",
    "icmp[icmptype] = icmp-echo",
    "icmp[icmptype] != icmp-echo",
    "icmp6[icmp6type] = icmp6-echo",
    "icmp6[0] = 135",
    "ether[0] & 1 = 1",
    "ether[12:2] = 0x0800",
    "ip[2:2] > 100",
    "ip[2:2] - ((ip[0] & 0xf) << 2) > 60",
    "udp[2:2] = 123",
    "udp[4:2] - 8 = 48",
    "ip6[6] = 44",
    "arp[7] = 2",
    "tcp[((tcp[12] & 0xf0) >> 2)] = 0x41",
    "len - 14 > 60",
    "ip[16] >= 224",
    "ip[12:4] = 0x0a000001",
    "udp[8] % 8 = 3",
    "udp[8] / 8 = 4",
    "udp[8] ^ 0x23 = 0",
    "0 - 1 = 0xffffffff",
];

/// pcap-filter(7)'s examples and tcpdump habits: and, or, not, parentheses, inheritance.
const COMBINED: &[&str] = &[
    "not udp port 123",
    "udp port 123 and host 10.0.0.1",
    "udp port 123 and not host 10.0.0.1",
    "host 10.0.0.1 or 10.0.0.2",
    "host 10.0.0.1 and not 10.0.0.2",
    "port 123 or 53",
    "udp and (port 53 or port 5353)",
    "icmp or udp port 123",
    "ip and not udp",
    "ip6 and udp port 123",
    "tcp and (src port 443 or dst port 443)",
    "not (arp or rarp)",
    "!tcp && !udp",
    "udp && port 123 || arp",
    "src host 10.0.0.1 and dst host 10.0.0.2",
    "src or dst host 10.0.0.2",
    "src and dst net 10.0.0.0/8",
    "ether src 02:00:00:00:00:0a and not broadcast",
    "(udp[8] & 7 = 3) or (udp[8] & 7 = 4)",
    "udp port 123 and udp[8] & 7 = 4",
    "tcp port 123 or udp port 123",
    "greater 60 and less 100",
    "not ip and not ip6",
];

/// The expressions: pcap-filter(7)'s examples and tcpdump habits, then combinations.
fn expressions() -> Vec<String> {
    let atoms = ATOMS;
    let mut all: Vec<String> = atoms.iter().map(|a| (*a).to_owned()).collect();
    all.extend(COMBINED.iter().map(|s| (*s).to_owned()));
    // Every pair of a few dozen atoms, joined by and, or, and with not: a few hundred more.
    let pick: Vec<&str> = atoms.iter().step_by(3).copied().collect();
    for (i, a) in pick.iter().enumerate() {
        for b in pick.iter().skip(i + 1).step_by(4) {
            all.push(format!("({a}) and ({b})"));
            all.push(format!("({a}) or not ({b})"));
        }
    }
    all
}

fn tcpdump() -> std::path::PathBuf {
    ["/usr/sbin/tcpdump", "/usr/bin/tcpdump"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .expect("tcpdump is not installed: `cargo xtask setup` installs it")
}

/// Every expression keeps the frames libpcap keeps: the files written are the same bytes,
/// with libpcap's optimizer (tcpdump's default) and without it (`-O`).
#[test]
fn expressions_keep_the_frames_libpcap_keeps() {
    compare_with_libpcap(&[]);
}

#[test]
fn unoptimized_expressions_keep_the_frames_libpcap_keeps() {
    compare_with_libpcap(&["-O"]);
}

fn compare_with_libpcap(flags: &[&str]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cap = dir.path().join("mixed.pcap");
    write_capture(&cap);
    let expressions = expressions();
    let mut differ = Vec::new();
    let (mut kept_some, mut nothing) = (0, 0);
    for (i, e) in expressions.iter().enumerate() {
        let (ours, theirs) = (
            dir.path().join(format!("{i}.ntptap")),
            dir.path().join(format!("{i}.tcpdump")),
        );
        let out = Command::new(env!("CARGO_BIN_EXE_ntptap"))
            .args(flags)
            .arg("-r")
            .arg(&cap)
            .arg("-w")
            .arg(&ours)
            .arg(e)
            .output()
            .expect("run ntptap");
        assert!(
            out.status.success(),
            "ntptap refused {e:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = Command::new(tcpdump())
            .args(flags)
            .args(["-r"])
            .arg(&cap)
            .arg("--time-stamp-precision=nano")
            .arg("-w")
            .arg(&theirs)
            .arg(e)
            .output()
            .expect("run tcpdump");
        let a = std::fs::read(&ours).unwrap();
        if !status.status.success() {
            // libpcap's optimizer proves some expressions match nothing and refuses them;
            // ntptap keeps no frame of them.
            let said = String::from_utf8_lossy(&status.stderr);
            assert!(
                said.contains("rejects all packets"),
                "tcpdump refused {e:?}: {said}"
            );
            assert_eq!(a.len(), 24, "{e:?} rejects every frame for libpcap");
            nothing += 1;
            continue;
        }
        let b = std::fs::read(&theirs).unwrap();
        if a != b {
            differ.push(e.clone());
        }
        if b.len() > 24 {
            kept_some += 1;
        }
    }
    eprintln!(
        "{} expressions, {kept_some} keeping some frames, {nothing} none by libpcap's proof; \
         {} differ",
        expressions.len(),
        differ.len()
    );
    assert!(expressions.len() >= 300, "{}", expressions.len());
    assert!(differ.is_empty(), "not as libpcap decides: {differ:#?}");
}

/// What ntptap does not evaluate is refused at start, naming the primitive.
#[test]
fn what_is_not_evaluated_is_refused_by_name() {
    for (e, says) in [
        ("vlan 100", "'vlan'"),
        ("mpls", "'mpls'"),
        ("ip broadcast", "netmask"),
        ("host ntp.example.org", "not names"),
        ("gateway 10.0.0.1", "'gateway'"),
        ("port 99999", "65535"),
        ("net 10.0.0.1/8", "non-network bits"),
        ("udp[8:3] = 1", "1, 2 or 4"),
        ("tcp host 10.0.0.1", "not primitives"),
        ("udp port 123 and", "end"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ntptap"))
            .args(["-r", "/dev/null", e])
            .output()
            .expect("run ntptap");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(says),
            "{e}: {stderr}"
        );
    }
}

/// ICMP echo requests and replies (IPv4 and IPv6) and a port unreachable print tcpdump's
/// line, word for word.
#[test]
fn icmp_lines_are_tcpdumps() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cap = dir.path().join("mixed.pcap");
    write_capture(&cap);
    let expression =
        "icmp[0] = 8 or icmp[0] = 0 or icmp[0] = 3 or icmp6[0] = 128 or icmp6[0] = 129";
    let ours = Command::new(env!("CARGO_BIN_EXE_ntptap"))
        .args(["-t", "-n", "-r"])
        .arg(&cap)
        .arg(expression)
        .output()
        .expect("run ntptap");
    let theirs = Command::new(tcpdump())
        .args(["-t", "-n", "-r"])
        .arg(&cap)
        .arg(expression)
        .output()
        .expect("run tcpdump");
    let (ours, theirs) = (
        String::from_utf8_lossy(&ours.stdout).into_owned(),
        String::from_utf8_lossy(&theirs.stdout).into_owned(),
    );
    assert_eq!(ours.lines().count(), 5, "{ours}");
    assert_eq!(ours, theirs);
}

/// Expressions are compiled for Ethernet: a file of another link type is refused, never read
/// at the wrong offsets.
#[test]
fn an_expression_on_frames_that_are_not_ethernet_is_refused() {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("raw.pcap");
    let header = PcapHeader {
        datalink: pcap_file::DataLink::RAW,
        ..PcapHeader::default()
    };
    let file = std::fs::File::create(&path).expect("create");
    let mut w = PcapWriter::with_header(file, header).expect("pcap header");
    let ip = ipv4(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        17,
        0,
        0,
        &udp(40000, 123, &ntp(3)),
    );
    let packet = PcapPacket::new(std::time::Duration::from_secs(1), ip.len() as u32, &ip);
    w.write_packet(&packet.expect("a valid packet"))
        .expect("write");
    drop(w);
    let out = Command::new(env!("CARGO_BIN_EXE_ntptap"))
        .arg("-r")
        .arg(&path)
        .arg("udp port 123")
        .output()
        .expect("run ntptap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("for Ethernet"),
        "{stderr}"
    );
    // Without an expression the file reads as before.
    let out = Command::new(env!("CARGO_BIN_EXE_ntptap"))
        .arg("-r")
        .arg(&path)
        .output()
        .expect("run ntptap");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("NTPv4"));
}
