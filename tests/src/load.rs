//! Many NTP clients, played from one namespace: thousands of source addresses (IPv4 and IPv6,
//! owned through "AnyIP" local routes), each with its own poll interval; and the same clients
//! written as a synthetic capture file, for tests that read files.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use crate::net::{Lab, Netns};

/// The IPv4 prefix the clients come from (the client namespace owns all of it).
pub const CLIENTS4: &str = "10.210.0.0/16";
/// The IPv6 prefix the clients come from.
pub const CLIENTS6: &str = "fd00:210::/64";

/// One played client.
#[derive(Clone, Debug)]
pub struct Client {
    /// Its address.
    pub addr: IpAddr,
    /// Time between its requests.
    pub every: Duration,
    /// Its first request, after the start.
    pub first: Duration,
    /// Its source port, the same for every request (ntpd's clients send from 123); `None`: a
    /// new one each time (chrony's).
    pub port: Option<u16>,
}

/// The `i`th client address: IPv4 in 10.210/16, or IPv6 in fd00:210::/64 with an interface
/// identifier that looks random (as privacy addresses do).
#[must_use]
pub fn address(i: u32, v6: bool) -> IpAddr {
    if v6 {
        let iid = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        IpAddr::V6(Ipv6Addr::from((0xfd00_0210_u128 << 96) | u128::from(iid)))
    } else {
        IpAddr::V4(Ipv4Addr::from(0x0ad2_0000 + 1 + i))
    }
}

/// Give the lab's client side (`b`) the clients' prefixes, and route them there from `a`.
pub fn route_clients(lab: &Lab) {
    // IPv6 binds only to addresses an interface holds, unless non-local binds are allowed.
    crate::proc::run(
        lab.b
            .command("sysctl")
            .args(["-qw", "net.ipv6.ip_nonlocal_bind=1"]),
    );
    lab.b.ip(&["route", "add", "local", CLIENTS4, "dev", "lo"]);
    lab.b
        .ip(&["-6", "route", "add", "local", CLIENTS6, "dev", "lo"]);
    lab.a.ip(&["route", "add", CLIENTS4, "via", Lab::B4]);
    lab.a.ip(&["-6", "route", "add", CLIENTS6, "via", Lab::B6]);
}

/// An NTPv4 client request whose transmit timestamp is `transmit`.
#[must_use]
pub fn request(transmit: u64) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = 0x23;
    p[40..48].copy_from_slice(&transmit.to_be_bytes());
    p
}

/// What [`play`] did.
#[derive(Debug, Default)]
pub struct Played {
    /// Requests each client sent.
    pub sent: Vec<u32>,
    /// Every interval between two successive requests of one client, as sent, seconds.
    pub gaps: Vec<f64>,
    /// How late the sender fell behind its schedule at worst.
    pub worst_lag: Duration,
}

/// Play `clients` from `ns` against `server4` (IPv4 clients) and `server6` (IPv6) for
/// `length`: each sends a request every `every` from `first` on, from its own address and a
/// new port each time, as a real client would.
pub fn play(
    ns: &Netns,
    server4: SocketAddr,
    server6: SocketAddr,
    clients: Vec<Client>,
    length: Duration,
) -> Played {
    ns.enter(move || {
        let start = Instant::now();
        let mut due: BinaryHeap<Reverse<(Duration, usize)>> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| Reverse((c.first, i)))
            .collect();
        let mut played = Played {
            sent: vec![0u32; clients.len()],
            ..Played::default()
        };
        let mut last: Vec<Option<Instant>> = vec![None; clients.len()];
        let mut n = 0u64;
        while let Some(Reverse((at, i))) = due.pop() {
            if at >= length {
                break;
            }
            match at.checked_sub(start.elapsed()) {
                Some(wait) => std::thread::sleep(wait),
                None => played.worst_lag = played.worst_lag.max(start.elapsed().saturating_sub(at)),
            }
            let c = &clients[i];
            let server = if c.addr.is_ipv4() { server4 } else { server6 };
            let socket = UdpSocket::bind(SocketAddr::new(c.addr, c.port.unwrap_or(0)))
                .unwrap_or_else(|e| panic!("bind {}: {e}", c.addr));
            n += 1;
            socket
                .send_to(&request(0xe000_0000_0000_0000 | n), server)
                .unwrap_or_else(|e| panic!("send from {}: {e}", c.addr));
            let now = Instant::now();
            if let Some(before) = last[i].replace(now) {
                played.gaps.push((now - before).as_secs_f64());
            }
            played.sent[i] += 1;
            due.push(Reverse((at + c.every, i)));
        }
        played
    })
}

/// [`play`] from the lab's `b` against `a`'s NTP addresses.
pub fn play_to_a(lab: &Lab, clients: Vec<Client>, length: Duration) -> Played {
    play(&lab.b, Lab::a_ntp(false), Lab::a_ntp(true), clients, length)
}

fn checksum(mut sum: u32, data: &[u8]) -> u32 {
    for pair in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame carrying `payload` in UDP from `src` to `dst`, with correct IPv4 and
/// UDP checksums.
#[must_use]
pub fn udp_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    udp_frame_ttl(src, dst, payload, 64)
}

/// [`udp_frame`] with `ttl` as the IPv4 TTL or IPv6 hop limit.
#[must_use]
pub fn udp_frame_ttl(src: SocketAddr, dst: SocketAddr, payload: &[u8], ttl: u8) -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    let udp_len = (8 + payload.len()) as u16;
    let mut udp = Vec::with_capacity(udp_len as usize);
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            frame.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, ttl, 17, 0, 0];
            ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let sum = fold(checksum(0, &ip));
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            let pseudo = [
                &s.octets()[..],
                &d.octets(),
                &[0, 17],
                &udp_len.to_be_bytes(),
            ]
            .concat();
            let sum = fold(checksum(checksum(0, &pseudo), &udp));
            udp[6..8].copy_from_slice(&sum.to_be_bytes());
            frame.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            frame.extend_from_slice(&[0x86, 0xdd]);
            let mut ip = vec![0x60, 0, 0, 0, 0, 0, 17, ttl];
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let pseudo = [
                &s.octets()[..],
                &d.octets(),
                &u32::from(udp_len).to_be_bytes(),
                &[0, 0, 0, 17],
            ]
            .concat();
            let sum = fold(checksum(checksum(0, &pseudo), &udp));
            udp[6..8].copy_from_slice(&sum.to_be_bytes());
            frame.extend_from_slice(&ip);
        }
        _ => panic!("{src} and {dst} are of different families"),
    }
    frame.extend_from_slice(&udp);
    frame
}

/// A server's reply to `request` (mode 4, stratum 2, or a RATE kiss-o'-death), with its
/// receive timestamp at `at`.
#[must_use]
pub fn reply(request: &[u8; 48], at: Duration, kiss: bool) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = 0x24;
    p[1] = if kiss { 0 } else { 2 };
    p[12..16].copy_from_slice(if kiss { b"RATE" } else { b"GPS\0" });
    let ntp = ((at.as_secs() + 2_208_988_800) << 32)
        | ((u64::from(at.subsec_nanos()) << 32) / 1_000_000_000);
    p[24..32].copy_from_slice(&request[40..48]);
    p[32..40].copy_from_slice(&ntp.to_be_bytes());
    p[40..48].copy_from_slice(&(ntp + 4295).to_be_bytes());
    p
}

/// What a synthetic capture holds, to check a reading against.
#[derive(Debug, Default)]
pub struct Written {
    /// Requests, replies and kiss-o'-death packets written.
    pub requests: u64,
    pub replies: u64,
    pub kisses: u64,
}

/// Write a pcap (nanosecond) of `clients` asking `servers` (IPv4, IPv6) from `start` for
/// `length`: each
/// request is answered 1 ms later, with a RATE kiss-o'-death when `kiss(client, n)` says so,
/// and not at all when `answer(client, n)` says no.
pub fn write_capture(
    path: &Path,
    servers: (IpAddr, IpAddr),
    clients: &[Client],
    (start, length): (Duration, Duration),
    answer: &dyn Fn(usize, u32) -> Option<bool>,
) -> Written {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let mut writer = pcap_writer(path);
    let mut due: BinaryHeap<Reverse<(Duration, usize, u32)>> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| Reverse((c.first, i, 0)))
        .collect();
    let mut pending: BinaryHeap<Reverse<(Duration, Vec<u8>)>> = BinaryHeap::new();
    let mut written = Written::default();
    let write = |at: Duration, frame: &[u8], writer: &mut PcapWriter<_>| {
        writer
            .write_packet(
                &PcapPacket::new(start + at, frame.len() as u32, frame).expect("a packet"),
            )
            .expect("write a packet");
    };
    while let Some(Reverse((at, i, n))) = due.pop() {
        if at >= length {
            break;
        }
        // Replies due before this request go first: the file is in time order.
        while pending.peek().is_some_and(|Reverse((t, _))| *t <= at) {
            let Reverse((t, frame)) = pending.pop().expect("peeked");
            write(t, &frame, &mut writer);
        }
        let c = &clients[i];
        let server = if c.addr.is_ipv4() {
            servers.0
        } else {
            servers.1
        };
        let (client, to) = (
            SocketAddr::new(c.addr, 40_000 + (n % 20_000) as u16),
            SocketAddr::new(server, 123),
        );
        let ask = request(0xe000_0000_0000_0000 | (u64::from(n) << 24) | i as u64);
        write(at, &udp_frame(client, to, &ask), &mut writer);
        written.requests += 1;
        if let Some(kiss) = answer(i, n) {
            // A round trip of 1 to 2.4 ms that swells every half hour, and a server clock that
            // wanders ±0.3 ms over ten minutes: something to see in a plot.
            let tau = std::f64::consts::TAU;
            let swell = 0.5e-3 * (1.0 + (at.as_secs_f64() / 1800.0 * tau).sin());
            let delay = Duration::from_secs_f64(1e-3 + swell + (i % 5) as f64 * 0.1e-3);
            let wander = (at.as_secs_f64() / 600.0 * tau).sin() * 0.3e-3;
            let t2 = (start + at + delay / 2).as_secs_f64() + wander;
            let back = reply(&ask, Duration::from_secs_f64(t2), kiss);
            let t = at + delay;
            pending.push(Reverse((t, udp_frame(to, client, &back))));
            written.replies += 1;
            written.kisses += u64::from(kiss);
        }
        due.push(Reverse((at + c.every, i, n + 1)));
    }
    for Reverse((t, frame)) in pending.into_sorted_vec().into_iter().rev() {
        write(t, &frame, &mut writer);
    }
    written
}

/// A capture of `n` requests from `n` distinct spoofed sources (half IPv4, half IPv6 with
/// random-looking interface identifiers, as privacy addresses look), 100 µs apart, none
/// answered.
pub fn write_spoofed(path: &Path, n: u32) -> Written {
    let clients: Vec<Client> = (0..n)
        .map(|i| Client {
            addr: address(i, i % 2 == 1),
            every: Duration::from_secs(1_000_000),
            first: Duration::from_micros(u64::from(i) * 100),
            port: None,
        })
        .collect();
    write_capture(
        path,
        (
            Lab::A4.parse().expect("an address"),
            Lab::A6.parse().expect("an address"),
        ),
        &clients,
        (Duration::from_secs(1_790_000_000), Duration::from_secs(200)),
        &|_, _| None,
    )
}

/// A nanosecond pcap file at `path`, its header written.
fn pcap_writer(path: &Path) -> pcap_file::pcap::PcapWriter<std::io::BufWriter<std::fs::File>> {
    let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create the capture"));
    let header = pcap_file::pcap::PcapHeader {
        ts_resolution: pcap_file::pcap::PcapTsResolution::NanoSecond,
        snaplen: 65535,
        ..pcap_file::pcap::PcapHeader::default()
    };
    pcap_file::pcap::PcapWriter::with_header(file, header).expect("a pcap header")
}

/// A capture of `n` forged packets, 10 µs apart, each from or to its own address (half IPv4,
/// half IPv6), in turn: a request with a TTL that varies, an NTS-shaped request (unique
/// identifier, cookie, authenticator), a mode 4 response the address never asked for, and a
/// 440-byte mode 7 response. Every pattern
/// detector gets a new subject with each packet.
pub fn write_forged_mix(path: &Path, n: u32) {
    use pcap_file::pcap::PcapPacket;
    let mut writer = pcap_writer(path);
    let server = |v6: bool| -> SocketAddr {
        let a: IpAddr = if v6 { Lab::A6 } else { Lab::A4 }
            .parse()
            .expect("an address");
        SocketAddr::new(a, 123)
    };
    let nts = crate::spoof::nts_request();
    let mut monlist = vec![0u8; 440];
    monlist[0] = 0x97;
    monlist[3] = 42;
    for i in 0..n {
        let v6 = i % 2 == 1;
        let other = SocketAddr::new(address(i, v6), 40_000 + (i % 20_000) as u16);
        let frame = match i % 4 {
            0 => udp_frame_ttl(
                other,
                server(v6),
                &request(u64::from(i)),
                (i % 250) as u8 + 1,
            ),
            1 => udp_frame(other, server(v6), &nts),
            2 => udp_frame(
                server(v6),
                other,
                &reply(&request(u64::from(i)), Duration::ZERO, false),
            ),
            _ => udp_frame(server(v6), other, &monlist),
        };
        let at = Duration::from_secs(1_790_000_000) + Duration::from_micros(u64::from(i) * 10);
        writer
            .write_packet(&PcapPacket::new(at, frame.len() as u32, &frame).expect("a packet"))
            .expect("write a packet");
    }
}

/// The peak resident memory of `child`'s own image (VmHWM), read every millisecond while it runs,
/// until it exits (not reaped). A child's rusage would count its parent's memory too: it is
/// shared until the exec.
#[must_use]
pub fn peak_rss(child: &std::process::Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    while let Ok(text) = std::fs::read_to_string(&status) {
        let Some(kib) = text
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        else {
            // A zombie has no memory left to read.
            break;
        };
        peak = peak.max(kib * 1024);
        std::thread::sleep(Duration::from_millis(1));
    }
    peak
}
