//! Capture files that stay readable when the disk fails them.
//!
//! A [`FileWriter`] buffers what the pcap or pcapng writer produces and knows how many bytes
//! reached the file; a [`Guarded`] sink around that writer notes where each frame ends. When a
//! write fails (the disk is full, the quota is reached, the file system went read-only), the
//! file is cut back to the end of the last frame that reached it whole, so it is valid up to
//! there, and every frame that did not make it is counted ([`super::super::sink::Sink::unwritten`]).

use std::{
    cell::RefCell,
    fs::File,
    io::{self, Write},
    path::PathBuf,
    rc::Rc,
    time::Duration,
};

use super::super::{decoded::Decoded, sink::Control, sink::Sink};
use crate::frame::PcapRecords;

/// What reached the file, shared between the writer and the sink that marks frame ends.
#[derive(Debug, Default)]
pub struct Journal {
    /// Bytes handed to the writer.
    handed: u64,
    /// Bytes the file accepted.
    on_disk: u64,
    /// Where the file header ends.
    header_end: u64,
    /// Ends of frames not yet wholly on disk, ascending.
    pending: Vec<u64>,
    /// Frames wholly on disk.
    kept: u64,
    /// Where the last frame wholly on disk ends (the header's end before the first).
    last_whole: u64,
}

impl Journal {
    /// Bytes handed to the writer so far (the file's size once flushed).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.handed
    }

    fn settle(&mut self) {
        // In bulk: a write retires thousands of frames.
        let whole = self.pending.partition_point(|&end| end <= self.on_disk);
        if whole > 0 {
            self.last_whole = self.pending[whole - 1];
            self.kept += whole as u64;
            self.pending.drain(..whole);
        }
    }
}

/// A buffered writer to a capture file that keeps the [`Journal`].
pub struct FileWriter<W = File> {
    file: W,
    buf: Vec<u8>,
    capacity: usize,
    journal: Rc<RefCell<Journal>>,
    /// Set by [`FileWriter::direct`]: writes go past the page cache.
    direct: Option<Direct>,
}

/// O_DIRECT's unit: buffer addresses, file offsets and lengths are multiples of it. 4 KiB
/// covers the logical block size of the disks and file systems in use.
const ALIGN: usize = 4096;
/// Room past `capacity` for the write that crosses it (a record, a pcapng block).
const SLACK: usize = 256 << 10;
/// A transparent huge page on x86-64 and most arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// Positioned writes that bypass the page cache (O_DIRECT): the kernel moves the buffer to the
/// disk without copying it into cache pages it must first allocate and later write back. That
/// copy and allocation were 29 % of the capture's CPU under a flood (`perf`), and the cache
/// pages would crowd out the host's own. The buffer's data starts at `start`, aligned; the
/// aligned part of the buffer is written, the rest waits for more. A flush writes the last,
/// partial block padded with zeros and cuts the file back to its true length; the next write
/// rewrites that block whole.
struct Direct {
    /// A handle on the same file, for positioned writes and `set_len`.
    file: File,
    /// Where `buf[start]` belongs in the file.
    offset: u64,
    start: usize,
    /// The partial block last written at `offset` by a flush, so an idle flush writes nothing.
    flushed: usize,
    /// O_DIRECT is set. Off (after the file system refused it, or a write that could not keep
    /// the alignment), the same positioned writes go through the page cache.
    on: bool,
}

impl Direct {
    fn set(&mut self, on: bool) -> io::Result<()> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let flags = OFlag::from_bits_retain(fcntl(&self.file, FcntlArg::F_GETFL)?);
        let flags = if on {
            flags | OFlag::O_DIRECT
        } else {
            flags - OFlag::O_DIRECT
        };
        fcntl(&self.file, FcntlArg::F_SETFL(flags))?;
        self.on = on;
        Ok(())
    }
}

impl<W: Write> FileWriter<W> {
    /// Buffer up to `capacity` bytes (0: every write goes straight to the file, as `-U`).
    #[must_use]
    pub fn new(file: W, capacity: usize) -> Self {
        Self {
            file,
            buf: Vec::with_capacity(capacity),
            capacity,
            journal: Rc::new(RefCell::new(Journal::default())),
            direct: None,
        }
    }

    /// Write past the page cache (O_DIRECT) through `handle`, another handle on the file this
    /// writer was given, when the file is a regular, empty one whose file system allows it and
    /// the writer buffers. Otherwise nothing changes. Call before anything is written.
    #[must_use]
    pub fn direct(mut self, handle: File) -> Self {
        let regular_empty = handle.metadata().is_ok_and(|m| m.is_file() && m.len() == 0);
        if self.capacity < ALIGN || !regular_empty || !self.buf.is_empty() {
            return self;
        }
        let mut direct = Direct {
            file: handle,
            offset: 0,
            start: 0,
            flushed: 0,
            on: false,
        };
        if let Err(e) = direct.set(true) {
            tracing::debug!(error = %e, "no O_DIRECT here; writing through the page cache");
            return self;
        }
        if self.capacity + SLACK <= HUGE_PAGE {
            // One transparent huge page for the data, where the system allows them: the
            // kernel pins the buffer's pages for every O_DIRECT write, and pins one huge page
            // for a fraction of the cost of 256 small ones (5.5 % of the capture's CPU under
            // a flood, `perf`). Zeroed memory comes fresh from the kernel, untouched, so only
            // the huge page becomes resident; the bytes before it are never used.
            self.buf = vec![0; 2 * HUGE_PAGE];
            direct.start = self.buf.as_ptr().align_offset(HUGE_PAGE);
            self.buf.truncate(direct.start);
            // SAFETY: the range lies inside the buffer's allocation, and the advice only
            // changes how the kernel backs those pages.
            let advised = unsafe {
                libc::madvise(
                    self.buf.as_mut_ptr().add(direct.start).cast(),
                    HUGE_PAGE,
                    libc::MADV_HUGEPAGE,
                )
            };
            if advised != 0 {
                tracing::debug!(
                    error = %io::Error::last_os_error(),
                    "no huge page for the write buffer"
                );
            }
        } else {
            self.buf = Vec::with_capacity(self.capacity + ALIGN + SLACK);
            direct.start = self.buf.as_ptr().align_offset(ALIGN);
            self.buf.resize(direct.start, 0);
        }
        self.direct = Some(direct);
        self
    }

    /// The journal, to give to [`Guarded::new`].
    #[must_use]
    pub fn journal(&self) -> Rc<RefCell<Journal>> {
        Rc::clone(&self.journal)
    }

    /// Whether writes bypass the page cache now.
    #[must_use]
    pub fn is_direct(&self) -> bool {
        self.direct.as_ref().is_some_and(|d| d.on)
    }

    /// Bytes waiting in the buffer.
    fn pending(&self) -> usize {
        self.buf.len() - self.direct.as_ref().map_or(0, |d| d.start)
    }

    fn write_out(&mut self, all: bool) -> io::Result<()> {
        if self.direct.is_some() {
            return self.write_out_direct(all);
        }
        let mut done = 0;
        let result = loop {
            if done == self.buf.len() {
                break Ok(());
            }
            match self.file.write(&self.buf[done..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    done += n;
                    self.journal.borrow_mut().on_disk += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..done);
        self.journal.borrow_mut().settle();
        result
    }

    /// [`FileWriter::write_out`] for [`Direct`]: the aligned part of the buffer, and with
    /// `all` the partial block after it too.
    fn write_out_direct(&mut self, all: bool) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let Some(d) = self.direct.as_mut() else {
            return Ok(());
        };
        let mut done = 0;
        let result = loop {
            let data = &self.buf[d.start..];
            let whole = if d.on {
                data.len() / ALIGN * ALIGN
            } else {
                data.len()
            };
            if done >= whole {
                break Ok(());
            }
            match d.file.write_at(&data[done..whole], d.offset + done as u64) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The file system takes O_DIRECT at open but not for this write, or a short
                // write left the offset unaligned: carry on through the page cache.
                Err(e) if d.on && e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!("O_DIRECT write refused; writing through the page cache");
                    if let Err(e) = d.set(false) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e),
            }
            if d.on && done % ALIGN != 0 && done < whole {
                // A short write: what is left no longer starts on a block.
                if let Err(e) = d.set(false) {
                    break Err(e);
                }
            }
        };
        d.offset += done as u64;
        if done > 0 {
            d.flushed = 0;
        }
        self.buf.drain(d.start..d.start + done);
        let mut end = d.offset;
        let tail = self.buf.len() - d.start;
        let result = match result {
            Ok(()) if all && tail > 0 && tail == d.flushed => {
                end += tail as u64;
                Ok(())
            }
            Ok(()) if all && tail > 0 => {
                // The last partial block, padded to a whole one; then the true length.
                let padded = if d.on {
                    tail.next_multiple_of(ALIGN)
                } else {
                    tail
                };
                self.buf.resize(d.start + padded, 0);
                let written = d
                    .file
                    .write_all_at(&self.buf[d.start..], d.offset)
                    .and_then(|()| d.file.set_len(d.offset + tail as u64));
                self.buf.truncate(d.start + tail);
                if written.is_ok() {
                    end += tail as u64;
                    d.flushed = tail;
                }
                written
            }
            other => other,
        };
        let mut j = self.journal.borrow_mut();
        j.on_disk = j.on_disk.max(end);
        j.settle();
        result
    }
}

impl<W: Write> FileWriter<W> {
    /// With O_DIRECT, make sure `len` more bytes fit without the buffer moving off its
    /// alignment: write what is there, and if they still would not fit, carry on through the
    /// page cache.
    fn make_room(&mut self, len: usize) -> io::Result<()> {
        if self.is_direct() && self.buf.len() + len > self.buf.capacity() {
            self.write_out(false)?;
            if let Some(d) = &mut self.direct
                && self.buf.len() + len > self.buf.capacity()
            {
                d.set(false)?;
            }
        }
        Ok(())
    }
}

impl<W: Write> Write for FileWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(data)])
    }

    /// Takes every slice, as one write: the pcap writer hands over a record's header and
    /// data together.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        self.make_room(len)?;
        for b in bufs {
            self.buf.extend_from_slice(b);
        }
        self.journal.borrow_mut().handed += len as u64;
        if self.pending() >= self.capacity.max(1) {
            self.write_out(false)?;
        }
        Ok(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out(true)?;
        self.file.flush()
    }
}

/// A file sink that, when its file fails, cuts it back to the last whole frame and counts
/// the frames that did not reach it.
pub struct Guarded {
    inner: Box<dyn Sink>,
    journal: Rc<RefCell<Journal>>,
    file: File,
    path: PathBuf,
    /// Frames given to `frame` (whether or not they were written).
    taken: u64,
    /// Set once the file failed: frames given but not in the file.
    lost: Option<u64>,
}

impl Guarded {
    /// `inner` writes into the [`FileWriter`] whose journal is `journal`, on `file` (a handle
    /// to the same file, used to cut it back) at `path` (for messages). The file header must
    /// already be handed to the writer.
    pub fn new(
        inner: Box<dyn Sink>,
        journal: Rc<RefCell<Journal>>,
        file: File,
        path: PathBuf,
    ) -> Self {
        {
            let mut j = journal.borrow_mut();
            j.header_end = j.handed;
            j.last_whole = j.handed;
        }
        Self {
            inner,
            journal,
            file,
            path,
            taken: 0,
            lost: None,
        }
    }

    /// Cut the file back to its last whole frame (to nothing if even the header did not fit),
    /// count what is lost, and say what failed.
    fn fail(&mut self, err: &io::Error) -> io::Error {
        let kept = {
            let mut j = self.journal.borrow_mut();
            j.settle();
            let cut = if j.on_disk >= j.header_end {
                j.last_whole
            } else {
                0
            };
            let regular = self.file.metadata().is_ok_and(|m| m.is_file());
            if let Err(e) = if regular {
                self.file.set_len(cut)
            } else {
                Ok(())
            } {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot cut the file back to its last whole frame");
            }
            j.kept
        };
        self.lost = Some(self.taken.saturating_sub(kept));
        io::Error::new(
            err.kind(),
            format!("cannot write {}: {err}", self.path.display()),
        )
    }
}

impl Guarded {
    /// One frame written by `write` into the inner sink: counted, refused once the file
    /// failed, and where it ends noted in the journal (`settle` retires it once the file
    /// has it all); a failure cuts the file back.
    fn write_frame<T>(
        &mut self,
        write: impl FnOnce(&mut Box<dyn Sink>) -> io::Result<T>,
    ) -> io::Result<T> {
        self.taken += 1;
        if let Some(lost) = &mut self.lost {
            *lost += 1;
            return Err(io::Error::other(format!(
                "{} failed earlier",
                self.path.display()
            )));
        }
        match write(&mut self.inner) {
            Ok(written) => {
                let mut j = self.journal.borrow_mut();
                let end = j.handed;
                j.pending.push(end);
                Ok(written)
            }
            Err(e) => Err(self.fail(&e)),
        }
    }
}

impl Sink for Guarded {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        self.write_frame(|inner| inner.frame(packet))
    }

    fn control(&mut self, control: &Control<'_>) -> io::Result<()> {
        // A failed file has said so once; what follows has nowhere to go.
        if self.lost.is_some() {
            return Ok(());
        }
        self.inner.control(control).map_err(|e| self.fail(&e))
    }

    fn unwritten(&self) -> u64 {
        self.lost.unwrap_or(0)
    }

    fn pcap_records(&mut self) -> Option<&mut dyn PcapRecords> {
        if self.inner.pcap_records().is_some() {
            Some(self)
        } else {
            None
        }
    }
}

/// The same guard around a pcap file's records (see [`Sink::pcap_records`]).
impl PcapRecords for Guarded {
    fn record(&mut self, ts: Duration, data: &[u8], orig_len: u32) -> io::Result<()> {
        self.write_frame(|inner| match inner.pcap_records() {
            Some(records) => records.record(ts, data, orig_len),
            None => Err(io::Error::other("the capture file's writer changed")),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pcap_file::pcap::PcapReader;

    use super::*;
    use crate::output::SinkExt as _;
    use crate::output::pcap::PcapSink;
    use crate::{frame::Frame, output::CloseStats};

    /// A disk with `room` bytes left: a write past it is cut short, the next fails (ENOSPC).
    struct Full {
        file: File,
        room: u64,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.room as usize);
            self.file.write_all(&buf[..n])?;
            self.room -= n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const HEADER: u64 = 24;
    const RECORD: u64 = 16 + 100;

    /// Write `frames` frames of 100 bytes to a disk with `room` bytes, through a buffer of
    /// `capacity`, as frames or (`records`) as a lone pcap file's records; returns what was
    /// lost, and the frames the file holds.
    fn run_via(
        records: bool,
        room: u64,
        capacity: usize,
        frames: u64,
    ) -> (u64, Option<usize>, io::Result<()>) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let full = Full {
            file: tmp.reopen().unwrap(),
            room,
        };
        let writer = FileWriter::new(full, capacity);
        let journal = writer.journal();
        let header = PcapSink::new(writer, 65535).map(|s| Box::new(s) as Box<dyn Sink>);
        let result = (|| -> io::Result<u64> {
            let mut sink = Guarded::new(header?, journal, tmp.reopen()?, tmp.path().into());
            let data = [0x5au8; 100];
            let ts = Duration::new(1_700_000_000, 0);
            let outcome = (1..=frames).try_for_each(|n| {
                if records {
                    let out = sink.pcap_records().expect("a pcap file takes records");
                    out.record(ts, &data, 100)
                } else {
                    sink.take(&Frame::test(n, ts, &data)).map(drop)
                }
            });
            let outcome = outcome.and_then(|()| sink.close_now(&CloseStats::default()));
            let lost = sink.unwritten();
            outcome
                .map(|()| lost)
                .or_else(|e| if lost > 0 { Ok(lost) } else { Err(e) })
        })();
        let bytes = std::fs::read(tmp.path()).unwrap();
        let held = PcapReader::new(&bytes[..]).ok().map(|mut r| {
            let mut n = 0;
            while let Some(p) = r.next_raw_packet() {
                p.expect("the file is valid to its last record");
                n += 1;
            }
            n
        });
        match result {
            Ok(lost) => (lost, held, Ok(())),
            Err(e) => (0, held, Err(e)),
        }
    }

    /// [`run_via`] both ways, which must agree.
    fn run(room: u64, capacity: usize, frames: u64) -> (u64, Option<usize>, io::Result<()>) {
        let by_frame = run_via(false, room, capacity, frames);
        let by_record = run_via(true, room, capacity, frames);
        assert_eq!(
            (by_frame.0, by_frame.1, by_frame.2.is_ok()),
            (by_record.0, by_record.1, by_record.2.is_ok()),
            "frames and records fare alike on a disk with {room} bytes"
        );
        by_frame
    }

    #[test]
    fn a_full_disk_leaves_whole_frames_and_counts_the_rest() {
        // Room for the header, two records and half of a third; written through.
        let room = HEADER + 2 * RECORD + RECORD / 2;
        assert_eq!(
            run(room, 0, 5).0,
            1,
            "the third frame is lost, and the run stops"
        );
        assert_eq!(run(room, 0, 5).1, Some(2));
        // Buffered: all five wait in the buffer; the flush at close meets the full disk.
        let (lost, held, _) = run(room, 1 << 20, 5);
        assert_eq!((lost, held), (3, Some(2)));
        // Room for exactly three records: nothing to cut.
        let (lost, held, _) = run(HEADER + 3 * RECORD, 1 << 20, 5);
        assert_eq!((lost, held), (2, Some(3)));
        // Room for everything.
        let (lost, held, result) = run(HEADER + 5 * RECORD, 1 << 20, 5);
        assert!(result.is_ok());
        assert_eq!((lost, held), (0, Some(5)));
    }

    #[test]
    fn a_disk_too_full_for_the_header_leaves_an_empty_file() {
        // The header itself is cut short: the file is emptied and every frame counted.
        let (lost, held, _) = run(10, 1 << 20, 4);
        assert_eq!((lost, held), (4, None));
        let (_, held, result) = run(0, 0, 4);
        assert!(result.is_err(), "the header cannot be written at all");
        assert_eq!(held, None);
    }

    /// The bytes a pcap of `frames` frames of `len` bytes is, through `writer`, with a flush
    /// after every `flush_every` frames.
    fn pcap_through(writer: FileWriter, frames: u32, len: usize, flush_every: u32) {
        let mut sink = PcapSink::new(writer, 65535).unwrap();
        for n in 0..frames {
            let data: Vec<u8> = (0..len).map(|i| (i as u32 ^ n) as u8).collect();
            sink.take(&Frame::test(
                u64::from(n) + 1,
                Duration::new(1_700_000_000, n),
                &data,
            ))
            .unwrap();
            if (n + 1) % flush_every == 0 {
                sink.flush_now().unwrap();
            }
        }
        sink.flush_now().unwrap();
    }

    #[test]
    fn direct_writes_the_same_bytes_as_the_page_cache() {
        // /tmp's file system may not take O_DIRECT (tmpfs before 6.6): then this checks the
        // fallback, which must write the same bytes.
        for (frames, len, flush_every, capacity) in [
            (3_000, 90, 1_000, 1 << 20),
            (3_000, 90, 7, 1 << 16),
            (500, 2048, 33, 8192),
            (1, 10, 1, 1 << 20),
        ] {
            let plain = tempfile::NamedTempFile::new().unwrap();
            pcap_through(
                FileWriter::new(plain.reopen().unwrap(), capacity),
                frames,
                len,
                flush_every,
            );
            let direct = tempfile::NamedTempFile::new().unwrap();
            let writer = FileWriter::new(direct.reopen().unwrap(), capacity)
                .direct(direct.reopen().unwrap());
            pcap_through(writer, frames, len, flush_every);
            let (a, b) = (
                std::fs::read(plain.path()).unwrap(),
                std::fs::read(direct.path()).unwrap(),
            );
            assert_eq!(a.len(), 24 + frames as usize * (16 + len));
            assert!(a == b, "{frames} frames of {len}: the files differ");
        }
    }

    #[test]
    fn direct_is_used_where_the_file_system_allows_it() {
        let tmp =
            tempfile::NamedTempFile::new_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target"))
                .unwrap();
        let writer = FileWriter::new(tmp.reopen().unwrap(), 1 << 20).direct(tmp.reopen().unwrap());
        // The build directory is on a disk file system (ext4, xfs, btrfs all take O_DIRECT).
        assert!(writer.is_direct());
        // Not for -U, nor for a file that already holds data.
        let writer = FileWriter::new(tmp.reopen().unwrap(), 0).direct(tmp.reopen().unwrap());
        assert!(!writer.is_direct());
        std::fs::write(tmp.path(), b"x").unwrap();
        let writer = FileWriter::new(tmp.reopen().unwrap(), 1 << 20).direct(tmp.reopen().unwrap());
        assert!(!writer.is_direct());
    }

    #[test]
    fn a_write_larger_than_the_slack_keeps_its_bytes() {
        let tmp =
            tempfile::NamedTempFile::new_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target"))
                .unwrap();
        let mut writer =
            FileWriter::new(tmp.reopen().unwrap(), 1 << 13).direct(tmp.reopen().unwrap());
        // More than the buffer holds, whichever way it was allocated: the write cannot keep
        // the alignment and must fall back to the page cache with its bytes intact.
        let big: Vec<u8> = (0..(writer.buf.capacity() + 3 * ALIGN + 5))
            .map(|i| i as u8)
            .collect();
        writer.write_all(b"head").unwrap();
        writer.write_all(&big).unwrap();
        writer.write_all(b"tail").unwrap();
        writer.flush().unwrap();
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"tail");
        assert!(std::fs::read(tmp.path()).unwrap() == expected);
        assert_eq!(writer.journal().borrow().on_disk, expected.len() as u64);
    }
}
