//! What every output is: a [`Sink`] of decoded frames, the [`Control`] calls that are not
//! frames, and the port set and filter a printer applies.

use std::{io, time::Duration};

use super::decoded::{Decoded, PortSet};
pub use crate::frame::CloseStats;
use crate::{counts::Counts, exchange::Tracker, frame::PcapRecords};

/// A consumer of decoded frames: a printer, a file writer, the metrics.
///
/// Two required methods, so that a wrapper (a guard, a rotating series of files) forwards
/// everything that is not a frame through one method and cannot forget a kind of call.
pub trait Sink {
    /// Take one frame: `Ok(true)` if it was shown or written, `Ok(false)` if the sink's own
    /// filter passed over it (the printers show only the port set unless `--all`), or if it
    /// only counts frames.
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool>;
    /// Everything else: ticks, kernel counters, rotation, flushes, the end. A sink matches
    /// the kinds it uses and lets the others pass.
    fn control(&mut self, control: &Control<'_>) -> io::Result<()>;
    /// Frames given to `frame` that did not reach the output because it failed (a full disk);
    /// 0 for an output that cannot fail that way.
    fn unwritten(&self) -> u64;
    /// A sink that only writes frames' bytes to a pcap file takes them without a decode (see
    /// [`crate::frame::Consumer::pcap_records`]).
    fn pcap_records(&mut self) -> Option<&mut dyn PcapRecords> {
        None
    }
}

/// What a [`Sink`] is told besides frames.
#[derive(Clone, Copy, Debug)]
pub enum Control<'a> {
    /// About once a second during a live capture, with the wall-clock time, and the exchange
    /// tracker (already expired to `now`) when the outputs keep one.
    Tick {
        /// Wall-clock time, since the Unix epoch.
        now: Duration,
        /// The exchange tracker, if any output uses it.
        exchanges: Option<&'a Tracker>,
    },
    /// The kernel programs' counters, about once a second during a live capture.
    Kernel(&'a Counts),
    /// Start a new output file now (SIGHUP), where the sink writes a series of files.
    Rotate(Duration),
    /// Push buffered output to its destination.
    Flush,
    /// Someone asked for a flight-recorder dump now (SIGUSR1): who, and when (wall clock).
    Trigger(&'a str, Duration),
    /// The capture is over: write trailers (pcapng statistics), final tables, and flush.
    Close {
        /// What the capture knows of itself.
        stats: &'a CloseStats,
        /// The exchange tracker, if any output uses it.
        exchanges: Option<&'a Tracker>,
    },
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        (**self).frame(packet)
    }
    fn control(&mut self, control: &Control<'_>) -> io::Result<()> {
        (**self).control(control)
    }
    fn unwritten(&self) -> u64 {
        (**self).unwritten()
    }
    fn pcap_records(&mut self) -> Option<&mut dyn PcapRecords> {
        (**self).pcap_records()
    }
}

/// What the printers show: UDP on the port set, or every frame (`--all`).
#[derive(Clone, Debug)]
pub struct Filter {
    /// Ports whose UDP payload is NTP.
    pub ports: PortSet,
    /// Show every frame, not only those on the port set.
    pub all: bool,
}

impl Filter {
    /// Whether a frame with this transport layer is shown.
    #[must_use]
    pub fn shows(&self, transport: Option<&crate::net::Transport<'_>>) -> bool {
        self.all
            || matches!(transport, Some(crate::net::Transport::Udp { sport, dport, .. })
                if self.ports.contains(*sport) || self.ports.contains(*dport))
    }
}

/// Shorthands for the sinks' unit tests: a frame on port 123, a flush, a close.
#[cfg(test)]
pub(crate) trait SinkExt: Sink {
    fn take(&mut self, frame: &crate::frame::Frame<'_>) -> io::Result<bool> {
        let ports = PortSet::new(vec![123]);
        self.frame(&Decoded::new(frame, &ports))
    }
    fn flush_now(&mut self) -> io::Result<()> {
        self.control(&Control::Flush)
    }
    fn close_now(&mut self, stats: &CloseStats) -> io::Result<()> {
        self.control(&Control::Close {
            stats,
            exchanges: None,
        })
    }
}

#[cfg(test)]
impl<S: Sink + ?Sized> SinkExt for S {}
