//! Zero-copy views of NTP packets, one per header layout, on the model of smoltcp's
//! `wire` types: named field ranges, a `new_checked` that makes sure the whole header is there,
//! and accessors that cannot panic once it is. With `T: AsMut<[u8]>` the same views write the
//! fields: the decoder reads through them and the encoder writes through them.
//!
//! - [`NtpPacket`]: the first byte, common to every mode (RFC 5905 §7.3; in mode 7 the leap
//!   bits are ntpd's R and M bits).
//! - [`TimeView`]: the 48-byte header of modes 0–5 (RFC 5905 §7.3, Figure 8).
//! - [`ControlView`]: the 12-byte header of mode 6 (RFC 9327 §2).
//! - [`PrivateView`]: the 8-byte header of mode 7 (ntpd `include/ntp_request.h`).

use std::ops::Range;

use super::{
    error::NtpError,
    names::{Leap, Mode},
    time::{NtpShort, NtpTimestamp},
};

/// Byte ranges of each header.
pub mod field {
    use std::ops::Range;

    /// Leap indicator (2 bits), version (3), mode (3).
    pub const FLAGS: usize = 0;

    /// Modes 0–5 (RFC 5905 §7.3, Figure 8).
    pub const STRATUM: usize = 1;
    /// Poll exponent.
    pub const POLL: usize = 2;
    /// Precision exponent.
    pub const PRECISION: usize = 3;
    /// Root delay, NTP short format.
    pub const ROOT_DELAY: Range<usize> = 4..8;
    /// Root dispersion, NTP short format.
    pub const ROOT_DISPERSION: Range<usize> = 8..12;
    /// Reference ID.
    pub const REFERENCE_ID: Range<usize> = 12..16;
    /// Reference timestamp.
    pub const REFERENCE_TS: Range<usize> = 16..24;
    /// Origin timestamp.
    pub const ORIGIN_TS: Range<usize> = 24..32;
    /// Receive timestamp.
    pub const RECEIVE_TS: Range<usize> = 32..40;
    /// Transmit timestamp.
    pub const TRANSMIT_TS: Range<usize> = 40..48;
    /// End of the time header; extension fields and a MAC may follow.
    pub const TIME_END: usize = 48;

    /// Mode 6 (RFC 9327 §2): R, E, M bits and the opcode.
    pub const CONTROL_FLAGS: usize = 1;
    /// Sequence number.
    pub const SEQUENCE: Range<usize> = 2..4;
    /// Status word.
    pub const STATUS: Range<usize> = 4..6;
    /// Association ID.
    pub const ASSOCIATION_ID: Range<usize> = 6..8;
    /// Offset of this fragment's data.
    pub const OFFSET: Range<usize> = 8..10;
    /// Count of data bytes in this fragment.
    pub const COUNT: Range<usize> = 10..12;
    /// End of the control header; the data follows.
    pub const CONTROL_END: usize = 12;

    /// Mode 7 (ntpd `struct req_pkt`): A bit and sequence.
    pub const AUTH_SEQUENCE: usize = 1;
    /// Implementation number.
    pub const IMPLEMENTATION: usize = 2;
    /// Request code.
    pub const REQUEST_CODE: usize = 3;
    /// Error code (4 bits) and item count (12 bits).
    pub const ERROR_COUNT: Range<usize> = 4..6;
    /// Must-be-zero (4 bits) and item size (12 bits).
    pub const MBZ_SIZE: Range<usize> = 6..8;
    /// End of the mode 7 header; the items follow.
    pub const PRIVATE_END: usize = 8;
}

fn truncated(what: &'static str, needed: usize, available: usize) -> NtpError {
    NtpError::Truncated {
        what,
        needed,
        offset: 0,
        available,
    }
}

fn u16_at(b: &[u8], r: Range<usize>) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

fn set_u16(b: &mut [u8], r: Range<usize>, v: u16) {
    b[r].copy_from_slice(&v.to_be_bytes());
}

fn array<const N: usize>(b: &[u8], r: Range<usize>) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&b[r]);
    out
}

/// The first byte of any NTP packet.
#[derive(Clone, Copy, Debug)]
pub struct NtpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NtpPacket<T> {
    /// A view that needs the first byte.
    pub fn new_checked(buffer: T) -> Result<Self, NtpError> {
        if buffer.as_ref().is_empty() {
            return Err(truncated("first byte", 1, 0));
        }
        Ok(Self { buffer })
    }

    fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// Leap indicator (modes 0–6).
    #[must_use]
    pub fn leap(&self) -> Leap {
        Leap::from_bits(self.flags() >> 6)
    }
    /// Version number.
    #[must_use]
    pub fn version(&self) -> u8 {
        (self.flags() >> 3) & 7
    }
    /// Association mode.
    #[must_use]
    pub fn mode(&self) -> Mode {
        Mode::from_bits(self.flags())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NtpPacket<T> {
    /// Write the first byte: `top` is the leap indicator (modes 0–6) or R and M (mode 7).
    pub fn set_flags(&mut self, top: u8, version: u8, mode: Mode) {
        self.buffer.as_mut()[field::FLAGS] = (top << 6) | ((version & 7) << 3) | mode.to_bits();
    }
}

/// The time header of modes 0–5.
#[derive(Clone, Copy, Debug)]
pub struct TimeView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TimeView<T> {
    /// A view of at least the 48-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, NtpError> {
        let len = buffer.as_ref().len();
        if len < field::TIME_END {
            return Err(truncated("NTP header", field::TIME_END, len));
        }
        Ok(Self { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Stratum.
    #[must_use]
    pub fn stratum(&self) -> u8 {
        self.b()[field::STRATUM]
    }
    /// Poll exponent, log2 seconds.
    #[must_use]
    pub fn poll(&self) -> i8 {
        self.b()[field::POLL] as i8
    }
    /// Precision exponent, log2 seconds.
    #[must_use]
    pub fn precision(&self) -> i8 {
        self.b()[field::PRECISION] as i8
    }
    /// Root delay.
    #[must_use]
    pub fn root_delay(&self) -> NtpShort {
        NtpShort(u32::from_be_bytes(array(self.b(), field::ROOT_DELAY)))
    }
    /// Root dispersion.
    #[must_use]
    pub fn root_dispersion(&self) -> NtpShort {
        NtpShort(u32::from_be_bytes(array(self.b(), field::ROOT_DISPERSION)))
    }
    /// Reference ID, raw.
    #[must_use]
    pub fn refid(&self) -> [u8; 4] {
        array(self.b(), field::REFERENCE_ID)
    }
    /// Reference timestamp.
    #[must_use]
    pub fn reference(&self) -> NtpTimestamp {
        NtpTimestamp::from_bytes(array(self.b(), field::REFERENCE_TS))
    }
    /// Origin timestamp.
    #[must_use]
    pub fn origin(&self) -> NtpTimestamp {
        NtpTimestamp::from_bytes(array(self.b(), field::ORIGIN_TS))
    }
    /// Receive timestamp.
    #[must_use]
    pub fn receive(&self) -> NtpTimestamp {
        NtpTimestamp::from_bytes(array(self.b(), field::RECEIVE_TS))
    }
    /// Transmit timestamp.
    #[must_use]
    pub fn transmit(&self) -> NtpTimestamp {
        NtpTimestamp::from_bytes(array(self.b(), field::TRANSMIT_TS))
    }
    /// What follows the header: extension fields and/or a MAC.
    #[must_use]
    pub fn trailer(&self) -> &[u8] {
        &self.b()[field::TIME_END..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TimeView<T> {
    fn m(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Write the stratum.
    pub fn set_stratum(&mut self, v: u8) {
        self.m()[field::STRATUM] = v;
    }
    /// Write the poll exponent.
    pub fn set_poll(&mut self, v: i8) {
        self.m()[field::POLL] = v as u8;
    }
    /// Write the precision exponent.
    pub fn set_precision(&mut self, v: i8) {
        self.m()[field::PRECISION] = v as u8;
    }
    /// Write the root delay.
    pub fn set_root_delay(&mut self, v: NtpShort) {
        self.m()[field::ROOT_DELAY].copy_from_slice(&v.0.to_be_bytes());
    }
    /// Write the root dispersion.
    pub fn set_root_dispersion(&mut self, v: NtpShort) {
        self.m()[field::ROOT_DISPERSION].copy_from_slice(&v.0.to_be_bytes());
    }
    /// Write the reference ID.
    pub fn set_refid(&mut self, v: [u8; 4]) {
        self.m()[field::REFERENCE_ID].copy_from_slice(&v);
    }
    /// Write the four timestamps: reference, origin, receive, transmit.
    pub fn set_timestamps(&mut self, ts: [NtpTimestamp; 4]) {
        let ranges = [
            field::REFERENCE_TS,
            field::ORIGIN_TS,
            field::RECEIVE_TS,
            field::TRANSMIT_TS,
        ];
        for (r, t) in ranges.into_iter().zip(ts) {
            self.m()[r].copy_from_slice(&t.0.to_be_bytes());
        }
    }
}

/// The mode 6 control header.
#[derive(Clone, Copy, Debug)]
pub struct ControlView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ControlView<T> {
    /// A view of at least the 12-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, NtpError> {
        let len = buffer.as_ref().len();
        if len < field::CONTROL_END {
            return Err(truncated("control message header", field::CONTROL_END, len));
        }
        Ok(Self { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// R bit: a response.
    #[must_use]
    pub fn response(&self) -> bool {
        self.b()[field::CONTROL_FLAGS] & 0x80 != 0
    }
    /// E bit: an error response.
    #[must_use]
    pub fn error(&self) -> bool {
        self.b()[field::CONTROL_FLAGS] & 0x40 != 0
    }
    /// M bit: more fragments follow.
    #[must_use]
    pub fn more(&self) -> bool {
        self.b()[field::CONTROL_FLAGS] & 0x20 != 0
    }
    /// Operation code (5 bits).
    #[must_use]
    pub fn opcode(&self) -> u8 {
        self.b()[field::CONTROL_FLAGS] & 0x1f
    }
    /// Sequence number.
    #[must_use]
    pub fn sequence(&self) -> u16 {
        u16_at(self.b(), field::SEQUENCE)
    }
    /// Status word.
    #[must_use]
    pub fn status(&self) -> u16 {
        u16_at(self.b(), field::STATUS)
    }
    /// Association ID.
    #[must_use]
    pub fn association_id(&self) -> u16 {
        u16_at(self.b(), field::ASSOCIATION_ID)
    }
    /// Offset of this fragment's data.
    #[must_use]
    pub fn offset(&self) -> u16 {
        u16_at(self.b(), field::OFFSET)
    }
    /// Bytes of data in this fragment.
    #[must_use]
    pub fn count(&self) -> u16 {
        u16_at(self.b(), field::COUNT)
    }
    /// The data bytes captured (at most `count`), and what follows them (padding, MAC).
    #[must_use]
    pub fn data_and_trailer(&self) -> (&[u8], &[u8]) {
        let rest = &self.b()[field::CONTROL_END..];
        rest.split_at(usize::from(self.count()).min(rest.len()))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ControlView<T> {
    /// Write the R, E and M bits and the opcode.
    pub fn set_flags(&mut self, response: bool, error: bool, more: bool, opcode: u8) {
        self.buffer.as_mut()[field::CONTROL_FLAGS] = (u8::from(response) << 7)
            | (u8::from(error) << 6)
            | (u8::from(more) << 5)
            | (opcode & 0x1f);
    }
    /// Write sequence, status, association ID, offset and count.
    pub fn set_words(
        &mut self,
        sequence: u16,
        status: u16,
        association: u16,
        offset: u16,
        count: u16,
    ) {
        let b = self.buffer.as_mut();
        set_u16(b, field::SEQUENCE, sequence);
        set_u16(b, field::STATUS, status);
        set_u16(b, field::ASSOCIATION_ID, association);
        set_u16(b, field::OFFSET, offset);
        set_u16(b, field::COUNT, count);
    }
}

/// The mode 7 private header.
#[derive(Clone, Copy, Debug)]
pub struct PrivateView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PrivateView<T> {
    /// A view of at least the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, NtpError> {
        let len = buffer.as_ref().len();
        if len < field::PRIVATE_END {
            return Err(truncated("mode 7 header", field::PRIVATE_END, len));
        }
        Ok(Self { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// R bit: a response.
    #[must_use]
    pub fn response(&self) -> bool {
        self.b()[field::FLAGS] & 0x80 != 0
    }
    /// M bit: more follows.
    #[must_use]
    pub fn more(&self) -> bool {
        self.b()[field::FLAGS] & 0x40 != 0
    }
    /// A bit: authenticated.
    #[must_use]
    pub fn auth(&self) -> bool {
        self.b()[field::AUTH_SEQUENCE] & 0x80 != 0
    }
    /// Sequence number (7 bits).
    #[must_use]
    pub fn sequence(&self) -> u8 {
        self.b()[field::AUTH_SEQUENCE] & 0x7f
    }
    /// Implementation number.
    #[must_use]
    pub fn implementation(&self) -> u8 {
        self.b()[field::IMPLEMENTATION]
    }
    /// Request code.
    #[must_use]
    pub fn request_code(&self) -> u8 {
        self.b()[field::REQUEST_CODE]
    }
    /// Error code (4 bits).
    #[must_use]
    pub fn error_code(&self) -> u8 {
        (u16_at(self.b(), field::ERROR_COUNT) >> 12) as u8
    }
    /// Number of data items (12 bits).
    #[must_use]
    pub fn item_count(&self) -> u16 {
        u16_at(self.b(), field::ERROR_COUNT) & 0x0fff
    }
    /// The four must-be-zero bits before the item size.
    #[must_use]
    pub fn mbz(&self) -> u8 {
        (u16_at(self.b(), field::MBZ_SIZE) >> 12) as u8
    }
    /// Size of each item (12 bits).
    #[must_use]
    pub fn item_size(&self) -> u16 {
        u16_at(self.b(), field::MBZ_SIZE) & 0x0fff
    }
    /// The items, and any authenticator.
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.b()[field::PRIVATE_END..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> PrivateView<T> {
    /// Write the A bit and the sequence number.
    pub fn set_auth_sequence(&mut self, auth: bool, sequence: u8) {
        self.buffer.as_mut()[field::AUTH_SEQUENCE] = (u8::from(auth) << 7) | (sequence & 0x7f);
    }
    /// Write the implementation number and the request code.
    pub fn set_request(&mut self, implementation: u8, request_code: u8) {
        let b = self.buffer.as_mut();
        b[field::IMPLEMENTATION] = implementation;
        b[field::REQUEST_CODE] = request_code;
    }
    /// Write the error code, item count, must-be-zero bits and item size.
    pub fn set_items(&mut self, error_code: u8, item_count: u16, mbz: u8, item_size: u16) {
        let b = self.buffer.as_mut();
        set_u16(
            b,
            field::ERROR_COUNT,
            (u16::from(error_code & 0xf) << 12) | (item_count & 0xfff),
        );
        set_u16(
            b,
            field::MBZ_SIZE,
            (u16::from(mbz & 0xf) << 12) | (item_size & 0xfff),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_view_needs_its_whole_header_and_reads_what_it_writes() {
        assert!(NtpPacket::new_checked(&[][..]).is_err());
        assert!(TimeView::new_checked(&[0u8; 47][..]).is_err());
        assert!(ControlView::new_checked(&[0u8; 11][..]).is_err());
        assert!(PrivateView::new_checked(&[0u8; 7][..]).is_err());

        let mut bytes = [0u8; 48];
        NtpPacket::new_checked(&mut bytes[..])
            .unwrap()
            .set_flags(3, 4, Mode::Server);
        let mut time = TimeView::new_checked(&mut bytes[..]).unwrap();
        time.set_stratum(2);
        time.set_poll(-6);
        time.set_precision(-24);
        time.set_root_delay(NtpShort(0x0001_8000));
        time.set_refid(*b"GPS\0");
        let ts = [1, 2, 3, 4].map(|n| NtpTimestamp(n << 32 | n));
        time.set_timestamps(ts);
        let first = NtpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            (first.leap(), first.version(), first.mode()),
            (Leap::Unsynchronized, 4, Mode::Server)
        );
        let time = TimeView::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            (time.stratum(), time.poll(), time.precision()),
            (2, -6, -24)
        );
        assert_eq!(time.root_delay(), NtpShort(0x0001_8000));
        assert_eq!(time.refid(), *b"GPS\0");
        assert_eq!(
            [
                time.reference(),
                time.origin(),
                time.receive(),
                time.transmit()
            ],
            ts
        );
        assert!(time.trailer().is_empty());

        let mut control = [0u8; 16];
        let mut v = ControlView::new_checked(&mut control[..]).unwrap();
        v.set_flags(true, false, true, 2);
        v.set_words(7, 0x0615, 0, 0, 3);
        let v = ControlView::new_checked(&control[..]).unwrap();
        assert!(v.response() && !v.error() && v.more());
        assert_eq!(
            (v.opcode(), v.sequence(), v.status(), v.count()),
            (2, 7, 0x0615, 3)
        );
        assert_eq!(v.data_and_trailer(), (&[0u8; 3][..], &[0u8][..]));

        let mut private = [0u8; 8];
        let mut v = PrivateView::new_checked(&mut private[..]).unwrap();
        v.set_auth_sequence(true, 0x55);
        v.set_request(3, 42);
        v.set_items(5, 0xabc, 1, 0x123);
        let v = PrivateView::new_checked(&private[..]).unwrap();
        assert!(v.auth());
        assert_eq!(
            (v.sequence(), v.implementation(), v.request_code()),
            (0x55, 3, 42)
        );
        assert_eq!(
            (v.error_code(), v.item_count(), v.mbz(), v.item_size()),
            (5, 0xabc, 1, 0x123)
        );
    }
}
