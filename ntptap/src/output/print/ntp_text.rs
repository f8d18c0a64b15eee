//! NTP's words under a frame's line, as tcpdump prints them (`NTPv4, Client, length 48` and
//! the `-v` detail), with what ntptap decodes beyond tcpdump (mode 6 data, status words,
//! kiss codes, NTS lengths).

use std::fmt::Write as _;

use super::text::push_num;
use crate::ntp::{
    self, Body, Ntp, NtpError, RefId,
    packet::{Control, ControlData, Private, TimeHeader},
    time::{log2_seconds, push_date_time, push_padded},
};

/// `NTPv4, Client, length 48`, then the `-v` detail lines.
pub(super) fn ntp_summary(
    line: &mut String,
    ntp: &Result<Ntp, NtpError>,
    length: usize,
    verbose: u8,
) {
    // Not one byte of NTP captured: tcpdump's mark alone.
    let Ok(ntp) = ntp else {
        line.push_str(" [|ntp]");
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

/// `seconds.nanoseconds (date)`, as tcpdump prints an NTP timestamp.
pub(super) fn push_ts(line: &mut String, ts: ntp::NtpTimestamp) {
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
pub(super) fn push_short(line: &mut String, v: ntp::NtpShort) {
    push_num(line, v.0 >> 16);
    line.push('.');
    push_padded(line, (u64::from(v.0 & 0xffff) * 1_000_000) >> 16, 6);
}

/// `later - origin`, signed, as tcpdump prints it; the whole `later` timestamp if the origin
/// is unset (nothing to compare against).
pub(super) fn push_delta(line: &mut String, origin: ntp::NtpTimestamp, later: ntp::NtpTimestamp) {
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

/// `2^exp` seconds as tcpdump prints a poll interval: whole seconds, or a fraction.
pub(super) fn push_log2_seconds(line: &mut String, exp: i8) {
    if (0..63).contains(&exp) {
        push_num(line, 1u64 << exp);
    } else {
        let _ = write!(line, "{}", log2_seconds(exp));
    }
}

pub(super) fn stratum_name(stratum: u8) -> &'static str {
    match stratum {
        0 => "unspecified",
        1 => "primary reference",
        2..=15 => "secondary reference",
        16 => "unsynchronized",
        _ => "reserved",
    }
}

pub(super) fn push_refid(line: &mut String, refid: &RefId) {
    match refid {
        RefId::Unspecified => line.push_str("(unspec)"),
        RefId::KissCode(code) | RefId::Clock(code) => line.push_str(code),
        RefId::Address(addr) => {
            let _ = write!(line, "{addr}");
        }
    }
}

pub(super) fn ntp_detail(line: &mut String, ntp: &Ntp, verbose: u8) {
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

pub(super) fn time_detail(line: &mut String, ntp: &Ntp, h: &TimeHeader, verbose: u8) {
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

pub(super) fn control_detail(line: &mut String, ntp: &Ntp, c: &Control, verbose: u8) {
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

pub(super) fn status_word_text(word: ntp::packet::StatusWord) -> String {
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

pub(super) fn private_detail(line: &mut String, p: &Private) {
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
pub(super) fn hex_block(line: &mut String, data: &[u8]) {
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
