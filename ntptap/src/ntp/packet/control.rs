//! Mode 6: control messages (RFC 9327 §2).

use serde::Serialize;

use crate::ntp::error::NtpError;
use crate::ntp::view::{ControlView, field};

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

/// Decode a mode 6 message.
pub(super) fn decode(bytes: &[u8]) -> Result<Control, NtpError> {
    let view = ControlView::new_checked(bytes)?;
    let (data, trailer) = view.data_and_trailer();
    Ok(Control {
        response: view.response(),
        error: view.error(),
        more: view.more(),
        opcode: view.opcode(),
        sequence: view.sequence(),
        status: view.status(),
        association_id: view.association_id(),
        offset: view.offset(),
        count: view.count(),
        data: data.to_vec(),
        trailer: trailer.to_vec(),
    })
}

/// Append a mode 6 message (after the first byte, already in `out`).
pub(super) fn encode(out: &mut Vec<u8>, c: &Control) {
    let start = out.len() - 1;
    out.resize(start + field::CONTROL_END, 0);
    let mut view = ControlView::new_checked(&mut out[start..]).expect("sized above");
    view.set_flags(c.response, c.error, c.more, c.opcode);
    view.set_words(c.sequence, c.status, c.association_id, c.offset, c.count);
    out.extend_from_slice(&c.data);
    out.extend_from_slice(&c.trailer);
}
