//! The NTP decoder: knows bytes, RFCs and names; nothing of BPF or capture.
//!
//! A dissector must be lenient and show everything that is there, which a protocol
//! implementation is not: `ntp-proto` (ntpd-rs) rejects what its state machine cannot use and
//! has no mode 6/7 decoding, and `ntp-parser` (nom based) stops at the first malformed field and
//! has not kept up with RFC 7822/8915 extension fields. So the decoder is written here, on the
//! model of their types: checked views over the bytes, one per header layout ([`view`]), and an
//! owned decoded representation ([`packet::Ntp`]) built from them and encoded back through
//! them, that never panics and records what was missing. Every name table is in [`names`].
pub mod error;
pub mod names;
pub mod packet;
pub mod time;
pub mod view;

pub use names::{Leap, Mode};
pub use packet::{Body, Ntp, NtpError, RefId};
pub use time::{NtpShort, NtpTimestamp};
pub use view::NtpPacket;
