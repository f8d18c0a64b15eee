//! Verdict tests: the kernel programs run on synthetic frames with BPF_PROG_TEST_RUN.
//!
//! Each frame is built here with a known answer: does it match the port set, is it a later
//! fragment, is it cut short? For every frame the programs must pass it (XDP_PASS /
//! TC_ACT_UNSPEC), count it exactly once in the right counter, and, when it matches, put
//! exactly its bytes in the ring. Matching frames are also run cut at every length from 0 to
//! their full size: never a false match, never a miss.

use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use ntptap::capture::{CaptureConfig, Counts, Programs, xdp_program};
use ntptap_common::{Counter, DIRECTION_EGRESS, DIRECTION_INGRESS, MAX_DATA, names};

const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1) as the u32 the kernel reports.
const TC_ACT_UNSPEC: u32 = u32::MAX;

/// What the programs should decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Match,
    NoMatch,
    Fragment,
    Unparsable,
}

/// A frame and where its UDP header starts (if it has one).
struct Built {
    bytes: Vec<u8>,
    udp_at: Option<usize>,
}

#[derive(Clone, Copy)]
enum L4 {
    Udp {
        sport: u16,
        dport: u16,
        payload: usize,
    },
    Tcp {
        sport: u16,
        dport: u16,
    },
    Icmp,
}

fn l4_bytes(l4: L4) -> (u8, Vec<u8>) {
    match l4 {
        L4::Udp {
            sport,
            dport,
            payload,
        } => {
            let mut b = Vec::new();
            b.extend_from_slice(&sport.to_be_bytes());
            b.extend_from_slice(&dport.to_be_bytes());
            b.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            // An NTPv4 client request, then padding for longer payloads.
            b.push(0x23);
            b.extend(std::iter::repeat_n(0xa5, payload.saturating_sub(1)));
            (17, b)
        }
        L4::Tcp { sport, dport } => {
            let mut b = Vec::new();
            b.extend_from_slice(&sport.to_be_bytes());
            b.extend_from_slice(&dport.to_be_bytes());
            b.extend_from_slice(&[0; 8]);
            b.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
            (6, b)
        }
        L4::Icmp => (1, vec![8, 0, 0, 0, 0, 1, 0, 1]),
    }
}

fn ethernet(tags: &[u16], ethertype: u16) -> Vec<u8> {
    let mut b = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    for (i, tpid) in tags.iter().enumerate() {
        b.extend_from_slice(&tpid.to_be_bytes());
        b.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    b.extend_from_slice(&ethertype.to_be_bytes());
    b
}

/// Ethernet (with `tags`), IPv4 with `options` bytes of options, then `l4`.
fn ipv4(tags: &[u16], options: usize, frag_offset: u16, l4: L4) -> Built {
    let (proto, l4) = l4_bytes(l4);
    let mut b = ethernet(tags, 0x0800);
    let ihl = (20 + options) / 4;
    let total = (ihl * 4 + l4.len()) as u16;
    b.push(0x40 | ihl as u8);
    b.push(0);
    b.extend_from_slice(&total.to_be_bytes());
    b.extend_from_slice(&[0x12, 0x34]);
    b.extend_from_slice(&frag_offset.to_be_bytes());
    b.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    // Options: NOPs ending with End of Option List.
    b.extend(std::iter::repeat_n(1u8, options.saturating_sub(1)));
    if options > 0 {
        b.push(0);
    }
    // The low 13 bits are the fragment offset: zero for an unfragmented or first fragment.
    let udp_at = (proto == 17 && frag_offset.trailing_zeros() >= 13).then_some(b.len());
    b.extend_from_slice(&l4);
    Built { bytes: b, udp_at }
}

/// An IPv6 extension header for `ipv6`.
#[derive(Clone, Copy)]
enum Ext {
    HopByHop,
    Routing,
    DestOpts,
    /// Fragment header with the given offset (in 8-byte units); 0 is a first fragment.
    Fragment(u16),
    Ah,
}

impl Ext {
    fn number(self) -> u8 {
        match self {
            Ext::HopByHop => 0,
            Ext::Routing => 43,
            Ext::Fragment(_) => 44,
            Ext::Ah => 51,
            Ext::DestOpts => 60,
        }
    }

    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            // Offset, then M=1 (more fragments), identification 7.
            Ext::Fragment(offset) => {
                let [hi, lo] = ((offset << 3) | 1).to_be_bytes();
                vec![next, 0, hi, lo, 0, 0, 0, 7]
            }
            // Payload length 2 (in 4-byte units, minus 2): 16 bytes.
            Ext::Ah => [vec![next, 2], vec![0; 14]].concat(),
            // Header extension length 1 (in 8-byte units, minus 1): 16 bytes, a PadN option.
            _ => [vec![next, 1, 1, 12], vec![0; 12]].concat(),
        }
    }
}

/// Ethernet (with `tags`), IPv6 with the extension headers `exts`, then `l4`.
fn ipv6(tags: &[u16], exts: &[Ext], l4: L4) -> Built {
    let (proto, l4) = l4_bytes(l4);
    let mut ext_bytes = Vec::new();
    for (i, ext) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, |e| e.number());
        ext_bytes.extend(ext.bytes(next));
    }
    let later_fragment = exts
        .iter()
        .any(|e| matches!(e, Ext::Fragment(o) if *o != 0));
    let mut b = ethernet(tags, 0x86dd);
    b.extend_from_slice(&[0x60, 0, 0, 0]);
    b.extend_from_slice(&((ext_bytes.len() + l4.len()) as u16).to_be_bytes());
    b.push(exts.first().map_or(proto, |e| e.number()));
    b.push(64);
    b.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    b.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    b.extend_from_slice(&ext_bytes);
    let udp_at = (proto == 17 && !later_fragment).then_some(b.len());
    b.extend_from_slice(&l4);
    Built { bytes: b, udp_at }
}

const NTP: L4 = L4::Udp {
    sport: 40000,
    dport: 123,
    payload: 48,
};

struct Harness {
    programs: Programs,
    /// The programs under test: both XDP programs where the kernel has
    /// `bpf_xdp_load_bytes`, only the copy-loop one where it has not, and the TC pair.
    names: Vec<&'static str>,
}

fn is_xdp(program: &str) -> bool {
    program == names::XDP || program == names::XDP_COPY
}

fn direction_of(program: &str) -> u8 {
    if program == names::TC_EGRESS {
        DIRECTION_EGRESS
    } else {
        DIRECTION_INGRESS
    }
}

impl Harness {
    fn new(snaplen: u32, all: bool) -> Self {
        Self::with_hosts(snaplen, all, Vec::new())
    }

    fn with_hosts(snaplen: u32, all: bool, hosts: Vec<std::net::IpAddr>) -> Self {
        Self::build(snaplen, all, hosts, vec![123])
    }

    fn build(snaplen: u32, all: bool, hosts: Vec<std::net::IpAddr>, ports: Vec<u16>) -> Self {
        ntptap_tests::require_root();
        let config = CaptureConfig {
            snaplen,
            ring_bytes: 1 << 20,
            ports,
            all,
            hosts,
            ..CaptureConfig::default()
        };
        let mut programs = Programs::load(&config).expect("load the programs");
        // BPF_PROG_TEST_RUN runs frames as if they came in on the loopback device (ifindex
        // 1): count them in slot 1, as the loader would an attached interface.
        programs.set_slot(1, 1).expect("give lo a counter slot");
        let mut names = vec![names::XDP_COPY];
        if xdp_program(&mut programs.ebpf).0 == names::XDP {
            names.insert(0, names::XDP);
        } else {
            eprintln!("this kernel has no bpf_xdp_load_bytes: testing the copy-loop XDP program");
        }
        for name in &names {
            let xdp: &mut Xdp = programs.ebpf.program_mut(name).unwrap().try_into().unwrap();
            xdp.load()
                .unwrap_or_else(|e| panic!("{name} passes the verifier: {e:?}"));
        }
        for name in [names::TC_INGRESS, names::TC_EGRESS] {
            let tc: &mut SchedClassifier =
                programs.ebpf.program_mut(name).unwrap().try_into().unwrap();
            tc.load()
                .unwrap_or_else(|e| panic!("{name} passes the verifier: {e:?}"));
            names.push(name);
        }
        Harness { programs, names }
    }

    fn counts(&self) -> Counts {
        // Slot 1: lo's (see `build`).
        Counts::read(&self.programs.counters, [(1, "lo")]).expect("read counters")
    }

    /// Run `frame` through one program; check the verdict, the counters and the ring.
    /// Returns false when the kernel refused the input (frames shorter than an Ethernet header).
    fn check(&mut self, program: &str, frame: &[u8], expect: Expect, what: &str) -> bool {
        let before = self.counts();
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..Default::default()
        };
        let program_ref = self.programs.ebpf.program(program).unwrap();
        let (result, direction, pass) = if is_xdp(program) {
            let p: &Xdp = program_ref.try_into().unwrap();
            (p.test_run(opts), DIRECTION_INGRESS, XDP_PASS)
        } else {
            let p: &SchedClassifier = program_ref.try_into().unwrap();
            (p.test_run(opts), direction_of(program), TC_ACT_UNSPEC)
        };
        let result = match result {
            Ok(r) => r,
            Err(_) if frame.len() < 14 || (!is_xdp(program) && expect == Expect::Unparsable) => {
                // The kernel's test runner needs an Ethernet header, and for skb programs a
                // plausible network header after it (its own checks; see the kernel's
                // empty_skb selftest). The caller decides which refusals it accepts.
                return false;
            }
            Err(e) => panic!("{program}: {what}: test run failed: {e:?}"),
        };
        assert_eq!(
            result.return_value, pass,
            "{program}: {what}: a tap must pass every frame"
        );
        let after = self.counts();
        let delta = |c: Counter| after.get(direction, c) - before.get(direction, c);
        assert_eq!(delta(Counter::Seen), 1, "{program}: {what}: seen");
        let matched = expect == Expect::Match;
        assert_eq!(
            delta(Counter::Matched),
            u64::from(matched),
            "{program}: {what}: matched ({} bytes)",
            frame.len()
        );
        assert_eq!(
            delta(Counter::LaterFragment),
            u64::from(expect == Expect::Fragment),
            "{program}: {what}: fragment"
        );
        assert_eq!(
            delta(Counter::Unparsable),
            u64::from(expect == Expect::Unparsable),
            "{program}: {what}: unparsable ({} bytes)",
            frame.len()
        );
        assert_eq!(
            delta(Counter::RingFull) + delta(Counter::CopyFailed),
            0,
            "{program}: {what}: drops"
        );

        let record = self
            .programs
            .ring
            .read(|item| std::ops::ControlFlow::Break(item.to_vec()));
        if matched {
            let record = record
                .unwrap_or_else(|| panic!("{program}: {what}: matched but nothing in the ring"));
            let header: ntptap_common::RecordHeader =
                // SAFETY: the record starts with a RecordHeader (plain integers); unaligned read.
                unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
            assert_eq!(
                header.orig_len as usize,
                frame.len(),
                "{program}: {what}: orig_len"
            );
            assert_eq!(header.direction, direction, "{program}: {what}: direction");
            let cap = usize::from(header.cap_len);
            assert_eq!(
                &record[size_of::<ntptap_common::RecordHeader>()
                    ..size_of::<ntptap_common::RecordHeader>() + cap],
                &frame[..cap],
                "{program}: {what}: bytes"
            );
            assert_eq!(delta(Counter::Captured), 1);
        } else {
            assert!(
                record.is_none(),
                "{program}: {what}: not matched but something is in the ring"
            );
            assert_eq!(delta(Counter::Captured), 0);
        }
        true
    }

    /// `check` a frame that must match and be truncated, on every program, and that each
    /// counts it as truncated.
    fn check_truncated_by_every_program(&mut self, frame: &[u8], what: &str) {
        for program in self.names.clone() {
            let direction = direction_of(program);
            let before = self.counts();
            self.check(program, frame, Expect::Match, what);
            assert_eq!(
                self.counts().get(direction, Counter::Truncated)
                    - before.get(direction, Counter::Truncated),
                1,
                "{program}: {what}: truncated"
            );
        }
    }

    /// `check` on every program.
    fn check_all(&mut self, frame: &[u8], expect: Expect, what: &str) {
        for program in self.names.clone() {
            self.check(program, frame, expect, what);
        }
    }
}

#[expect(clippy::too_many_lines, reason = "a table of cases")]
fn cases() -> Vec<(&'static str, Built, Expect)> {
    let q = 0x8100;
    let ad = 0x88a8;
    vec![
        ("IPv4 NTP to 123", ipv4(&[], 0, 0, NTP), Expect::Match),
        (
            "IPv4 NTP from 123",
            ipv4(
                &[],
                0,
                0,
                L4::Udp {
                    sport: 123,
                    dport: 55555,
                    payload: 48,
                },
            ),
            Expect::Match,
        ),
        (
            "IPv4 with 40 bytes of options",
            ipv4(&[], 40, 0, NTP),
            Expect::Match,
        ),
        (
            "IPv4 with 4 bytes of options",
            ipv4(&[], 4, 0, NTP),
            Expect::Match,
        ),
        (
            "IPv4 first fragment (MF set)",
            ipv4(&[], 0, 0x2000, NTP),
            Expect::Match,
        ),
        (
            "IPv4 later fragment",
            ipv4(&[], 0, 0x0010, NTP),
            Expect::Fragment,
        ),
        ("IPv4 one 802.1Q tag", ipv4(&[q], 0, 0, NTP), Expect::Match),
        (
            "IPv4 802.1ad + 802.1Q tags",
            ipv4(&[ad, q], 0, 0, NTP),
            Expect::Match,
        ),
        (
            "IPv4 three tags (beyond two)",
            ipv4(&[ad, q, q], 0, 0, NTP),
            Expect::NoMatch,
        ),
        (
            "IPv4 UDP 5353",
            ipv4(
                &[],
                0,
                0,
                L4::Udp {
                    sport: 5353,
                    dport: 5353,
                    payload: 48,
                },
            ),
            Expect::NoMatch,
        ),
        (
            "IPv4 UDP 1123 / 12300",
            ipv4(
                &[],
                0,
                0,
                L4::Udp {
                    sport: 1123,
                    dport: 12300,
                    payload: 48,
                },
            ),
            Expect::NoMatch,
        ),
        (
            "IPv4 TCP 123",
            ipv4(
                &[],
                0,
                0,
                L4::Tcp {
                    sport: 123,
                    dport: 123,
                },
            ),
            Expect::NoMatch,
        ),
        ("IPv4 ICMP", ipv4(&[], 0, 0, L4::Icmp), Expect::NoMatch),
        (
            "IPv4 NTP with NTS-sized payload",
            ipv4(
                &[],
                0,
                0,
                L4::Udp {
                    sport: 40000,
                    dport: 123,
                    payload: 1400,
                },
            ),
            Expect::Match,
        ),
        ("IPv6 NTP", ipv6(&[], &[], NTP), Expect::Match),
        (
            "IPv6 hop-by-hop",
            ipv6(&[], &[Ext::HopByHop], NTP),
            Expect::Match,
        ),
        (
            "IPv6 routing",
            ipv6(&[], &[Ext::Routing], NTP),
            Expect::Match,
        ),
        (
            "IPv6 destination options",
            ipv6(&[], &[Ext::DestOpts], NTP),
            Expect::Match,
        ),
        (
            "IPv6 first fragment",
            ipv6(&[], &[Ext::Fragment(0)], NTP),
            Expect::Match,
        ),
        (
            "IPv6 later fragment",
            ipv6(&[], &[Ext::Fragment(1)], NTP),
            Expect::Fragment,
        ),
        ("IPv6 AH", ipv6(&[], &[Ext::Ah], NTP), Expect::Match),
        (
            "IPv6 hop-by-hop, routing, fragment, destination options",
            ipv6(
                &[],
                &[Ext::HopByHop, Ext::Routing, Ext::Fragment(0), Ext::DestOpts],
                NTP,
            ),
            Expect::Match,
        ),
        (
            "IPv6 six extension headers",
            ipv6(
                &[],
                &[
                    Ext::HopByHop,
                    Ext::DestOpts,
                    Ext::Routing,
                    Ext::Fragment(0),
                    Ext::Ah,
                    Ext::DestOpts,
                ],
                NTP,
            ),
            Expect::Match,
        ),
        (
            "IPv6 seven extension headers (beyond six)",
            ipv6(
                &[],
                &[
                    Ext::HopByHop,
                    Ext::DestOpts,
                    Ext::Routing,
                    Ext::DestOpts,
                    Ext::Routing,
                    Ext::Fragment(0),
                    Ext::DestOpts,
                ],
                NTP,
            ),
            Expect::Unparsable,
        ),
        (
            "IPv6 two tags",
            ipv6(&[ad, q], &[Ext::HopByHop], NTP),
            Expect::Match,
        ),
        (
            "IPv6 UDP 53",
            ipv6(
                &[],
                &[],
                L4::Udp {
                    sport: 53,
                    dport: 53,
                    payload: 48,
                },
            ),
            Expect::NoMatch,
        ),
        (
            "IPv6 TCP 123",
            ipv6(
                &[],
                &[],
                L4::Tcp {
                    sport: 123,
                    dport: 40000,
                },
            ),
            Expect::NoMatch,
        ),
        ("IPv6 ICMPv6", ipv6(&[], &[], L4::Icmp), Expect::NoMatch),
        (
            "ARP",
            Built {
                bytes: [ethernet(&[], 0x0806), vec![0; 28]].concat(),
                udp_at: None,
            },
            Expect::NoMatch,
        ),
        (
            "LLDP",
            Built {
                bytes: [ethernet(&[], 0x88cc), vec![0; 40]].concat(),
                udp_at: None,
            },
            Expect::NoMatch,
        ),
    ]
}

#[test]
fn every_frame_kind_gets_the_right_verdict() {
    let mut h = Harness::new(MAX_DATA as u32, false);
    for (what, built, expect) in cases() {
        h.check_all(&built.bytes, expect, what);
    }
}

/// With more than one port, the programs look both ports up in the port set (with one, they
/// compare with it): the same verdicts, and a frame on the other port matches whichever way
/// it is parsed.
#[test]
fn a_port_set_of_two_gives_the_same_verdicts() {
    let mut h = Harness::build(MAX_DATA as u32, false, Vec::new(), vec![123, 4123]);
    for (what, built, expect) in cases() {
        h.check_all(&built.bytes, expect, what);
    }
    let other = L4::Udp {
        sport: 40000,
        dport: 4123,
        payload: 48,
    };
    let not = L4::Udp {
        sport: 40000,
        dport: 4124,
        payload: 48,
    };
    for (what, built, expect) in [
        ("IPv4 to 4123", ipv4(&[], 0, 0, other), Expect::Match),
        ("IPv4 to 4124", ipv4(&[], 0, 0, not), Expect::NoMatch),
        (
            "IPv4 with options to 4123",
            ipv4(&[], 8, 0, other),
            Expect::Match,
        ),
        (
            "tagged IPv4 to 4123",
            ipv4(&[0x8100], 0, 0, other),
            Expect::Match,
        ),
        ("IPv6 to 4123", ipv6(&[], &[], other), Expect::Match),
        ("IPv6 to 4124", ipv6(&[], &[], not), Expect::NoMatch),
    ] {
        h.check_all(&built.bytes, expect, what);
    }
}

#[test]
fn truncated_at_every_length_never_a_false_match_never_a_miss() {
    let mut h = Harness::new(MAX_DATA as u32, false);
    let mut ran_any = false;
    for (what, built, expect) in cases() {
        if expect != Expect::Match {
            continue;
        }
        let udp_at = built.udp_at.expect("matching frames have a UDP header");
        // Up to the full frame, and always past the end of the UDP header.
        let last = built.bytes.len().min(udp_at + 64);
        for len in 0..=last {
            let cut = &built.bytes[..len];
            let want = if len >= udp_at + 8 {
                Expect::Match
            } else {
                Expect::Unparsable
            };
            let what = format!("{what}, cut to {len} bytes");
            for program in h.names.clone() {
                let ran = h.check(program, cut, want, &what);
                // XDP runs on every frame of at least an Ethernet header; skb programs on
                // every frame that holds its UDP header.
                let must_run = if is_xdp(program) {
                    len >= 14
                } else {
                    want == Expect::Match
                };
                assert!(
                    ran || !must_run,
                    "{program}: {what}: the kernel refused the frame"
                );
                ran_any |= ran && len == 14;
            }
        }
    }
    assert!(
        ran_any,
        "no 14-byte frame ran: the kernel's lower bound moved"
    );
}

#[test]
fn malformed_ip_headers_are_unparsable_not_matched() {
    let mut h = Harness::new(MAX_DATA as u32, false);
    let mut bad_ihl = ipv4(&[], 0, 0, NTP).bytes;
    bad_ihl[14] = 0x44; // IHL 4: shorter than the fixed header.
    h.check_all(&bad_ihl, Expect::Unparsable, "IPv4 IHL < 5");
    let mut huge_ihl = ipv4(&[], 0, 0, NTP).bytes;
    huge_ihl[14] = 0x4f; // IHL 15 claims 60 bytes of header in a frame that ends sooner.
    huge_ihl.truncate(14 + 60 + 4);
    h.check_all(&huge_ihl, Expect::Unparsable, "IPv4 IHL past the end");
    let mut wrong_version = ipv4(&[], 0, 0, NTP).bytes;
    wrong_version[14] = 0x65;
    h.check_all(
        &wrong_version,
        Expect::Unparsable,
        "IPv4 ethertype, version 6",
    );
    let mut long_ext = ipv6(&[], &[Ext::HopByHop], NTP).bytes;
    long_ext[14 + 40 + 1] = 255; // hop-by-hop claims 2 KiB.
    h.check_all(
        &long_ext,
        Expect::Unparsable,
        "IPv6 extension header longer than the frame",
    );
}

/// Long IPv6 extension chains: the parser follows six headers (what real stacks send, and
/// more than any NTP packet carries); past that the frame is unparsable, never a false match.
/// UDP length fields that lie do not change the verdict: the filter matches on the ports, as
/// `tcpdump port 123` does, and the decoder reports the bad length.
#[test]
fn long_extension_chains_and_lying_udp_lengths() {
    let mut h = Harness::new(MAX_DATA as u32, false);
    let six = ipv6(&[], &[Ext::DestOpts; 6], NTP);
    h.check_all(
        &six.bytes,
        Expect::Match,
        "IPv6 with 6 destination options headers",
    );
    let seven = ipv6(&[], &[Ext::DestOpts; 7], NTP);
    h.check_all(
        &seven.bytes,
        Expect::Unparsable,
        "IPv6 with 7 extension headers",
    );
    let mixed = ipv6(
        &[],
        &[
            Ext::HopByHop,
            Ext::DestOpts,
            Ext::Routing,
            Ext::Ah,
            Ext::DestOpts,
            Ext::Fragment(0),
            Ext::DestOpts,
        ],
        NTP,
    );
    h.check_all(
        &mixed.bytes,
        Expect::Unparsable,
        "IPv6 with 7 mixed extension headers",
    );
    for (family, built) in [
        ("IPv4", ipv4(&[], 0, 0, NTP)),
        ("IPv6", ipv6(&[], &[], NTP)),
    ] {
        let udp = built.udp_at.expect("UDP");
        for lie in [0u16, 7, 9, 0xffff] {
            let mut frame = built.bytes.clone();
            frame[udp + 4..udp + 6].copy_from_slice(&lie.to_be_bytes());
            h.check_all(
                &frame,
                Expect::Match,
                &format!("{family}, UDP length {lie}"),
            );
        }
    }
}

#[test]
fn snap_length_truncates_and_counts() {
    let mut h = Harness::new(64, false);
    let frame = ipv4(&[], 0, 0, NTP).bytes;
    h.check_truncated_by_every_program(&frame, "snaplen 64");
}

#[test]
fn frames_longer_than_the_maximum_are_cut_and_keep_their_length() {
    let mut h = Harness::new(MAX_DATA as u32, false);
    let frame = ipv4(
        &[],
        0,
        0,
        L4::Udp {
            sport: 123,
            dport: 123,
            payload: 3000,
        },
    )
    .bytes;
    assert!(frame.len() > MAX_DATA);
    h.check_truncated_by_every_program(&frame, "3 KB frame");
}

#[test]
fn all_mode_matches_every_frame() {
    let mut h = Harness::new(MAX_DATA as u32, true);
    for (what, built, _) in cases() {
        h.check_all(&built.bytes, Expect::Match, what);
    }
}

/// `--host`: only frames from or to a listed address match, IPv4 and IPv6, with the port set
/// and with `--all`.
#[test]
fn host_filter_matches_either_address() {
    // ipv4() builds 10.0.0.1 -> 10.0.0.2; ipv6() builds fd00::1 -> fd00::2.
    let v4 = ipv4(&[], 0, 0, NTP).bytes;
    let v6 = ipv6(&[], &[Ext::HopByHop], NTP).bytes;
    let dns = ipv4(
        &[],
        0,
        0,
        L4::Udp {
            sport: 53,
            dport: 53,
            payload: 40,
        },
    )
    .bytes;
    let arp = [ethernet(&[], 0x0806), vec![0; 28]].concat();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();

    let mut h = Harness::with_hosts(MAX_DATA as u32, false, vec![ip("10.0.0.2"), ip("fd00::1")]);
    h.check_all(&v4, Expect::Match, "IPv4 NTP to a listed host");
    h.check_all(&v6, Expect::Match, "IPv6 NTP from a listed host");
    h.check_all(&dns, Expect::NoMatch, "listed host, but not NTP");

    let mut h = Harness::with_hosts(MAX_DATA as u32, false, vec![ip("10.9.9.9"), ip("fd00::9")]);
    h.check_all(&v4, Expect::NoMatch, "IPv4 NTP, no listed host");
    h.check_all(&v6, Expect::NoMatch, "IPv6 NTP, no listed host");

    let mut h = Harness::with_hosts(MAX_DATA as u32, true, vec![ip("10.0.0.1")]);
    h.check_all(
        &dns,
        Expect::Match,
        "--all with a listed host: any protocol",
    );
    h.check_all(&v6, Expect::NoMatch, "--all, IPv6, no listed host");
    h.check_all(&arp, Expect::NoMatch, "--all with hosts: not IP");
}

#[test]
fn records_from_every_cpu_come_out_oldest_first() {
    use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
    use nix::unistd::Pid;
    let mut h = Harness::new(MAX_DATA as u32, false);
    let allowed = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    let frame = ipv4(&[], 0, 0, NTP).bytes;
    // Frames numbered 0..n in their last 4 bytes, each run on the next CPU in turn: with one
    // ring per CPU, consecutive frames land in different rings.
    let n = 64u32;
    for i in 0..n {
        let mut set = CpuSet::new();
        set.set(cpus[i as usize % cpus.len()]).unwrap();
        sched_setaffinity(Pid::from_raw(0), &set).expect("pin to a CPU");
        let mut numbered = frame.clone();
        let len = numbered.len();
        numbered[len - 4..].copy_from_slice(&i.to_be_bytes());
        let p: &Xdp = h
            .programs
            .ebpf
            .program(h.names[0])
            .unwrap()
            .try_into()
            .unwrap();
        p.test_run(TestRunOptions {
            data_in: Some(&numbered),
            ..Default::default()
        })
        .expect("test run");
    }
    sched_setaffinity(Pid::from_raw(0), &allowed).expect("restore the affinity");
    let mut seen = Vec::new();
    h.programs.ring.read(|record| {
        let header: ntptap_common::RecordHeader =
            // SAFETY: the record starts with a RecordHeader (plain integers); unaligned read.
            unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
        let data =
            &record[size_of::<ntptap_common::RecordHeader>()..][..usize::from(header.cap_len)];
        let number = u32::from_be_bytes(data[data.len() - 4..].try_into().unwrap());
        seen.push((header.ts_mono_ns, number));
        std::ops::ControlFlow::<()>::Continue(())
    });
    let numbers: Vec<u32> = seen.iter().map(|&(_, n)| n).collect();
    assert_eq!(
        numbers,
        (0..n).collect::<Vec<_>>(),
        "every frame once, in the order sent"
    );
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "oldest first");
    eprintln!(
        "{} CPUs, {} rings: {n} frames in order",
        cpus.len(),
        h.programs.ring.len()
    );
}
