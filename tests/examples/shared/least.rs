//! What the least readers share (least_reader.rs, least_json.rs): ntptap's session opened as
//! `ntptap -i IFACE` opens it (the same programs, attribution included, and the same per-CPU
//! rings), its frame records read until SIGINT or SIGTERM as ntptap's `-w` waits for them (the
//! kernel's wake-up at a quarter full, or 250 ms), and the counts ntptap prints at the end for
//! the bench to read.

use std::{
    ops::ControlFlow,
    os::fd::AsRawFd as _,
    sync::atomic::{AtomicBool, Ordering},
};

use ntptap::capture::{CaptureConfig, Rings, Session, iface};
use ntptap_common::{Counter, RECORD_DROP, RecordHeader};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// The session on interface `name`, and its rings.
pub fn open(name: &str) -> (Session, Rings) {
    let config = CaptureConfig {
        interfaces: vec![iface::by_name(name).expect("the interface")],
        attribution: Some(ntptap::capture::owners::Selection::default()),
        ..CaptureConfig::default()
    };
    let mut session = Session::open(&config).expect("open the capture (run as root)");
    let rings = session.take_rings().expect("the rings");
    (session, rings)
}

/// Each frame record's header and bytes to `frame`, until SIGINT or SIGTERM.
pub fn each_frame(rings: &mut Rings, mut frame: impl FnMut(&RecordHeader, &[u8])) {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
    let header = size_of::<RecordHeader>();
    loop {
        let stop = STOP.load(Ordering::Relaxed);
        rings.read(|record| {
            if let Some(h) = record.get(..header) {
                // SAFETY: `h` has exactly size_of::<RecordHeader>() bytes of plain integers.
                let h: RecordHeader = unsafe { std::ptr::read_unaligned(h.as_ptr().cast()) };
                if h.flags & RECORD_DROP == 0
                    && let Some(data) = record.get(header..header + usize::from(h.cap_len))
                {
                    frame(&h, data);
                }
            }
            ControlFlow::<()>::Continue(())
        });
        if stop {
            break;
        }
        let mut fd = libc::pollfd {
            fd: rings.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd, which lives here; the rings' epoll
        // descriptor lives as long as `rings`.
        unsafe { libc::poll(&raw mut fd, 1, 250) };
    }
}

/// What ntptap prints at the end: frames captured, matched, dropped by the kernel.
pub fn report(session: &Session, captured: u64) {
    let counts = session.counts().expect("the counters");
    eprintln!("{captured} packets captured");
    eprintln!(
        "{} packets received by filter",
        counts.total(Counter::Matched)
    );
    eprintln!(
        "{} packets dropped by kernel",
        counts.total(Counter::RingFull)
    );
}
