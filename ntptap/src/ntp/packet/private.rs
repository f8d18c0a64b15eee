//! Mode 7: ntpd's private messages (ntpd `include/ntp_request.h`).

use serde::Serialize;

use crate::ntp::error::NtpError;
use crate::ntp::{
    names::Mode,
    view::{NtpPacket, PrivateView, field},
};

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

/// Decode a mode 7 message.
pub(super) fn decode(bytes: &[u8]) -> Result<Private, NtpError> {
    let view = PrivateView::new_checked(bytes)?;
    Ok(Private {
        response: view.response(),
        more: view.more(),
        auth: view.auth(),
        sequence: view.sequence(),
        implementation: view.implementation(),
        request_code: view.request_code(),
        error_code: view.error_code(),
        item_count: view.item_count(),
        item_size: view.item_size(),
        mbz: view.mbz(),
        data: view.data().to_vec(),
    })
}

/// A mode 7 message of `version`, first byte included (its top bits are R and M).
pub(super) fn encode(out: &mut Vec<u8>, version: u8, p: &Private) {
    let start = out.len();
    out.resize(start + field::PRIVATE_END, 0);
    let b = &mut out[start..];
    NtpPacket::new_checked(&mut *b)
        .expect("sized above")
        .set_flags(
            (u8::from(p.response) << 1) | u8::from(p.more),
            version,
            Mode::Private,
        );
    let mut view = PrivateView::new_checked(b).expect("sized above");
    view.set_auth_sequence(p.auth, p.sequence);
    view.set_request(p.implementation, p.request_code);
    view.set_items(p.error_code, p.item_count, p.mbz, p.item_size);
    out.extend_from_slice(&p.data);
}
