//! pcap writer: nanosecond timestamps, Ethernet link type, no per-packet allocation.

use std::{
    io::{self, Write},
    time::Duration,
};

use pcap_file::{
    DataLink, Endianness,
    pcap::{PcapHeader, PcapWriter},
};

use super::super::{decoded::Decoded, sink::Control, sink::Sink};
use crate::frame::PcapRecords;

/// Writes frames to a pcap file (nanosecond resolution, as `tcpdump --time-stamp-precision=nano`).
pub struct PcapSink<W: Write> {
    /// The file, past the header pcap-file wrote.
    out: W,
    snaplen: u32,
    /// Microsecond timestamps (`--time-stamp-precision=micro`, for readers that take no other).
    micro: bool,
    /// The one link type the file holds.
    link: DataLink,
}

impl<W: Write> PcapSink<W> {
    /// Write the file header to `out`. `snaplen` goes in the header; frames are never longer.
    pub fn new(out: W, snaplen: u32) -> io::Result<Self> {
        Self::with_precision(out, snaplen, false)
    }

    /// As [`PcapSink::new`], with microsecond timestamps when `micro`.
    pub fn with_precision(out: W, snaplen: u32, micro: bool) -> io::Result<Self> {
        Self::with_link(out, snaplen, micro, DataLink::ETHERNET)
    }

    /// As [`PcapSink::with_precision`], for frames of `link` (a file read with `-r`): a frame
    /// of another link type is an error, since a pcap file holds one.
    pub fn with_link(out: W, snaplen: u32, micro: bool, link: DataLink) -> io::Result<Self> {
        let header = PcapHeader {
            snaplen,
            datalink: link,
            ts_resolution: if micro {
                pcap_file::pcap::PcapTsResolution::MicroSecond
            } else {
                pcap_file::pcap::PcapTsResolution::NanoSecond
            },
            endianness: Endianness::native(),
            ..PcapHeader::default()
        };
        let out = PcapWriter::with_header(out, header)
            .map_err(to_io)?
            .into_inner();
        Ok(Self {
            out,
            snaplen,
            micro,
            link,
        })
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

fn to_io(err: pcap_file::pcap::PcapWriteError) -> io::Error {
    match err {
        pcap_file::pcap::PcapWriteError::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<W: Write> Sink for PcapSink<W> {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        let frame = packet.frame;
        // A drop record would pass for a second copy of the packet: pcap has nowhere to say
        // otherwise (one link type, no comments). pcapng puts them on an interface of their own.
        if frame.drop.is_some() {
            return Ok(false);
        }
        if crate::frame::LinkType::of(self.link) != frame.link {
            return Err(io::Error::other(format!(
                "frame {} is of link type {:?}, the pcap file's is {:?}: a pcap file holds one \
                 link type; write pcapng (-w FILE.pcapng), which holds several",
                frame.number, frame.link, self.link
            )));
        }
        self.record(frame.ts, frame.data, frame.orig_len)?;
        Ok(true)
    }

    fn control(&mut self, control: &Control<'_>) -> io::Result<()> {
        match control {
            Control::Flush | Control::Close { .. } => self.out.flush(),
            Control::Tick { .. }
            | Control::Kernel(_)
            | Control::Rotate(_)
            | Control::Trigger(..) => Ok(()),
        }
    }

    fn unwritten(&self) -> u64 {
        0
    }

    fn pcap_records(&mut self) -> Option<&mut dyn PcapRecords> {
        Some(self)
    }
}

impl<W: Write> PcapRecords for PcapSink<W> {
    fn record(&mut self, ts: Duration, data: &[u8], orig_len: u32) -> io::Result<()> {
        let data = &data[..data.len().min(self.snaplen as usize)];
        let incl_len = data.len() as u32;
        // The 16-byte record header and the data in one vectored write: pcap-file's
        // `RawPcapPacket::write_to` makes five writes a record, and each costs the buffered
        // writer its bookkeeping (measured at 8 % of the capture's CPU). Same bytes, native
        // byte order as the file header says; the tests read them back with pcap-file.
        let mut header = [0u8; 16];
        for (slot, value) in header.chunks_exact_mut(4).zip([
            ts.as_secs() as u32,
            if self.micro {
                ts.subsec_micros()
            } else {
                ts.subsec_nanos()
            },
            incl_len,
            orig_len.max(incl_len),
        ]) {
            slot.copy_from_slice(&value.to_ne_bytes());
        }
        let total = header.len() + data.len();
        let n = self
            .out
            .write_vectored(&[io::IoSlice::new(&header), io::IoSlice::new(data)])?;
        if n < total {
            // A writer that took part of it (or only the first slice, as the default does).
            let rest = n.saturating_sub(header.len());
            if n < header.len() {
                self.out.write_all(&header[n..])?;
            }
            self.out.write_all(&data[rest..])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pcap_file::pcap::PcapReader;

    use super::*;
    use crate::frame::Frame;
    use crate::output::SinkExt as _;

    #[test]
    fn round_trips_through_pcap_file_reader() {
        let data = [0xaau8; 90];
        let mut sink = PcapSink::new(Vec::new(), 2048).unwrap();
        for n in 0..3u32 {
            let frame = Frame {
                orig_len: 90 + n,
                ..Frame::test(
                    u64::from(n) + 1,
                    Duration::new(1_700_000_000 + u64::from(n), 123_456_789),
                    &data[..88 + n as usize],
                )
            };
            sink.take(&frame).unwrap();
        }
        sink.flush_now().unwrap();
        let bytes = sink.into_inner();
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(
            reader.header().ts_resolution,
            pcap_file::pcap::PcapTsResolution::NanoSecond
        );
        let mut n = 0u32;
        while let Some(p) = reader.next_packet() {
            let p = p.unwrap();
            assert_eq!(
                p.timestamp(),
                Duration::new(1_700_000_000 + u64::from(n), 123_456_789)
            );
            assert_eq!(p.orig_len(), 90 + n);
            assert_eq!(p.data().len(), 88 + n as usize);
            n += 1;
        }
        assert_eq!(n, 3);
    }

    /// A pcap file holds one link type: a frame of another (a pcapng input with several) is
    /// an error that says to write pcapng, never bytes under the wrong header.
    #[test]
    fn a_frame_of_another_link_type_is_refused() {
        let data = [0x45u8; 40];
        let mut sink = PcapSink::with_link(Vec::new(), 2048, true, DataLink::RAW).unwrap();
        let raw = Frame {
            link: crate::frame::LinkType::RawIp,
            ..Frame::test(1, Duration::new(1_700_000_000, 123_456_789), &data)
        };
        assert!(sink.take(&raw).unwrap());
        let ethernet = Frame::test(2, Duration::from_secs(1_700_000_001), &data);
        let err = sink.take(&ethernet).unwrap_err();
        assert!(err.to_string().contains("write pcapng"), "{err}");
        let bytes = sink.into_inner();
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header().datalink, DataLink::RAW);
        let p = reader.next_packet().unwrap().unwrap();
        assert_eq!(
            p.timestamp(),
            Duration::new(1_700_000_000, 123_456_000),
            "µs"
        );
        assert!(reader.next_packet().is_none());
    }
}
