//! How a capture ends, decided in one place, and what it says when it does.

use std::{fmt::Write as _, io};

use ntptap_common::Counter;

use crate::counts::Counts;

/// Why a capture ended.
#[derive(Debug)]
pub enum StopReason {
    /// A signal (its name).
    Signal(&'static str),
    /// `-c` frames were written.
    Count,
    /// The reader of the output went away (a broken pipe).
    OutputClosed,
    /// `--duration` elapsed.
    Duration,
    /// An interface named with `-i` went away (its name).
    InterfaceGone(String),
    /// The output could not be written (a full disk, a removed directory).
    OutputFailed(io::Error),
}

impl StopReason {
    /// The reason an output error ends the capture for: a closed reader is a clean end
    /// ([`crate::frame::output_closed`]), anything else a failure.
    #[must_use]
    pub fn from_output(err: io::Error) -> Self {
        if crate::frame::output_closed(&err) {
            StopReason::OutputClosed
        } else {
            StopReason::OutputFailed(err)
        }
    }

    /// The reason once the output has had its last word (`result`): an output that already
    /// failed or closed keeps that reason; otherwise a failure now becomes the reason.
    #[must_use]
    pub fn after_output(self, result: io::Result<()>) -> Self {
        match (self, result) {
            (reason, Ok(()))
            | (reason @ (StopReason::OutputFailed(_) | StopReason::OutputClosed), Err(_)) => reason,
            (_, Err(e)) => StopReason::from_output(e),
        }
    }

    /// Whether the frames still in the rings go to the output before it closes: not when the
    /// output asked for no more (`-c` reached, closed, failed). Those frames stay counted as
    /// received and left unread.
    #[must_use]
    pub fn takes_the_rest(&self) -> bool {
        !matches!(
            self,
            StopReason::Count | StopReason::OutputClosed | StopReason::OutputFailed(_)
        )
    }
}

/// The outcome of a capture.
#[derive(Debug)]
pub struct Summary {
    /// Frames handed to the output.
    pub captured: u64,
    /// Drop records handed to the output (not counted in `captured`).
    pub drop_records: u64,
    /// Ring records that could not be read (malformed; should never happen).
    pub bad_records: u64,
    /// Frames handed to the output that did not reach it because it failed.
    pub unwritten: u64,
    /// Why it stopped.
    pub reason: StopReason,
    /// The kernel's counters after the programs were detached.
    pub counts: Counts,
}

impl Summary {
    /// tcpdump's three lines (captured, received by filter, dropped by kernel), then one line
    /// with the reasons, each counter under its one name ([`Counter::label`]).
    #[must_use]
    pub fn render(&self) -> String {
        let c = &self.counts;
        let received = c.total(Counter::Matched);
        let dropped = c.dropped();
        let unread = received.saturating_sub(self.captured + dropped);
        let mut out = String::new();
        // Captured: in the output. Frames the output refused are counted apart.
        let _ = writeln!(
            out,
            "{} packets captured",
            self.captured.saturating_sub(self.unwritten)
        );
        let _ = writeln!(out, "{received} packets received by filter");
        let _ = writeln!(out, "{dropped} packets dropped by kernel");
        let n = |counter: Counter| format!("{} {}", c.total(counter), counter.label());
        let _ = write!(
            out,
            "ntptap: dropped: {}, {}; not captured: {}, {}, {}; {}; {unread} left unread",
            n(Counter::RingFull),
            n(Counter::CopyFailed),
            n(Counter::Unparsable),
            n(Counter::LaterFragment),
            n(Counter::OtherProcess),
            n(Counter::Truncated),
        );
        match self.reason {
            StopReason::Count => out.push_str(" (-c reached)"),
            StopReason::OutputClosed => out.push_str(" (the output was closed)"),
            _ => {}
        }
        if self.bad_records > 0 {
            let _ = write!(out, "; {} malformed ring records", self.bad_records);
        }
        if let StopReason::OutputFailed(_) = self.reason {
            let _ = write!(out, "; {} not written (the output failed)", self.unwritten);
        }
        out.push('\n');
        if let Some(o) = &c.owners {
            let _ = writeln!(
                out,
                "ntptap: process attribution: {} socket owners recorded, {} changed hands, {} \
                 closed, {} held, {} evicted (the owner map was full); {} UDP sockets open \
                 before the start found in /proc, named {} times since (at TC, once each)",
                o.recorded,
                o.changed,
                o.released,
                o.live,
                o.evicted(),
                o.earlier_sockets,
                o.earlier_frames
            );
        }
        if let Some(d) = &c.drops {
            use ntptap_common::DropStat;
            let matched = d.total(DropStat::Matched);
            let recorded = d.total(DropStat::Recorded);
            let reasons: Vec<String> = d
                .by_reason()
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "ntptap: kernel drops: {matched} NTP frames dropped in this host{}; {} drop \
                 records read, {} lost to a full ring, {} not copied, {} left unread",
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", reasons.join(", "))
                },
                self.drop_records,
                d.total(DropStat::RingFull),
                d.total(DropStat::CopyFailed),
                recorded.saturating_sub(self.drop_records),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_a_clean_end_and_the_first_failure_stays() {
        let pipe = || io::Error::from(io::ErrorKind::BrokenPipe);
        let full = || io::Error::from(io::ErrorKind::StorageFull);
        assert!(matches!(
            StopReason::from_output(pipe()),
            StopReason::OutputClosed
        ));
        assert!(matches!(
            StopReason::from_output(full()),
            StopReason::OutputFailed(_)
        ));
        let failed = StopReason::Signal("SIGINT").after_output(Err(full()));
        assert!(
            matches!(&failed, StopReason::OutputFailed(e) if e.kind() == io::ErrorKind::StorageFull)
        );
        let still = failed.after_output(Err(pipe()));
        assert!(
            matches!(still, StopReason::OutputFailed(_)),
            "the first failure stays"
        );
        assert!(matches!(
            StopReason::Duration.after_output(Ok(())),
            StopReason::Duration
        ));
        assert!(StopReason::Signal("SIGTERM").takes_the_rest());
        assert!(!StopReason::Count.takes_the_rest());
        assert!(!StopReason::OutputClosed.takes_the_rest());
    }

    #[test]
    fn the_summary_names_every_counter_once() {
        let summary = Summary {
            captured: 5,
            drop_records: 0,
            bad_records: 0,
            unwritten: 0,
            reason: StopReason::Count,
            counts: Counts::default(),
        };
        let text = summary.render();
        assert!(text.starts_with("5 packets captured\n0 packets received by filter\n"));
        for counter in [
            Counter::RingFull,
            Counter::CopyFailed,
            Counter::Unparsable,
            Counter::LaterFragment,
            Counter::OtherProcess,
            Counter::Truncated,
        ] {
            assert!(text.contains(&format!("0 {}", counter.label())), "{text}");
        }
        assert!(text.contains("(-c reached)"));
    }
}
