//! File rotation, tcpdump's and dumpcap's ways: a new file when the current one passes `-C`
//! millions of bytes or every `-G` seconds (optionally on wall-clock boundaries), names from a
//! strftime pattern and a sequence number, at most `-W` files kept (a ring), `-z CMD` run on
//! each closed file, and a rotation on demand (SIGHUP). Every file starts with its own header
//! and is complete on its own; a frame is never split or written twice: cuts happen between
//! frames.

use std::{
    cell::RefCell,
    collections::VecDeque,
    fmt::Write as _,
    io::{self, Write},
    path::{Path, PathBuf},
    process::Command,
    rc::Rc,
    time::Duration,
};

use chrono::{DateTime, Local};

use super::{
    CloseStats, Control, Decoded, Sink,
    file::{FileWriter, Guarded, Journal},
};

/// When to start a new file.
#[derive(Clone, Debug, Default)]
pub struct RotatePolicy {
    /// Start a new file once the current one is larger than this many bytes (`-C`).
    pub max_bytes: Option<u64>,
    /// Start a new file every this long (`-G`).
    pub period: Option<Duration>,
    /// Cut on multiples of the period since the epoch (`--rotate-align`).
    pub align: bool,
    /// Keep at most this many files, deleting the oldest (`-W`).
    pub keep: Option<u32>,
    /// Run `command FILE` on each closed file (`-z`), without a shell.
    pub command: Option<String>,
    /// Write with O_DIRECT where the file system allows it (see [`FileWriter::direct`]).
    pub direct_io: bool,
}

/// Opens the sink for one file.
pub type OpenSink = Box<dyn FnMut(Box<dyn Write>) -> io::Result<Box<dyn Sink>>>;
/// Creates one output file safely (mode, no symbolic links, no overwriting).
pub type CreateFile = Box<dyn Fn(&Path) -> io::Result<std::fs::File>>;

/// Writes frames into a series of files.
pub struct RotatingSink {
    pattern: PathBuf,
    policy: RotatePolicy,
    open: OpenSink,
    create: CreateFile,
    current: Option<(Box<dyn Sink>, PathBuf)>,
    /// What the current file has been handed, in bytes.
    journal: Rc<RefCell<Journal>>,
    /// Frames lost to failed files already closed, and to files that could not be opened.
    unwritten: u64,
    sequence: u64,
    opened: Duration,
    next_cut: Option<Duration>,
    files: VecDeque<PathBuf>,
}

impl RotatingSink {
    /// The first file is opened at `now`. `create` opens a path safely (mode, no symlinks).
    pub fn new(
        pattern: PathBuf,
        policy: RotatePolicy,
        open: OpenSink,
        create: CreateFile,
        now: Duration,
    ) -> io::Result<Self> {
        let mut sink = Self {
            pattern,
            policy,
            open,
            create,
            current: None,
            journal: Rc::default(),
            unwritten: 0,
            sequence: 0,
            opened: now,
            next_cut: None,
            files: VecDeque::new(),
        };
        sink.start(now)?;
        Ok(sink)
    }

    /// The name of file number `sequence`, opened at `now`: the pattern through strftime,
    /// then, when several files can get the same name (`-C`, or `-G` without a time in the
    /// pattern), a sequence number: tcpdump's `name`, `name1`, `name2`..., or with `-W` a
    /// zero-padded slot in the ring.
    fn name(&self, now: Duration) -> PathBuf {
        let pattern = self.pattern.to_string_lossy();
        let mut name = if pattern.contains('%') {
            DateTime::from_timestamp(now.as_secs() as i64, now.subsec_nanos()).map_or_else(
                || pattern.to_string(),
                |t| t.with_timezone(&Local).format(&pattern).to_string(),
            )
        } else {
            pattern.to_string()
        };
        let numbered = self.policy.max_bytes.is_some() || !pattern.contains('%');
        if numbered {
            match self.policy.keep {
                Some(w) => {
                    let width = w.saturating_sub(1).max(1).to_string().len();
                    let _ = write!(name, "{:0width$}", self.sequence % u64::from(w));
                }
                None if self.sequence > 0 => name.push_str(&self.sequence.to_string()),
                None => {}
            }
        }
        PathBuf::from(name)
    }

    fn start(&mut self, now: Duration) -> io::Result<()> {
        let path = self.name(now);
        if self.files.contains(&path) {
            // The ring came round: this slot's old file goes.
            self.files.retain(|p| p != &path);
            let _ = std::fs::remove_file(&path);
        }
        let file = (self.create)(&path)?;
        let handle = file.try_clone()?;
        let mut writer = FileWriter::new(file, 1 << 20);
        if self.policy.direct_io {
            writer = writer.direct(handle.try_clone()?);
        }
        self.journal = writer.journal();
        let sink = (self.open)(Box::new(writer))?;
        let sink = Guarded::new(sink, Rc::clone(&self.journal), handle, path.clone());
        self.current = Some((Box::new(sink), path.clone()));
        self.files.push_back(path);
        if let Some(keep) = self.policy.keep {
            while self.files.len() > keep as usize {
                if let Some(old) = self.files.pop_front() {
                    let _ = std::fs::remove_file(old);
                }
            }
        }
        self.opened = now;
        self.next_cut = self.policy.period.map(|p| {
            if self.policy.align {
                let p = p.as_nanos().max(1);
                Duration::from_nanos(((now.as_nanos() / p + 1) * p) as u64)
            } else {
                now + p
            }
        });
        Ok(())
    }

    fn finish_current(&mut self, stats: &CloseStats) -> io::Result<()> {
        if let Some((mut sink, path)) = self.current.take() {
            let closed = sink.control(&Control::Close {
                stats,
                exchanges: None,
            });
            self.unwritten += sink.unwritten();
            drop(sink);
            closed?;
            if let Some(cmd) = &self.policy.command {
                // `-z`: the command and the file name, no shell. Reaped in the background.
                match Command::new(cmd).arg(&path).spawn() {
                    Ok(mut child) => {
                        std::thread::spawn(move || child.wait());
                    }
                    Err(e) => {
                        tracing::warn!(command = %cmd, error = %e, "cannot run the -z command");
                    }
                }
            }
        }
        Ok(())
    }

    fn rotate_at(&mut self, now: Duration) -> io::Result<()> {
        let stats = CloseStats {
            start: self.opened,
            end: now,
            ..CloseStats::default()
        };
        self.finish_current(&stats)?;
        self.sequence += 1;
        self.start(now)
    }

    fn due(&self, now: Duration) -> bool {
        self.policy
            .max_bytes
            .is_some_and(|m| self.journal.borrow().bytes() > m)
            || self.next_cut.is_some_and(|cut| now >= cut)
    }
}

impl Sink for RotatingSink {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        let ts = packet.frame.ts;
        // Size is checked before a frame is written, as tcpdump does; so is the period, by
        // the frame's own time, so a file holds exactly the frames of its interval.
        if self.due(ts)
            && let Err(e) = self.rotate_at(ts)
        {
            // This frame had no file to go to.
            self.unwritten += 1;
            return Err(e);
        }
        match &mut self.current {
            Some((sink, _)) => sink.frame(packet),
            None => Ok(false),
        }
    }

    fn control(&mut self, control: &Control<'_>) -> io::Result<()> {
        match *control {
            Control::Close { stats, .. } => {
                let stats = CloseStats {
                    start: self.opened.max(stats.start),
                    ..*stats
                };
                // The file being closed is told by `finish_current`.
                return self.finish_current(&stats);
            }
            Control::Tick { now, .. } if self.next_cut.is_some_and(|cut| now >= cut) => {
                self.rotate_at(now)?;
            }
            Control::Rotate(now) => self.rotate_at(now)?,
            Control::Tick { .. } | Control::Kernel(_) | Control::Flush => {}
        }
        match &mut self.current {
            Some((sink, _)) => sink.control(control),
            None => Ok(()),
        }
    }

    fn unwritten(&self) -> u64 {
        self.unwritten
            + self
                .current
                .as_ref()
                .map_or(0, |(sink, _)| sink.unwritten())
    }
}
