//! Offline input: pcap and pcapng files (or stdin) to the same frames a live capture makes.
//!
//! Files are memory-mapped and parsed in place (no copy of the frame bytes); standard input is
//! read as a stream, so `ntptap -w - | ntptap -r -` works while the capture runs.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, bail};
use pcap_file::{
    DataLink,
    pcap::{PcapParser, PcapReader},
    pcapng::{
        Block, PcapNgParser, PcapNgReader,
        blocks::{
            enhanced_packet::EnhancedPacketOption,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            opt_common::CommonOption,
        },
    },
};

use crate::{
    frame::{
        CloseStats, Consumer, Direction, Frame, KernelDrop, LinkType, SourceEvent, output_closed,
    },
    process::{ReadSocket, Socket},
};

/// Link type of a pcap/pcapng data link value.
#[must_use]
pub fn link_type(link: DataLink) -> LinkType {
    LinkType::of(link)
}

/// tcpdump's name of a link type, as its "reading from file" line gives it.
#[must_use]
pub fn link_name(link: DataLink) -> String {
    match link {
        DataLink::ETHERNET => "EN10MB (Ethernet)".to_owned(),
        DataLink::RAW => "RAW (Raw IP)".to_owned(),
        DataLink::IPV4 => "IPV4 (Raw IPv4)".to_owned(),
        DataLink::IPV6 => "IPV6 (Raw IPv6)".to_owned(),
        DataLink::NULL => "NULL (BSD loopback)".to_owned(),
        DataLink::LOOP => "LOOP (OpenBSD loopback)".to_owned(),
        DataLink::LINUX_SLL => "LINUX_SLL (Linux cooked v1)".to_owned(),
        DataLink::LINUX_SLL2 => "LINUX_SLL2 (Linux cooked v2)".to_owned(),
        other => format!("{} (unknown)", u32::from(other)),
    }
}

/// The link type and snapshot length a capture starts with (a pcap file's header, a pcapng
/// file's first interface), read from its first bytes; `None` if they do not say.
#[must_use]
pub fn describe(head: &[u8]) -> Option<(String, u32)> {
    header(head).map(|(link, snaplen)| (link_name(link), snaplen))
}

/// The link type and snapshot length a capture file starts with (its first interface's, for
/// pcapng), from its first bytes.
#[must_use]
pub fn header(head: &[u8]) -> Option<(DataLink, u32)> {
    match magic(head).ok()? {
        PCAPNG_MAGIC => {
            let (mut rest, mut parser) = PcapNgParser::new(head).ok()?;
            loop {
                let (next, block) = parser.next_block(rest).ok()?;
                rest = next;
                if let Block::InterfaceDescription(idb) = block {
                    return Some((idb.linktype, idb.snaplen));
                }
            }
        }
        m if PCAP_MAGICS.contains(&m) => {
            let (_, parser) = PcapParser::new(head).ok()?;
            let header = parser.header();
            Some((header.datalink, header.snaplen))
        }
        _ => None,
    }
}

/// Outcome of reading a file.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadSummary {
    /// Frames read.
    pub frames: u64,
    /// Frames some output showed (those that passed its filter).
    pub shown: u64,
}

const PCAPNG_MAGIC: u32 = 0x0a0d_0d0a;
const PCAP_MAGICS: [u32; 4] = [0xa1b2_c3d4, 0xd4c3_b2a1, 0xa1b2_3c4d, 0x4d3c_b2a1];

/// Where frames go: the consumer (whose outputs filter), and the count limit.
struct Emitter<'s, S> {
    sink: &'s mut S,
    limit: Option<u64>,
    summary: ReadSummary,
}

impl<S: Consumer> Emitter<'_, S> {
    /// Take one frame; `Ok(false)` when reading should stop (count reached, output closed).
    fn emit(&mut self, frame: &Frame<'_>) -> anyhow::Result<bool> {
        self.summary.frames += 1;
        match self.sink.frame(frame) {
            Ok(true) => self.summary.shown += 1,
            Ok(false) => {}
            Err(e) if output_closed(&e) => return Ok(false),
            Err(e) => return Err(e).context("cannot write the output"),
        }
        Ok(self.limit.is_none_or(|l| self.summary.shown < l))
    }

    /// The file is done: the outputs write their last words (the `--stats` table).
    fn finish(self) -> anyhow::Result<ReadSummary> {
        match self.sink.event(SourceEvent::Close(&CloseStats::default())) {
            Err(e) if output_closed(&e) => {}
            other => other.context("cannot write the output")?,
        }
        Ok(self.summary)
    }

    fn number(&self) -> u64 {
        self.summary.frames + 1
    }
}

/// Read the capture file at `path` into `sink`, stopping after `limit` frames shown.
pub fn read_file<S: Consumer>(
    path: &Path,
    sink: &mut S,
    limit: Option<u64>,
) -> anyhow::Result<ReadSummary> {
    let file =
        File::open(path).with_context(|| format!("cannot open {} for reading", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        return read_stream(file, sink, limit);
    }
    // SAFETY: the map is read-only and lives only while we parse. If another process
    // truncates the file meanwhile, reading the lost pages raises SIGBUS; that is the
    // documented risk of mapping a file, the same one tcpdump's readers accept.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("cannot map {}", path.display()))?;
    read_slice(&map, sink, limit)
}

fn magic(bytes: &[u8]) -> anyhow::Result<u32> {
    if bytes.len() < 4 {
        bail!(
            "the input is not a capture file: it has only {} bytes",
            bytes.len()
        );
    }
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Parse a whole capture held in memory.
pub fn read_slice<S: Consumer>(
    data: &[u8],
    sink: &mut S,
    limit: Option<u64>,
) -> anyhow::Result<ReadSummary> {
    let mut out = Emitter {
        sink,
        limit,
        summary: ReadSummary::default(),
    };
    match magic(data)? {
        PCAPNG_MAGIC => {
            let (mut rest, mut parser) =
                PcapNgParser::new(data).context("not a valid pcapng file")?;
            while !rest.is_empty() {
                let (next, block) = parser
                    .next_block(rest)
                    .with_context(|| corrupt("pcapng", &out))?;
                rest = next;
                let Some(frame) = pcapng_frame(&block, parser.interfaces(), out.number()) else {
                    continue;
                };
                if !emit_block(&mut out, &block, frame)? {
                    break;
                }
            }
        }
        m if PCAP_MAGICS.contains(&m) => {
            let (mut rest, parser) = PcapParser::new(data).context("not a valid pcap file")?;
            let link = link_type(parser.header().datalink);
            while !rest.is_empty() {
                let (next, packet) = parser
                    .next_packet(rest)
                    .with_context(|| corrupt("pcap", &out))?;
                rest = next;
                let frame = pcap_frame(&packet, link, out.number());
                if !out.emit(&frame)? {
                    break;
                }
            }
        }
        other => {
            bail!("the input is neither pcap nor pcapng (its first four bytes are 0x{other:08x})")
        }
    }
    out.finish()
}

/// The frame in a pcap record.
fn pcap_frame<'a>(
    packet: &'a pcap_file::pcap::PcapPacket<'a>,
    link: LinkType,
    number: u64,
) -> Frame<'a> {
    Frame {
        number,
        ts: packet.timestamp(),
        mono_ns: None,
        ifindex: None,
        drops_before: 0,
        iface: None,
        direction: None,
        orig_len: packet.orig_len(),
        link,
        data: packet.data(),
        socket: Socket::Unknown,
        drop: None,
        send_before: None,
        read_before: None,
        queued_before: None,
    }
}

/// The frame in a pcapng packet block, with the interface's link type and name, and the
/// direction from the packet's `epb_flags`.
fn pcapng_frame<'a>(
    block: &'a Block<'a>,
    interfaces: &'a [InterfaceDescriptionBlock<'static>],
    number: u64,
) -> Option<Frame<'a>> {
    let (interface_id, ts, orig_len, data, options) = match block {
        Block::EnhancedPacket(p) => (
            p.interface_id,
            p.timestamp,
            p.original_len,
            &p.data,
            &p.options[..],
        ),
        Block::SimplePacket(p) => (0, Duration::ZERO, p.original_len, &p.data, &[][..]),
        _ => return None,
    };
    let iface = interfaces.get(interface_id as usize);
    let direction = options.iter().find_map(|o| match o {
        EnhancedPacketOption::Flags(f) if f & 3 == 1 => Some(Direction::In),
        EnhancedPacketOption::Flags(f) if f & 3 == 2 => Some(Direction::Out),
        _ => None,
    });
    let drops_before = options
        .iter()
        .find_map(|o| match o {
            EnhancedPacketOption::DropCount(n) => Some(u32::try_from(*n).unwrap_or(u32::MAX)),
            _ => None,
        })
        .unwrap_or(0);
    Some(Frame {
        number,
        ts,
        mono_ns: None,
        ifindex: None,
        drops_before,
        iface: iface.and_then(|i| {
            i.options.iter().find_map(|o| match o {
                InterfaceDescriptionOption::IfName(name) => Some(name.as_ref()),
                _ => None,
            })
        }),
        direction,
        orig_len,
        link: iface.map_or(LinkType::Other(u32::MAX), |i| link_type(i.linktype)),
        data,
        socket: Socket::Unknown,
        drop: None,
        send_before: None,
        read_before: None,
        queued_before: None,
    })
}

/// `frame`, from a pcapng packet block, with what ntptap's comments on the block say (its
/// socket's owner; a drop record's reason and location), to `out`.
fn emit_block<S: Consumer>(
    out: &mut Emitter<'_, S>,
    block: &Block<'_>,
    frame: Frame<'_>,
) -> anyhow::Result<bool> {
    let socket = block_socket(block);
    let drop = block_drop(block, frame.iface);
    let frame = Frame {
        socket: socket.socket(),
        drop: drop
            .as_ref()
            .map(|(reason, location)| KernelDrop { reason, location }),
        ..frame
    };
    out.emit(&frame)
}

/// What ntptap's comment on a drop record says: (reason, location). Only on its own
/// interface: a comment alone does not make a captured frame a drop.
fn block_drop(block: &Block<'_>, iface: Option<&str>) -> Option<(String, String)> {
    let Block::EnhancedPacket(p) = block else {
        return None;
    };
    if iface != Some(crate::frame::DROPS_INTERFACE) {
        return None;
    }
    p.options.iter().find_map(|o| match o {
        EnhancedPacketOption::Common(CommonOption::Comment(c)) => {
            crate::frame::parse_drop_comment(c)
        }
        _ => None,
    })
}

/// What ntptap's comments on a packet block say of its socket (process attribution).
fn block_socket(block: &Block<'_>) -> ReadSocket {
    match block {
        Block::EnhancedPacket(p) => {
            ReadSocket::from_comments(p.options.iter().filter_map(|o| match o {
                EnhancedPacketOption::Common(CommonOption::Comment(c)) => Some(c.as_ref()),
                _ => None,
            }))
        }
        _ => ReadSocket::Unknown,
    }
}

fn corrupt<S>(kind: &str, out: &Emitter<'_, S>) -> String {
    format!(
        "the {kind} file is corrupt or cut short after frame {} (the frames before it were read)",
        out.summary.frames
    )
}

/// Read a capture from a stream (standard input, a pipe).
pub fn read_stream<R: Read, S: Consumer>(
    input: R,
    sink: &mut S,
    limit: Option<u64>,
) -> anyhow::Result<ReadSummary> {
    let mut input = BufReader::with_capacity(1 << 16, input);
    let first = magic(input.fill_buf().context("cannot read the input")?)?;
    let mut out = Emitter {
        sink,
        limit,
        summary: ReadSummary::default(),
    };
    match first {
        PCAPNG_MAGIC => {
            let mut reader = PcapNgReader::new(input).context("not a valid pcapng file")?;
            while let Some(block) = reader.next_block() {
                let (block, state) = block.with_context(|| corrupt("pcapng", &out))?;
                let Some(frame) = pcapng_frame(&block, state.interfaces(), out.number()) else {
                    continue;
                };
                if !emit_block(&mut out, &block, frame)? {
                    break;
                }
            }
        }
        m if PCAP_MAGICS.contains(&m) => {
            let mut reader = PcapReader::new(input).context("not a valid pcap file")?;
            let link = link_type(reader.header().datalink);
            while let Some(packet) = reader.next_packet() {
                let packet = packet.with_context(|| corrupt("pcap", &out))?;
                let frame = pcap_frame(&packet, link, out.number());
                if !out.emit(&frame)? {
                    break;
                }
            }
        }
        other => {
            bail!("the input is neither pcap nor pcapng (its first four bytes are 0x{other:08x})")
        }
    }
    out.finish()
}
