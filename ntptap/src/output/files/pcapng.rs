//! pcapng writer: one interface description per captured interface (name, nanosecond
//! resolution, the kernel filter as text), enhanced packet blocks with the direction flag, the
//! kernel's drop count since the previous packet and the kernel monotonic timestamp, and an
//! interface statistics block per interface when the file is closed.

use std::{
    borrow::Cow,
    collections::HashMap,
    io::{self, Write},
};

use pcap_file::{
    DataLink,
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketOption,
            interface_description::{
                InterfaceDescriptionBlock, InterfaceDescriptionOption, InterfaceTsResolution,
            },
            interface_statistics::{InterfaceStatisticsBlock, InterfaceStatisticsOption},
            opt_common::CommonOption,
            section_header::{SectionHeaderBlock, SectionHeaderOption},
        },
    },
};

use super::super::{decoded::Decoded, sink::CloseStats, sink::Control, sink::Sink};
use crate::{
    frame::Direction,
    process::{CommentMemo, Socket},
};

/// One interface of the capture.
#[derive(Clone, Debug)]
pub struct PcapNgInterface {
    /// Kernel interface index.
    pub index: u32,
    /// Name.
    pub name: String,
}

/// What pcap-file writes of a block, gathered and handed to the file's writer in one write:
/// pcap-file writes a block a field at a time, and each write cost the file writer its
/// bookkeeping (its writes were 17 % of the reader's CPU under the bench's flood into a pcapng
/// file, `perf`). Handed over after every block, so the guard's journal knows where each frame
/// ends.
struct Staged<W> {
    inner: W,
    block: Vec<u8>,
}

impl<W: Write> Staged<W> {
    fn hand_over(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let written = self.inner.write_all(&self.block);
        self.block.clear();
        written
    }
}

impl<W: Write> Write for Staged<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.block.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()?;
        self.inner.flush()
    }
}

/// Writes frames as pcapng.
pub struct PcapNgSink<W: Write> {
    writer: PcapNgWriter<Staged<W>>,
    /// Interface index to interface ID in the file.
    ids: HashMap<u32, u32>,
    /// Frames read from a file (no interface index): (name, link type) to interface ID.
    named: HashMap<(String, u32), u32>,
    /// Frames written per interface ID.
    written: Vec<u64>,
    snaplen: u32,
    /// The kernel filter as pcapng's `if_filter` value.
    filter: Vec<u8>,
    /// The interface ID of the drop records' own interface, once one came.
    drops_id: Option<u32>,
    first_ts: Option<std::time::Duration>,
    last_ts: Option<std::time::Duration>,
    /// What a block's comments borrow; out of `self` while a block is written.
    scratch: Option<Box<Scratch>>,
}

/// Where an enhanced packet block's comments are made, to be borrowed rather than allocated
/// for each frame: the last owner's comments and the monotonic time's.
#[derive(Debug, Default)]
pub struct Scratch {
    memo: CommentMemo,
    ktime: String,
}

/// A block's options: never more than a few, kept on the stack.
pub type Options<'m> = smallvec::SmallVec<[EnhancedPacketOption<'m>; 8]>;

fn to_io(err: pcap_file::pcapng::PcapNgWriteError) -> io::Error {
    match err {
        pcap_file::pcapng::PcapNgWriteError::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<W: Write> PcapNgSink<W> {
    /// Write the section header and the interface descriptions.
    pub fn new(
        out: W,
        interfaces: &[PcapNgInterface],
        snaplen: u32,
        filter: &str,
    ) -> io::Result<Self> {
        Self::with_comments(out, interfaces, snaplen, filter, Vec::new())
    }

    /// [`PcapNgSink::new`], with more comments in the section header.
    pub fn with_comments(
        out: W,
        interfaces: &[PcapNgInterface],
        snaplen: u32,
        filter: &str,
        comments: Vec<String>,
    ) -> io::Result<Self> {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let uname = nix::sys::utsname::uname().ok();
        let os = uname.map_or_else(
            || "Linux".into(),
            |u| {
                format!(
                    "{} {}",
                    u.sysname().to_string_lossy(),
                    u.release().to_string_lossy()
                )
            },
        );
        let section = SectionHeaderBlock {
            options: vec![
                SectionHeaderOption::Hardware(Cow::Owned(host.clone())),
                SectionHeaderOption::OS(Cow::Owned(os)),
                SectionHeaderOption::UserApplication(Cow::Owned(format!(
                    "ntptap {}",
                    env!("CARGO_PKG_VERSION")
                ))),
                SectionHeaderOption::Common(CommonOption::Comment(Cow::Owned(format!(
                    "captured on {host}"
                )))),
            ]
            .into_iter()
            .chain(
                comments
                    .into_iter()
                    .map(|c| SectionHeaderOption::Common(CommonOption::Comment(Cow::Owned(c)))),
            )
            .collect(),
            ..SectionHeaderBlock::default()
        };
        let staged = Staged {
            inner: out,
            block: Vec::with_capacity(4096),
        };
        let mut writer = PcapNgWriter::with_section_header(staged, section).map_err(to_io)?;
        writer.get_mut().hand_over()?;
        let mut sink = Self {
            writer,
            written: Vec::new(),
            ids: HashMap::new(),
            named: HashMap::new(),
            snaplen,
            // if_filter: the first byte says the rest is a filter string.
            filter: [&[0u8][..], filter.as_bytes()].concat(),
            drops_id: None,
            first_ts: None,
            last_ts: None,
            scratch: Some(Box::default()),
        };
        for iface in interfaces {
            sink.describe(iface.index, &iface.name)?;
        }
        Ok(sink)
    }

    /// Write an interface description block for `index`; its interface ID is the next one.
    /// pcapng allows them anywhere before the first packet that names them, so an interface
    /// that appears during the capture (`-i any`) gets its own as its first frame comes.
    fn describe(&mut self, index: u32, name: &str) -> io::Result<u32> {
        let id = self.describe_as(name, DataLink::ETHERNET)?;
        self.ids.insert(index, id);
        Ok(id)
    }

    /// The drop records' interface (raw IP: the kernel drops frames past their link layer),
    /// described as the first drop record comes.
    fn drops_interface(&mut self) -> io::Result<u32> {
        if let Some(id) = self.drops_id {
            return Ok(id);
        }
        let id = self.describe_as(crate::frame::DROPS_INTERFACE, DataLink::RAW)?;
        self.drops_id = Some(id);
        Ok(id)
    }

    fn describe_as(&mut self, name: &str, linktype: DataLink) -> io::Result<u32> {
        let id = self.written.len() as u32;
        // A frame read from a pcap file has no interface name, and ntptap's filter was not
        // what chose it: no option says otherwise.
        let options = [
            (!name.is_empty())
                .then(|| InterfaceDescriptionOption::IfName(Cow::Owned(name.to_owned()))),
            Some(InterfaceDescriptionOption::IfTsResol(
                InterfaceTsResolution::NANO,
            )),
            (self.filter.len() > 1)
                .then(|| InterfaceDescriptionOption::IfFilter(Cow::Owned(self.filter.clone()))),
        ];
        self.writer
            .write_pcapng_block(InterfaceDescriptionBlock {
                linktype,
                snaplen: self.snaplen,
                options: options.into_iter().flatten().collect(),
            })
            .map_err(to_io)?;
        self.writer.get_mut().hand_over()?;
        self.written.push(0);
        Ok(id)
    }
}

/// Where a frame goes in a pcapng file: its interface, or the drop records' own.
#[derive(Clone, Debug)]
pub struct Place {
    /// Kernel interface index, for live captures.
    pub ifindex: Option<u32>,
    /// Interface name, when known.
    pub iface: Option<std::sync::Arc<str>>,
    /// A drop record.
    pub drop: bool,
}

/// One frame as an enhanced packet block, owned: what the flight recorder keeps in memory and
/// writes later exactly as `-w` writes it now.
#[derive(Clone, Debug)]
pub struct Kept {
    /// 1-based position in the capture.
    pub number: u64,
    /// Its interface.
    pub place: Place,
    /// Wall-clock capture time.
    pub ts: std::time::Duration,
    /// Length on the wire.
    pub orig_len: u32,
    /// The bytes, cut to the snapshot length.
    pub data: Box<[u8]>,
    /// Direction, drops before it, comments.
    pub options: Vec<EnhancedPacketOption<'static>>,
    /// See [`Kept::size`].
    size: usize,
}

impl Kept {
    /// `packet` as the pcapng writer would write it with `snaplen`.
    #[must_use]
    pub fn new(packet: &Decoded<'_>, snaplen: u32) -> Self {
        let frame = packet.frame;
        let mut kept = Self {
            number: frame.number,
            place: Place {
                ifindex: frame.ifindex,
                iface: frame.iface.map(std::sync::Arc::from),
                drop: frame.drop.is_some(),
            },
            ts: frame.ts,
            orig_len: frame.orig_len,
            data: frame.data[..frame.data.len().min(snaplen as usize)].into(),
            options: epb_options(packet, None)
                .into_iter()
                .map(EnhancedPacketOption::into_owned)
                .collect(),
            size: 0,
        };
        let comments: usize = kept
            .options
            .iter()
            .map(|o| match o {
                EnhancedPacketOption::Common(CommonOption::Comment(c)) => c.len() + 24,
                _ => 24,
            })
            .sum();
        kept.size = kept.data.len() + comments + size_of::<Self>() + 32;
        kept
    }

    /// Bytes it holds, roughly: its data, its comments, and the rest (reckoned once).
    #[must_use]
    pub fn size(&self) -> usize {
        self.size
    }
}

/// The options of a frame's enhanced packet block: direction, the kernel's drops before it,
/// its monotonic time, and comments (drop reason, latency, the socket's owner).
/// With `scratch`, the monotonic time and the owner's comments are borrowed from it (see [`CommentMemo`]).
fn epb_options<'m>(packet: &Decoded<'_>, scratch: Option<&'m mut Scratch>) -> Options<'m> {
    let frame = packet.frame;
    let mut options = Options::new();
    // epb_flags bits 0-1: 01 inbound, 10 outbound.
    match frame.direction {
        Some(Direction::In) => options.push(EnhancedPacketOption::Flags(1)),
        Some(Direction::Out) => options.push(EnhancedPacketOption::Flags(2)),
        None => {}
    }
    if frame.drops_before > 0 {
        options.push(EnhancedPacketOption::DropCount(u64::from(
            frame.drops_before,
        )));
    }
    let comment = |text: String| super::epb::comment(Cow::Owned(text));
    let (memo, ktime) = match scratch {
        Some(s) => (Some(&mut s.memo), Some(&mut s.ktime)),
        None => (None, None),
    };
    if let Some(mono) = frame.mono_ns {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(mono);
        match ktime {
            Some(buf) => {
                buf.clear();
                buf.push_str("ktime_mono_ns=");
                buf.push_str(digits);
                options.push(super::epb::comment(Cow::Borrowed(buf.as_str())));
            }
            None => options.push(comment(format!("ktime_mono_ns={digits}"))),
        }
    }
    // A drop record: why and where, and the interface it was on (its own is ntptap-drops).
    if let Some(drop) = frame.drop {
        options.push(comment(crate::frame::drop_comment(&drop)));
        if let Some(iface) = frame.iface {
            options.push(comment(format!("iface={iface}")));
        }
    }
    // In-host latency (the exchange tracker's, on replies of a server on this host).
    if let Some(latency) = &packet.latency {
        options.push(comment(latency.comment()));
    }
    // The socket's owner (process attribution), as ntptap and ptcpdump write it.
    match (&frame.socket, memo) {
        (Socket::Owned(p), Some(memo)) => options.extend(
            memo.comments(p)
                .iter()
                .map(|c| super::epb::comment(Cow::Borrowed(c))),
        ),
        (socket, _) => {
            for text in crate::process::comments(socket) {
                options.push(comment(text));
            }
        }
    }
    options
}

impl<W: Write> PcapNgSink<W> {
    /// Write one enhanced packet block on `place`'s interface (described first if new).
    fn write_block(
        &mut self,
        place: (Option<u32>, Option<&str>, bool),
        link: crate::frame::LinkType,
        ts: std::time::Duration,
        orig_len: u32,
        data: &[u8],
        options: &[EnhancedPacketOption<'_>],
    ) -> io::Result<()> {
        let (ifindex, iface, drop) = place;
        let known = ifindex.and_then(|i| self.ids.get(&i).copied());
        let id = match (drop, known, ifindex, iface) {
            (true, ..) => self.drops_interface()?,
            (false, Some(id), _, _) => id,
            (false, None, Some(index), Some(name)) => self.describe(index, name)?,
            // Read from a file: an interface per name and link type, as the input had them.
            (false, None, None, name) => {
                let key = (
                    name.unwrap_or_default().to_owned(),
                    u32::from(link.datalink()),
                );
                if let Some(id) = self.named.get(&key) {
                    *id
                } else {
                    let id = self.describe_as(&key.0, link.datalink())?;
                    self.named.insert(key, id);
                    id
                }
            }
            _ => 0,
        };
        let data = &data[..data.len().min(self.snaplen as usize)];
        // A block names an interface described before it (pcap-file refused others too).
        if id as usize >= self.written.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a frame on interface ID {id}, which the file does not describe"),
            ));
        }
        // Encoded by hand (epb.rs); nothing of a block it refuses goes to the file.
        let order = self.writer.section().endianness;
        let staged = self.writer.get_mut();
        super::epb::encode(
            (&mut staged.block, order),
            id,
            ts,
            orig_len.max(data.len() as u32),
            data,
            options,
        )?;
        staged.hand_over()?;
        if let Some(n) = self.written.get_mut(id as usize) {
            *n += 1;
        }
        self.first_ts.get_or_insert(ts);
        self.last_ts = Some(ts);
        Ok(())
    }

    /// Write a frame kept earlier, as it would have been written then.
    pub fn write_kept(&mut self, kept: &Kept) -> io::Result<()> {
        let place = (
            kept.place.ifindex,
            kept.place.iface.as_deref(),
            kept.place.drop,
        );
        self.write_block(
            place,
            crate::frame::LinkType::Ethernet,
            kept.ts,
            kept.orig_len,
            &kept.data,
            &kept.options,
        )
    }
}

impl<W: Write> Sink for PcapNgSink<W> {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        let frame = packet.frame;
        let place = (frame.ifindex, frame.iface, frame.drop.is_some());
        // The scratch is out of `self` while the block borrows its comments.
        let mut scratch = self.scratch.take().unwrap_or_default();
        let written = self.write_block(
            place,
            frame.link,
            frame.ts,
            frame.orig_len,
            frame.data,
            &epb_options(packet, Some(&mut scratch)),
        );
        self.scratch = Some(scratch);
        written?;
        Ok(true)
    }

    fn control(&mut self, control: &Control<'_>) -> io::Result<()> {
        match control {
            Control::Flush => self.writer.get_mut().flush(),
            Control::Close { stats, .. } => self.close(stats),
            Control::Tick { .. }
            | Control::Kernel(_)
            | Control::Rotate(_)
            | Control::Trigger(..) => Ok(()),
        }
    }

    fn unwritten(&self) -> u64 {
        0
    }
}

impl<W: Write> PcapNgSink<W> {
    /// Interface statistics for every interface, then flush.
    pub fn close(&mut self, stats: &CloseStats) -> io::Result<()> {
        let single = self.written.len() - usize::from(self.drops_id.is_some()) == 1;
        for (id, written) in self.written.iter().enumerate() {
            if Some(id as u32) == self.drops_id {
                let options = vec![
                    InterfaceStatisticsOption::IsbStartTime(stats.start),
                    InterfaceStatisticsOption::IsbEndTime(stats.end),
                    InterfaceStatisticsOption::Common(CommonOption::Comment(Cow::Owned(format!(
                        "{written} drop records: NTP frames the kernel dropped"
                    )))),
                ];
                write_isb(&mut self.writer, id, stats, options)?;
                continue;
            }
            let mut options = vec![
                InterfaceStatisticsOption::IsbStartTime(stats.start),
                InterfaceStatisticsOption::IsbEndTime(stats.end),
                InterfaceStatisticsOption::IsbFilterAccept(*written),
            ];
            let (Some(received), Some(dropped)) = (stats.received, stats.dropped) else {
                write_isb(&mut self.writer, id, stats, options)?;
                continue;
            };
            if single {
                // The kernel counts per direction, not per interface: exact for one interface.
                options.push(InterfaceStatisticsOption::IsbIfRecv(received));
                options.push(InterfaceStatisticsOption::IsbIfDrop(dropped));
            } else if id == usize::from(self.drops_id == Some(0)) {
                options.push(InterfaceStatisticsOption::Common(CommonOption::Comment(
                    Cow::Owned(format!(
                        "all interfaces: {received} received by filter, {dropped} dropped by kernel"
                    )),
                )));
            }
            write_isb(&mut self.writer, id, stats, options)?;
        }
        self.writer.get_mut().flush()
    }
}

fn write_isb<W: Write>(
    writer: &mut PcapNgWriter<Staged<W>>,
    id: usize,
    stats: &CloseStats,
    options: Vec<InterfaceStatisticsOption<'static>>,
) -> io::Result<()> {
    writer
        .write_pcapng_block(InterfaceStatisticsBlock {
            interface_id: id as u32,
            timestamp: stats.end,
            options,
        })
        .map_err(to_io)?;
    writer.get_mut().hand_over()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        frame::Frame,
        output::PortSet,
        process::{Process, Socket},
    };

    /// The file's bytes after the header blocks.
    fn blocks(sink: PcapNgSink<Vec<u8>>, header: usize) -> Vec<u8> {
        let mut sink = sink;
        sink.writer.get_mut().hand_over().unwrap();
        sink.writer.into_inner().inner[header..].to_vec()
    }

    /// A frame's block is the same whether written now, its comments borrowed from the
    /// sink's scratch, or kept and written later with comments of its own (the flight
    /// recorder's): through owners that change and repeat, times, directions and drops.
    #[test]
    fn a_block_written_now_is_the_block_written_later() {
        let interfaces = [PcapNgInterface {
            index: 2,
            name: "eth0".into(),
        }];
        let new = || PcapNgSink::new(Vec::new(), &interfaces, 2048, "udp port 123").unwrap();
        let header = new().writer.into_inner().inner.len();
        let (mut now, mut later) = (new(), new());
        let ports = PortSet::new(vec![123]);
        let comms: [&[u8]; 3] = [b"chronyd", b"ntpd\x1b[31m", b"chronyd"];
        let data = [0x45u8; 90];
        for n in 0..30u64 {
            let process = Process {
                pid: 100 + (n as u32 % 4) / 2,
                tid: 100,
                uid: 0,
                comm: comms[n as usize % 3],
                cgroup_id: 7,
                cgroup: (n % 5 == 0).then_some("/system.slice/chronyd.service"),
                container: None,
                names: None,
                netns: None,
            };
            let frame = Frame {
                ifindex: Some(2),
                iface: Some("eth0"),
                mono_ns: (n % 7 != 0).then_some(1_000_000_000 + n * 999_999_937),
                direction: [None, Some(Direction::In), Some(Direction::Out)][n as usize % 3],
                drops_before: u32::from(n % 4 == 1) * 3,
                socket: match n % 3 {
                    0 => Socket::Owned(process),
                    1 => Socket::None,
                    _ => Socket::Unknown,
                },
                ..Frame::test(n + 1, Duration::from_millis(1_700_000_000_000 + n), &data)
            };
            let packet = Decoded::new(&frame, &ports);
            now.frame(&packet).unwrap();
            later.write_kept(&Kept::new(&packet, 2048)).unwrap();
        }
        let (now, later) = (blocks(now, header), blocks(later, header));
        assert!(now.len() > 30 * 90, "{} bytes", now.len());
        assert_eq!(now, later);
    }
}
