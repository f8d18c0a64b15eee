//! tcpdump-style text: one line per frame, NTP detail with `-v`, hex with `-X`.

use std::{
    fmt::Write as _,
    io::{self, Write},
    net::IpAddr,
    time::Duration,
};

use chrono::{DateTime, Local};

use super::super::{decoded::Decoded, sink::Control as SinkControl, sink::Filter, sink::Sink};
use crate::{
    frame::LinkType,
    net::{Dissected, Net, Transport, UdpChecksum},
    ntp::{
        self, Body, Ntp, NtpError, RefId,
        packet::{Control, ControlData, Private, TimeHeader},
        time::{log2_seconds, push_date_time, push_padded},
    },
    process::Socket,
};

/// How timestamps are printed (tcpdump's `-t` count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeFormat {
    /// `HH:MM:SS.uuuuuu`, local time (no `-t`).
    #[default]
    Time,
    /// No timestamp (`-t`).
    None,
    /// Seconds since the epoch (`-tt`).
    Epoch,
    /// Delta since the previous frame (`-ttt`).
    Delta,
    /// `YYYY-MM-DD HH:MM:SS.uuuuuu`, local time (`-tttt`).
    DateTime,
    /// Delta since the first frame (`-ttttt`).
    SinceFirst,
}

impl TimeFormat {
    /// From the number of `-t` flags.
    #[must_use]
    pub fn from_count(n: u8) -> Self {
        match n {
            0 => TimeFormat::Time,
            1 => TimeFormat::None,
            2 => TimeFormat::Epoch,
            3 => TimeFormat::Delta,
            4 => TimeFormat::DateTime,
            _ => TimeFormat::SinceFirst,
        }
    }
}

/// What the printer shows.
#[derive(Clone, Debug, Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "one bool per tcpdump-style flag"
)]
pub struct TextOptions {
    /// `-v` count.
    pub verbose: u8,
    /// `-x`, `-xx`, `-X`, `-XX`, `-A`: the frame's bytes under its line.
    pub dump: Option<Dump>,
    /// `-q`: addresses and "UDP, length N", no NTP decode.
    pub quick: bool,
    /// `-K`: no UDP checksum check.
    pub no_checksum: bool,
    /// `--time-stamp-precision=nano`: times to the nanosecond.
    pub nano: bool,
    /// `-e`: the link-level header.
    pub link_header: bool,
    /// `-#`: the frame number first.
    pub number: bool,
    /// Timestamp format.
    pub time: TimeFormat,
    /// Prefix the interface and direction (several interfaces, as tcpdump's `-i any`).
    pub show_iface: bool,
    /// `--process`: the socket's owner as `comm[pid]` on the line.
    pub process: bool,
}

/// A frame's bytes under its line, as tcpdump lays them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dump {
    /// Hex, 16 bytes a line in pairs (`-x`, `-X`).
    pub hex: bool,
    /// ASCII: beside the hex (`-X`), or alone (`-A`).
    pub ascii: bool,
    /// From the link header on (the doubled letter), not from the network header.
    pub link: bool,
}

impl Dump {
    /// From the counts of `-X`, `-x` and `-A`: -X wins over -x, and -x over -A, as in tcpdump.
    #[must_use]
    pub fn from_counts(hex_ascii: u8, hex: u8, ascii: u8) -> Option<Self> {
        let (count, hex, ascii) = match (hex_ascii, hex, ascii) {
            (n @ 1.., _, _) => (n, true, true),
            (0, n @ 1.., _) => (n, true, false),
            (0, 0, n @ 1..) => (n, false, true),
            (0, 0, 0) => return None,
        };
        Some(Self {
            hex,
            ascii,
            link: count > 1,
        })
    }
}

/// Prints frames as text.
pub struct TextSink<W: Write> {
    out: W,
    options: TextOptions,
    filter: Filter,
    first: Option<Duration>,
    previous: Option<Duration>,
    line: String,
    zone: LocalZone,
    /// Frames printed so far (tcpdump's `-#` counts what it prints).
    shown: u64,
}

/// The local time zone's offset from UTC, looked up once per hour of timestamps rather than
/// once per frame.
#[derive(Debug, Default)]
struct LocalZone {
    hour: Option<i64>,
    offset: i64,
}

impl LocalZone {
    fn offset(&mut self, secs: i64) -> i64 {
        let hour = secs.div_euclid(3600);
        if self.hour != Some(hour) {
            self.hour = Some(hour);
            self.offset = DateTime::from_timestamp(secs, 0).map_or(0, |t| {
                i64::from(t.with_timezone(&Local).offset().local_minus_utc())
            });
        }
        self.offset
    }
}

impl<W: Write> TextSink<W> {
    /// A printer writing to `out`, showing what `filter` lets through.
    pub fn new(out: W, options: TextOptions, filter: Filter) -> Self {
        Self {
            out,
            options,
            filter,
            first: None,
            previous: None,
            line: String::with_capacity(256),
            zone: LocalZone::default(),
            shown: 0,
        }
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn timestamp(&mut self, ts: Duration) {
        let secs = ts.as_secs() as i64;
        let micros = ts.subsec_micros();
        let fraction = Fraction {
            nanos: ts.subsec_nanos(),
            nano: self.options.nano,
        };
        match self.options.time {
            TimeFormat::None => {}
            TimeFormat::Time => {
                let local = secs + self.zone.offset(secs);
                let sod = local.rem_euclid(86_400);
                if self.options.nano {
                    push_clock(&mut self.line, sod, 0);
                    // push_clock ends in ".000000 ": the nanoseconds instead.
                    self.line.truncate(self.line.len() - 8);
                    let _ = write!(self.line, "{fraction} ");
                } else {
                    push_clock(&mut self.line, sod, micros);
                }
            }
            TimeFormat::DateTime => {
                let local = secs + self.zone.offset(secs);
                push_date_time(&mut self.line, local, Some(' '));
                let _ = write!(self.line, "{fraction} ");
            }
            TimeFormat::Epoch => {
                let _ = write!(self.line, "{secs}{fraction} ");
            }
            TimeFormat::Delta | TimeFormat::SinceFirst => {
                let base = if self.options.time == TimeFormat::Delta {
                    self.previous
                } else {
                    self.first
                };
                // tcpdump: a sign (a space, or '-' for a frame older than its base), then
                // %02d:%02d:%02d.
                let base = base.unwrap_or(ts);
                let (sign, d) = (if ts >= base { ' ' } else { '-' }, ts.abs_diff(base));
                let _ = write!(
                    self.line,
                    "{sign}{:02}:{:02}:{:02}{} ",
                    d.as_secs() / 3600,
                    d.as_secs() / 60 % 60,
                    d.as_secs() % 60,
                    Fraction {
                        nanos: d.subsec_nanos(),
                        nano: self.options.nano
                    }
                );
            }
        }
        self.first.get_or_insert(ts);
        self.previous = Some(ts);
    }

    fn describe(&mut self, packet: &Decoded<'_>) {
        let (frame, d) = (packet.frame, packet.layers());
        let line = &mut self.line;
        let after_link = self.options.link_header && d.macs.is_some();
        if after_link {
            link_line(line, d, frame.orig_len);
        }
        match (d.net, d.transport) {
            (
                Some(Net::Ip { src, dst, .. }),
                Some(Transport::Udp {
                    sport,
                    dport,
                    length,
                    ..
                }),
            ) => {
                let verbose = self.options.verbose;
                if verbose > 0 {
                    ip_detail(line, d, !after_link);
                } else {
                    line.push_str(ip_prefix(src, after_link));
                }
                push_endpoint(line, src, sport);
                line.push_str(" > ");
                push_endpoint(line, dst, dport);
                line.push_str(": ");
                // tcpdump checks UDP checksums with -v over IPv6, -vv over IPv4 (not with -K).
                let check =
                    !self.options.no_checksum && ((d.ipv6.is_some() && verbose > 0) || verbose > 1);
                match check.then(|| d.udp_checksum()).flatten() {
                    Some(UdpChecksum::Ok) => line.push_str("[udp sum ok] "),
                    // tcpdump says "bad" here; it is the device's to fill in.
                    Some(UdpChecksum::Offloaded) => line.push_str("[udp sum offloaded] "),
                    Some(UdpChecksum::Bad { stored, correct }) => {
                        let _ = write!(line, "[bad udp cksum 0x{stored:04x} -> 0x{correct:04x}!] ");
                    }
                    None => {}
                }
                if let Some(ntp) = packet.ntp().filter(|_| !self.options.quick) {
                    ntp_summary(line, &ntp.packet, length, verbose);
                } else {
                    let _ = write!(line, "UDP, length {length}");
                }
            }
            (Some(Net::Ip { src, dst, .. }), Some(Transport::Tcp { sport, dport })) => {
                let _ = write!(
                    line,
                    "{}{src}.{sport} > {dst}.{dport}: tcp",
                    ip_prefix(src, after_link)
                );
            }
            (
                Some(Net::Ip {
                    src,
                    dst,
                    payload_len,
                    ..
                }),
                Some(Transport::Icmp { v6, message }),
            ) => {
                let _ = write!(line, "{}{src} > {dst}: ", ip_prefix(src, after_link));
                icmp_line(line, v6, message, payload_len);
            }
            (
                Some(Net::Ip {
                    src,
                    dst,
                    protocol,
                    later_fragment,
                    payload_len,
                }),
                None,
            ) => {
                let _ = write!(line, "{}{src} > {dst}: ", ip_prefix(src, after_link));
                if later_fragment {
                    let _ = write!(line, "ip-proto-{protocol} (fragment), length {payload_len}");
                } else {
                    let _ = write!(line, "ip-proto-{protocol} {payload_len}");
                }
            }
            (Some(Net::Arp), _) => {
                let _ = write!(line, "ARP, length {}", frame.orig_len);
            }
            _ => match d.ethertype {
                Some(t) => {
                    let _ = write!(
                        line,
                        "ethertype {} (0x{t:04x}), length {}",
                        ethertype_name(t),
                        frame.orig_len
                    );
                }
                None => {
                    let _ = write!(line, "[|ether] length {}", frame.orig_len);
                }
            },
        }
    }
}

/// `HH:MM:SS.uuuuuu ` for `sod` seconds of the day.
fn push_clock(line: &mut String, sod: i64, micros: u32) {
    let two = |line: &mut String, v: i64| {
        line.push(char::from(b'0' + (v / 10) as u8));
        line.push(char::from(b'0' + (v % 10) as u8));
    };
    two(line, sod / 3600);
    line.push(':');
    two(line, sod / 60 % 60);
    line.push(':');
    two(line, sod % 60);
    line.push('.');
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(micros);
    for _ in digits.len()..6 {
        line.push('0');
    }
    line.push_str(digits);
    line.push(' ');
}

/// `address.port`, as tcpdump writes an endpoint.
fn push_endpoint(line: &mut String, addr: IpAddr, port: u16) {
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

/// `-e`: tcpdump's link header words (MAC addresses, VLAN tags, EtherType).
fn link_line(line: &mut String, d: &Dissected<'_>, orig_len: u32) {
    let Some((src, dst)) = d.macs else { return };
    let _ = write!(line, "{} > {}, ", mac(src), mac(dst));
    for id in &d.vlans {
        let _ = write!(line, "vlan {id}, ");
    }
    if let Some(t) = d.ethertype {
        let _ = write!(
            line,
            "ethertype {} (0x{t:04x}), length {orig_len}: ",
            ethertype_name(t),
        );
    }
}

/// tcpdump's words for the ICMP messages it is asked about most: echo request and reply,
/// and a port unreachable (IPv4); others by their type number, "length" the message's.
fn icmp_line(line: &mut String, v6: bool, message: &[u8], length: usize) {
    let be16 = |at: usize| {
        message
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let kind = message.first().copied();
    let echo = match (v6, kind) {
        (false, Some(8)) | (true, Some(128)) => Some("echo request"),
        (false, Some(0)) | (true, Some(129)) => Some("echo reply"),
        _ => None,
    };
    let family = if v6 { "ICMP6, " } else { "ICMP " };
    if let (Some(what), Some(id), Some(seq)) = (echo, be16(4), be16(6)) {
        let _ = write!(line, "{family}{what}, id {id}, seq {seq}, length {length}");
        return;
    }
    // A port unreachable quotes the datagram's IPv4 header and its first 8 bytes.
    if !v6
        && message.get(..2) == Some(&[3, 3])
        && let Some(ip) = message.get(8..)
        && let Some(&[vihl]) = ip.get(..1)
        && let Some(&[proto]) = ip.get(9..10)
        && let Some(dst) = ip.get(16..20)
    {
        let hl = usize::from(vihl & 0x0f) * 4;
        let port = ip
            .get(hl + 2..hl + 4)
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        let name = match proto {
            17 => Some("udp"),
            6 => Some("tcp"),
            _ => None,
        };
        if let (Some(name), Some(port)) = (name, port) {
            let _ = write!(
                line,
                "ICMP {}.{}.{}.{} {name} port {port} unreachable, length {length}",
                dst[0], dst[1], dst[2], dst[3]
            );
            return;
        }
    }
    match kind {
        Some(t) => {
            let _ = write!(line, "{family}type {t}, length {length}");
        }
        None => {
            let _ = write!(
                line,
                "{}, length {length}",
                family.trim_end_matches([',', ' '])
            );
        }
    }
}

/// "IP " or "IP6 " before an IP line; nothing after `-e`'s link header, as tcpdump prints.
fn ip_prefix(addr: IpAddr, after_link: bool) -> &'static str {
    match (after_link, addr.is_ipv4()) {
        (true, _) => "",
        (false, true) => "IP ",
        (false, false) => "IP6 ",
    }
}

fn mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn ethertype_name(t: u16) -> &'static str {
    match t {
        0x0800 => "IPv4",
        0x86dd => "IPv6",
        0x0806 => "ARP",
        0x8100 => "802.1Q",
        0x88a8 => "802.1Q-QinQ",
        _ => "Unknown",
    }
}

/// `NTPv4, Client, length 48`, then the `-v` detail lines.
fn ntp_summary(line: &mut String, ntp: &Result<Ntp, NtpError>, length: usize, verbose: u8) {
    let Ok(ntp) = ntp else {
        let _ = write!(line, "NTP, length {length} [|ntp]");
        return;
    };
    let _ = write!(
        line,
        "NTPv{}, {}, length {length}",
        ntp.version,
        ntp.mode.tcpdump_name()
    );
    // Shorter than the fixed header of its mode.
    if let Some(NtpError::Truncated { .. }) = ntp.error {
        line.push_str(" [|ntp]");
    }
    if verbose > 0 {
        ntp_detail(line, ntp, verbose);
    }
}

/// tcpdump's `-v` IP header, before the addresses: `IP (tos 0x0, ttl 64, ...)` and a line
/// break, or `IP6 (hlim 64, ...) ` on the same line.
/// tcpdump's `-v` IP header; `labelled`: with "IP "/"IP6 " first (not after `-e`'s link
/// header, which names the EtherType already).
fn ip_detail(line: &mut String, d: &Dissected<'_>, labelled: bool) {
    if let Some(ip) = &d.ipv4 {
        let flags = match (ip.dont_fragment, ip.more_fragments) {
            (true, true) => "DF+",
            (true, false) => "DF",
            (false, true) => "+",
            (false, false) => "none",
        };
        let _ = write!(
            line,
            "{}(tos 0x{:x}, ttl ",
            if labelled { "IP " } else { "" },
            (ip.dscp.value() << 2) | ip.ecn.value()
        );
        push_num(line, ip.time_to_live);
        line.push_str(", id ");
        push_num(line, ip.identification);
        line.push_str(", offset ");
        push_num(line, u32::from(ip.fragment_offset.value()) * 8);
        line.push_str(", flags [");
        line.push_str(flags);
        line.push_str("], proto ");
        line.push_str(protocol_name(ip.protocol.0));
        line.push_str(" (");
        push_num(line, ip.protocol.0);
        line.push_str("), length ");
        push_num(line, ip.total_len);
        line.push_str(")\n    ");
    } else if let Some(ip) = &d.ipv6 {
        line.push_str(if labelled { "IP6 (" } else { "(" });
        if ip.traffic_class != 0 {
            let _ = write!(line, "class 0x{:x}, ", ip.traffic_class);
        }
        if ip.flow_label.value() != 0 {
            let _ = write!(line, "flowlabel 0x{:05x}, ", ip.flow_label.value());
        }
        line.push_str("hlim ");
        push_num(line, ip.hop_limit);
        line.push_str(", next-header ");
        line.push_str(protocol_name(ip.next_header.0));
        line.push_str(" (");
        push_num(line, ip.next_header.0);
        line.push_str("), payload length ");
        push_num(line, ip.payload_length);
        line.push_str(") ");
    }
}

fn protocol_name(p: u8) -> &'static str {
    match p {
        17 => "UDP",
        6 => "TCP",
        1 => "ICMP",
        58 => "ICMPv6",
        0 => "Options",
        44 => "frag",
        _ => "unknown",
    }
}

/// `seconds.nanoseconds (date)`, as tcpdump prints an NTP timestamp.
fn push_ts(line: &mut String, ts: ntp::NtpTimestamp) {
    push_num(line, ts.seconds());
    line.push('.');
    push_padded(line, u64::from(ts.nanos()), 9);
    if !ts.is_unset() {
        line.push_str(" (");
        push_date_time(line, ts.unix_seconds(), Some('T'));
        line.push_str("Z)");
    }
}

/// An NTP short value as seconds with six decimals, truncated as tcpdump does.
fn push_short(line: &mut String, v: ntp::NtpShort) {
    push_num(line, v.0 >> 16);
    line.push('.');
    push_padded(line, (u64::from(v.0 & 0xffff) * 1_000_000) >> 16, 6);
}

/// `later - origin`, signed, as tcpdump prints it; the whole `later` timestamp if the origin
/// is unset (nothing to compare against).
fn push_delta(line: &mut String, origin: ntp::NtpTimestamp, later: ntp::NtpTimestamp) {
    if origin.is_unset() {
        push_ts(line, later);
        return;
    }
    let diff = i128::from(later.0) - i128::from(origin.0);
    line.push(if diff < 0 { '-' } else { '+' });
    let abs = diff.unsigned_abs();
    push_num(line, (abs >> 32) as u64);
    line.push('.');
    push_padded(
        line,
        (((abs & 0xffff_ffff) * 1_000_000_000) >> 32) as u64,
        9,
    );
}

fn push_num<I: itoa::Integer>(line: &mut String, n: I) {
    line.push_str(itoa::Buffer::new().format(n));
}

/// `2^exp` seconds as tcpdump prints a poll interval: whole seconds, or a fraction.
fn push_log2_seconds(line: &mut String, exp: i8) {
    if (0..63).contains(&exp) {
        push_num(line, 1u64 << exp);
    } else {
        let _ = write!(line, "{}", log2_seconds(exp));
    }
}

fn stratum_name(stratum: u8) -> &'static str {
    match stratum {
        0 => "unspecified",
        1 => "primary reference",
        2..=15 => "secondary reference",
        16 => "unsynchronized",
        _ => "reserved",
    }
}

fn push_refid(line: &mut String, refid: &RefId) {
    match refid {
        RefId::Unspecified => line.push_str("(unspec)"),
        RefId::KissCode(code) | RefId::Clock(code) => line.push_str(code),
        RefId::Address(addr) => {
            let _ = write!(line, "{addr}");
        }
    }
}

fn ntp_detail(line: &mut String, ntp: &Ntp, verbose: u8) {
    match &ntp.body {
        Body::Time(h) => time_detail(line, ntp, h, verbose),
        Body::Control(c) => control_detail(line, ntp, c, verbose),
        Body::Private(p) => private_detail(line, p),
        Body::None => {
            let _ = write!(
                line,
                "\n\tLeap indicator: {} ({})",
                ntp.leap.describe(),
                ntp.leap.to_bits() << 6
            );
        }
    }
    if let Some(err) = &ntp.error {
        let _ = write!(line, "\n\t[{err}]");
    }
}

fn time_detail(line: &mut String, ntp: &Ntp, h: &TimeHeader, verbose: u8) {
    line.push_str("\n\tLeap indicator: ");
    line.push_str(ntp.leap.describe());
    line.push_str(" (");
    push_num(line, ntp.leap.to_bits() << 6);
    line.push_str("), Stratum ");
    push_num(line, h.stratum);
    line.push_str(" (");
    line.push_str(stratum_name(h.stratum));
    line.push_str("), poll ");
    push_num(line, h.poll);
    line.push_str(" (");
    push_log2_seconds(line, h.poll);
    line.push_str("s), precision ");
    push_num(line, h.precision);
    line.push_str("\n\tRoot Delay: ");
    push_short(line, h.root_delay);
    line.push_str(", Root dispersion: ");
    push_short(line, h.root_dispersion);
    line.push_str(", Reference-ID: ");
    push_refid(line, &h.refid());
    if ntp.mode != ntp::Mode::Client
        && let Some(code) = ntp.kiss_code()
    {
        let meaning = ntp::names::kiss_code_meaning(&code).unwrap_or("unregistered code");
        let _ = write!(
            line,
            "\n\tKiss-o'-death: {} ({meaning})",
            String::from_utf8_lossy(&code)
        );
    }
    for (label, ts) in [
        ("\n\t  Reference Timestamp:  ", h.reference),
        ("\n\t  Origin Timestamp:     ", h.origin),
        ("\n\t  Receive Timestamp:    ", h.receive),
        ("\n\t  Transmit Timestamp:   ", h.transmit),
    ] {
        line.push_str(label);
        push_ts(line, ts);
    }
    line.push_str("\n\t    Originator - Receive Timestamp:  ");
    push_delta(line, h.origin, h.receive);
    line.push_str("\n\t    Originator - Transmit Timestamp: ");
    push_delta(line, h.origin, h.transmit);
    if !h.extensions.is_empty() {
        line.push_str("\n\tExtension fields:");
    }
    for ext in &h.extensions {
        let _ = write!(
            line,
            "\n\t  {} (0x{:04x}), length {}",
            ext.name().unwrap_or("Unknown"),
            ext.field_type,
            ext.length
        );
        if let Some(auth) = ext.nts_authenticator().filter(|_| verbose > 1) {
            let _ = write!(
                line,
                "\n\t    nonce length {}, ciphertext length {}",
                auth.nonce_length, auth.ciphertext_length
            );
        }
        if verbose > 2 {
            hex_block(line, &ext.value);
        }
    }
    if let Some(mac) = &h.mac {
        let _ = write!(line, "\n\tKey id: {}", mac.key_id);
        if !mac.digest.is_empty() {
            let _ = write!(
                line,
                "\n\tAuthentication: {}",
                ntp::packet::to_hex(&mac.digest)
            );
        }
    }
}

fn control_detail(line: &mut String, ntp: &Ntp, c: &Control, verbose: u8) {
    let _ = write!(
        line,
        "\n\tLeap indicator: {} ({}), {}, {}, {}, OpCode={}",
        ntp.leap.describe(),
        ntp.leap.to_bits() << 6,
        if c.response { "Response" } else { "Request" },
        if c.error { "Error" } else { "OK" },
        if c.more { "More" } else { "Last" },
        c.opcode,
    );
    let status = if c.status == 0 {
        "0".to_owned()
    } else {
        format!("{:#x}", c.status)
    };
    let _ = write!(
        line,
        "\n\tSequence={}, Status={status}, Assoc.={}, Offset={}, Count={}",
        c.sequence, c.association_id, c.offset, c.count
    );
    if let Some(name) = ntp::names::control_opcode_name(c.opcode) {
        let _ = write!(line, "\n\tOpcode: {name}");
    }
    if c.response {
        let _ = write!(
            line,
            "\n\tStatus word: {}",
            status_word_text(c.status_word())
        );
    }
    match c.data_view() {
        ControlData::None => {}
        ControlData::Text(text) => {
            line.push_str("\n\tData:");
            // A line a part: CR LF as RFC 9327 writes it, or a lone CR or LF; whatever else
            // the sender put in is shown, never obeyed.
            for part in text.split("\r\n").flat_map(|p| p.split(['\r', '\n'])) {
                let _ = write!(line, "\n\t  {}", crate::escape::terminal(part));
            }
        }
        ControlData::Associations(list) => {
            line.push_str("\n\tAssociations:");
            for (id, status) in list {
                let _ = write!(line, "\n\t  {id}: {}", status_word_text(status));
            }
        }
        ControlData::Binary(bytes) => {
            let _ = write!(line, "\n\tData: {} bytes", bytes.len());
            hex_block(line, bytes);
        }
    }
    if verbose > 2 && !c.data.is_empty() {
        hex_block(line, &c.data);
    }
}

fn status_word_text(word: ntp::packet::StatusWord) -> String {
    use ntp::{names, packet::StatusWord};
    match word {
        StatusWord::System {
            leap,
            clock_source,
            event_count,
            event_code,
        } => format!(
            "system: leap {leap}, clock source {clock_source} ({}), {event_count} events, last {event_code} ({})",
            names::clock_source_name(clock_source),
            names::system_event_name(event_code)
        ),
        StatusWord::Peer {
            status,
            selection,
            event_count,
            event_code,
        } => format!(
            "peer: status 0x{status:02x} ({}), selection {selection} ({}), {event_count} events, last {event_code} ({})",
            names::peer_status_text(status),
            names::peer_selection_name(selection),
            names::peer_event_name(event_code)
        ),
        StatusWord::Clock {
            event_count,
            event_code,
        } => {
            format!(
                "clock: {event_count} events, last {event_code} ({})",
                names::clock_status_name(event_code)
            )
        }
        StatusWord::Error { code } => format!("error {code} ({})", names::control_error_name(code)),
    }
}

fn private_detail(line: &mut String, p: &Private) {
    let _ = write!(
        line,
        "\n\t{}, {}, {}, Sequence={}, Implementation={} ({}), Request={} ({}), Error={}, Items={}, Size={}",
        if p.response { "Response" } else { "Request" },
        if p.more { "More" } else { "Last" },
        if p.auth {
            "Authenticated"
        } else {
            "Unauthenticated"
        },
        p.sequence,
        p.implementation,
        ntp::names::implementation_name(p.implementation),
        p.request_code,
        ntp::names::private_request_name(p.request_code).unwrap_or("unknown"),
        p.error_code,
        p.item_count,
        p.item_size
    );
}

/// tcpdump's hex block under a field: offset and 16 bytes in pairs, no ASCII.
fn hex_block(line: &mut String, data: &[u8]) {
    for (i, chunk) in data.chunks(16).enumerate() {
        let _ = write!(line, "\n\t    0x{:04x}: ", i * 16);
        for pair in chunk.chunks(2) {
            line.push(' ');
            for b in pair {
                let _ = write!(line, "{b:02x}");
            }
        }
    }
}

/// The link header's length, as tcpdump counts it for `-x`/`-X`/`-A` (VLAN tags included).
fn link_header_len(link: LinkType, vlans: &[u16]) -> usize {
    match link {
        LinkType::Ethernet => 14 + 4 * vlans.len(),
        LinkType::RawIp | LinkType::Other(_) => 0,
        LinkType::Null => 4,
        LinkType::LinuxSll => 16,
        LinkType::LinuxSll2 => 20,
    }
}

/// tcpdump `-x`: offset and 16 bytes a line as hex in pairs.
fn hex_lines(line: &mut String, data: &[u8]) {
    for (i, chunk) in data.chunks(16).enumerate() {
        let _ = write!(line, "\n\t0x{:04x}: ", i * 16);
        for pair in chunk.chunks(2) {
            line.push(' ');
            for b in pair {
                let _ = write!(line, "{b:02x}");
            }
        }
    }
}

/// tcpdump `-A`: the bytes as ASCII on a line of their own; tabs, spaces and newlines as they
/// are, a carriage return dropped before a newline or at the end, every other byte that is
/// not printable as a dot (so nothing reaches the terminal but printable ASCII and those).
fn ascii_dump(line: &mut String, data: &[u8]) {
    line.push('\n');
    for (i, &b) in data.iter().enumerate() {
        if b == b'\r' {
            let rest = data.len() - i - 1;
            if rest > 1 && data[i + 1] != b'\n' {
                line.push('.');
            }
        } else if b.is_ascii_graphic() || matches!(b, b'\t' | b' ' | b'\n') {
            line.push(char::from(b));
        } else {
            line.push('.');
        }
    }
}

/// The fraction of a second after a time: `.micros`, or `.nanos` with nano precision.
struct Fraction {
    nanos: u32,
    nano: bool,
}

impl std::fmt::Display for Fraction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.nano {
            write!(f, ".{:09}", self.nanos)
        } else {
            write!(f, ".{:06}", self.nanos / 1000)
        }
    }
}

/// tcpdump `-X`: offset, 16 bytes as hex in pairs, and ASCII.
fn hex_dump(line: &mut String, data: &[u8]) {
    for (i, chunk) in data.chunks(16).enumerate() {
        let _ = write!(line, "\n\t0x{:04x}:  ", i * 16);
        for pair in 0..8 {
            match chunk.get(pair * 2..(pair * 2 + 2).min(chunk.len())) {
                Some([a, b]) => {
                    let _ = write!(line, "{a:02x}{b:02x} ");
                }
                Some([a]) => {
                    let _ = write!(line, "{a:02x}   ");
                }
                _ => line.push_str("     "),
            }
        }
        line.push(' ');
        // tcpdump shows only graphic characters there: a space is a dot too.
        line.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '.'
            }
        }));
    }
}

impl<W: Write> Sink for TextSink<W> {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        let frame = packet.frame;
        if !self.filter.shows(packet.layers().transport.as_ref()) {
            return Ok(false);
        }
        self.shown += 1;
        self.line.clear();
        if self.options.number {
            let _ = write!(self.line, "{:5}  ", self.shown);
        }
        self.timestamp(frame.ts);
        if self.options.show_iface {
            let _ = write!(
                self.line,
                "{} {} ",
                crate::escape::terminal(frame.iface.unwrap_or("?")),
                frame.direction.map_or("   ", |d| d.label())
            );
        }
        if let Some(drop) = frame.drop {
            let _ = write!(
                self.line,
                "DROPPED ({}) ",
                crate::process::escape(drop.reason.as_bytes())
            );
        }
        if self.options.process {
            match frame.socket {
                Socket::Owned(p) => {
                    self.line.push_str(&p.short());
                    self.line.push(' ');
                }
                Socket::None => self.line.push_str("[no socket] "),
                Socket::Unowned => self.line.push_str("[unowned] "),
                Socket::Unknown => {}
            }
        }
        self.describe(packet);
        if self.options.verbose > 0 {
            match frame.socket {
                Socket::Owned(p) => {
                    let _ = write!(self.line, "\n\tprocess {}", p.pairs());
                }
                Socket::None => self.line.push_str("\n\tprocess: no socket takes it"),
                Socket::Unowned => {
                    self.line
                        .push_str("\n\tprocess: a socket opened before ntptap started");
                }
                Socket::Unknown => {}
            }
        }
        if let Some(latency) = &packet.latency
            && self.options.verbose > 0
        {
            let _ = write!(self.line, "\n\tin this host:");
            for (_, stage, ns) in latency.stages() {
                let _ = write!(self.line, " {stage} {:.1} µs", ns as f64 / 1e3);
            }
            if let Some(t) = latency.t3_minus_t2 {
                let _ = write!(self.line, " (T3 - T2 {:.1} µs)", t as f64 / 1e3);
            }
        }
        if let Some(drop) = frame.drop
            && self.options.verbose > 0
        {
            let _ = write!(
                self.line,
                "\n\tdropped by the kernel in {}",
                crate::process::escape(drop.location.as_bytes())
            );
        }
        if let Some(dump) = self.options.dump {
            // Without the doubled letter, from past the link header; nothing when nothing is
            // past it (tcpdump's rule).
            let from = if dump.link {
                0
            } else {
                link_header_len(frame.link, &packet.layers().vlans)
            };
            if let Some(bytes) = frame.data.get(from..).filter(|b| !b.is_empty()) {
                match (dump.hex, dump.ascii) {
                    (true, true) => hex_dump(&mut self.line, bytes),
                    (true, false) => hex_lines(&mut self.line, bytes),
                    _ => ascii_dump(&mut self.line, bytes),
                }
            }
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())?;
        Ok(true)
    }

    fn control(&mut self, control: &SinkControl<'_>) -> io::Result<()> {
        match control {
            SinkControl::Flush | SinkControl::Close { .. } => self.out.flush(),
            SinkControl::Tick { .. }
            | SinkControl::Kernel(_)
            | SinkControl::Rotate(_)
            | SinkControl::Trigger(..) => Ok(()),
        }
    }

    fn unwritten(&self) -> u64 {
        0
    }
}
