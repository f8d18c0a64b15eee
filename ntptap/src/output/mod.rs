//! Sinks: where frames go once captured or read.
pub mod json;
pub mod pcap;
pub mod text;

use std::io;

use crate::frame::Frame;

/// A consumer of frames.
pub trait Sink {
    /// Take one frame.
    fn frame(&mut self, frame: &Frame<'_>) -> io::Result<()>;
    /// Push buffered output to its destination.
    fn flush(&mut self) -> io::Result<()>;
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn frame(&mut self, frame: &Frame<'_>) -> io::Result<()> {
        (**self).frame(frame)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
}

/// Two sinks fed the same frames (`-w FILE --print`).
pub struct Tee<A, B>(pub A, pub B);

impl<A: Sink, B: Sink> Sink for Tee<A, B> {
    fn frame(&mut self, frame: &Frame<'_>) -> io::Result<()> {
        self.0.frame(frame)?;
        self.1.frame(frame)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// The set of UDP ports whose payload is NTP (the `--port` set).
#[derive(Clone, Debug)]
pub struct PortSet(Vec<u16>);

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
