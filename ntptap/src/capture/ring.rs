//! Draining the rings: records to frames, frames to the consumer.

use std::{mem::size_of, ops::ControlFlow};

use ntptap_common::{
    COMM_LEN, DropInfo, RECORD_DROP, RECORD_VLAN, RecordHeader, SOCKET_NONE, SOCKET_OWNED,
    SOCKET_UNOWNED,
};

use super::{
    clock::WallClock,
    drops::{Reasons, Symbols},
    owners::Names,
    ringbuf::Rings,
    summary::StopReason,
};
use crate::{
    frame::{Consumer, Direction, Frame, KernelDrop, LinkType, PcapRecords},
    process::{Process, Socket},
};

/// Bytes of ntptap's own header at the start of each ring record (see [`RecordHeader`]).
const RECORD_HEADER: usize = size_of::<RecordHeader>();

pub(super) struct Drain {
    /// Interface names by index: a handful, so a scan beats hashing every frame's index.
    names: Vec<(u32, String)>,
    limit: Option<u64>,
    pub(super) clock: WallClock,
    /// Frames captured (drop records not included).
    pub(super) captured: u64,
    /// Drop records read.
    pub(super) drop_records: u64,
    pub(super) bad_records: u64,
    /// Room to rebuild a frame whose VLAN tag the kernel kept aside.
    scratch: Vec<u8>,
    /// Names of the cgroups and namespaces of sockets' owners.
    pub(super) owners: Names,
    /// Names of the kernel's drop reasons, when the drop program runs.
    pub(super) reasons: Option<std::sync::Arc<Reasons>>,
    /// Names of drop locations.
    symbols: Symbols,
    /// Name the frames' socket owners (some output uses them).
    pub(super) name_owners: bool,
    /// The kernel writes the in-host latency fields (`--latency`); without it they hold
    /// whatever the ring had there, and are not read.
    pub(super) latency: bool,
}

impl Drain {
    pub(super) fn new(limit: Option<u64>) -> Self {
        Self {
            names: Vec::new(),
            limit,
            clock: WallClock::new(),
            captured: 0,
            drop_records: 0,
            bad_records: 0,
            scratch: Vec::with_capacity(ntptap_common::MAX_DATA + 4),
            owners: Names::new(None),
            reasons: None,
            symbols: Symbols::default(),
            name_owners: true,
            latency: false,
        }
    }

    /// The interfaces frames may come from, by index.
    pub(super) fn set_names(&mut self, names: impl IntoIterator<Item = (u32, String)>) {
        self.names = names.into_iter().collect();
    }

    /// Hand every record in the rings to `consumer`. `Some` when the capture must stop.
    pub(super) fn drain<C: Consumer>(
        &mut self,
        ring: &mut Rings,
        consumer: &mut C,
    ) -> Option<StopReason> {
        if let Some(records) = consumer.pcap_records() {
            return ring.read(|record| self.pcap_record(record, records));
        }
        ring.read(|record| self.record(record, consumer))
    }

    /// One record's bytes straight to a pcap file's writer (see `Consumer::pcap_records`):
    /// what [`Drain::record`] does for such a consumer, without the frame.
    fn pcap_record(&mut self, record: &[u8], out: &mut dyn PcapRecords) -> ControlFlow<StopReason> {
        let (header, data) = match split(record) {
            Split::Frame(header, data) => (header, data),
            // A drop record has no place in a pcap file (see `PcapSink`); counted as read.
            Split::Drop(..) => {
                self.drop_records += 1;
                return ControlFlow::Continue(());
            }
            Split::Bad => {
                self.bad_records += 1;
                return ControlFlow::Continue(());
            }
        };
        self.captured += 1;
        let (data, orig_len) = with_vlan(&mut self.scratch, data, &header);
        if let Err(e) = out.record(self.clock.wall(header.ts_mono_ns), data, orig_len) {
            return ControlFlow::Break(StopReason::from_output(e));
        }
        if self.limit.is_some_and(|l| self.captured >= l) {
            return ControlFlow::Break(StopReason::Count);
        }
        ControlFlow::Continue(())
    }

    /// One record to `consumer`; `Break` when the capture must stop.
    fn record<C: Consumer>(&mut self, record: &[u8], consumer: &mut C) -> ControlFlow<StopReason> {
        let (header, data) = match split(record) {
            Split::Frame(header, data) => (header, data),
            Split::Drop(header, rest) => return self.drop_record(&header, rest, consumer),
            Split::Bad => {
                self.bad_records += 1;
                return ControlFlow::Continue(());
            }
        };
        self.captured += 1;
        let (data, orig_len) = with_vlan(&mut self.scratch, data, &header);
        // A socket with no recorded owner may be one that was open before the start, which
        // the kernel programs do not look up on every kernel (see NTPTAP_EARLIER).
        let earlier = (header.socket == SOCKET_UNOWNED && self.name_owners)
            .then(|| self.owners.earlier(header.direction, data))
            .flatten();
        let owner = earlier.as_ref().unwrap_or(&header.owner);
        let comm_len = owner.comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        let socket = match header.socket {
            // No output uses owners (a pcap file alone): none is looked up.
            SOCKET_UNOWNED | SOCKET_OWNED if !self.name_owners => Socket::Unknown,
            SOCKET_NONE => Socket::None,
            SOCKET_UNOWNED if earlier.is_none() => Socket::Unowned,
            SOCKET_OWNED | SOCKET_UNOWNED => {
                let netns = self.owners.netns(owner.netns_cookie, owner.pid);
                let facts = self.owners.cgroup(owner.cgroup_id);
                let names = facts.and_then(|f| f.names.as_ref());
                Socket::Owned(Process {
                    pid: owner.pid,
                    tid: owner.tid,
                    uid: owner.uid,
                    comm: &owner.comm[..comm_len],
                    cgroup_id: owner.cgroup_id,
                    cgroup: facts.map(|f| f.path.as_str()),
                    container: facts.and_then(|f| f.container.as_deref()),
                    names,
                    netns,
                })
            }
            _ => Socket::Unknown,
        };
        let frame = Frame {
            number: self.captured + self.drop_records,
            ts: self.clock.wall(header.ts_mono_ns),
            mono_ns: Some(header.ts_mono_ns),
            ifindex: Some(header.ifindex),
            drops_before: header.drops_before,
            iface: iface(&self.names, header.ifindex),
            direction: Some(Direction::from_record(header.direction)),
            orig_len,
            link: LinkType::Ethernet,
            data,
            socket,
            drop: None,
            send_before: stamp(self.latency, header.send_before),
            read_before: stamp(self.latency, header.read_before),
            queued_before: stamp(self.latency, header.queued_before),
        };
        if let Err(e) = consumer.frame(&frame) {
            return ControlFlow::Break(StopReason::from_output(e));
        }
        if self.limit.is_some_and(|l| self.captured >= l) {
            return ControlFlow::Break(StopReason::Count);
        }
        ControlFlow::Continue(())
    }
}

/// What a ring record holds.
enum Split<'r> {
    /// Shorter than its header, or than the bytes its header claims.
    Bad,
    /// A drop record: its header, then the rest (a `DropInfo`, then the IP packet).
    Drop(RecordHeader, &'r [u8]),
    /// A captured frame: its header and the bytes the kernel kept.
    Frame(RecordHeader, &'r [u8]),
}

fn split(record: &[u8]) -> Split<'_> {
    let Some(header) = record.get(..RECORD_HEADER) else {
        return Split::Bad;
    };
    // SAFETY: `header` has exactly size_of::<RecordHeader>() bytes, and RecordHeader is plain
    // integers (any bit pattern is valid); read_unaligned needs no alignment.
    let header: RecordHeader = unsafe { std::ptr::read_unaligned(header.as_ptr().cast()) };
    if header.flags & RECORD_DROP != 0 {
        return Split::Drop(header, &record[RECORD_HEADER..]);
    }
    match record.get(RECORD_HEADER..RECORD_HEADER + usize::from(header.cap_len)) {
        Some(data) => Split::Frame(header, data),
        None => Split::Bad,
    }
}

/// A frame's bytes and length on the wire, with the VLAN tag the kernel kept aside (TC)
/// put back after the MAC addresses, in `scratch`.
fn with_vlan<'a>(
    scratch: &'a mut Vec<u8>,
    data: &'a [u8],
    header: &RecordHeader,
) -> (&'a [u8], u32) {
    if header.flags & RECORD_VLAN != 0 {
        (reinsert_vlan(scratch, data, header), header.orig_len + 4)
    } else {
        (data, header.orig_len)
    }
}

/// A latency field of a record: 0 is unknown, and without `--latency` nothing is known.
fn stamp(latency: bool, ns: u32) -> Option<u32> {
    (latency && ns != 0).then_some(ns)
}

impl Drain {
    /// A drop record (after its header: a `DropInfo`, then the IP packet) to `consumer`.
    fn drop_record<C: Consumer>(
        &mut self,
        header: &RecordHeader,
        rest: &[u8],
        consumer: &mut C,
    ) -> ControlFlow<StopReason> {
        const INFO: usize = size_of::<DropInfo>();
        let (Some(info), Some(data)) = (
            rest.get(..INFO),
            rest.get(INFO..INFO + usize::from(header.cap_len)),
        ) else {
            self.bad_records += 1;
            return ControlFlow::Continue(());
        };
        // SAFETY: `info` has exactly size_of::<DropInfo>() bytes of plain integers.
        let info: DropInfo = unsafe { std::ptr::read_unaligned(info.as_ptr().cast()) };
        self.drop_records += 1;
        let reason = self
            .reasons
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |r| r.name(info.reason));
        let location = self.symbols.name(info.location);
        let frame = Frame {
            number: self.captured + self.drop_records,
            ts: self.clock.wall(header.ts_mono_ns),
            mono_ns: Some(header.ts_mono_ns),
            ifindex: (header.ifindex != 0).then_some(header.ifindex),
            drops_before: 0,
            iface: iface(&self.names, header.ifindex),
            direction: Some(Direction::from_record(header.direction)),
            orig_len: header.orig_len,
            link: LinkType::RawIp,
            data,
            socket: Socket::Unknown,
            drop: Some(KernelDrop {
                reason: &reason,
                location: &location,
            }),
            send_before: None,
            read_before: None,
            queued_before: None,
        };
        match consumer.frame(&frame) {
            Ok(_) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(StopReason::from_output(e)),
        }
    }
}

/// The name of interface `ifindex` among `names`, when it is one the capture attached.
fn iface(names: &[(u32, String)], ifindex: u32) -> Option<&str> {
    names
        .iter()
        .find(|(i, _)| *i == ifindex)
        .map(|(_, n)| n.as_str())
}

/// The frame as it was on the wire: `data` with the VLAN tag from `header` put back after the
/// two MAC addresses (what libpcap does for tags the kernel moved into metadata).
fn reinsert_vlan<'a>(scratch: &'a mut Vec<u8>, data: &[u8], header: &RecordHeader) -> &'a [u8] {
    let macs = data.len().min(12);
    scratch.clear();
    scratch.extend_from_slice(&data[..macs]);
    scratch.extend_from_slice(&header.vlan_proto.to_be_bytes());
    scratch.extend_from_slice(&header.vlan_tci.to_be_bytes());
    scratch.extend_from_slice(&data[macs..]);
    scratch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_tag_goes_back_after_the_macs() {
        let frame: Vec<u8> = (0u8..20).collect();
        let header = RecordHeader {
            vlan_proto: 0x8100,
            vlan_tci: 0x200a,
            flags: RECORD_VLAN,
            ..RecordHeader::default()
        };
        let mut scratch = Vec::new();
        let out = reinsert_vlan(&mut scratch, &frame, &header);
        assert_eq!(&out[..12], &frame[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x20, 0x0a]);
        assert_eq!(&out[16..], &frame[12..]);
    }
}
