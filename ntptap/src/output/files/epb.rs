//! The enhanced packet block, encoded by hand into the block buffer: pcap-file writes each
//! block twice (once into `io::sink` for its length, then for real) and a field at a time,
//! and that was a fifth of the reader's CPU with `-w FILE.pcapng` under the bench's flood
//! (`perf`, BENCHMARKS.md "The reader against its floor"). The other blocks, rare, are still
//! pcap-file's. The bytes are pcap-file's own: the tests encode the same blocks both ways.
//!
//! In the section's byte order; timestamps in ns, as every interface ntptap describes says
//! (`if_tsresol` 9, no offset).

use std::{borrow::Cow, io, time::Duration};

use pcap_file::{
    Endianness,
    pcapng::blocks::{enhanced_packet::EnhancedPacketOption, opt_common::CommonOption},
};

const ENHANCED_PACKET_BLOCK: u32 = 6;
const OPT_COMMENT: u16 = 1;
const OPT_FLAGS: u16 = 2;
const OPT_HASH: u16 = 3;
const OPT_DROP_COUNT: u16 = 4;

/// Append one enhanced packet block to `buf`, in byte order `order`: `data` on interface
/// `interface_id`, captured at `ts` (since the Unix epoch), `orig_len` on the wire, with
/// `options`. Nothing is appended when it fails (an option pcap-file does not write either:
/// too long, or one ntptap never makes).
pub fn encode(
    (buf, order): (&mut Vec<u8>, Endianness),
    interface_id: u32,
    ts: Duration,
    orig_len: u32,
    data: &[u8],
    options: &[EnhancedPacketOption<'_>],
) -> io::Result<()> {
    let ns = u64::try_from(ts.as_nanos())
        .map_err(|_| invalid(format!("a timestamp past 2554 ({ts:?}) has no pcapng form")))?;
    let captured = u32::try_from(data.len())
        .map_err(|_| invalid(format!("a frame of {} bytes", data.len())))?;
    if orig_len < captured {
        return Err(invalid(format!(
            "a frame's length on the wire ({orig_len}) is less than what was kept ({captured})"
        )));
    }
    let start = buf.len();
    let mut out = Out { buf, order };
    out.buf.reserve(28 + data.len() + 64);
    out.u32(ENHANCED_PACKET_BLOCK);
    out.u32(0); // the block's length, filled in below
    out.u32(interface_id);
    out.u32((ns >> 32) as u32);
    out.u32(ns as u32);
    out.u32(captured);
    out.u32(orig_len);
    out.padded(data);
    let len = out.options(options).and_then(|()| {
        u32::try_from(out.buf.len() - start + 4).map_err(|_| invalid("a block past 4 GiB".into()))
    });
    let Ok(len) = len else {
        buf.truncate(start);
        return len.map(|_| ());
    };
    out.u32(len);
    let b = bytes(order, len.to_be_bytes(), len.to_le_bytes());
    out.buf[start + 4..start + 8].copy_from_slice(&b);
    Ok(())
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

/// The block buffer, and the byte order numbers go in.
struct Out<'b> {
    buf: &'b mut Vec<u8>,
    order: Endianness,
}

/// A number's bytes in byte order `order`, given both.
fn bytes<const N: usize>(order: Endianness, be: [u8; N], le: [u8; N]) -> [u8; N] {
    match order {
        Endianness::Big => be,
        Endianness::Little => le,
    }
}

impl Out<'_> {
    fn u16(&mut self, v: u16) {
        let b = bytes(self.order, v.to_be_bytes(), v.to_le_bytes());
        self.buf.extend_from_slice(&b);
    }

    fn u32(&mut self, v: u32) {
        let b = bytes(self.order, v.to_be_bytes(), v.to_le_bytes());
        self.buf.extend_from_slice(&b);
    }

    /// Bytes, then zeros to the next multiple of four.
    fn padded(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.buf
            .extend_from_slice(&[0; 3][..(4 - bytes.len() % 4) % 4]);
    }

    /// One option: code, length, value, padding.
    fn option(&mut self, code: u16, value: &[u8]) -> io::Result<()> {
        let len = u16::try_from(value.len()).map_err(|_| {
            invalid(format!(
                "a pcapng option of {} bytes (at most 65,535)",
                value.len()
            ))
        })?;
        self.u16(code);
        self.u16(len);
        self.padded(value);
        Ok(())
    }

    /// The options, then the end of options (none when there are none).
    fn options(&mut self, options: &[EnhancedPacketOption<'_>]) -> io::Result<()> {
        for option in options {
            match option {
                EnhancedPacketOption::Flags(f) => {
                    let v = bytes(self.order, f.to_be_bytes(), f.to_le_bytes());
                    self.option(OPT_FLAGS, &v)?;
                }
                EnhancedPacketOption::DropCount(n) => {
                    let v = bytes(self.order, n.to_be_bytes(), n.to_le_bytes());
                    self.option(OPT_DROP_COUNT, &v)?;
                }
                EnhancedPacketOption::Hash(h) => self.option(OPT_HASH, h)?,
                EnhancedPacketOption::Common(CommonOption::Comment(c)) => {
                    self.option(OPT_COMMENT, c.as_bytes())?;
                }
                EnhancedPacketOption::Common(other) => {
                    return Err(invalid(format!(
                        "an option ntptap does not write: {other:?}"
                    )));
                }
            }
        }
        if !options.is_empty() {
            // opt_endofopt
            self.u32(0);
        }
        Ok(())
    }
}

/// A comment option, as [`encode`] takes it.
#[must_use]
pub fn comment(text: Cow<'_, str>) -> EnhancedPacketOption<'_> {
    EnhancedPacketOption::Common(CommonOption::Comment(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::{
        DataLink,
        pcapng::{
            PcapNgWriter,
            blocks::{
                enhanced_packet::EnhancedPacketBlock,
                interface_description::{
                    InterfaceDescriptionBlock, InterfaceDescriptionOption, InterfaceTsResolution,
                },
            },
        },
    };

    /// What pcap-file writes for the block, after a section header and a ns interface.
    fn pcap_files(
        order: Endianness,
        ts: Duration,
        orig_len: u32,
        data: &[u8],
        options: &[EnhancedPacketOption<'_>],
    ) -> Vec<u8> {
        let mut writer =
            PcapNgWriter::with_endianness(Vec::new(), order).expect("a section header");
        writer
            .write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: 262_144,
                options: vec![InterfaceDescriptionOption::IfTsResol(
                    InterfaceTsResolution::NANO,
                )],
            })
            .expect("an interface");
        let before = writer.get_ref().len();
        writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: ts,
                original_len: orig_len,
                data: Cow::Borrowed(data),
                options: options.to_vec(),
            })
            .expect("a block");
        writer.get_ref()[before..].to_vec()
    }

    #[test]
    fn blocks_are_byte_for_byte_what_pcap_file_writes() {
        let frame: Vec<u8> = (0..=255u8).cycle().take(1515).collect();
        let owner = "ntptap: pid=1 comm=chronyd uid=0 cgroup_id=1 netns=4026531840";
        let cases: Vec<(usize, Vec<EnhancedPacketOption<'_>>)> = vec![
            (0, vec![]),
            (1, vec![]),
            (90, vec![EnhancedPacketOption::Flags(1)]),
            (
                91,
                vec![
                    EnhancedPacketOption::Flags(2),
                    EnhancedPacketOption::DropCount(7),
                    comment(Cow::Borrowed("ktime_mono_ns=123456789012")),
                    comment(Cow::Borrowed(owner)),
                    comment(Cow::Owned("PID: 1\nCmd: chronyd\nArgs: ".to_owned())),
                    comment(Cow::Borrowed("")),
                    comment(Cow::Borrowed("odd")),
                ],
            ),
            (
                92,
                vec![EnhancedPacketOption::Hash(Cow::Borrowed(&[2, 1, 2, 3, 4]))],
            ),
            (1515, vec![comment(Cow::Borrowed("drop=NO_SOCKET at x"))]),
        ];
        for order in [Endianness::Big, Endianness::Little] {
            for ts in [
                Duration::ZERO,
                Duration::new(1_764_876_543, 123_456_789),
                Duration::new(u64::MAX / 1_000_000_000 - 1, 999_999_999),
            ] {
                for (len, options) in &cases {
                    let data = &frame[..*len];
                    let orig = *len as u32 + 4;
                    let mut mine = vec![0xAA];
                    encode((&mut mine, order), 0, ts, orig, data, options).expect("encoded");
                    assert_eq!(
                        mine[1..],
                        pcap_files(order, ts, orig, data, options),
                        "{order:?}, {len} bytes, {options:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn what_pcap_file_refuses_leaves_nothing_behind() {
        let long = "x".repeat(65_536);
        let refused: [(Duration, u32, Vec<EnhancedPacketOption<'_>>); 3] = [
            (Duration::MAX, 10, vec![]),
            (Duration::ZERO, 9, vec![]),
            (Duration::ZERO, 10, vec![comment(Cow::Borrowed(&long))]),
        ];
        for (ts, orig, options) in refused {
            let mut buf = vec![1, 2, 3];
            let err = encode((&mut buf, Endianness::Big), 0, ts, orig, &[0; 10], &options)
                .expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(buf, [1, 2, 3]);
        }
    }
}
