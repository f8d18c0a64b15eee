//! The one frame type every source produces and every sink consumes.

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
}
