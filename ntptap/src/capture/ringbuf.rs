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
    ops::ControlFlow,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    sync::atomic::{AtomicU32, AtomicUsize, Ordering},
};

use anyhow::{Context as _, anyhow, bail};
use aya::maps::{Map, MapData};
use memmap2::{MmapOptions, MmapRaw};

/// The record header's bits (`BPF_RINGBUF_BUSY_BIT`, `BPF_RINGBUF_DISCARD_BIT`).
const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
/// `BPF_RINGBUF_HDR_SZ`.
const HEADER: usize = 8;

/// The consumer side of a `BPF_MAP_TYPE_RINGBUF` map.
pub struct RingReader {
    map: MapData,
    /// The consumer page (read-write).
    consumer: MmapRaw,
    /// The producer page and the data pages twice (read-only).
    producer: MmapRaw,
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
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| usize::try_from(p).ok())
            .ok_or_else(|| anyhow!("cannot read the page size"))?;
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
            producer,
            page,
            size,
            pos: 0,
            published: 0,
            publish_every: (size / 16).max(HEADER),
        };
        reader.pos = reader.consumer_pos().load(Ordering::Acquire);
        reader.published = reader.pos;
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
        unsafe { &*self.producer.as_ptr().cast::<AtomicUsize>() }.load(Ordering::Acquire)
    }

    fn publish(&mut self) {
        if self.published != self.pos {
            self.consumer_pos().store(self.pos, Ordering::Release);
            self.published = self.pos;
        }
    }

    /// Hand each committed record, in order, to `f` until the ring is empty, the next record
    /// is still being written, or `f` breaks. A record given to `f` is consumed either way.
    /// The position is published before this returns.
    #[expect(
        clippy::cast_ptr_alignment,
        reason = "the mappings are page aligned and the kernel aligns what is in them"
    )]
    pub fn read<B>(&mut self, mut f: impl FnMut(&[u8]) -> ControlFlow<B>) -> Option<B> {
        let out = 'batch: loop {
            let producer = self.producer_pos();
            if self.pos == producer {
                break None;
            }
            while self.pos < producer {
                let at = self.page + (self.pos & (self.size - 1));
                // SAFETY: `at` is a data offset inside the first copy of the data pages, and
                // records are 8-byte aligned, so the header's length word is aligned too; the
                // acquire pairs with the kernel's release when it commits the record.
                let word = unsafe { &*self.producer.as_ptr().add(at).cast::<AtomicU32>() }
                    .load(Ordering::Acquire);
                if word & BUSY != 0 {
                    break 'batch None;
                }
                let len = (word & !(BUSY | DISCARD)) as usize;
                if len > self.size - HEADER {
                    // The kernel never writes this; stop rather than read past the mapping.
                    tracing::error!(len, "ring buffer record longer than the ring; not read");
                    break 'batch None;
                }
                self.pos += (HEADER + len).next_multiple_of(HEADER);
                if word & DISCARD == 0 {
                    // SAFETY: the record's data starts within the first copy of the data
                    // pages and is at most the ring's size long, so it ends within the second
                    // copy. The kernel does not reuse it until the position is published,
                    // which happens after `f` returns, and `f` cannot keep the slice.
                    let data = unsafe {
                        std::slice::from_raw_parts(self.producer.as_ptr().add(at + HEADER), len)
                    };
                    if let ControlFlow::Break(b) = f(data) {
                        break 'batch Some(b);
                    }
                }
                if self.pos - self.published >= self.publish_every {
                    self.publish();
                }
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
