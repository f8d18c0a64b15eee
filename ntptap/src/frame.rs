//! The one frame type every source produces and every sink consumes, and the interface
//! between sources (live capture, capture files) and their consumer.

use std::time::Duration;

/// Which way a frame was going.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Into the host.
    In,
    /// Out of the host.
    Out,
}

impl Direction {
    /// From the ring record's direction byte.
    #[must_use]
    pub fn from_record(direction: u8) -> Self {
        if direction == ntptap_common::DIRECTION_EGRESS {
            Direction::Out
        } else {
            Direction::In
        }
    }
    /// As tcpdump prints it with `-i any`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Direction::In => "In ",
            Direction::Out => "Out",
        }
    }
}

/// Link-layer header type of the frame's bytes (the pcap LINKTYPE_* values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_RAW (101), or the raw IPv4 (228) / IPv6 (229) types.
    RawIp,
    /// LINKTYPE_NULL (0), BSD loopback: a 4-byte host-order address family.
    Null,
    /// LINKTYPE_LINUX_SLL (113).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276).
    LinuxSll2,
    /// Anything else: shown as raw bytes.
    Other(u32),
}

impl LinkType {
    /// Of a pcap/pcapng data link value.
    #[must_use]
    pub fn of(link: pcap_file::DataLink) -> Self {
        use pcap_file::DataLink;
        match link {
            DataLink::ETHERNET => Self::Ethernet,
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Self::RawIp,
            DataLink::NULL | DataLink::LOOP => Self::Null,
            DataLink::LINUX_SLL => Self::LinuxSll,
            DataLink::LINUX_SLL2 => Self::LinuxSll2,
            other => Self::Other(u32::from(other)),
        }
    }

    /// The data link value a file is written with for these frames (raw IP as RAW, BSD
    /// loopback as NULL: the same bytes under the general name).
    #[must_use]
    pub fn datalink(self) -> pcap_file::DataLink {
        use pcap_file::DataLink;
        match self {
            Self::Ethernet => DataLink::ETHERNET,
            Self::RawIp => DataLink::RAW,
            Self::Null => DataLink::NULL,
            Self::LinuxSll => DataLink::LINUX_SLL,
            Self::LinuxSll2 => DataLink::LINUX_SLL2,
            Self::Other(code) => DataLink::from(code),
        }
    }
}

/// One captured frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// 1-based position in the capture (tshark's frame.number).
    pub number: u64,
    /// Wall-clock time, since the Unix epoch.
    pub ts: Duration,
    /// Kernel `CLOCK_MONOTONIC` time, for live captures.
    pub mono_ns: Option<u64>,
    /// Kernel index of the interface, for live captures.
    pub ifindex: Option<u32>,
    /// Name of the interface, when known.
    pub iface: Option<&'a str>,
    /// Frames the kernel lost to a full ring just before this one (live captures).
    pub drops_before: u32,
    /// Direction, when known.
    pub direction: Option<Direction>,
    /// Length on the wire.
    pub orig_len: u32,
    /// Link-layer header type of `data`.
    pub link: LinkType,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The socket that sent the frame or takes it, and its owner (process attribution).
    pub socket: crate::process::Socket<'a>,
    /// A drop record: the kernel dropped this frame (after ntptap's hook, or before it on the
    /// way out), and said why. Its bytes start at the IP header (`link` is [`LinkType::RawIp`]).
    pub drop: Option<KernelDrop<'a>>,
    /// Egress, `--latency`: ns from the process's send to the capture.
    pub send_before: Option<u32>,
    /// Egress, `--latency`: ns from the process's last read from this frame's destination
    /// (on a server: of the request this frame answers) to the capture.
    pub read_before: Option<u32>,
    /// Egress, `--latency`: ns from the last datagram from this frame's destination queued on
    /// its socket to the capture.
    pub queued_before: Option<u32>,
}

#[cfg(test)]
impl<'a> Frame<'a> {
    /// A whole Ethernet frame numbered `number` at `ts`, with nothing else known: tests set
    /// what they need on top (`Frame { iface: Some("eth0"), ..Frame::test(n, ts, data) }`).
    pub(crate) fn test(number: u64, ts: Duration, data: &'a [u8]) -> Self {
        Frame {
            number,
            ts,
            mono_ns: None,
            ifindex: None,
            iface: None,
            drops_before: 0,
            direction: None,
            orig_len: u32::try_from(data.len()).expect("a test frame is short"),
            link: LinkType::Ethernet,
            data,
            socket: crate::process::Socket::Unknown,
            drop: None,
            send_before: None,
            read_before: None,
            queued_before: None,
        }
    }
}

/// Why and where the kernel dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelDrop<'a> {
    /// The kernel's reason, as it spells it without `SKB_DROP_REASON_` (`NO_SOCKET`,
    /// `NETFILTER_DROP`, ...), or `unknown` on kernels without reasons.
    pub reason: &'a str,
    /// The kernel function that dropped it.
    pub location: &'a str,
}

/// The name of the pcapng interface drop records sit on, so that Wireshark's
/// `frame.interface_name` tells them from captured frames.
pub const DROPS_INTERFACE: &str = "ntptap-drops";

/// What a frame source (a live capture, a capture file) hands the one consumer of its frames:
/// the frames, and what happens around them. Sources know nothing of what consumes them.
pub trait Consumer {
    /// One frame: `Ok(true)` if some output showed or wrote it, `Ok(false)` if every output's
    /// own filter passed over it (`-c` counts the former).
    fn frame(&mut self, frame: &Frame<'_>) -> std::io::Result<bool>;
    /// Anything else the source has to say (see [`SourceEvent`]).
    fn event(&mut self, event: SourceEvent<'_>) -> std::io::Result<()>;
    /// Frames taken by [`Consumer::frame`] that did not reach the output because it failed.
    fn unwritten(&self) -> u64;
    /// Whether any output uses the owners of the frames' sockets: a source may leave them
    /// unnamed ([`crate::process::Socket::Unknown`]) when none does (a pcap file alone).
    fn wants_owners(&self) -> bool {
        true
    }
    /// Where every output only writes frames' bytes into one pcap file (`-w FILE.pcap` alone,
    /// nothing decoded or tracked), the writer a source may hand each captured frame's bytes
    /// to straight from where it holds them, building no [`Frame`]. Frames given this way
    /// count as shown; [`Consumer::unwritten`] still counts those that did not reach the file.
    fn pcap_records(&mut self) -> Option<&mut dyn PcapRecords> {
        None
    }
}

/// A pcap file's writer of records: see [`Consumer::pcap_records`].
pub trait PcapRecords {
    /// One frame of the file's link type, captured at `ts` (since the Unix epoch), `orig_len`
    /// bytes long on the wire, of which `data` were kept.
    fn record(&mut self, ts: Duration, data: &[u8], orig_len: u32) -> std::io::Result<()>;
}

/// What a frame source says besides frames.
#[derive(Clone, Copy, Debug)]
pub enum SourceEvent<'a> {
    /// About once a second during a live capture, with the wall-clock time.
    Tick(Duration),
    /// The kernel programs' counters, about once a second during a live capture.
    Kernel(&'a crate::counts::Counts),
    /// Start a new output file now (SIGHUP), where the output is a series of files.
    Rotate(Duration),
    /// Push buffered output to its destination (each second, SIGUSR2, and before the end).
    Flush,
    /// A flight-recorder dump asked for (SIGUSR1), at this wall-clock time.
    Trigger(&'static str, Duration),
    /// The source is done: write trailers and flush.
    Close(&'a CloseStats),
}

/// What an output may record when the capture ends.
#[derive(Clone, Copy, Debug, Default)]
pub struct CloseStats {
    /// When the capture started and ended (wall clock, since the Unix epoch).
    pub start: Duration,
    /// See `start`.
    pub end: Duration,
    /// Frames the kernel matched (received by filter), when known (not for a file closed by
    /// rotation).
    pub received: Option<u64>,
    /// Matched frames the kernel dropped, when known.
    pub dropped: Option<u64>,
}

/// The wall-clock time, since the Unix epoch.
#[must_use]
pub fn wall_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Whether an output error means its reader went away (`ntptap -w - | head`): a clean end,
/// not a failure. The one place a broken pipe is recognised.
#[must_use]
pub fn output_closed(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::BrokenPipe
}

/// A drop record's pcapng comment, `drop=REASON at SYMBOL`: written by the pcapng writer,
/// read back by `-r` (here, where neither imports the other).
#[must_use]
pub fn drop_comment(drop: &KernelDrop<'_>) -> String {
    format!(
        "drop={} at {}",
        crate::process::escape(drop.reason.as_bytes()),
        crate::process::escape(drop.location.as_bytes())
    )
}

/// A drop record's comment read back: (reason, location).
#[must_use]
pub fn parse_drop_comment(comment: &str) -> Option<(String, String)> {
    let rest = comment.strip_prefix("drop=")?;
    let (reason, location) = rest.split_once(" at ")?;
    let text =
        |s: &str| crate::process::unescape(s).map(|b| String::from_utf8_lossy(&b).into_owned());
    Some((text(reason)?, text(location)?))
}
