//! Standard output's reader, watched: `ntptap -w - | head -c 30` with no further traffic would
//! otherwise hold its kernel hooks until the next frame's write failed. Once a second (on each
//! tick) standard output is polled; a pipe whose reader has gone reports `POLLERR` (or
//! `POLLHUP`), and the sink answers as a failed write would: a broken pipe, the clean end the
//! capture has for it.

use std::{io, os::fd::AsFd as _};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{
    decoded::Decoded,
    sink::{Control, Sink},
};

/// `S`, writing to standard output, stopped by a broken pipe as soon as the reader goes.
pub struct WatchStdout<S>(pub S);

/// Whether standard output's reader has gone (a pipe with no reader left).
#[must_use]
pub fn reader_gone() -> bool {
    let stdout = io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

impl<S: Sink> Sink for WatchStdout<S> {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        self.0.frame(packet)
    }

    fn control(&mut self, control: &Control<'_>) -> io::Result<()> {
        if matches!(control, Control::Tick { .. }) && reader_gone() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the reader of standard output has gone",
            ));
        }
        self.0.control(control)
    }

    fn unwritten(&self) -> u64 {
        self.0.unwritten()
    }
}
