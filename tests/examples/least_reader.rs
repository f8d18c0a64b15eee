//! The floor of the reader: ntptap's kernel programs and rings (a [`Session`] opened as
//! `ntptap -i IFACE --hook tc --no-attribution -w FILE` opens it), read by the least loop that
//! still writes a pcap file: wait for the rings (the kernel's wake-up at a quarter full, or
//! 250 ms, as ntptap's `-w`), take each record, append a pcap record header and its bytes to
//! one buffer, one `write(2)` per batch. No frame, no tracker, no metrics, no journal. Run by
//! `cargo xtask bench` as the contender "least tc"; it prints what ntptap prints for the
//! bench to read ("listening on", "N packets captured", "N packets dropped by kernel").
//!
//! Usage: `least_reader IFACE FILE`; stops on SIGINT or SIGTERM.

use std::{
    io::Write as _,
    ops::ControlFlow,
    os::fd::AsRawFd as _,
    sync::atomic::{AtomicBool, Ordering},
};

use ntptap::capture::{CaptureConfig, Session, WallClock, iface};
use ntptap_common::{Counter, RECORD_DROP, RecordHeader};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, path] = args.as_slice() else {
        eprintln!("usage: least_reader IFACE FILE");
        std::process::exit(2);
    };
    let config = CaptureConfig {
        interfaces: vec![iface::by_name(name).expect("the interface")],
        attribution: None,
        ..CaptureConfig::default()
    };
    let mut session = Session::open(&config).expect("open the capture (run as root)");
    let rings = session.take_rings().expect("the rings");
    let mut file = std::fs::File::create(path).expect("create the file");
    // A nanosecond pcap, as ntptap writes: magic, version 2.4, snap length, Ethernet.
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(&0xa1b2_3c4d_u32.to_ne_bytes());
    buf.extend_from_slice(&2u16.to_ne_bytes());
    buf.extend_from_slice(&4u16.to_ne_bytes());
    buf.extend_from_slice(&[0; 8]);
    buf.extend_from_slice(&2048u32.to_ne_bytes());
    buf.extend_from_slice(&1u32.to_ne_bytes());
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
    let clock = WallClock::new();
    let mut rings = rings;
    let mut captured = 0u64;
    eprintln!("least_reader: listening on {name}");
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
                    let ts = clock.wall(h.ts_mono_ns);
                    buf.extend_from_slice(&(ts.as_secs() as u32).to_ne_bytes());
                    buf.extend_from_slice(&ts.subsec_nanos().to_ne_bytes());
                    buf.extend_from_slice(&u32::from(h.cap_len).to_ne_bytes());
                    buf.extend_from_slice(&h.orig_len.to_ne_bytes());
                    buf.extend_from_slice(data);
                    captured += 1;
                }
            }
            ControlFlow::<()>::Continue(())
        });
        if !buf.is_empty() {
            file.write_all(&buf).expect("write the file");
            buf.clear();
        }
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
