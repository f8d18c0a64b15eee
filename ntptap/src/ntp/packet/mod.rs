//! NTP packets: the owned decode of every mode, built from the checked views in
//! [`super::view`], and encoded back through them.
//!
//! Modes 0–5 carry the time header (RFC 5905 §7.3), then extension fields (RFC 7822) and/or a
//! legacy MAC ([`time`]). Mode 6 is a control message (RFC 9327 §2, [`control`]). Mode 7 is
//! ntpd's private request format ([`private`]). Truncated input decodes as far as the bytes go
//! and records what was missing in [`Ntp::error`].

pub mod control;
pub mod private;
pub mod time;

use serde::Serialize;

pub use self::{
    control::{Control, ControlData, StatusWord},
    private::Private,
    time::{Extension, Mac, NtsAuthenticator, RefId, TimeHeader, to_hex},
};
pub use super::error::NtpError;
use super::{
    names::{Leap, Mode},
    view::NtpPacket,
};

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
        let first = NtpPacket::new_checked(bytes)?;
        let mut ntp = Ntp {
            length: bytes.len(),
            leap: first.leap(),
            version: first.version(),
            mode: first.mode(),
            body: Body::None,
            error: None,
        };
        let result = match ntp.mode {
            Mode::Control => control::decode(bytes).map(Body::Control),
            Mode::Private => private::decode(bytes).map(Body::Private),
            _ => time::decode(bytes, ntp.version).map(|(h, err)| {
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

    /// A kiss-o'-death packet (RFC 5905 §7.4): a response (server or symmetric passive mode:
    /// a KoD answers a request) with stratum 0 and an ASCII kiss code in the reference ID. A
    /// client request has stratum 0 too, and whatever it carries there is no kiss.
    #[must_use]
    pub fn kiss_code(&self) -> Option<[u8; 4]> {
        let h = self.time()?;
        (matches!(self.mode, Mode::Server | Mode::SymmetricPassive)
            && h.stratum == 0
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
        if let Body::Private(p) = &self.body {
            private::encode(&mut out, self.version, p);
            return out;
        }
        out.push(0);
        NtpPacket::new_checked(&mut out[..])
            .expect("one byte")
            .set_flags(self.leap.to_bits(), self.version, self.mode);
        match &self.body {
            Body::Time(h) => time::encode(&mut out, h),
            Body::Control(c) => control::encode(&mut out, c),
            Body::Private(_) | Body::None => {}
        }
        out
    }
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
        use crate::ntp::time::{NtpShort, NtpTimestamp};

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
