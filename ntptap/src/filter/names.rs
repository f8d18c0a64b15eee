//! The expression language's vocabulary: service names, named constants for byte tests,
//! numbers and MAC addresses as libpcap reads them, and the primitives ntptap refuses.

use anyhow::{Context as _, bail};

use super::tree::Proto;

/// The primitives libpcap has and ntptap's expressions do not evaluate, refused by name.
pub fn refuse_unsupported(word: &str) -> anyhow::Result<()> {
    const REFUSED: [&str; 30] = [
        "vlan", "mpls", "pppoed", "pppoes", "geneve", "gateway", "llc", "atalk", "aarp", "decnet",
        "iso", "esis", "isis", "clnp", "stp", "ipx", "netbeui", "lat", "moprc", "mopdl", "sca",
        "inbound", "outbound", "ifname", "on", "rnr", "rulenum", "reason", "rset", "radio",
    ];
    if REFUSED.contains(&word) {
        bail!(
            "'{}' is not a primitive ntptap's expressions evaluate (host, net, port, portrange, \
             protocols, ether host, broadcast, multicast, greater, less and byte tests are); \
             the frame would be judged otherwise than libpcap judges it, so it is refused",
            crate::escape::terminal(word)
        );
    }
    Ok(())
}

/// A port, by number or by a service's name; for a name known over one transport only, that
/// transport.
pub fn port(text: &str) -> anyhow::Result<(u16, Option<Proto>)> {
    if let Some(n) = parse_number(text) {
        let p = u16::try_from(n).with_context(|| format!("port {n} is past 65535"))?;
        return Ok((p, None));
    }
    // The services tcpdump users name most, as Debian's /etc/services has them (none is
    // read at run time: the container image has no /etc/services).
    let (port, tcp, udp) = match text {
        "ntp" => (123, false, true),
        "domain" => (53, true, true),
        "http" | "www" => (80, true, false),
        "https" => (443, true, true),
        "ssh" => (22, true, false),
        "telnet" => (23, true, false),
        "smtp" | "mail" => (25, true, false),
        "ftp" => (21, true, false),
        "ftp-data" => (20, true, false),
        "bootps" => (67, false, true),
        "bootpc" => (68, false, true),
        "tftp" => (69, false, true),
        "snmp" => (161, true, true),
        "snmp-trap" | "snmptrap" => (162, true, true),
        "syslog" => (514, false, true),
        "ptp-event" => (319, false, true),
        "ptp-general" => (320, false, true),
        "domain-s" => (853, true, true),
        "mdns" => (5353, false, true),
        _ => bail!(
            "port {}: not a number or a service ntptap knows (ntp, domain, http, https, ssh, \
             ...); give the number",
            crate::escape::terminal(text)
        ),
    };
    let only = match (tcp, udp) {
        (true, false) => Some(Proto::Tcp),
        (false, true) => Some(Proto::Udp),
        _ => None,
    };
    Ok((port, only))
}

/// A number as libpcap reads one: decimal, 0x hex, or 0-prefixed octal.
#[must_use]
pub fn parse_number(text: &str) -> Option<u32> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).ok();
    }
    if text.len() > 1 && text.starts_with('0') {
        return u32::from_str_radix(&text[1..], 8).ok();
    }
    text.parse().ok()
}

/// pcap-filter's named constants for byte tests.
const NAMED: [(&str, u32); 42] = [
    ("icmptype", 0),
    ("icmp6type", 0),
    ("icmpcode", 1),
    ("icmp6code", 1),
    ("tcpflags", 13),
    ("tcp-fin", 0x01),
    ("tcp-syn", 0x02),
    ("tcp-rst", 0x04),
    ("tcp-push", 0x08),
    ("tcp-ack", 0x10),
    ("tcp-urg", 0x20),
    ("tcp-ece", 0x40),
    ("tcp-cwr", 0x80),
    ("icmp-echoreply", 0),
    ("icmp-unreach", 3),
    ("icmp-sourcequench", 4),
    ("icmp-redirect", 5),
    ("icmp-echo", 8),
    ("icmp-routeradvert", 9),
    ("icmp-routersolicit", 10),
    ("icmp-timxceed", 11),
    ("icmp-paramprob", 12),
    ("icmp-tstamp", 13),
    ("icmp-tstampreply", 14),
    ("icmp-ireq", 15),
    ("icmp-ireqreply", 16),
    ("icmp-maskreq", 17),
    ("icmp-maskreply", 18),
    ("icmp6-destinationunreach", 1),
    ("icmp6-packettoobig", 2),
    ("icmp6-timeexceeded", 3),
    ("icmp6-parameterproblem", 4),
    ("icmp6-echo", 128),
    ("icmp6-echoreply", 129),
    ("icmp6-multicastlistenerquery", 130),
    ("icmp6-multicastlistenerreportv1", 131),
    ("icmp6-multicastlistenerdone", 132),
    ("icmp6-routersolicit", 133),
    ("icmp6-routeradvert", 134),
    ("icmp6-neighborsolicit", 135),
    ("icmp6-neighboradvert", 136),
    ("icmp6-redirect", 137),
];

/// The value of a named constant (`tcpflags`, `tcp-syn`, `icmp-echo`...).
#[must_use]
pub fn named_constant(word: &str) -> Option<u32> {
    NAMED.iter().find(|(n, _)| *n == word).map(|(_, v)| *v)
}

/// A MAC address: six hex bytes separated by `:`, `-` or `.`.
pub fn mac(text: &str) -> anyhow::Result<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-', '.']).collect();
    let mut mac = [0u8; 6];
    let ok = parts.len() == 6
        && parts
            .iter()
            .zip(mac.iter_mut())
            .all(|(p, m)| u8::from_str_radix(p, 16).map(|v| *m = v).is_ok());
    if !ok {
        bail!(
            "ether host {}: give a MAC address as 00:11:22:33:44:55",
            crate::escape::terminal(text)
        );
    }
    Ok(mac)
}
