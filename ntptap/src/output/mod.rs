//! Sinks: where frames go once captured or read.
pub mod file;
pub mod health;
pub mod json;
pub mod metrics;
pub mod pcap;
pub mod pcapng;
pub mod rotate;
pub mod text;

use std::io;

use crate::frame::Frame;

/// A consumer of frames.
pub trait Sink {
    /// Take one frame: `Ok(true)` if it was written, `Ok(false)` if the sink's own filter
    /// passed over it (the printers show only the port set unless `--all`).
    fn frame(&mut self, frame: &Frame<'_>) -> io::Result<bool>;
    /// Push buffered output to its destination.
    fn flush(&mut self) -> io::Result<()>;
    /// The kernel programs' counters, about once a second during a live capture.
    fn kernel_counts(&mut self, _counts: &crate::capture::Counts) {}
    /// Called about once a second during a live capture, with the wall-clock time.
    fn tick(&mut self, _now: std::time::Duration) -> io::Result<()> {
        Ok(())
    }
    /// Start a new output file now (SIGHUP), where the sink writes files.
    fn rotate(&mut self, _now: std::time::Duration) -> io::Result<()> {
        Ok(())
    }
    /// The capture is over: write trailers (pcapng statistics) and flush.
    fn close(&mut self, _stats: &CloseStats) -> io::Result<()> {
        self.flush()
    }
    /// Frames given to `frame` that did not reach the output because it failed (a full disk).
    fn unwritten(&self) -> u64 {
        0
    }
}

/// What a sink may record when the capture ends.
#[derive(Clone, Copy, Debug, Default)]
pub struct CloseStats {
    /// When the capture started and ended (wall clock, since the Unix epoch).
    pub start: std::time::Duration,
    /// See `start`.
    pub end: std::time::Duration,
    /// Frames the kernel matched (received by filter), when known (not for a file closed by
    /// rotation).
    pub received: Option<u64>,
    /// Matched frames the kernel dropped, when known.
    pub dropped: Option<u64>,
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn frame(&mut self, frame: &Frame<'_>) -> io::Result<bool> {
        (**self).frame(frame)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
    fn close(&mut self, stats: &CloseStats) -> io::Result<()> {
        (**self).close(stats)
    }
    fn tick(&mut self, now: std::time::Duration) -> io::Result<()> {
        (**self).tick(now)
    }
    fn kernel_counts(&mut self, counts: &crate::capture::Counts) {
        (**self).kernel_counts(counts);
    }
    fn rotate(&mut self, now: std::time::Duration) -> io::Result<()> {
        (**self).rotate(now)
    }
    fn unwritten(&self) -> u64 {
        (**self).unwritten()
    }
}

/// Two sinks fed the same frames (`-w FILE --print`).
pub struct Tee<A, B>(pub A, pub B);

impl<A: Sink, B: Sink> Sink for Tee<A, B> {
    fn frame(&mut self, frame: &Frame<'_>) -> io::Result<bool> {
        let first = self.0.frame(frame)?;
        Ok(self.1.frame(frame)? || first)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
    fn close(&mut self, stats: &CloseStats) -> io::Result<()> {
        self.0.close(stats)?;
        self.1.close(stats)
    }
    fn tick(&mut self, now: std::time::Duration) -> io::Result<()> {
        self.0.tick(now)?;
        self.1.tick(now)
    }
    fn kernel_counts(&mut self, counts: &crate::capture::Counts) {
        self.0.kernel_counts(counts);
        self.1.kernel_counts(counts);
    }
    fn rotate(&mut self, now: std::time::Duration) -> io::Result<()> {
        self.0.rotate(now)?;
        self.1.rotate(now)
    }
    fn unwritten(&self) -> u64 {
        self.0.unwritten() + self.1.unwritten()
    }
}

/// The endpoints and the decoded NTP packet of `frame`, if it is UDP on `ports`.
#[must_use]
pub fn ntp_in(
    frame: &Frame<'_>,
    ports: &PortSet,
) -> Option<(std::net::SocketAddr, std::net::SocketAddr, crate::ntp::Ntp)> {
    use crate::net::{Net, Transport};
    let d = crate::net::dissect(frame.link, frame.data);
    let (
        Some(Net::Ip { src, dst, .. }),
        Some(Transport::Udp {
            sport,
            dport,
            payload,
            ..
        }),
    ) = (d.net, d.transport)
    else {
        return None;
    };
    if !ports.contains(sport) && !ports.contains(dport) {
        return None;
    }
    let ntp = crate::ntp::Ntp::decode(payload).ok()?;
    Some((
        std::net::SocketAddr::new(src, sport),
        std::net::SocketAddr::new(dst, dport),
        ntp,
    ))
}

/// The set of UDP ports whose payload is NTP (the `--port` set).
#[derive(Clone, Debug)]
pub struct PortSet(Vec<u16>);

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

impl PortSet {
    /// From the configured ports.
    #[must_use]
    pub fn new(mut ports: Vec<u16>) -> Self {
        ports.sort_unstable();
        ports.dedup();
        Self(ports)
    }
    /// Whether `port` is in the set.
    #[must_use]
    pub fn contains(&self, port: u16) -> bool {
        self.0.binary_search(&port).is_ok()
    }
    /// The ports, sorted.
    #[must_use]
    pub fn ports(&self) -> &[u16] {
        &self.0
    }
}
