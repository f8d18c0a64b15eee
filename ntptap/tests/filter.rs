//! Filter expressions against libpcap, frame for frame: a capture of NTP among other traffic
//! (TCP, DNS, ICMP and ICMPv6, ARP and RARP, 802.1Q, IPv4 and IPv6 fragments, IPv6 extension
//! headers, broadcast and multicast, SCTP, frames cut short), and hundreds of expressions
//! (pcap-filter(7)'s examples, tcpdump's habits, and combinations of every primitive). For
//! each, `ntptap -r CAP -w OUT EXPR` writes the same bytes as `tcpdump -r CAP -w REF EXPR`.
//! The same programs run in the kernel (`tests/tests/capture.rs` compares them live).
//!
//! Needs tcpdump (`cargo xtask setup` installs it); without it the test says so and fails.

mod common;

use std::process::Command;

use common::mixed::{ipv4, ntp, tcpdump, udp, write_capture};

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
