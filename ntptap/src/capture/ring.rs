//! Draining the ring buffer: records to frames, frames to the sink.

use std::{collections::HashMap, io, mem::size_of, ops::ControlFlow};

use ntptap_common::{RECORD_VLAN, RecordHeader};

use super::{StopReason, clock::WallClock, ringbuf::Rings};
use crate::{
    frame::{Direction, Frame, LinkType},
    output::Sink,
};

const HEADER: usize = size_of::<RecordHeader>();

pub(super) struct Drain<'a> {
    /// Interface names by index: a handful, so a scan beats hashing every frame's index.
    names: Vec<(u32, &'a str)>,
    limit: Option<u64>,
    pub(super) clock: WallClock,
    pub(super) captured: u64,
    pub(super) bad_records: u64,
    /// Room to rebuild a frame whose VLAN tag the kernel kept aside.
    scratch: Vec<u8>,
}

impl<'a> Drain<'a> {
    pub(super) fn new(names: &'a HashMap<u32, String>, limit: Option<u64>) -> Self {
        Self {
            names: names.iter().map(|(i, n)| (*i, n.as_str())).collect(),
            limit,
            clock: WallClock::new(),
            captured: 0,
            bad_records: 0,
            scratch: Vec::with_capacity(ntptap_common::MAX_DATA + 4),
        }
    }

    /// Hand every record in the ring to `sink`. `Ok(Some(_))` when the capture must stop.
    pub(super) fn drain<S: Sink>(
        &mut self,
        ring: &mut Rings,
        sink: &mut S,
    ) -> io::Result<Option<StopReason>> {
        match ring.read(|record| self.record(record, sink)) {
            None => Ok(None),
            Some(Ok(reason)) => Ok(Some(reason)),
            Some(Err(e)) => Err(e),
        }
    }

    /// One record to `sink`; `Break` when the capture must stop.
    fn record<S: Sink>(
        &mut self,
        record: &[u8],
        sink: &mut S,
    ) -> ControlFlow<io::Result<StopReason>> {
        let Some(header) = record.get(..HEADER) else {
            self.bad_records += 1;
            return ControlFlow::Continue(());
        };
        // SAFETY: `header` has exactly size_of::<RecordHeader>() bytes, and RecordHeader
        // is plain integers (any bit pattern is valid); read_unaligned needs no alignment.
        let header: RecordHeader = unsafe { std::ptr::read_unaligned(header.as_ptr().cast()) };
        let Some(data) = record.get(HEADER..HEADER + usize::from(header.cap_len)) else {
            self.bad_records += 1;
            return ControlFlow::Continue(());
        };
        self.captured += 1;
        let (data, orig_len) = if header.flags & RECORD_VLAN != 0 {
            (
                reinsert_vlan(&mut self.scratch, data, &header),
                header.orig_len + 4,
            )
        } else {
            (data, header.orig_len)
        };
        let frame = Frame {
            number: self.captured,
            ts: self.clock.wall(header.ts_mono_ns),
            mono_ns: Some(header.ts_mono_ns),
            ifindex: Some(header.ifindex),
            drops_before: header.drops_before,
            iface: self
                .names
                .iter()
                .find(|(i, _)| *i == header.ifindex)
                .map(|(_, n)| *n),
            direction: Some(Direction::from_record(header.direction)),
            orig_len,
            link: LinkType::Ethernet,
            data,
        };
        match sink.frame(&frame) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                return ControlFlow::Break(Ok(StopReason::OutputClosed));
            }
            Err(e) => return ControlFlow::Break(Err(e)),
        }
        if self.limit.is_some_and(|l| self.captured >= l) {
            return ControlFlow::Break(Ok(StopReason::Count));
        }
        ControlFlow::Continue(())
    }
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
