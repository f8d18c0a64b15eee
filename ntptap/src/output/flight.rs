//! `--flight-recorder`: the most recent frames kept in memory, bounded by bytes or by time,
//! with no disk writes; when a trigger fires (SIGUSR1, a POST to `/flight-recorder`, or an
//! event past its threshold) they are written out as a pcapng file, with the frames of the
//! seconds after it. A dump holds exactly the frames captured in its interval, as `-w` would
//! have written them; frames that left memory in no dump are counted, and each dump says how
//! many came before it.

use std::{
    collections::VecDeque,
    io::{self, BufWriter},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use super::{
    decoded::Decoded,
    files::create::Creation,
    files::create::create_output,
    files::pcapng::{Kept, PcapNgInterface, PcapNgSink},
    sink::CloseStats,
    sink::Control,
    sink::Sink,
};
use crate::exchange::Event;

/// How much the recorder keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// This many bytes of frames (data, comments and bookkeeping).
    Bytes(usize),
    /// The frames of this long before the newest, within [`DURATION_CAP`] bytes.
    For(Duration),
}

/// The most a recorder kept by time holds, in bytes.
pub const DURATION_CAP: usize = 256 << 20;
/// Event thresholds count events within this long.
pub const TRIGGER_WINDOW: Duration = Duration::from_secs(10);

impl std::str::FromStr for Keep {
    type Err = String;

    /// `16M`, `1048576`, `512K`, `1G` (powers of 1024), or `90s`, `10m`, `1h`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s} is neither a size (bytes, or with K, M or G: 16M) nor a duration (90s, 10m, 1h)"
            )
        };
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(format!("{s}: the flight recorder needs room for something"));
        }
        let bytes = |shift: u32| {
            n.checked_shl(shift)
                .filter(|b| b >> shift == n)
                .and_then(|b| usize::try_from(b).ok())
                .map(Keep::Bytes)
                .ok_or_else(bad)
        };
        match unit {
            "" => bytes(0),
            "K" | "k" => bytes(10),
            "M" => bytes(20),
            "G" => bytes(30),
            "s" => Ok(Keep::For(Duration::from_secs(n))),
            "m" => Ok(Keep::For(Duration::from_secs(n * 60))),
            "h" => Ok(Keep::For(Duration::from_secs(n * 3600))),
            _ => Err(bad()),
        }
    }
}

/// A size in bytes, as `--flight-recorder-max-bytes` takes it: `512M`, `1G`, `65536`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<Keep>() {
            Ok(Keep::Bytes(n)) => Ok(Size(n as u64)),
            _ => Err(format!(
                "{s} is not a size (bytes, or with K, M or G: 512M)"
            )),
        }
    }
}

/// Event thresholds (0: that trigger is off). The offset step and the run of unanswered
/// requests are the exchange tracker's events, with their thresholds in its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Triggers {
    /// Kiss-o'-death packets within [`TRIGGER_WINDOW`].
    pub kiss_of_death: u32,
    /// Monlist requests and mode 6 queries from remote addresses within the window.
    pub queries: u32,
    /// Leap or stratum-16 changes of a server within the window.
    pub status: u32,
    /// NTP frames the kernel dropped in this host within the window (`--drops`).
    pub drops: u32,
    /// An offset step (the tracker's `offset_step` event).
    pub offset_step: bool,
    /// A run of unanswered requests (the tracker's `unanswered_run` event).
    pub unanswered: bool,
    /// A pattern event: amplification, reflection, hop_limit_change, falseticker,
    /// delay_asymmetry (each past its own --trigger-... threshold).
    pub patterns: bool,
    /// NTS downgrades within the window.
    pub nts: u32,
}

/// What `--flight-recorder` and its options ask for.
#[derive(Clone, Debug)]
pub struct FlightPlan {
    /// How much is kept.
    pub keep: Keep,
    /// Frames written after the trigger, for this long.
    pub after: Duration,
    /// Where dumps go.
    pub dir: PathBuf,
    /// The least time between the starts of two dumps.
    pub interval: Duration,
    /// Event thresholds.
    pub triggers: Triggers,
    /// How dump files are created (as `-w` files).
    pub creation: Creation,
    /// At most this many dumps of ntptap's in `dir`, the oldest removed first.
    pub max_files: usize,
    /// At most this many bytes of dumps of ntptap's in `dir`, the oldest removed first.
    pub max_bytes: u64,
}

/// `--flight-recorder-max-files`' default.
pub const MAX_FILES: usize = 10;
/// `--flight-recorder-max-bytes`' default.
pub const MAX_BYTES: u64 = 512 << 20;

/// The triggers, as they appear in dump names.
const TRIGGER_NAMES: &[&str] = &[
    "kiss-of-death",
    "query",
    "status",
    "drops",
    "offset-step",
    "unanswered",
    "amplification",
    "reflection",
    "hop-limit",
    "falseticker",
    "asymmetry",
    "nts",
    "SIGUSR1",
    "POST",
];

/// Whether `name` is a dump ntptap names (`ntptap-flight-20261130T150405Z-TRIGGER.pcapng`,
/// maybe with a number before the extension): no other file in the directory is ever removed.
fn is_dump_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("ntptap-flight-")
        .and_then(|r| r.strip_suffix(".pcapng"))
    else {
        return false;
    };
    let (time, trigger) = rest.split_at(rest.len().min(16));
    let time_ok = time.len() == 16
        && time.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    time_ok
        && trigger
            .strip_prefix('-')
            .is_some_and(|t| TRIGGER_NAMES.contains(&t))
}

/// ntptap's dumps in `dir`, oldest first: (path, bytes).
fn own_dumps(dir: &std::path::Path) -> Vec<(PathBuf, u64)> {
    let mut dumps: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_dump_name))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.file_type().is_file().then(|| (e.path(), meta.len()))
        })
        .collect();
    // The name starts with the time: by name is by age.
    dumps.sort();
    dumps
}

/// What a POST to `/flight-recorder` hears back: an HTTP status and a line of text.
pub type Answer = (u16, String);

/// Requests for a dump from the metrics endpoint, answered by the recorder.
#[derive(Clone, Default)]
pub struct Requests {
    waiting: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<tokio::sync::oneshot::Sender<Answer>>>>,
}

impl Requests {
    /// Ask for a dump; the answer comes once the recorder has looked (within a second).
    #[must_use]
    pub fn ask(&self) -> tokio::sync::oneshot::Receiver<Answer> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Ok(mut answers) = self.answers.lock() {
            answers.push(tx);
        }
        self.waiting.store(true, Ordering::Release);
        rx
    }

    fn take(&self) -> Vec<tokio::sync::oneshot::Sender<Answer>> {
        if !self.waiting.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        self.answers
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }
}

/// The recorder's counts, published once a second for the metrics.
#[derive(Debug, Default)]
pub struct FlightStats {
    /// Dumps written.
    pub written: AtomicU64,
    /// Triggers ignored by the rate limit.
    pub ignored: AtomicU64,
    /// Dumps that could not be written.
    pub failed: AtomicU64,
    /// Frames that left memory in no dump.
    pub evicted: AtomicU64,
    /// Bytes held now.
    pub held_bytes: AtomicU64,
}

/// A dump being written: the frames from memory went to its thread; those after the trigger
/// follow until `until`.
struct Dump {
    path: PathBuf,
    until: Duration,
    tx: mpsc::Sender<Arc<Kept>>,
    thread: JoinHandle<io::Result<u64>>,
}

/// The recorder (see the module's text).
pub struct FlightSink {
    plan: FlightPlan,
    interfaces: Vec<PcapNgInterface>,
    snaplen: u32,
    filter: String,
    frames: VecDeque<Arc<Kept>>,
    bytes: usize,
    /// The number of the last frame a dump holds.
    dumped_through: u64,
    /// Frames that left memory in no dump.
    evicted: u64,
    dump: Option<Dump>,
    last_start: Option<Duration>,
    /// Recent kiss-o'-death, queries, status changes, drops: their times.
    recent: [VecDeque<Duration>; 5],
    requests: Requests,
    written: u64,
    suppressed: u64,
    failed: u64,
    /// Older dumps removed for the caps.
    removed: u64,
    stats: Arc<FlightStats>,
}

/// A pcapng file name's time: `20261130T150405Z` (UTC).
fn file_time(at: Duration) -> String {
    chrono::DateTime::from_timestamp(at.as_secs() as i64, at.subsec_nanos()).map_or_else(
        || at.as_secs().to_string(),
        |t| t.format("%Y%m%dT%H%M%SZ").to_string(),
    )
}

impl FlightSink {
    /// A recorder for a capture on `interfaces` with `snaplen` and the kernel `filter` (for
    /// the dumps' interface descriptions); POSTs arrive through `requests`.
    #[must_use]
    pub fn new(
        plan: FlightPlan,
        interfaces: Vec<PcapNgInterface>,
        snaplen: u32,
        filter: String,
        requests: Requests,
    ) -> Self {
        Self {
            plan,
            interfaces,
            snaplen,
            filter,
            frames: VecDeque::new(),
            bytes: 0,
            dumped_through: 0,
            evicted: 0,
            dump: None,
            last_start: None,
            recent: Default::default(),
            requests,
            written: 0,
            suppressed: 0,
            failed: 0,
            removed: 0,
            stats: Arc::default(),
        }
    }

    /// Where the recorder publishes its counts (for the metrics).
    #[must_use]
    pub fn stats(&self) -> Arc<FlightStats> {
        Arc::clone(&self.stats)
    }

    fn publish(&self) {
        let s = &self.stats;
        s.written.store(self.written, Ordering::Relaxed);
        s.ignored.store(self.suppressed, Ordering::Relaxed);
        s.failed.store(self.failed, Ordering::Relaxed);
        s.evicted.store(self.evicted, Ordering::Relaxed);
        s.held_bytes.store(self.bytes as u64, Ordering::Relaxed);
    }

    fn keep(&mut self, kept: Arc<Kept>) {
        self.bytes += kept.size();
        let newest = kept.ts;
        self.frames.push_back(kept);
        let (cap, age) = match self.plan.keep {
            Keep::Bytes(b) => (b, None),
            Keep::For(d) => (DURATION_CAP, Some(d)),
        };
        while let Some(front) = self.frames.front() {
            let old = age.is_some_and(|d| front.ts + d < newest);
            if !old && self.bytes <= cap {
                break;
            }
            self.bytes -= front.size();
            if front.number > self.dumped_through {
                self.evicted += 1;
            }
            self.frames.pop_front();
        }
    }

    /// Count `n` things of kind `k` at `ts`; whether that makes `threshold` within the window.
    fn count(&mut self, k: usize, n: usize, ts: Duration, threshold: u32) -> bool {
        if threshold == 0 || n == 0 {
            return false;
        }
        let recent = &mut self.recent[k];
        for _ in 0..n {
            recent.push_back(ts);
        }
        while recent
            .front()
            .is_some_and(|t| ts.saturating_sub(*t) > TRIGGER_WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() >= threshold as usize {
            recent.clear();
            return true;
        }
        false
    }

    /// The trigger this frame fires, if any.
    fn fired(&mut self, packet: &Decoded<'_>) -> Option<&'static str> {
        let (ts, t) = (packet.frame.ts, self.plan.triggers);
        let mut fired = None;
        let of = |f: fn(&Event) -> bool| packet.events.iter().filter(|e| f(e)).count();
        let kod = of(|e| matches!(e, Event::KissOfDeath { .. }));
        let queries = of(|e| {
            matches!(
                e,
                Event::MonlistRequest { .. } | Event::RemoteControlQuery { .. }
            )
        });
        let status = of(|e| matches!(e, Event::StatusChange { .. }));
        if self.count(0, kod, ts, t.kiss_of_death) {
            fired = Some("kiss-of-death");
        }
        if self.count(1, queries, ts, t.queries) {
            fired = Some("query");
        }
        if self.count(2, status, ts, t.status) {
            fired = Some("status");
        }
        if self.count(3, usize::from(packet.frame.drop.is_some()), ts, t.drops) {
            fired = Some("drops");
        }
        if t.offset_step && of(|e| matches!(e, Event::OffsetStep { .. })) > 0 {
            fired = Some("offset-step");
        }
        if t.unanswered && of(|e| matches!(e, Event::UnansweredRun { .. })) > 0 {
            fired = Some("unanswered");
        }
        let nts = of(|e| matches!(e, Event::NtsDowngrade { .. }));
        if self.count(4, nts, ts, t.nts) {
            fired = Some("nts");
        }
        if t.patterns {
            for e in &packet.events {
                match e {
                    Event::Amplification { .. } => fired = Some("amplification"),
                    Event::Reflection { .. } => fired = Some("reflection"),
                    Event::HopLimitChange { .. } => fired = Some("hop-limit"),
                    Event::Falseticker { .. } => fired = Some("falseticker"),
                    Event::DelayAsymmetry { .. } => fired = Some("asymmetry"),
                    _ => {}
                }
            }
        }
        fired
    }

    /// Start a dump for `trigger` at `at`, unless the rate limit or a dump under way says no.
    fn trigger(&mut self, trigger: &str, at: Duration) -> Answer {
        if let Some(last) = self.last_start
            && (self.dump.is_some() || at.saturating_sub(last) < self.plan.interval)
        {
            self.suppressed += 1;
            let text = format!(
                "flight recorder: {trigger} ignored: the last dump began {:.0} s ago, and dumps start at most once every {} s (--flight-recorder-interval)",
                at.saturating_sub(last).as_secs_f64(),
                self.plan.interval.as_secs()
            );
            eprintln!("ntptap: {text}");
            return (429, text);
        }
        // Room for this one: at most max_files - 1 of ours before it.
        self.prune(self.plan.max_files.saturating_sub(1), self.plan.max_bytes);
        let path = self
            .plan
            .dir
            .join(format!("ntptap-flight-{}-{trigger}.pcapng", file_time(at)));
        let file = match create_output(&path, self.plan.creation) {
            Ok((file, _)) => file,
            Err(e) => {
                self.failed += 1;
                let text = format!("flight recorder: {trigger}: no dump: {e:#}");
                eprintln!("ntptap: {text}");
                return (500, text);
            }
        };
        let held: Vec<Arc<Kept>> = self.frames.iter().cloned().collect();
        self.dumped_through = held.last().map_or(self.dumped_through, |k| k.number);
        let comment = format!(
            "ntptap flight recorder: {trigger} at {}; {} frames from memory, then {} s after; {} frames captured before them had left memory in no dump",
            file_time(at),
            held.len(),
            self.plan.after.as_secs_f64(),
            self.evicted
        );
        let (tx, rx) = mpsc::channel::<Arc<Kept>>();
        let (interfaces, snaplen, filter) =
            (self.interfaces.clone(), self.snaplen, self.filter.clone());
        let from_memory = held.len();
        let thread = std::thread::spawn(move || -> io::Result<u64> {
            let out = BufWriter::with_capacity(1 << 20, file.try_clone()?);
            let mut sink =
                PcapNgSink::with_comments(out, &interfaces, snaplen, &filter, vec![comment])?;
            let (mut n, mut first, mut last) = (0, None, None);
            // What memory held, then what comes after the trigger, as it comes.
            for kept in held.into_iter().chain(rx) {
                sink.write_kept(&kept)?;
                n += 1;
                first.get_or_insert(kept.ts);
                last = Some(kept.ts);
            }
            sink.close(&CloseStats {
                start: first.unwrap_or_default(),
                end: last.unwrap_or_default(),
                received: None,
                dropped: None,
            })?;
            drop(sink);
            file.sync_all()?;
            Ok(n)
        });
        let text = format!(
            "flight recorder: {trigger}: writing {} ({from_memory} frames from memory, and {} s after)",
            path.display(),
            self.plan.after.as_secs_f64()
        );
        eprintln!("ntptap: {text}");
        self.dump = Some(Dump {
            path,
            until: at + self.plan.after,
            tx,
            thread,
        });
        self.last_start = Some(at);
        (200, text)
    }

    /// Remove ntptap's oldest dumps until at most `files` and `bytes` are left (never the one
    /// being written); say what went.
    fn prune(&mut self, files: usize, bytes: u64) {
        let mut dumps = own_dumps(&self.plan.dir);
        if let Some(current) = &self.dump {
            dumps.retain(|(p, _)| *p != current.path);
        }
        let mut total: u64 = dumps.iter().map(|(_, n)| n).sum();
        let mut count = dumps.len();
        for (path, size) in dumps {
            if count <= files && total <= bytes {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    self.removed += 1;
                    eprintln!(
                        "ntptap: flight recorder: removed {} to stay within {} dumps and {} bytes (--flight-recorder-max-files, -max-bytes)",
                        path.display(),
                        self.plan.max_files,
                        self.plan.max_bytes
                    );
                }
                Err(e) => eprintln!(
                    "ntptap: flight recorder: cannot remove {}: {e}",
                    path.display()
                ),
            }
            count -= 1;
            total = total.saturating_sub(size);
        }
    }

    /// End the dump under way: its thread writes what it has, and closes the file.
    fn finish(&mut self) {
        let Some(dump) = self.dump.take() else {
            return;
        };
        drop(dump.tx);
        match dump.thread.join() {
            Ok(Ok(n)) => {
                self.written += 1;
                eprintln!(
                    "ntptap: flight recorder: wrote {} ({n} frames)",
                    dump.path.display()
                );
                // Within the byte cap with this one too: older ones go first.
                self.prune(self.plan.max_files, self.plan.max_bytes);
            }
            Ok(Err(e)) => {
                self.failed += 1;
                eprintln!(
                    "ntptap: flight recorder: cannot write {}: {e}; free space or choose another --flight-recorder-dir",
                    dump.path.display()
                );
            }
            Err(_) => {
                self.failed += 1;
                eprintln!(
                    "ntptap: flight recorder: the writer of {} failed",
                    dump.path.display()
                );
            }
        }
    }

    /// Answer the POSTs waiting, at `at`.
    fn answer_requests(&mut self, at: Duration) {
        for answer in self.requests.take() {
            let reply = self.trigger("POST", at);
            let _ = answer.send(reply);
        }
    }
}

impl Sink for FlightSink {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        let kept = Arc::new(Kept::new(packet, self.snaplen));
        let ts = kept.ts;
        if let Some(dump) = &self.dump {
            if ts > dump.until {
                self.finish();
            } else {
                self.dumped_through = kept.number;
                if dump.tx.send(Arc::clone(&kept)).is_err() {
                    // The writer stopped (a write failed): finish says why.
                    self.finish();
                }
            }
        }
        self.keep(kept);
        if let Some(trigger) = self.fired(packet) {
            self.trigger(trigger, ts);
        }
        self.answer_requests(ts);
        Ok(false)
    }

    fn control(&mut self, control: &Control<'_>) -> io::Result<()> {
        match *control {
            Control::Tick { now, .. } => {
                // Frames reach the rings and the drain a little after their time: the dump
                // waits a second past its end for the last of them.
                if self
                    .dump
                    .as_ref()
                    .is_some_and(|d| now > d.until + Duration::from_secs(1))
                {
                    self.finish();
                }
                self.answer_requests(now);
                self.publish();
            }
            Control::Trigger(name, now) => {
                self.trigger(name, now);
            }
            Control::Close { .. } => {
                self.finish();
                self.publish();
                eprintln!(
                    "ntptap: flight recorder: dumps {} written, {} ignored by the rate limit, {} failed, {} older removed for the caps; frames {} left memory in no dump, {} ({} bytes) held at the end",
                    self.written,
                    self.suppressed,
                    self.failed,
                    self.removed,
                    self.evicted,
                    self.frames.len(),
                    self.bytes
                );
            }
            Control::Kernel(_) | Control::Rotate(_) | Control::Flush => {}
        }
        Ok(())
    }

    fn unwritten(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{frame::Frame, output::SinkExt as _};

    fn frame(number: u64, data: &[u8]) -> Frame<'_> {
        let ts = Duration::new(1_700_000_000, 0) + Duration::from_millis(number * 10);
        Frame {
            ifindex: Some(2),
            iface: Some("eth0"),
            ..Frame::test(number, ts, data)
        }
    }

    #[test]
    fn dumps_are_told_from_other_files_by_their_exact_name() {
        assert!(is_dump_name("ntptap-flight-20261130T150405Z-POST.pcapng"));
        assert!(is_dump_name(
            "ntptap-flight-20261130T150405Z-kiss-of-death.pcapng"
        ));
        for other in [
            "ntptap-flight-20261130T150405Z-IMPORTANT.pcapng",
            "ntptap-flight-2026-audit-POST.pcapng",
            "ntptap-flight-20261130T150405Z-POST.pcapng.bak",
            "capture.pcapng",
            "ntptap-flight-20261130X150405Z-POST.pcapng",
        ] {
            assert!(!is_dump_name(other), "{other}");
        }
    }

    #[test]
    fn the_oldest_own_dumps_go_first_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = recorder(dir.path(), Keep::Bytes(1 << 20));
        let foreign = dir.path().join("ntptap-flight-IMPORTANT.pcapng");
        std::fs::write(&foreign, vec![0u8; 4 << 20]).unwrap();
        for minute in 0..5 {
            let name = format!("ntptap-flight-20261130T15{minute:02}00Z-query.pcapng");
            std::fs::write(dir.path().join(name), vec![0u8; 1000]).unwrap();
        }
        // A new dump: room for it within 3 files.
        let at = Duration::from_mins(29_934_190);
        assert_eq!(r.trigger("POST", at).0, 200);
        r.finish();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "ntptap-flight-20261130T150300Z-query.pcapng",
                "ntptap-flight-20261130T150400Z-query.pcapng",
                "ntptap-flight-20261130T151000Z-POST.pcapng",
                "ntptap-flight-IMPORTANT.pcapng",
            ]
        );
        assert_eq!(r.removed, 3);
    }

    fn recorder(dir: &Path, keep: Keep) -> FlightSink {
        FlightSink::new(
            FlightPlan {
                keep,
                after: Duration::from_millis(100),
                dir: dir.to_owned(),
                interval: Duration::from_mins(1),
                triggers: Triggers {
                    kiss_of_death: 0,
                    queries: 0,
                    status: 0,
                    drops: 0,
                    offset_step: false,
                    unanswered: false,
                    patterns: false,
                    nts: 0,
                },
                creation: Creation {
                    mode: 0o600,
                    overwrite: false,
                },
                max_files: 3,
                max_bytes: 1 << 20,
            },
            vec![PcapNgInterface {
                index: 2,
                name: "eth0".into(),
            }],
            2048,
            "udp port 123".into(),
            Requests::default(),
        )
    }

    /// The bytes of each frame in a pcapng file.
    fn frames_in(path: &Path) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(path).unwrap();
        let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
        let mut out = Vec::new();
        while let Some(block) = reader.next_block() {
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = block.unwrap().0 {
                out.push(p.data.to_vec());
            }
        }
        out
    }

    #[test]
    fn a_dump_holds_what_memory_held_and_the_time_after_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<Vec<u8>> = (0..400u32).map(|i| i.to_be_bytes().repeat(20)).collect();
        // Room for about 20 frames.
        let one = Kept::new(
            &Decoded::new(&frame(1, &data[0]), &crate::output::PortSet::new(vec![123])),
            2048,
        )
        .size();
        let mut r = recorder(dir.path(), Keep::Bytes(one * 20));
        for n in 1..=100u64 {
            r.take(&frame(n, &data[n as usize])).unwrap();
        }
        let at = frame(100, &[]).ts;
        assert_eq!(r.trigger("test", at).0, 200);
        // Within the rate limit: no second dump.
        assert_eq!(r.trigger("again", at + Duration::from_secs(1)).0, 429);
        // 100 ms after: frames 101..110 go in (10 ms apart), 111 ends the dump.
        for n in 101..=120u64 {
            r.take(&frame(n, &data[n as usize])).unwrap();
        }
        r.close_now(&CloseStats::default()).unwrap();
        let dumps: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(dumps.len(), 1, "{dumps:?}");
        let got = frames_in(&dumps[0]);
        let want: Vec<Vec<u8>> = (81..=110).map(|n| data[n].clone()).collect();
        assert_eq!(got, want);
        // Frames 1..=80 left memory before the dump, in no dump.
        assert_eq!(r.written, 1);
        assert_eq!(r.suppressed, 1);
        assert_eq!(r.evicted, 80);
        let bytes = std::fs::read(&dumps[0]).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("80 frames captured before them had left memory in no dump"),
            "{text}"
        );
    }

    /// What `fired` says of a frame that raised `events` (and is a drop record with `drop`).
    fn fires(r: &mut FlightSink, n: u64, events: Vec<Event>, drop: bool) -> Option<&'static str> {
        let data = [0u8; 60];
        let mut f = frame(n, &data);
        if drop {
            f.drop = Some(crate::frame::KernelDrop {
                reason: "NO_SOCKET",
                location: "udp_rcv",
            });
        }
        let ports = crate::output::PortSet::new(vec![123]);
        let mut packet = Decoded::new(&f, &ports);
        packet.events = events;
        r.fired(&packet)
    }

    #[test]
    fn events_fire_at_their_thresholds_within_ten_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = recorder(dir.path(), Keep::Bytes(1 << 20));
        r.plan.triggers = Triggers {
            kiss_of_death: 3,
            queries: 1,
            status: 2,
            drops: 2,
            offset_step: true,
            unanswered: false,
            patterns: true,
            nts: 2,
        };
        let a: std::net::SocketAddr = "192.0.2.1:123".parse().unwrap();
        let b: std::net::SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let kod = || Event::KissOfDeath {
            server: a,
            client: b,
            code: "RATE".into(),
        };
        // Three kiss-o'-death: the third fires; frames are 10 ms apart.
        assert_eq!(fires(&mut r, 1, vec![kod()], false), None);
        assert_eq!(fires(&mut r, 2, vec![kod()], false), None);
        assert_eq!(fires(&mut r, 3, vec![kod()], false), Some("kiss-of-death"));
        // Two more, then a third 20 s later: the first two are out of the window.
        assert_eq!(fires(&mut r, 4, vec![kod(), kod()], false), None);
        assert_eq!(fires(&mut r, 2_004, vec![kod()], false), None);
        let monlist = Event::MonlistRequest {
            from: b,
            to: a,
            request_code: 42,
        };
        assert_eq!(fires(&mut r, 2_005, vec![monlist], false), Some("query"));
        assert_eq!(fires(&mut r, 2_006, Vec::new(), true), None);
        assert_eq!(fires(&mut r, 2_007, Vec::new(), true), Some("drops"));
        let step = Event::OffsetStep {
            server: a,
            from: 0.001,
            to: 0.5,
        };
        assert_eq!(fires(&mut r, 2_008, vec![step], false), Some("offset-step"));
        let run = Event::UnansweredRun {
            server: a.ip(),
            unanswered: 5,
        };
        assert_eq!(fires(&mut r, 2_009, vec![run], false), None, "turned off");
        let nts = || Event::NtsDowngrade {
            client: b.ip(),
            server: a.ip(),
            what: "request_without_nts",
        };
        assert_eq!(fires(&mut r, 2_010, vec![nts()], false), None);
        assert_eq!(fires(&mut r, 2_011, vec![nts()], false), Some("nts"));
        let hops = Event::HopLimitChange {
            client: b.ip(),
            from: 64,
            to: 200,
            packets_from: 10,
            packets_to: 3,
        };
        assert_eq!(fires(&mut r, 2_012, vec![hops], false), Some("hop-limit"));
        let reflection = Event::Reflection {
            victim: b.ip(),
            reflectors: 3,
            packets: 100,
            bytes: 9_000,
            seconds: 2.0,
        };
        r.plan.triggers.patterns = false;
        assert_eq!(fires(&mut r, 2_013, vec![reflection.clone()], false), None);
        r.plan.triggers.patterns = true;
        assert_eq!(
            fires(&mut r, 2_014, vec![reflection], false),
            Some("reflection")
        );
    }

    #[test]
    fn kept_by_time_and_a_name_taken_is_a_failure_not_an_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![0u8; 90];
        let mut r = recorder(dir.path(), Keep::For(Duration::from_millis(95)));
        for n in 1..=50u64 {
            r.take(&frame(n, &data)).unwrap();
        }
        // 10 ms apart, 95 ms kept: the newest and the nine before it.
        assert_eq!(r.frames.len(), 10);
        assert_eq!(r.evicted, 40);
        let at = frame(50, &[]).ts;
        let name = dir
            .path()
            .join(format!("ntptap-flight-{}-x.pcapng", file_time(at)));
        std::fs::write(&name, b"already here").unwrap();
        assert_eq!(r.trigger("x", at).0, 500);
        assert_eq!(std::fs::read(&name).unwrap(), b"already here");
        assert_eq!(r.failed, 1);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!("16M".parse(), Ok(Keep::Bytes(16 << 20)));
        assert_eq!("512K".parse(), Ok(Keep::Bytes(512 << 10)));
        assert_eq!("1000".parse(), Ok(Keep::Bytes(1000)));
        assert_eq!("2G".parse(), Ok(Keep::Bytes(2 << 30)));
        assert_eq!("90s".parse(), Ok(Keep::For(Duration::from_secs(90))));
        assert_eq!("10m".parse(), Ok(Keep::For(Duration::from_mins(10))));
        for bad in ["", "16Q", "M", "0", "-1M", "99999999999999999999G", "1.5M"] {
            assert!(bad.parse::<Keep>().is_err(), "{bad}");
        }
    }
}
