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
    super::decoded::Decoded,
    super::sink::CloseStats,
    super::sink::Control,
    super::sink::Sink,
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
        if sink.policy.keep.is_some() {
            // A restarted capture (a service after a reboot) counts the files an earlier run
            // left in the ring, so -W bounds them across restarts too.
            sink.files = earlier_files(&sink.pattern, sink.numbered());
        }
        sink.start(now)?;
        Ok(sink)
    }

    /// Whether file names carry a sequence number: with `-C`, or `-G` without a time in the
    /// pattern, several files can get the same name otherwise.
    fn numbered(&self) -> bool {
        self.policy.max_bytes.is_some() || !self.pattern.to_string_lossy().contains('%')
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
        if self.numbered() {
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
            // The ring came round (or an earlier run's file has this name): it goes.
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
            Control::Tick { .. } | Control::Kernel(_) | Control::Flush | Control::Trigger(..) => {}
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

/// Files in the pattern's directory that the pattern could have named (an earlier run's),
/// oldest first by modification time.
fn earlier_files(pattern: &Path, numbered: bool) -> VecDeque<PathBuf> {
    let dir = match pattern.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(name) = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return VecDeque::new();
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return VecDeque::new();
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| names_match(&name, &e.file_name().to_string_lossy(), numbered))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// Refuse a file name pattern strftime cannot format (`%Q`), or whose fields could put a `/`
/// or a control character in a file name (`%D`, `%n`, `%t`): said at start, not at the first
/// rotation.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    for item in StrftimeItems::new(pattern) {
        if matches!(item, Item::Error) {
            return Err(format!(
                "{pattern}: not a strftime pattern chrono can format (see strftime(3); %% for a \
                 percent sign)"
            ));
        }
    }
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            continue;
        }
        while chars
            .peek()
            .is_some_and(|c| !c.is_ascii_alphabetic() && *c != '+')
        {
            chars.next();
        }
        if let Some(spec @ ('D' | 'x' | 'c' | 'n' | 't' | 'r')) = chars.next() {
            return Err(format!(
                "{pattern}: %{spec} puts a '/', a space or a control character in a file name; \
                 use %Y-%m-%d, %H%M%S and the like"
            ));
        }
    }
    if tokens(pattern).is_none() {
        return Err(format!("{pattern}: a field ntptap cannot match for -W"));
    }
    Ok(())
}

/// Whether `candidate` is a name the strftime `pattern` makes: literal characters as they
/// are, `%%` a percent sign, each field what it formats as (`%H` two digits, `%Y` four or
/// more, `%b` letters, ...), and with `numbered` any digits after. `-W` removes only files
/// that match: a file named by hand beside the ring (`ntp-IMPORTANT.pcap`) is never one.
fn names_match(pattern: &str, candidate: &str, numbered: bool) -> bool {
    let Some(mut tokens) = tokens(pattern) else {
        return false;
    };
    if numbered {
        tokens.push(Token::Run(Class::Digit, 0, usize::MAX));
    }
    let candidate: Vec<char> = candidate.chars().collect();
    matches(&tokens, &candidate)
}

/// The characters a field is made of.
#[derive(Clone, Copy)]
enum Class {
    Digit,
    /// A digit, or the space a space-padded field (`%e`, `%k`) starts with.
    DigitOrSpace,
    Letter,
    /// `+` or `-` (a time zone offset's sign).
    Sign,
    /// Whatever a locale-dependent field may give, short of a separator.
    Any,
}

impl Class {
    fn has(self, c: char) -> bool {
        match self {
            Class::Digit => c.is_ascii_digit(),
            Class::DigitOrSpace => c.is_ascii_digit() || c == ' ',
            Class::Letter => c.is_ascii_alphabetic(),
            Class::Sign => c == '+' || c == '-',
            Class::Any => c.is_ascii_alphanumeric() || "+-:_., ".contains(c),
        }
    }
}

/// A piece of a file name pattern.
#[derive(Clone, Copy)]
enum Token {
    Literal(char),
    /// Between min and max characters of a class.
    Run(Class, usize, usize),
}

/// The pattern as tokens; `None` if a field is not one strftime knows.
fn tokens(pattern: &str) -> Option<Vec<Token>> {
    use Class::{Any, Digit, DigitOrSpace, Letter, Sign};
    use Token::{Literal, Run};
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(Literal(c));
            continue;
        }
        // Padding flags: %-d (none), %_d (spaces), %0d (zeros); chrono's %.3f and %3f.
        let mut flag = None;
        if let Some(&f) = chars.peek()
            && matches!(f, '-' | '_' | '0' | '.' | ':' | '#')
        {
            flag = Some(f);
            chars.next();
        }
        while chars.peek().is_some_and(char::is_ascii_digit) {
            chars.next();
        }
        let spec = chars.next()?;
        let digits = |n: usize| match flag {
            Some('-') => vec![Run(Digit, 1, n)],
            Some('_') => vec![Run(DigitOrSpace, n, n)],
            _ => vec![Run(Digit, n, n)],
        };
        let field: Vec<Token> = match spec {
            '%' => vec![Literal('%')],
            'Y' | 'G' => vec![Run(Sign, 0, 1), Run(Digit, 4, usize::MAX)],
            'C' | 'y' | 'm' | 'd' | 'H' | 'I' | 'M' | 'S' | 'U' | 'W' | 'V' | 'g' => digits(2),
            'j' => digits(3),
            'u' | 'w' => digits(1),
            'e' | 'k' | 'l' => vec![Run(DigitOrSpace, 2, 2)],
            's' => vec![Run(Sign, 0, 1), Run(Digit, 1, usize::MAX)],
            'f' => vec![Run(Any, 0, 1), Run(Digit, 1, usize::MAX)],
            'a' | 'A' | 'b' | 'B' | 'h' | 'p' | 'P' | 'Z' => vec![Run(Letter, 1, usize::MAX)],
            'z' if flag == Some(':') => vec![
                Run(Sign, 1, 1),
                Run(Digit, 2, 2),
                Literal(':'),
                Run(Digit, 2, 2),
            ],
            'z' => vec![Run(Sign, 1, 1), Run(Digit, 4, 4)],
            'F' => tokens("%Y-%m-%d")?,
            'T' => tokens("%H:%M:%S")?,
            'R' => tokens("%H:%M")?,
            'x' | 'X' | 'c' | 'r' | '+' | 'v' => vec![Run(Any, 1, usize::MAX)],
            _ => return None,
        };
        out.extend(field);
    }
    Some(out)
}

fn matches(tokens: &[Token], s: &[char]) -> bool {
    match tokens.split_first() {
        None => s.is_empty(),
        Some((Token::Literal(c), rest)) => s.first() == Some(c) && matches(rest, &s[1..]),
        Some((Token::Run(class, min, max), rest)) => (0..=s.len().min(*max))
            .take_while(|&n| n == 0 || class.has(s[n - 1]))
            .filter(|&n| n >= *min)
            .any(|n| matches(rest, &s[n..])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_an_earlier_run_made_are_recognised() {
        let p = "ntp-%Y%m%d-%H%M%S.pcapng";
        assert!(names_match(p, "ntp-20261130-080000.pcapng", false));
        assert!(!names_match(p, "ntp-20261130-080000.pcap", false));
        assert!(!names_match(p, "other-20261130-080000.pcapng", false));
        assert!(
            !names_match(p, "ntp-.pcapng", false),
            "a field is never empty"
        );
        assert!(!names_match(p, "ntp-2026/11-080000.pcapng", false));
        assert!(names_match("ntp.pcap", "ntp.pcap", true));
        assert!(names_match("ntp.pcap", "ntp.pcap17", true));
        assert!(!names_match("ntp.pcap", "ntp.pcap17", false));
        assert!(!names_match("ntp.pcap", "ntp.pcapx", true));
        assert!(names_match("100%%-%H.pcap", "100%-08.pcap", false));
    }

    /// Files named by hand beside a ring are never the ring's: a field is what strftime gives
    /// for it (issue: `-G 1 -W 2 -w ring/ntp-%H%M%S.pcap` deleted these two).
    #[test]
    fn hand_named_files_beside_the_ring_are_not_its_own() {
        let p = "ntp-%H%M%S.pcap";
        assert!(names_match(p, "ntp-235959.pcap", false));
        for other in [
            "ntp-IMPORTANT.pcap",
            "ntp-2025-audit.pcap",
            "ntp-2359.pcap",
            "ntp-2359590.pcap",
        ] {
            assert!(!names_match(p, other, false), "{other}");
        }
        assert!(names_match(
            "ntp-%F_%T.pcap",
            "ntp-2026-11-30_08:00:00.pcap",
            false
        ));
        assert!(names_match("ntp-%b%e.pcap", "ntp-Nov 1.pcap", false));
        assert!(!names_match("ntp-%b.pcap", "ntp-11.pcap", false));
        assert!(names_match("ntp-%-d.pcap", "ntp-7.pcap", false));
        assert!(names_match("ntp-%s.pcap", "ntp-1796051400.pcap", false));
    }

    #[test]
    fn patterns_strftime_cannot_format_are_refused() {
        assert!(check_pattern("cap-%Q.pcap").is_err());
        assert!(check_pattern("cap-%D.pcap").is_err());
        assert!(check_pattern("cap-%Y%m%d.pcap").is_ok());
        assert!(check_pattern("100%%-%H.pcap").is_ok());
        assert!(check_pattern("plain.pcap").is_ok());
    }

    #[test]
    fn a_restarted_ring_counts_the_files_left_before() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = dir.path().join("ntp-%H%M%S.pcap");
        // Three files from an earlier run, oldest first, and a file of someone else's.
        for (i, name) in ["ntp-000001.pcap", "ntp-000002.pcap", "ntp-000003.pcap"]
            .iter()
            .enumerate()
        {
            let path = dir.path().join(name);
            std::fs::write(&path, b"x").unwrap();
            let when = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"keep me").unwrap();
        let earlier = earlier_files(&pattern, false);
        let names: Vec<String> = earlier
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["ntp-000001.pcap", "ntp-000002.pcap", "ntp-000003.pcap"]
        );

        // A ring of 2: starting a new file leaves the newest earlier one and the new one.
        let policy = RotatePolicy {
            period: Some(Duration::from_hours(1)),
            keep: Some(2),
            ..RotatePolicy::default()
        };
        let open: OpenSink = Box::new(|out| {
            Ok(Box::new(crate::output::pcap::PcapSink::new(out, 100)?) as Box<dyn Sink>)
        });
        let create: CreateFile = Box::new(|p: &Path| std::fs::File::create(p));
        let sink =
            RotatingSink::new(pattern, policy, open, create, Duration::from_secs(1)).unwrap();
        drop(sink);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.contains(&"ntp-000003.pcap".to_owned()), "{left:?}");
        assert!(left.contains(&"notes.txt".to_owned()), "{left:?}");
    }
}
