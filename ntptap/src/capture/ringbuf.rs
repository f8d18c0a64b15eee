//! A reader of the kernel's BPF ring buffer that publishes its position once per batch.
//!
//! aya's `RingBuf` stores the consumer position after every record. The kernel reads that
//! position on every reservation (and ntptap's programs read it again for their wakeup
//! watermark), so with the reader on one CPU and the producer on another, each store moves the
//! cache line back and forth: once per packet. This reader keeps its position to itself while
//! it works through a batch and stores it every sixteenth of the ring and when
//! it has caught up, which frees the space in large steps instead of record by record.
//!
//! The layout is the kernel's (`kernel/bpf/ringbuf.c`, and libbpf's `ringbuf.c` reads it the
//! same way): the first page holds the consumer position, the only part user space may write;
//! the second the producer position; then the data pages, mapped twice in a row so that a
//! record that wraps around the end reads as one piece. Each record starts with an 8-byte
//! header, a 32-bit length with a busy bit (reserved, not yet committed) and a discard bit,
//! and records are 8-byte aligned.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    ops::ControlFlow,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    sync::atomic::{AtomicU32, AtomicUsize, Ordering},
};

use anyhow::{Context as _, bail};
use aya::maps::{ArrayOfMaps, Map, MapData};
use memmap2::{MmapOptions, MmapRaw};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use ntptap_common::SHARD_SLOTS;

/// The record header's bits (`BPF_RINGBUF_BUSY_BIT`, `BPF_RINGBUF_DISCARD_BIT`).
const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
/// `BPF_RINGBUF_HDR_SZ`.
const RINGBUF_HDR_SZ: usize = 8;

/// The consumer side of a `BPF_MAP_TYPE_RINGBUF` map.
pub struct RingReader {
    map: MapData,
    /// The consumer page (read-write).
    consumer: MmapRaw,
    /// The producer page and the data pages twice (read-only).
    producer_map: MmapRaw,
    /// The producer's position when last read.
    producer: usize,
    page: usize,
    size: usize,
    /// Where this reader is.
    pos: usize,
    /// What the kernel was last told.
    published: usize,
    publish_every: usize,
}

impl RingReader {
    /// Map the ring buffer `map` for reading.
    pub fn new(map: Map) -> anyhow::Result<Self> {
        let Map::RingBuf(map) = map else {
            bail!("the ring buffer map is not a BPF ring buffer");
        };
        let size = usize::try_from(
            map.info()
                .context("cannot read the ring buffer's size")?
                .max_entries(),
        )?;
        if !size.is_power_of_two() {
            bail!("the kernel gave a ring buffer of {size} bytes, not a power of two");
        }
        let page = super::config::page_size() as usize;
        let fd = map.fd().as_fd().as_raw_fd();
        let consumer = MmapOptions::new()
            .len(page)
            .map_raw(fd)
            .context("cannot map the ring buffer's consumer page")?;
        let producer = MmapOptions::new()
            .offset(page as u64)
            .len(page + 2 * size)
            .map_raw_read_only(fd)
            .context("cannot map the ring buffer's data pages")?;
        let mut reader = Self {
            map,
            consumer,
            producer_map: producer,
            producer: 0,
            page,
            size,
            pos: 0,
            published: 0,
            publish_every: (size / 16).max(RINGBUF_HDR_SZ),
        };
        reader.pos = reader.consumer_pos().load(Ordering::Acquire);
        reader.published = reader.pos;
        reader.producer = reader.pos;
        Ok(reader)
    }

    #[expect(
        clippy::cast_ptr_alignment,
        reason = "the mappings are page aligned and the kernel aligns what is in them"
    )]
    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: the consumer page is mapped read-write for as long as `self`, is page
        // aligned, and its first word is the kernel's `unsigned long consumer_pos`.
        unsafe { &*self.consumer.as_ptr().cast::<AtomicUsize>() }
    }

    #[expect(
        clippy::cast_ptr_alignment,
        reason = "the mappings are page aligned and the kernel aligns what is in them"
    )]
    fn producer_pos(&self) -> usize {
        // SAFETY: as above, for the producer page's `producer_pos`, which only the kernel
        // writes; the acquire pairs with its release after a record is committed.
        unsafe { &*self.producer_map.as_ptr().cast::<AtomicUsize>() }.load(Ordering::Acquire)
    }

    /// Bytes the kernel has committed past what this reader has taken.
    fn unread(&self) -> usize {
        self.producer_pos().wrapping_sub(self.pos)
    }

    fn publish(&mut self) {
        if self.published != self.pos {
            self.consumer_pos().store(self.pos, Ordering::Release);
            self.published = self.pos;
        }
    }

    #[expect(
        clippy::cast_ptr_alignment,
        reason = "the mappings are page aligned and the kernel aligns what is in them"
    )]
    /// The next committed record, left in the ring; `None` when the ring is empty or the next
    /// record is still being written. Discarded records are skipped.
    fn peek(&mut self) -> Option<&[u8]> {
        loop {
            if self.pos == self.producer {
                self.producer = self.producer_pos();
                if self.pos == self.producer {
                    return None;
                }
            }
            let at = self.page + (self.pos & (self.size - 1));
            // SAFETY: `at` is a data offset inside the first copy of the data pages, and
            // records are 8-byte aligned, so the header's length word is aligned too; the
            // acquire pairs with the kernel's release when it commits the record.
            let word = unsafe { &*self.producer_map.as_ptr().add(at).cast::<AtomicU32>() }
                .load(Ordering::Acquire);
            if word & BUSY != 0 {
                return None;
            }
            let len = (word & !(BUSY | DISCARD)) as usize;
            if len > self.size - RINGBUF_HDR_SZ {
                // The kernel never writes this; stop rather than read past the mapping.
                tracing::error!(len, "ring buffer record longer than the ring; not read");
                return None;
            }
            if word & DISCARD != 0 {
                self.consume(len);
                continue;
            }
            // SAFETY: the record's data starts within the first copy of the data pages and
            // is at most the ring's size long, so it ends within the second copy. The kernel
            // does not reuse it before the position passes it and is published, which needs
            // `&mut self`, so not while the slice is borrowed.
            return Some(unsafe {
                std::slice::from_raw_parts(self.producer_map.as_ptr().add(at + RINGBUF_HDR_SZ), len)
            });
        }
    }

    /// Step past the record of `len` data bytes at the position; the position is published
    /// every sixteenth of the ring.
    fn consume(&mut self, len: usize) {
        self.pos += (RINGBUF_HDR_SZ + len).next_multiple_of(RINGBUF_HDR_SZ);
        if self.pos - self.published >= self.publish_every {
            self.publish();
        }
    }

    /// Hand each committed record, in order, to `f` until the ring is empty, the next record
    /// is still being written, or `f` breaks. A record given to `f` is consumed either way.
    /// The position is published before this returns.
    pub fn read<B>(&mut self, mut f: impl FnMut(&[u8]) -> ControlFlow<B>) -> Option<B> {
        let out = loop {
            let Some(record) = self.peek() else {
                break None;
            };
            let (len, flow) = (record.len(), f(record));
            self.consume(len);
            if let ControlFlow::Break(b) = flow {
                break Some(b);
            }
        };
        self.publish();
        out
    }
}

impl AsFd for RingReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.map.fd().as_fd()
    }
}

impl AsRawFd for RingReader {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// One ring buffer per CPU, read as one.
///
/// The kernel programs write to the ring of the CPU they run on (`NTPTAP_SHARDS`), so CPUs that
/// capture at the same time never wait on each other's ring lock. Records come out oldest first
/// across the rings, by the timestamp each record starts with. A read takes only the records
/// stamped before it began: a ring that was empty then may still receive older ones than a
/// record stamped since in another (CI saw request 203 written before 200-202, sent from
/// another CPU, when a read kept taking one ring's new records); those wait for the next read.
pub struct Rings {
    /// The kernel's ring array, kept open: the programs reach the rings through it.
    _slots: ArrayOfMaps<MapData>,
    readers: Vec<RingReader>,
    /// Readable when any ring is: what the event loop waits on.
    epoll: Epoll,
    /// The head of each ring that has one, oldest first (kept to spare an allocation a read).
    heads: BinaryHeap<Reverse<(u64, usize)>>,
    /// Size of each ring.
    bytes: u32,
}

impl Rings {
    /// Create `count` rings (at most [`SHARD_SLOTS`]) of `bytes` each, in the first slots of
    /// `slots`, the programs' ring array.
    pub fn new(slots: Map, count: usize, bytes: u32) -> anyhow::Result<Self> {
        let mut slots: ArrayOfMaps<MapData> =
            ArrayOfMaps::try_from(slots).context("the ring array is not an array of maps")?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .context("cannot create an epoll set for the ring buffers")?;
        let mut readers = Vec::with_capacity(count);
        for i in 0..count.clamp(1, SHARD_SLOTS as usize) {
            let def = aya_obj::Map::new_from_params(
                aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF as u32,
                0,
                0,
                bytes,
                0,
            );
            let ring = MapData::create(def, &format!("ntptap_ring{i}"), None)
                .with_context(|| format!("cannot create ring buffer {i} of {bytes} bytes"))?;
            let reader = RingReader::new(Map::RingBuf(ring))?;
            epoll
                .add(&reader, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
                .context("cannot watch a ring buffer")?;
            readers.push(reader);
        }
        for (slot, reader) in (0u32..).zip(&readers) {
            slots
                .set(slot, &reader.map, 0)
                .with_context(|| format!("cannot put a ring buffer in slot {slot}"))?;
        }
        Ok(Self {
            _slots: slots,
            readers,
            epoll,
            heads: BinaryHeap::new(),
            bytes,
        })
    }

    /// How many rings.
    #[must_use]
    pub fn len(&self) -> usize {
        self.readers.len()
    }

    /// Size of each ring, in bytes.
    #[must_use]
    pub fn ring_bytes(&self) -> u32 {
        self.bytes
    }

    /// Always false: there is at least one ring.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.readers.is_empty()
    }

    /// [`RingReader::read`] over every ring, oldest record first. A ring found empty is not
    /// looked at again until the next read, which bounds a read.
    pub fn read<B>(&mut self, mut f: impl FnMut(&[u8]) -> ControlFlow<B>) -> Option<B> {
        if let [only] = self.readers.as_mut_slice() {
            return only.read(f);
        }
        // Records start with their timestamp (`RecordHeader::ts_mono_ns`).
        let key = |record: &[u8]| {
            record
                .first_chunk::<8>()
                .map_or(0, |b| u64::from_ne_bytes(*b))
        };
        // CLOCK_MONOTONIC, the programs' `bpf_ktime_get_ns()`.
        let began = super::clock::monotonic_ns();
        self.heads.clear();
        for (i, reader) in self.readers.iter_mut().enumerate() {
            if let Some(record) = reader.peek()
                && key(record) <= began
            {
                self.heads.push(Reverse((key(record), i)));
            }
        }
        let out = 'merge: loop {
            let Some(Reverse((_, i))) = self.heads.pop() else {
                break None;
            };
            // This ring's records go out while they are older than every other ring's head:
            // with traffic on one CPU, a plain loop over its ring.
            let limit = self.heads.peek().map_or(began, |Reverse((k, _))| *k);
            let reader = &mut self.readers[i];
            while let Some(record) = reader.peek() {
                let at = key(record);
                if at > limit {
                    if at <= began {
                        self.heads.push(Reverse((at, i)));
                    }
                    break;
                }
                let (len, flow) = (record.len(), f(record));
                reader.consume(len);
                if let ControlFlow::Break(b) = flow {
                    break 'merge Some(b);
                }
            }
        };
        for reader in &mut self.readers {
            reader.publish();
        }
        // The rings that woke the set are read: let it sleep until one wakes it again.
        let mut events = [EpollEvent::empty(); 16];
        while self
            .epoll
            .wait(&mut events, EpollTimeout::ZERO)
            .is_ok_and(|n| n == events.len())
        {}
        out
    }
}

impl Rings {
    /// Whether a ring still holds at least the kernel's wake-up mark ([`WAKEUP_DIVISOR`]):
    /// records that came during a read that took long. The kernel wakes the reader only as a
    /// ring crosses the mark, so a reader that went back to sleep now would sleep until its
    /// timer, while the ring fills: read again instead.
    #[must_use]
    pub fn behind(&self) -> bool {
        let mark = (self.bytes / WAKEUP_DIVISOR) as usize;
        self.readers.iter().any(|r| r.unread() >= mark)
    }
}

/// The kernel wakes the reader as a ring passes this fraction of its size (see
/// `Config::wakeup_bytes`).
pub const WAKEUP_DIVISOR: u32 = 4;

impl AsRawFd for Rings {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.0.as_raw_fd()
    }
}
