//! Draining the ring buffer: records to frames, frames to the sink.

use std::{collections::HashMap, io, mem::size_of};

use aya::maps::{MapData, RingBuf};
use ntptap_common::RecordHeader;

use super::{StopReason, clock::WallClock};
use crate::{
    frame::{Direction, Frame, LinkType},
    output::Sink,
};

const HEADER: usize = size_of::<RecordHeader>();

pub(super) struct Drain<'a> {
    names: &'a HashMap<u32, String>,
    limit: Option<u64>,
    pub(super) clock: WallClock,
    pub(super) captured: u64,
    pub(super) bad_records: u64,
}

impl<'a> Drain<'a> {
    pub(super) fn new(names: &'a HashMap<u32, String>, limit: Option<u64>) -> Self {
        Self {
            names,
            limit,
            clock: WallClock::new(),
            captured: 0,
            bad_records: 0,
        }
    }

    /// Hand every record in the ring to `sink`. `Ok(Some(_))` when the capture must stop.
    pub(super) fn drain<S: Sink>(
        &mut self,
        ring: &mut RingBuf<MapData>,
        sink: &mut S,
    ) -> io::Result<Option<StopReason>> {
        while let Some(item) = ring.next() {
            let Some(header) = item.get(..HEADER) else {
                self.bad_records += 1;
                continue;
            };
            // SAFETY: `header` has exactly size_of::<RecordHeader>() bytes, and RecordHeader
            // is plain integers (any bit pattern is valid); read_unaligned needs no alignment.
            let header: RecordHeader = unsafe { std::ptr::read_unaligned(header.as_ptr().cast()) };
            let Some(data) = item.get(HEADER..HEADER + usize::from(header.cap_len)) else {
                self.bad_records += 1;
                continue;
            };
            self.captured += 1;
            let frame = Frame {
                number: self.captured,
                ts: self.clock.wall(header.ts_mono_ns),
                mono_ns: Some(header.ts_mono_ns),
                iface: self.names.get(&header.ifindex).map(String::as_str),
                direction: Some(Direction::from_record(header.direction)),
                orig_len: header.orig_len,
                link: LinkType::Ethernet,
                data,
            };
            match sink.frame(&frame) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    return Ok(Some(StopReason::OutputClosed));
                }
                Err(e) => return Err(e),
            }
            if self.limit.is_some_and(|l| self.captured >= l) {
                return Ok(Some(StopReason::Count));
            }
        }
        Ok(None)
    }
}
