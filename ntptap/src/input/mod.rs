//! Offline input: pcap and pcapng files (or stdin) to the same frames a live capture makes.

use std::{
    io::{self, BufRead, BufReader, Read},
    time::Duration,
};

use anyhow::{Context as _, bail};
use pcap_file::{
    DataLink,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
};

use crate::{
    frame::{Frame, LinkType},
    output::Sink,
};

/// Link type of a pcap/pcapng data link value.
#[must_use]
pub fn link_type(link: DataLink) -> LinkType {
    match link {
        DataLink::ETHERNET => LinkType::Ethernet,
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => LinkType::RawIp,
        DataLink::NULL | DataLink::LOOP => LinkType::Null,
        DataLink::LINUX_SLL => LinkType::LinuxSll,
        DataLink::LINUX_SLL2 => LinkType::LinuxSll2,
        other => LinkType::Other(u32::from(other)),
    }
}

/// Outcome of reading a file.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadSummary {
    /// Frames read.
    pub frames: u64,
    /// Frames handed to the sink (those that passed the filter).
    pub shown: u64,
}

/// Read every frame of `input` (pcap or pcapng, by magic), pass those `keep` accepts to `sink`.
pub fn read<R: Read, S: Sink>(
    input: R,
    sink: &mut S,
    limit: Option<u64>,
    mut keep: impl FnMut(&Frame<'_>) -> bool,
) -> anyhow::Result<ReadSummary> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let magic = input.fill_buf().context("cannot read the input")?;
    if magic.len() < 4 {
        bail!(
            "the input is not a capture file: it has only {} bytes",
            magic.len()
        );
    }
    let magic = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
    let mut summary = ReadSummary::default();
    let mut emit = |frame: Frame<'_>, summary: &mut ReadSummary| -> anyhow::Result<bool> {
        summary.frames += 1;
        if keep(&frame) {
            summary.shown += 1;
            match sink.frame(&frame) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(false),
                other => other.context("cannot write the output")?,
            }
        }
        Ok(limit.is_none_or(|l| summary.shown < l))
    };
    match magic {
        0x0a0d_0d0a => {
            let mut reader = PcapNgReader::new(input).context("not a valid pcapng file")?;
            while let Some(block) = reader.next_block() {
                let (block, state) = block.with_context(|| {
                    format!("the pcapng file is corrupt after frame {}", summary.frames)
                })?;
                let (interface_id, ts, orig_len, data) = match &block {
                    Block::EnhancedPacket(p) => {
                        (p.interface_id, p.timestamp, p.original_len, &p.data)
                    }
                    Block::SimplePacket(p) => (0, Duration::ZERO, p.original_len, &p.data),
                    _ => continue,
                };
                let iface = state.interfaces().get(interface_id as usize);
                let link = iface.map_or(LinkType::Other(u32::MAX), |i| link_type(i.linktype));
                let frame = Frame {
                    number: summary.frames + 1,
                    ts,
                    mono_ns: None,
                    iface: None,
                    direction: None,
                    orig_len,
                    link,
                    data,
                };
                if !emit(frame, &mut summary)? {
                    break;
                }
            }
        }
        0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 => {
            let mut reader = PcapReader::new(input).context("not a valid pcap file")?;
            let link = link_type(reader.header().datalink);
            while let Some(packet) = reader.next_packet() {
                let packet = packet.with_context(|| {
                    format!("the pcap file is corrupt after frame {}", summary.frames)
                })?;
                let frame = Frame {
                    number: summary.frames + 1,
                    ts: packet.timestamp(),
                    mono_ns: None,
                    iface: None,
                    direction: None,
                    orig_len: packet.orig_len(),
                    link,
                    data: packet.data(),
                };
                if !emit(frame, &mut summary)? {
                    break;
                }
            }
        }
        other => {
            bail!("the input is neither pcap nor pcapng (its first four bytes are 0x{other:08x})")
        }
    }
    match sink.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        other => other.context("cannot write the output")?,
    }
    Ok(summary)
}
