//! Capture files that stay readable when the disk fails them.
//!
//! A [`FileWriter`] buffers what the pcap or pcapng writer produces and knows how many bytes
//! reached the file; a [`Guarded`] sink around that writer notes where each frame ends. When a
//! write fails (the disk is full, the quota is reached, the file system went read-only), the
//! file is cut back to the end of the last frame that reached it whole, so it is valid up to
//! there, and every frame that did not make it is counted ([`super::Sink::unwritten`]).

use std::{
    cell::RefCell,
    collections::VecDeque,
    fs::File,
    io::{self, Write},
    path::PathBuf,
    rc::Rc,
};

use super::{CloseStats, Sink};
use crate::frame::Frame;

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
    pending: VecDeque<u64>,
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
        while self.pending.front().is_some_and(|&end| end <= self.on_disk) {
            self.last_whole = self.pending.pop_front().unwrap_or(self.last_whole);
            self.kept += 1;
        }
    }
}

/// A buffered writer to a capture file that keeps the [`Journal`].
pub struct FileWriter<W = File> {
    file: W,
    buf: Vec<u8>,
    capacity: usize,
    journal: Rc<RefCell<Journal>>,
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
        }
    }

    /// The journal, to give to [`Guarded::new`].
    #[must_use]
    pub fn journal(&self) -> Rc<RefCell<Journal>> {
        Rc::clone(&self.journal)
    }

    fn write_out(&mut self) -> io::Result<()> {
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
}

impl<W: Write> Write for FileWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.journal.borrow_mut().handed += data.len() as u64;
        if self.buf.len() >= self.capacity.max(1) {
            self.write_out()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
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

impl Sink for Guarded {
    fn frame(&mut self, frame: &Frame<'_>) -> io::Result<bool> {
        self.taken += 1;
        if let Some(lost) = &mut self.lost {
            *lost += 1;
            return Err(io::Error::other(format!(
                "{} failed earlier",
                self.path.display()
            )));
        }
        match self.inner.frame(frame) {
            Ok(written) => {
                // Where this frame ends; `settle` retires it once the file has it all.
                let mut j = self.journal.borrow_mut();
                let end = j.handed;
                j.pending.push_back(end);
                Ok(written)
            }
            Err(e) => Err(self.fail(&e)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.lost.is_some() {
            return Ok(());
        }
        self.inner.flush().map_err(|e| self.fail(&e))
    }

    fn close(&mut self, stats: &CloseStats) -> io::Result<()> {
        if self.lost.is_some() {
            return Ok(());
        }
        self.inner.close(stats).map_err(|e| self.fail(&e))
    }

    fn unwritten(&self) -> u64 {
        self.lost.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pcap_file::pcap::PcapReader;

    use super::*;
    use crate::{frame::LinkType, output::pcap::PcapSink};

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
    /// `capacity`; returns what was lost, and the frames the file holds.
    fn run(room: u64, capacity: usize, frames: u64) -> (u64, Option<usize>, io::Result<()>) {
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
            let outcome = (1..=frames).try_for_each(|n| {
                sink.frame(&Frame {
                    number: n,
                    ts: Duration::new(1_700_000_000, 0),
                    mono_ns: None,
                    ifindex: None,
                    drops_before: 0,
                    iface: None,
                    direction: None,
                    orig_len: 100,
                    link: LinkType::Ethernet,
                    data: &data,
                })
                .map(drop)
            });
            let outcome = outcome.and_then(|()| sink.close(&CloseStats::default()));
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
}
