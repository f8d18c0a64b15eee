//! A frame's bytes under its line, in tcpdump's layouts: `-x` (hex), `-X` (hex and ASCII),
//! `-A` (ASCII), from the network header on or, with the doubled letter, the link header.

use std::fmt::Write as _;

use crate::frame::LinkType;

/// The link header's length, as tcpdump counts it for `-x`/`-X`/`-A` (VLAN tags included).
pub(super) fn link_header_len(link: LinkType, vlans: &[u16]) -> usize {
    match link {
        LinkType::Ethernet => 14 + 4 * vlans.len(),
        LinkType::RawIp | LinkType::Other(_) => 0,
        LinkType::Null => 4,
        LinkType::LinuxSll => 16,
        LinkType::LinuxSll2 => 20,
    }
}

/// tcpdump `-x`: offset and 16 bytes a line as hex in pairs.
pub(super) fn hex_lines(line: &mut String, data: &[u8]) {
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
pub(super) fn ascii_dump(line: &mut String, data: &[u8]) {
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

/// tcpdump `-X`: offset, 16 bytes as hex in pairs, and ASCII.
pub(super) fn hex_dump(line: &mut String, data: &[u8]) {
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
