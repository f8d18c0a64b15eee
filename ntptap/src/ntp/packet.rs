//! NTP packets: a checked view over the bytes and the owned decode built from it.
//!
//! Modes 0–5 carry the time header (RFC 5905 §7.3), then extension fields (RFC 7822) and/or a
//! legacy MAC. Mode 6 is a control message (RFC 9327 §2). Mode 7 is ntpd's private request
//! format (ntpd `include/ntp_request.h`). Truncated input decodes as far as the bytes go and
//! records what was missing in [`Ntp::error`].

use std::ops::Range;

use serde::Serialize;

use super::{
    names::{Leap, Mode},
    time::{NtpShort, NtpTimestamp},
};

/// Byte ranges of the time header (RFC 5905 §7.3, Figure 8).
mod field {
    use std::ops::Range;
    pub const FLAGS: usize = 0;
    pub const STRATUM: usize = 1;
    pub const POLL: usize = 2;
    pub const PRECISION: usize = 3;
    pub const ROOT_DELAY: Range<usize> = 4..8;
    pub const ROOT_DISPERSION: Range<usize> = 8..12;
    pub const REFERENCE_ID: Range<usize> = 12..16;
    pub const REFERENCE_TS: Range<usize> = 16..24;
    pub const ORIGIN_TS: Range<usize> = 24..32;
    pub const RECEIVE_TS: Range<usize> = 32..40;
    pub const TRANSMIT_TS: Range<usize> = 40..48;
    pub const HEADER_END: usize = 48;
    /// Mode 6 header (RFC 9327 §2): 12 bytes.
    pub const CONTROL_END: usize = 12;
    /// Mode 7 header (ntpd `struct req_pkt`): 8 bytes.
    pub const PRIVATE_END: usize = 8;
}

/// What is wrong with a packet that was decoded only in part.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NtpError {
    /// The packet ends before a field it must have.
    #[error("truncated: {what} needs {needed} bytes at offset {offset}, {available} captured")]
    Truncated {
        /// The field or header that was cut.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Offset of the field.
        offset: usize,
        /// Bytes that were there from that offset.
        available: usize,
    },
    /// Bytes after the header that are neither extension fields nor a MAC.
    #[error("{length} bytes after the header are neither extension fields nor a MAC")]
    Trailing {
        /// Offset of the first such byte.
        offset: usize,
        /// How many there are.
        length: usize,
    },
}

/// A zero-copy view of an NTP packet. Once made with [`NtpPacket::new_checked`], no accessor
/// can panic.
#[derive(Clone, Copy, Debug)]
pub struct NtpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NtpPacket<T> {
    /// A view that needs at least the first byte (version and mode).
    pub fn new_checked(buffer: T) -> Result<Self, NtpError> {
        if buffer.as_ref().is_empty() {
            return Err(NtpError::Truncated {
                what: "first byte",
                needed: 1,
                offset: 0,
                available: 0,
            });
        }
        Ok(Self { buffer })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn get(&self, range: Range<usize>) -> Option<&[u8]> {
        self.bytes().get(range)
    }

    fn array<const N: usize>(&self, range: Range<usize>) -> Option<[u8; N]> {
        self.get(range).and_then(|b| b.try_into().ok())
    }

    /// Leap indicator (modes 0–6).
    #[must_use]
    pub fn leap(&self) -> Leap {
        Leap::from_bits(self.bytes()[field::FLAGS] >> 6)
    }
    /// Version number.
    #[must_use]
    pub fn version(&self) -> u8 {
        (self.bytes()[field::FLAGS] >> 3) & 7
    }
    /// Association mode.
    #[must_use]
    pub fn mode(&self) -> Mode {
        Mode::from_bits(self.bytes()[field::FLAGS])
    }
    /// Length of the whole packet as captured.
    #[must_use]
    pub fn len(&self) -> usize {
        self.bytes().len()
    }
    /// Never true for a checked view.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
    /// Shorter than the fixed header of its mode.
    #[must_use]
    pub fn is_truncated(&self) -> bool {
        let needed = match self.mode() {
            Mode::Control => field::CONTROL_END,
            Mode::Private => field::PRIVATE_END,
            _ => field::HEADER_END,
        };
        self.len() < needed
    }
}

/// A decoded NTP packet.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ntp {
    /// Bytes of NTP payload captured.
    pub length: usize,
    /// Leap indicator (not meaningful in mode 7, where those bits are R and M).
    pub leap: Leap,
    /// Version number (1–4 are defined).
    pub version: u8,
    /// Association mode.
    pub mode: Mode,
    /// What follows the first byte.
    pub body: Body,
    /// Set when the packet was decoded only in part.
    pub error: Option<NtpError>,
}

/// The mode-dependent part of a packet.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// Modes 0–5: the time header.
    Time(Box<TimeHeader>),
    /// Mode 6.
    Control(Control),
    /// Mode 7.
    Private(Private),
    /// Too short to hold any header of its mode.
    None,
}

/// The time header of modes 0–5 (RFC 5905 §7.3), with what follows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimeHeader {
    /// Stratum (RFC 5905 Figure 11).
    pub stratum: u8,
    /// Poll exponent, log2 seconds.
    pub poll: i8,
    /// Precision exponent, log2 seconds.
    pub precision: i8,
    /// Root delay.
    #[serde(serialize_with = "short_secs")]
    pub root_delay: NtpShort,
    /// Root dispersion.
    #[serde(serialize_with = "short_secs")]
    pub root_dispersion: NtpShort,
    /// Reference ID, raw.
    pub refid: [u8; 4],
    /// Reference timestamp.
    #[serde(serialize_with = "ts_raw")]
    pub reference: NtpTimestamp,
    /// Origin timestamp.
    #[serde(serialize_with = "ts_raw")]
    pub origin: NtpTimestamp,
    /// Receive timestamp.
    #[serde(serialize_with = "ts_raw")]
    pub receive: NtpTimestamp,
    /// Transmit timestamp.
    #[serde(serialize_with = "ts_raw")]
    pub transmit: NtpTimestamp,
    /// Extension fields (RFC 7822), in order.
    pub extensions: Vec<Extension>,
    /// Legacy MAC or crypto-NAK.
    pub mac: Option<Mac>,
}

/// The reference ID, read according to the stratum (RFC 5905 §7.3 and §7.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum RefId {
    /// Stratum 0 with four zero bytes.
    Unspecified,
    /// Stratum 0: a kiss code (ASCII), e.g. `RATE`.
    KissCode(String),
    /// Stratum 1: the reference clock's ASCII identifier, e.g. `GPS`.
    Clock(String),
    /// Stratum 2 and up: the IPv4 address of the reference, or the first four bytes of the MD5
    /// hash of its IPv6 address; the packet cannot tell which.
    Address(std::net::Ipv4Addr),
}

impl RefId {
    /// As text: the kiss code, the clock name, the address, or `(unspec)`.
    #[must_use]
    pub fn text(&self) -> String {
        match self {
            RefId::Unspecified => "(unspec)".into(),
            RefId::KissCode(code) | RefId::Clock(code) => code.clone(),
            RefId::Address(addr) => addr.to_string(),
        }
    }

    /// Read `refid` for `stratum`.
    #[must_use]
    pub fn new(stratum: u8, refid: [u8; 4]) -> Self {
        let ascii = || {
            refid
                .iter()
                .take_while(|b| **b != 0)
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        char::from(b)
                    } else {
                        '.'
                    }
                })
                .collect::<String>()
        };
        match stratum {
            0 if refid == [0; 4] => RefId::Unspecified,
            0 => RefId::KissCode(ascii()),
            1 => RefId::Clock(ascii()),
            _ => RefId::Address(std::net::Ipv4Addr::from(refid)),
        }
    }
}

impl TimeHeader {
    /// The reference ID, read according to the stratum.
    #[must_use]
    pub fn refid(&self) -> RefId {
        RefId::new(self.stratum, self.refid)
    }
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's serialize_with signature"
)]
fn short_secs<S: serde::Serializer>(v: &NtpShort, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(v.seconds())
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's serialize_with signature"
)]
fn ts_raw<S: serde::Serializer>(v: &NtpTimestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(v.0)
}

/// An extension field (RFC 7822 §3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Extension {
    /// Field type.
    #[serde(rename = "type")]
    pub field_type: u16,
    /// Field length, header included.
    pub length: u16,
    /// The value (the bytes after the 4-byte header).
    #[serde(skip)]
    pub value: Vec<u8>,
}

impl Extension {
    /// IANA name of the field type, if registered.
    #[must_use]
    pub fn name(&self) -> Option<&'static str> {
        extension_name(self.field_type)
    }

    /// For an NTS Authenticator and Encrypted Extension Fields field (RFC 8915 §5.6): the
    /// nonce and ciphertext lengths, if the value holds them.
    #[must_use]
    pub fn nts_authenticator(&self) -> Option<NtsAuthenticator> {
        if self.field_type != 0x0404 {
            return None;
        }
        let v = &self.value;
        let nonce_length = u16::from_be_bytes([*v.first()?, *v.get(1)?]);
        let ciphertext_length = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]);
        let fits = 4 + usize::from(nonce_length) + usize::from(ciphertext_length) <= v.len();
        Some(NtsAuthenticator {
            nonce_length,
            ciphertext_length,
            fits,
        })
    }
}

/// The lengths in an NTS Authenticator and Encrypted Extension Fields field (RFC 8915 §5.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NtsAuthenticator {
    /// Nonce length, bytes.
    pub nonce_length: u16,
    /// Ciphertext length, bytes.
    pub ciphertext_length: u16,
    /// Whether nonce and ciphertext fit in the field as captured.
    pub fits: bool,
}

/// IANA "NTP Extension Field Types" names.
#[must_use]
pub fn extension_name(field_type: u16) -> Option<&'static str> {
    Some(match field_type {
        0x0104 => "Unique Identifier",
        0x0204 => "NTS Cookie",
        0x0304 => "NTS Cookie Placeholder",
        0x0404 => "NTS Authenticator and Encrypted Extension Fields",
        0x2005 => "Checksum Complement",
        0x0002 => "No-Operation Request",
        0x8002 => "No-Operation Response",
        0xC002 => "No-Operation Error Response",
        0x0102 => "Association Message Request",
        0x8102 => "Association Message Response",
        0xC102 => "Association Message Error Response",
        0x0202 => "Certificate Message Request",
        0x8202 => "Certificate Message Response",
        0xC202 => "Certificate Message Error Response",
        0x0302 => "Cookie Message Request",
        0x8302 => "Cookie Message Response",
        0xC302 => "Cookie Message Error Response",
        0x0402 => "Autokey Message Request",
        0x8402 => "Autokey Message Response",
        0xC402 => "Autokey Message Error Response",
        0x0502 => "Leapseconds Value Message Request",
        0x8502 => "Leapseconds Value Message Response",
        0xC502 => "Leapseconds Value Message Error Response",
        0x0602 => "Sign Message Request",
        0x8602 => "Sign Message Response",
        0xC602 => "Sign Message Error Response",
        0x0702 => "IFF Identity Message Request",
        0x8702 => "IFF Identity Message Response",
        0xC702 => "IFF Identity Message Error Response",
        0x0802 => "GQ Identity Message Request",
        0x8802 => "GQ Identity Message Response",
        0xC802 => "GQ Identity Message Error Response",
        0x0902 => "MV Identity Message Request",
        0x8902 => "MV Identity Message Response",
        0xC902 => "MV Identity Message Error Response",
        _ => return None,
    })
}

/// A legacy MAC (RFC 5905 §7.3: key identifier and digest) or a crypto-NAK (key id alone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mac {
    /// Key identifier.
    pub key_id: u32,
    /// Digest: empty for a crypto-NAK, 16 bytes for MD5, 20 for SHA-1, 64 for SHA-512.
    #[serde(serialize_with = "hex")]
    pub digest: Vec<u8>,
}

fn hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&to_hex(v))
}

/// Lowercase hex of `bytes`.
#[must_use]
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Digest lengths a legacy MAC may have: none (crypto-NAK), MD5, SHA-1, SHA-512.
const MAC_DIGESTS: [usize; 4] = [0, 16, 20, 64];

/// A mode 6 control message header (RFC 9327 §2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Control {
    /// R bit: a response.
    pub response: bool,
    /// E bit: an error response.
    pub error: bool,
    /// M bit: more fragments follow.
    pub more: bool,
    /// Operation code.
    pub opcode: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Status word.
    pub status: u16,
    /// Association ID.
    pub association_id: u16,
    /// Offset of this fragment's data.
    pub offset: u16,
    /// Bytes of data in this fragment.
    pub count: u16,
    /// The data bytes captured (at most `count`).
    #[serde(skip)]
    pub data: Vec<u8>,
    /// What follows the data: padding to a 32-bit boundary and, when authenticated, a key id
    /// and digest (RFC 9327 §2).
    #[serde(skip)]
    pub trailer: Vec<u8>,
}

/// A mode 7 private message header (ntpd `struct req_pkt` / `struct resp_pkt`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Private {
    /// R bit: a response.
    pub response: bool,
    /// M bit: more follows.
    pub more: bool,
    /// A bit: the request is authenticated.
    pub auth: bool,
    /// Sequence number (7 bits).
    pub sequence: u8,
    /// Implementation number.
    pub implementation: u8,
    /// Request code.
    pub request_code: u8,
    /// Error code (4 bits).
    pub error_code: u8,
    /// Number of data items.
    pub item_count: u16,
    /// Size of each item.
    pub item_size: u16,
    /// The four must-be-zero bits before the item size (kept: non-zero is a malformed sender).
    pub mbz: u8,
    /// The items, and any authenticator, after the 8-byte header.
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// Names of mode 7 request codes (ntpd `include/ntp_request.h`).
#[must_use]
pub fn private_request_name(code: u8) -> Option<&'static str> {
    const NAMES: [&str; 45] = [
        "PEER_LIST",
        "PEER_LIST_SUM",
        "PEER_INFO",
        "PEER_STATS",
        "SYS_INFO",
        "SYS_STATS",
        "IO_STATS",
        "MEM_STATS",
        "LOOP_INFO",
        "TIMER_STATS",
        "CONFIG",
        "UNCONFIG",
        "SET_SYS_FLAG",
        "CLR_SYS_FLAG",
        "MONITOR",
        "NOMONITOR",
        "GET_RESTRICT",
        "RESADDFLAGS",
        "RESSUBFLAGS",
        "UNRESTRICT",
        "MON_GETLIST",
        "RESET_STATS",
        "RESET_PEER",
        "REREAD_KEYS",
        "DO_DIRTY_HACK",
        "DONT_DIRTY_HACK",
        "TRUSTKEY",
        "UNTRUSTKEY",
        "AUTHINFO",
        "TRAPS",
        "ADD_TRAP",
        "CLR_TRAP",
        "REQUEST_KEY",
        "CONTROL_KEY",
        "GET_CTLSTATS",
        "GET_LEAPINFO",
        "GET_CLOCKINFO",
        "SET_CLKFUDGE",
        "GET_KERNEL",
        "GET_CLKBUGINFO",
        "SET_PRECISION",
        "MON_GETLIST_1",
        "HOSTNAME_ASSOCID",
        "IF_STATS",
        "IF_RELOAD",
    ];
    NAMES.get(usize::from(code)).copied()
}

/// The data of a mode 6 message, read according to its opcode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlData<'a> {
    /// No data.
    None,
    /// `name=value` text.
    Text(String),
    /// READSTAT: association IDs with their status words.
    Associations(Vec<(u16, StatusWord)>),
    /// Anything else.
    Binary(&'a [u8]),
}

/// A mode 6 status word, decoded by what the message is about (RFC 9327 §2.1 to §2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StatusWord {
    /// System status (association 0): leap, clock source, event count and code.
    System {
        /// Leap indicator.
        leap: u8,
        /// Clock source (RFC 9327 §2.1.1).
        clock_source: u8,
        /// System event counter.
        event_count: u8,
        /// Last system event code.
        event_code: u8,
    },
    /// Peer status (an association): status bits, selection, event count and code.
    Peer {
        /// Peer status bits: configured, authentication enabled, authentic, reachable,
        /// broadcast (RFC 9327 §2.2.1).
        status: u8,
        /// Selection (0 rejected .. 6 system peer, 7 PPS peer).
        selection: u8,
        /// Peer event counter.
        event_count: u8,
        /// Last peer event code.
        event_code: u8,
    },
    /// Clock status (READCLOCK/WRITECLOCK): event count and code.
    Clock {
        /// Clock event counter.
        event_count: u8,
        /// Last clock status code.
        event_code: u8,
    },
    /// Error status (E bit set): the error code.
    Error {
        /// Error code (RFC 9327 §2.4).
        code: u8,
    },
}

impl Control {
    /// The status word, read according to the opcode, the association and the E bit. Requests
    /// carry no status (zero); it is still decoded, as Wireshark does.
    #[must_use]
    pub fn status_word(&self) -> StatusWord {
        let s = self.status;
        let count = ((s >> 4) & 0xf) as u8;
        let code = (s & 0xf) as u8;
        if self.error {
            return StatusWord::Error {
                code: (s >> 8) as u8,
            };
        }
        match self.opcode {
            4 | 5 => StatusWord::Clock {
                event_count: count,
                event_code: code,
            },
            _ if self.association_id == 0 => StatusWord::System {
                leap: (s >> 14) as u8,
                clock_source: ((s >> 8) & 0x3f) as u8,
                event_count: count,
                event_code: code,
            },
            _ => StatusWord::Peer {
                status: (s >> 11) as u8,
                selection: ((s >> 8) & 7) as u8,
                event_count: count,
                event_code: code,
            },
        }
    }

    /// The data as text (`name=value, ...` for variable lists), without trailing padding.
    #[must_use]
    pub fn data_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.data);
        text.trim_end_matches(['\0', '\r', '\n']).to_owned()
    }

    /// The data, read by opcode: READSTAT responses about the system list the associations
    /// with their peer status words (RFC 9327 §3.1); most other responses are `name=value`
    /// text; anything else is shown as bytes.
    #[must_use]
    pub fn data_view(&self) -> ControlData<'_> {
        if self.data.is_empty() {
            return ControlData::None;
        }
        if self.opcode == 1 && self.association_id == 0 && !self.error {
            let list = self
                .data
                .chunks_exact(4)
                .map(|p| {
                    let status = Control {
                        association_id: u16::from_be_bytes([p[0], p[1]]),
                        status: u16::from_be_bytes([p[2], p[3]]),
                        opcode: 1,
                        error: false,
                        response: true,
                        more: false,
                        sequence: 0,
                        offset: 0,
                        count: 0,
                        data: Vec::new(),
                        trailer: Vec::new(),
                    };
                    (status.association_id, status.status_word())
                })
                .collect();
            return ControlData::Associations(list);
        }
        let text = self.data_text();
        if text
            .chars()
            .all(|c| !c.is_control() || c == '\r' || c == '\n' || c == '\t')
        {
            ControlData::Text(text)
        } else {
            ControlData::Binary(&self.data)
        }
    }
}

/// Names of mode 6 opcodes (RFC 9327 §2, and ntpd's additions).
#[must_use]
pub fn control_opcode_name(opcode: u8) -> Option<&'static str> {
    Some(match opcode {
        1 => "READSTAT",
        2 => "READVAR",
        3 => "WRITEVAR",
        4 => "READCLOCK",
        5 => "WRITECLOCK",
        6 => "SETTRAP",
        7 => "ASYNCMSG",
        8 => "CONFIGURE",
        9 => "SAVECONFIG",
        10 => "READ_MRU",
        11 => "READ_ORDLIST_A",
        12 => "REQ_NONCE",
        31 => "UNSETTRAP",
        _ => return None,
    })
}

// Decodes run on this thread, for the test that a frame is decoded once for every output.
#[cfg(test)]
thread_local! {
    pub(crate) static DECODES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Ntp {
    /// Decode `bytes` as far as they go. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Ntp, NtpError> {
        #[cfg(test)]
        DECODES.with(|d| d.set(d.get() + 1));
        let view = NtpPacket::new_checked(bytes)?;
        let mut ntp = Ntp {
            length: bytes.len(),
            leap: view.leap(),
            version: view.version(),
            mode: view.mode(),
            body: Body::None,
            error: None,
        };
        let result = match ntp.mode {
            Mode::Control => decode_control(&view).map(Body::Control),
            Mode::Private => decode_private(&view).map(Body::Private),
            _ => decode_time(&view, ntp.version).map(|(h, err)| {
                ntp.error = err;
                Body::Time(Box::new(h))
            }),
        };
        match result {
            Ok(body) => ntp.body = body,
            Err(err) => ntp.error = Some(err),
        }
        Ok(ntp)
    }

    /// The time header, for modes 0–5.
    #[must_use]
    pub fn time(&self) -> Option<&TimeHeader> {
        match &self.body {
            Body::Time(h) => Some(h),
            _ => None,
        }
    }

    /// A kiss-o'-death packet (RFC 5905 §7.4): stratum 0 with an ASCII kiss code.
    #[must_use]
    pub fn kiss_code(&self) -> Option<[u8; 4]> {
        let h = self.time()?;
        (h.stratum == 0
            && h.refid
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && h.refid[0] != 0)
            .then_some(h.refid)
    }
}

impl Ntp {
    /// The packet on the wire. Inverse of [`Ntp::decode`] for a whole, well-formed packet.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.length.max(48));
        match &self.body {
            Body::Private(p) => {
                out.push(
                    (u8::from(p.response) << 7)
                        | (u8::from(p.more) << 6)
                        | ((self.version & 7) << 3)
                        | self.mode.to_bits(),
                );
                out.push((u8::from(p.auth) << 7) | (p.sequence & 0x7f));
                out.push(p.implementation);
                out.push(p.request_code);
                out.extend_from_slice(
                    &(((u16::from(p.error_code) & 0xf) << 12) | (p.item_count & 0xfff))
                        .to_be_bytes(),
                );
                out.extend_from_slice(
                    &(((u16::from(p.mbz) & 0xf) << 12) | (p.item_size & 0xfff)).to_be_bytes(),
                );
                out.extend_from_slice(&p.data);
            }
            body => {
                out.push(
                    (self.leap.to_bits() << 6) | ((self.version & 7) << 3) | self.mode.to_bits(),
                );
                match body {
                    Body::Time(h) => encode_time(&mut out, h),
                    Body::Control(c) => {
                        out.push(
                            (u8::from(c.response) << 7)
                                | (u8::from(c.error) << 6)
                                | (u8::from(c.more) << 5)
                                | (c.opcode & 0x1f),
                        );
                        for v in [c.sequence, c.status, c.association_id, c.offset, c.count] {
                            out.extend_from_slice(&v.to_be_bytes());
                        }
                        out.extend_from_slice(&c.data);
                        out.extend_from_slice(&c.trailer);
                    }
                    Body::Private(_) | Body::None => {}
                }
            }
        }
        out
    }
}

fn encode_time(out: &mut Vec<u8>, h: &TimeHeader) {
    out.extend_from_slice(&[h.stratum, h.poll as u8, h.precision as u8]);
    out.extend_from_slice(&h.root_delay.0.to_be_bytes());
    out.extend_from_slice(&h.root_dispersion.0.to_be_bytes());
    out.extend_from_slice(&h.refid);
    for ts in [h.reference, h.origin, h.receive, h.transmit] {
        out.extend_from_slice(&ts.0.to_be_bytes());
    }
    for e in &h.extensions {
        out.extend_from_slice(&e.field_type.to_be_bytes());
        out.extend_from_slice(&e.length.to_be_bytes());
        out.extend_from_slice(&e.value);
    }
    if let Some(mac) = &h.mac {
        out.extend_from_slice(&mac.key_id.to_be_bytes());
        out.extend_from_slice(&mac.digest);
    }
}

fn truncated<T: AsRef<[u8]>>(view: &NtpPacket<T>, what: &'static str, end: usize) -> NtpError {
    NtpError::Truncated {
        what,
        needed: end,
        offset: 0,
        available: view.len(),
    }
}

fn decode_time<T: AsRef<[u8]>>(
    view: &NtpPacket<T>,
    version: u8,
) -> Result<(TimeHeader, Option<NtpError>), NtpError> {
    let b = view.bytes();
    if b.len() < field::HEADER_END {
        return Err(truncated(view, "NTP header", field::HEADER_END));
    }
    let ts = |r: Range<usize>| NtpTimestamp::from_bytes(view.array(r).unwrap_or_default());
    let short = |r: Range<usize>| NtpShort(u32::from_be_bytes(view.array(r).unwrap_or_default()));
    let mut header = TimeHeader {
        stratum: b[field::STRATUM],
        poll: b[field::POLL] as i8,
        precision: b[field::PRECISION] as i8,
        root_delay: short(field::ROOT_DELAY),
        root_dispersion: short(field::ROOT_DISPERSION),
        refid: view.array(field::REFERENCE_ID).unwrap_or_default(),
        reference: ts(field::REFERENCE_TS),
        origin: ts(field::ORIGIN_TS),
        receive: ts(field::RECEIVE_TS),
        transmit: ts(field::TRANSMIT_TS),
        extensions: Vec::new(),
        mac: None,
    };
    let rest = &b[field::HEADER_END..];
    let err = decode_trailer(rest, version, &mut header);
    Ok((header, err))
}

/// Split what follows the header into extension fields and a MAC (RFC 7822 §7.5): a rest of
/// exactly 4 (crypto-NAK), 20 or 24 octets (MD5 or SHA-1 MAC) is a MAC; otherwise, in NTPv4,
/// extension fields are read while they parse, and whatever is left must be a MAC. A 68-octet
/// rest (a SHA-512 MAC) is read as an extension field if it parses as one: the wire format
/// cannot tell them apart.
fn decode_trailer(rest: &[u8], version: u8, header: &mut TimeHeader) -> Option<NtpError> {
    let mut off = 0;
    while off < rest.len() {
        let left = rest.len() - off;
        if matches!(left, 4 | 20 | 24) {
            break;
        }
        if version != 4 || left < 16 {
            break;
        }
        let t = u16::from_be_bytes([rest[off], rest[off + 1]]);
        let l = u16::from_be_bytes([rest[off + 2], rest[off + 3]]);
        let len = usize::from(l);
        if len < 16 || len % 4 != 0 || len > left {
            break;
        }
        header.extensions.push(Extension {
            field_type: t,
            length: l,
            value: rest[off + 4..off + len].to_vec(),
        });
        off += len;
    }
    let left = &rest[off..];
    if left.is_empty() {
        return None;
    }
    if is_mac_len(left.len()) {
        header.mac = mac(left);
        return None;
    }
    Some(NtpError::Trailing {
        offset: field::HEADER_END + off,
        length: left.len(),
    })
}

fn is_mac_len(len: usize) -> bool {
    len >= 4 && MAC_DIGESTS.contains(&(len - 4))
}

fn mac(bytes: &[u8]) -> Option<Mac> {
    let key: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(Mac {
        key_id: u32::from_be_bytes(key),
        digest: bytes[4..].to_vec(),
    })
}

fn decode_control<T: AsRef<[u8]>>(view: &NtpPacket<T>) -> Result<Control, NtpError> {
    let b = view.bytes();
    if b.len() < field::CONTROL_END {
        return Err(truncated(
            view,
            "control message header",
            field::CONTROL_END,
        ));
    }
    let u16at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let count = u16at(10);
    let data_end = (field::CONTROL_END + usize::from(count)).min(b.len());
    Ok(Control {
        response: b[1] & 0x80 != 0,
        error: b[1] & 0x40 != 0,
        more: b[1] & 0x20 != 0,
        opcode: b[1] & 0x1f,
        sequence: u16at(2),
        status: u16at(4),
        association_id: u16at(6),
        offset: u16at(8),
        count,
        data: b[field::CONTROL_END..data_end].to_vec(),
        trailer: b[data_end..].to_vec(),
    })
}

fn decode_private<T: AsRef<[u8]>>(view: &NtpPacket<T>) -> Result<Private, NtpError> {
    let b = view.bytes();
    if b.len() < field::PRIVATE_END {
        return Err(truncated(view, "mode 7 header", field::PRIVATE_END));
    }
    Ok(Private {
        response: b[0] & 0x80 != 0,
        more: b[0] & 0x40 != 0,
        auth: b[1] & 0x80 != 0,
        sequence: b[1] & 0x7f,
        implementation: b[2],
        request_code: b[3],
        error_code: b[4] >> 4,
        item_count: u16::from_be_bytes([b[4] & 0x0f, b[5]]),
        item_size: u16::from_be_bytes([b[6] & 0x0f, b[7]]),
        mbz: b[6] >> 4,
        data: b[field::PRIVATE_END..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tcpdump's ntp-time.pcap, packet 2: a chrony server reply (NTPv4, mode 4).
    const SERVER_REPLY: [u8; 48] = [
        0x24, 0x02, 0x08, 0xe8, 0x00, 0x00, 0x00, 0x15, 0x00, 0x00, 0x09, 0x52, 0x84, 0xc7, 0x07,
        0xc9, 0xdd, 0x47, 0xfb, 0x3a, 0x56, 0x76, 0x37, 0xc0, 0xdd, 0x47, 0xff, 0xf4, 0xed, 0xb0,
        0xcc, 0xbc, 0xdd, 0x47, 0xff, 0xf4, 0xee, 0x0f, 0x47, 0x43, 0xdd, 0x47, 0xff, 0xf4, 0xee,
        0x11, 0x19, 0xcf,
    ];

    #[test]
    fn decodes_header_fields() {
        let ntp = Ntp::decode(&SERVER_REPLY).unwrap();
        assert_eq!(
            (ntp.version, ntp.mode, ntp.leap),
            (4, Mode::Server, Leap::NoWarning)
        );
        let h = ntp.time().unwrap();
        assert_eq!(h.stratum, 2);
        assert_eq!(h.poll, 8);
        assert_eq!(h.precision, -24);
        assert_eq!(h.refid, [0x84, 0xc7, 0x07, 0xc9]);
        // tcpdump -v: "Root Delay: 0.000320, Root dispersion: 0.036407".
        assert_eq!(format!("{:.6}", h.root_delay.seconds()), "0.000320");
        assert_eq!(format!("{:.6}", h.root_dispersion.seconds()), "0.036407");
        assert_eq!(h.transmit.seconds(), 3_712_483_316);
        assert!(h.extensions.is_empty() && h.mac.is_none());
        assert_eq!(ntp.error, None);
    }

    #[test]
    fn truncated_header_is_reported_not_fatal() {
        for len in 1..48 {
            let ntp = Ntp::decode(&SERVER_REPLY[..len]).unwrap();
            assert_eq!(ntp.mode, Mode::Server);
            assert!(
                matches!(ntp.error, Some(NtpError::Truncated { needed: 48, .. })),
                "len {len}"
            );
        }
        assert!(Ntp::decode(&[]).is_err());
    }

    #[test]
    fn legacy_mac_and_crypto_nak() {
        let mut p = SERVER_REPLY.to_vec();
        p.extend_from_slice(&8u32.to_be_bytes());
        p.extend_from_slice(&[0xab; 20]);
        let ntp = Ntp::decode(&p).unwrap();
        let mac = ntp.time().unwrap().mac.as_ref().unwrap();
        assert_eq!((mac.key_id, mac.digest.len()), (8, 20));

        let mut nak = SERVER_REPLY.to_vec();
        nak.extend_from_slice(&[0; 4]);
        let ntp = Ntp::decode(&nak).unwrap();
        assert_eq!(
            ntp.time().unwrap().mac,
            Some(Mac {
                key_id: 0,
                digest: vec![]
            })
        );
    }

    #[test]
    fn extension_fields_then_mac() {
        let mut p = SERVER_REPLY.to_vec();
        // Unique Identifier, 36 bytes.
        p.extend_from_slice(&[0x01, 0x04, 0x00, 0x24]);
        p.extend_from_slice(&[0x11; 32]);
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(&[0xcd; 16]);
        let ntp = Ntp::decode(&p).unwrap();
        let h = ntp.time().unwrap();
        assert_eq!(h.extensions.len(), 1);
        assert_eq!(h.extensions[0].name(), Some("Unique Identifier"));
        assert_eq!(h.mac.as_ref().unwrap().key_id, 7);
    }

    #[test]
    fn kiss_of_death() {
        let mut p = SERVER_REPLY;
        p[1] = 0;
        p[12..16].copy_from_slice(b"RATE");
        assert_eq!(Ntp::decode(&p).unwrap().kiss_code(), Some(*b"RATE"));
    }

    mod properties {
        use proptest::{collection::vec, prelude::*};

        use super::super::*;

        fn arb_ts() -> impl Strategy<Value = NtpTimestamp> {
            any::<u64>().prop_map(NtpTimestamp)
        }

        /// Extension fields of legal lengths: at least 28 octets (RFC 7822 §7.5), a multiple of 4.
        fn arb_extension() -> impl Strategy<Value = Extension> {
            (any::<u16>(), 6usize..40).prop_flat_map(|(t, words)| {
                vec(any::<u8>(), words * 4 + 24 - 4).prop_map(move |value| Extension {
                    field_type: t,
                    length: (value.len() + 4) as u16,
                    value,
                })
            })
        }

        fn arb_time(version: u8) -> impl Strategy<Value = Ntp> {
            let header = (
                any::<u8>(),
                any::<i8>(),
                any::<i8>(),
                any::<u32>(),
                any::<u32>(),
                any::<[u8; 4]>(),
            );
            let times = (arb_ts(), arb_ts(), arb_ts(), arb_ts());
            let exts = if version == 4 {
                vec(arb_extension(), 0..3).boxed()
            } else {
                Just(Vec::new()).boxed()
            };
            // MD5 and SHA-1 MACs and crypto-NAKs (a SHA-512 trailer can parse as a field).
            let mac = prop_oneof![
                Just(None),
                any::<u32>().prop_map(|key_id| Some(Mac {
                    key_id,
                    digest: Vec::new()
                })),
                (
                    any::<u32>(),
                    prop_oneof![vec(any::<u8>(), 16), vec(any::<u8>(), 20)]
                )
                    .prop_map(|(key_id, digest)| Some(Mac { key_id, digest })),
            ];
            (0u8..4, 0u8..6, header, times, exts, mac).prop_map(
                move |(leap, mode, h, t, extensions, mac)| {
                    let header = TimeHeader {
                        stratum: h.0,
                        poll: h.1,
                        precision: h.2,
                        root_delay: NtpShort(h.3),
                        root_dispersion: NtpShort(h.4),
                        refid: h.5,
                        reference: t.0,
                        origin: t.1,
                        receive: t.2,
                        transmit: t.3,
                        extensions,
                        mac,
                    };
                    let mut ntp = Ntp {
                        length: 0,
                        leap: Leap::from_bits(leap),
                        version,
                        mode: Mode::from_bits(mode),
                        body: Body::Time(Box::new(header)),
                        error: None,
                    };
                    ntp.length = ntp.encode().len();
                    ntp
                },
            )
        }

        proptest! {
            #[test]
            fn decoding_never_panics(bytes in vec(any::<u8>(), 0..700)) {
                let _ = Ntp::decode(&bytes);
            }

            #[test]
            fn time_packets_round_trip(ntp in (1u8..=4).prop_flat_map(arb_time)) {
                let bytes = ntp.encode();
                prop_assert_eq!(Ntp::decode(&bytes).unwrap(), ntp.clone());
                prop_assert_eq!(Ntp::decode(&bytes).unwrap().encode(), bytes);
            }

            #[test]
            fn control_messages_round_trip(
                leap in 0u8..4, version in 1u8..5, flags in 0u8..8, opcode in 0u8..32,
                words in any::<[u16; 4]>(), data in vec(any::<u8>(), 0..468),
            ) {
                let ntp = Ntp {
                    length: 12 + data.len(),
                    leap: Leap::from_bits(leap),
                    version,
                    mode: Mode::Control,
                    body: Body::Control(Control {
                        response: flags & 4 != 0,
                        error: flags & 2 != 0,
                        more: flags & 1 != 0,
                        opcode,
                        sequence: words[0],
                        status: words[1],
                        association_id: words[2],
                        offset: words[3],
                                                count: data.len() as u16,
                        data,
                        trailer: Vec::new(),
                    }),
                    error: None,
                };
                prop_assert_eq!(Ntp::decode(&ntp.encode()).unwrap(), ntp);
            }

            #[test]
            fn private_messages_round_trip(
                version in 0u8..8, flags in 0u8..8, sequence in 0u8..128, implementation: u8,
                request_code: u8, error_code in 0u8..16, item_count in 0u16..4096, item_size in 0u16..4096,
            ) {
                let ntp = Ntp {
                    length: 8,
                    leap: Leap::from_bits(flags >> 1),
                    version,
                    mode: Mode::Private,
                    body: Body::Private(Private {
                        response: flags & 4 != 0,
                        more: flags & 2 != 0,
                        auth: flags & 1 != 0,
                        sequence,
                        implementation,
                        request_code,
                        error_code,
                                                                        item_count,
                        item_size,
                        mbz: 0,
                        data: Vec::new(),
                    }),
                    error: None,
                };
                prop_assert_eq!(Ntp::decode(&ntp.encode()).unwrap(), ntp);
            }
        }
    }
}
