//! Modes 0–5: the time header (RFC 5905 §7.3), then extension fields (RFC 7822) and/or a
//! legacy MAC.

use serde::Serialize;

use crate::ntp::error::NtpError;
use crate::ntp::{
    names::extension_name,
    time::{NtpShort, NtpTimestamp},
    view::{TimeView, field},
};

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

/// Decode the time header of `bytes` and what follows it; the error, if any, says what after
/// the header could not be read.
pub(super) fn decode(
    bytes: &[u8],
    version: u8,
) -> Result<(TimeHeader, Option<NtpError>), NtpError> {
    let view = TimeView::new_checked(bytes)?;
    let mut header = TimeHeader {
        stratum: view.stratum(),
        poll: view.poll(),
        precision: view.precision(),
        root_delay: view.root_delay(),
        root_dispersion: view.root_dispersion(),
        refid: view.refid(),
        reference: view.reference(),
        origin: view.origin(),
        receive: view.receive(),
        transmit: view.transmit(),
        extensions: Vec::new(),
        mac: None,
    };
    let err = decode_trailer(view.trailer(), version, &mut header);
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
        offset: field::TIME_END + off,
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

/// Append the time header (after the first byte, already in `out`) and what follows it.
pub(super) fn encode(out: &mut Vec<u8>, h: &TimeHeader) {
    let start = out.len() - 1;
    out.resize(start + field::TIME_END, 0);
    let mut view = TimeView::new_checked(&mut out[start..]).expect("sized above");
    view.set_stratum(h.stratum);
    view.set_poll(h.poll);
    view.set_precision(h.precision);
    view.set_root_delay(h.root_delay);
    view.set_root_dispersion(h.root_dispersion);
    view.set_refid(h.refid);
    view.set_timestamps([h.reference, h.origin, h.receive, h.transmit]);
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
