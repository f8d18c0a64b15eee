//! tcpdump-style text: one line per frame, NTP detail with `-v`, hex with `-X`.

use std::{
    fmt::Write as _,
    io::{self, Write},
    time::Duration,
};

use chrono::{DateTime, Local};

use super::{
    super::{decoded::Decoded, sink::Control as SinkControl, sink::Filter, sink::Sink},
    dump::{ascii_dump, hex_dump, hex_lines, link_header_len},
    lines::{self, TcpConversations},
};
use crate::{ntp::time::push_date_time, process::Socket};

/// How timestamps are printed (tcpdump's `-t` count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeFormat {
    /// `HH:MM:SS.uuuuuu`, local time (no `-t`).
    #[default]
    Time,
    /// No timestamp (`-t`).
    None,
    /// Seconds since the epoch (`-tt`).
    Epoch,
    /// Delta since the previous frame (`-ttt`).
    Delta,
    /// `YYYY-MM-DD HH:MM:SS.uuuuuu`, local time (`-tttt`).
    DateTime,
    /// Delta since the first frame (`-ttttt`).
    SinceFirst,
}

impl TimeFormat {
    /// From the number of `-t` flags.
    #[must_use]
    pub fn from_count(n: u8) -> Self {
        match n {
            0 => TimeFormat::Time,
            1 => TimeFormat::None,
            2 => TimeFormat::Epoch,
            3 => TimeFormat::Delta,
            4 => TimeFormat::DateTime,
            _ => TimeFormat::SinceFirst,
        }
    }
}

/// What the printer shows.
#[derive(Clone, Debug, Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "one bool per tcpdump-style flag"
)]
pub struct TextOptions {
    /// `-v` count.
    pub verbose: u8,
    /// `-x`, `-xx`, `-X`, `-XX`, `-A`: the frame's bytes under its line.
    pub dump: Option<Dump>,
    /// `-q`: addresses and "UDP, length N", no NTP decode.
    pub quick: bool,
    /// `-K`: no UDP checksum check.
    pub no_checksum: bool,
    /// `--time-stamp-precision=nano`: times to the nanosecond.
    pub nano: bool,
    /// `-e`: the link-level header.
    pub link_header: bool,
    /// `-#`: the frame number first.
    pub number: bool,
    /// Timestamp format.
    pub time: TimeFormat,
    /// Prefix the interface and direction (several interfaces, as tcpdump's `-i any`).
    pub show_iface: bool,
    /// `--process`: the socket's owner as `comm[pid]` on the line.
    pub process: bool,
    /// `-S`: TCP sequence numbers as they are, not relative to the conversation's first.
    pub absolute_seq: bool,
}

/// A frame's bytes under its line, as tcpdump lays them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dump {
    /// Hex, 16 bytes a line in pairs (`-x`, `-X`).
    pub hex: bool,
    /// ASCII: beside the hex (`-X`), or alone (`-A`).
    pub ascii: bool,
    /// From the link header on (the doubled letter), not from the network header.
    pub link: bool,
}

impl Dump {
    /// From the counts of `-X`, `-x` and `-A`: -X wins over -x, and -x over -A, as in tcpdump.
    #[must_use]
    pub fn from_counts(hex_ascii: u8, hex: u8, ascii: u8) -> Option<Self> {
        let (count, hex, ascii) = match (hex_ascii, hex, ascii) {
            (n @ 1.., _, _) => (n, true, true),
            (0, n @ 1.., _) => (n, true, false),
            (0, 0, n @ 1..) => (n, false, true),
            (0, 0, 0) => return None,
        };
        Some(Self {
            hex,
            ascii,
            link: count > 1,
        })
    }
}

/// Prints frames as text.
pub struct TextSink<W: Write> {
    out: W,
    options: TextOptions,
    filter: Filter,
    first: Option<Duration>,
    previous: Option<Duration>,
    line: String,
    zone: LocalZone,
    /// Frames printed so far (tcpdump's `-#` counts what it prints).
    shown: u64,
    /// TCP conversations' first sequence numbers, for relative ones (not with `-S`).
    tcp: TcpConversations,
}

/// The local time zone's offset from UTC, looked up once per hour of timestamps rather than
/// once per frame.
#[derive(Debug, Default)]
struct LocalZone {
    hour: Option<i64>,
    offset: i64,
}

impl LocalZone {
    fn offset(&mut self, secs: i64) -> i64 {
        let hour = secs.div_euclid(3600);
        if self.hour != Some(hour) {
            self.hour = Some(hour);
            self.offset = DateTime::from_timestamp(secs, 0).map_or(0, |t| {
                i64::from(t.with_timezone(&Local).offset().local_minus_utc())
            });
        }
        self.offset
    }
}

impl<W: Write> TextSink<W> {
    /// A printer writing to `out`, showing what `filter` lets through.
    pub fn new(out: W, options: TextOptions, filter: Filter) -> Self {
        Self {
            out,
            options,
            filter,
            first: None,
            previous: None,
            line: String::with_capacity(256),
            zone: LocalZone::default(),
            shown: 0,
            tcp: TcpConversations::default(),
        }
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn timestamp(&mut self, ts: Duration) {
        let secs = ts.as_secs() as i64;
        let micros = ts.subsec_micros();
        let fraction = Fraction {
            nanos: ts.subsec_nanos(),
            nano: self.options.nano,
        };
        match self.options.time {
            TimeFormat::None => {}
            TimeFormat::Time => {
                let local = secs + self.zone.offset(secs);
                let sod = local.rem_euclid(86_400);
                if self.options.nano {
                    push_clock(&mut self.line, sod, 0);
                    // push_clock ends in ".000000 ": the nanoseconds instead.
                    self.line.truncate(self.line.len() - 8);
                    let _ = write!(self.line, "{fraction} ");
                } else {
                    push_clock(&mut self.line, sod, micros);
                }
            }
            TimeFormat::DateTime => {
                let local = secs + self.zone.offset(secs);
                push_date_time(&mut self.line, local, Some(' '));
                let _ = write!(self.line, "{fraction} ");
            }
            TimeFormat::Epoch => {
                let _ = write!(self.line, "{secs}{fraction} ");
            }
            TimeFormat::Delta | TimeFormat::SinceFirst => {
                let base = if self.options.time == TimeFormat::Delta {
                    self.previous
                } else {
                    self.first
                };
                // tcpdump: a sign (a space, or '-' for a frame older than its base), then
                // %02d:%02d:%02d.
                let base = base.unwrap_or(ts);
                let (sign, d) = (if ts >= base { ' ' } else { '-' }, ts.abs_diff(base));
                let _ = write!(
                    self.line,
                    "{sign}{:02}:{:02}:{:02}{} ",
                    d.as_secs() / 3600,
                    d.as_secs() / 60 % 60,
                    d.as_secs() % 60,
                    Fraction {
                        nanos: d.subsec_nanos(),
                        nano: self.options.nano
                    }
                );
            }
        }
        self.first.get_or_insert(ts);
        self.previous = Some(ts);
    }

    fn describe(&mut self, packet: &Decoded<'_>) {
        lines::describe(&mut self.line, packet, &self.options, &mut self.tcp);
    }
}

/// `HH:MM:SS.uuuuuu ` for `sod` seconds of the day.
fn push_clock(line: &mut String, sod: i64, micros: u32) {
    let two = |line: &mut String, v: i64| {
        line.push(char::from(b'0' + (v / 10) as u8));
        line.push(char::from(b'0' + (v % 10) as u8));
    };
    two(line, sod / 3600);
    line.push(':');
    two(line, sod / 60 % 60);
    line.push(':');
    two(line, sod % 60);
    line.push('.');
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(micros);
    for _ in digits.len()..6 {
        line.push('0');
    }
    line.push_str(digits);
    line.push(' ');
}

pub(super) fn push_num<I: itoa::Integer>(line: &mut String, n: I) {
    line.push_str(itoa::Buffer::new().format(n));
}

/// The fraction of a second after a time: `.micros`, or `.nanos` with nano precision.
struct Fraction {
    nanos: u32,
    nano: bool,
}

impl std::fmt::Display for Fraction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.nano {
            write!(f, ".{:09}", self.nanos)
        } else {
            write!(f, ".{:06}", self.nanos / 1000)
        }
    }
}

impl<W: Write> Sink for TextSink<W> {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        let frame = packet.frame;
        if !self.filter.shows(packet.transport().as_ref()) {
            return Ok(false);
        }
        self.shown += 1;
        self.line.clear();
        if self.options.number {
            let _ = write!(self.line, "{:5}  ", self.shown);
        }
        self.timestamp(frame.ts);
        if self.options.show_iface {
            let _ = write!(
                self.line,
                "{} {} ",
                crate::escape::terminal(frame.iface.unwrap_or("?")),
                frame.direction.map_or("   ", |d| d.label())
            );
        }
        if let Some(drop) = frame.drop {
            let _ = write!(
                self.line,
                "DROPPED ({}) ",
                crate::process::escape(drop.reason.as_bytes())
            );
        }
        if self.options.process {
            match frame.socket {
                Socket::Owned(p) => {
                    self.line.push_str(&p.short());
                    self.line.push(' ');
                }
                Socket::None => self.line.push_str("[no socket] "),
                Socket::Unowned => self.line.push_str("[unowned] "),
                Socket::Unknown => {}
            }
        }
        self.describe(packet);
        if self.options.verbose > 0 {
            match frame.socket {
                Socket::Owned(p) => {
                    let _ = write!(self.line, "\n\tprocess {}", p.pairs());
                }
                Socket::None => self.line.push_str("\n\tprocess: no socket takes it"),
                Socket::Unowned => {
                    self.line
                        .push_str("\n\tprocess: a socket opened before ntptap started");
                }
                Socket::Unknown => {}
            }
        }
        if let Some(latency) = &packet.latency
            && self.options.verbose > 0
        {
            let _ = write!(self.line, "\n\tin this host:");
            for (_, stage, ns) in latency.stages() {
                let _ = write!(self.line, " {stage} {:.1} µs", ns as f64 / 1e3);
            }
            if let Some(t) = latency.t3_minus_t2 {
                let _ = write!(self.line, " (T3 - T2 {:.1} µs)", t as f64 / 1e3);
            }
        }
        if let Some(drop) = frame.drop
            && self.options.verbose > 0
        {
            let _ = write!(
                self.line,
                "\n\tdropped by the kernel in {}",
                crate::process::escape(drop.location.as_bytes())
            );
        }
        if let Some(dump) = self.options.dump {
            // Without the doubled letter, from past the link header; nothing when nothing is
            // past it (tcpdump's rule).
            // A frame tcpdump found cut short past its link header ("[|ntp]" ends its
            // line) is dumped whole; one shorter than its link header, not at all.
            let truncated = self
                .line
                .rsplit_once(" [|")
                .is_some_and(|(_, t)| t.ends_with(']') && !t.contains(' ') && t != "ether]");
            let from = if dump.link || truncated {
                0
            } else {
                link_header_len(frame.link, &packet.layers().vlans)
            };
            if let Some(bytes) = frame.data.get(from..).filter(|b| !b.is_empty()) {
                match (dump.hex, dump.ascii) {
                    (true, true) => hex_dump(&mut self.line, bytes),
                    (true, false) => hex_lines(&mut self.line, bytes),
                    _ => ascii_dump(&mut self.line, bytes),
                }
            }
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())?;
        Ok(true)
    }

    fn control(&mut self, control: &SinkControl<'_>) -> io::Result<()> {
        match control {
            SinkControl::Flush | SinkControl::Close { .. } => self.out.flush(),
            SinkControl::Tick { .. }
            | SinkControl::Kernel(_)
            | SinkControl::Rotate(_)
            | SinkControl::Trigger(..) => Ok(()),
        }
    }

    fn unwritten(&self) -> u64 {
        0
    }
}
