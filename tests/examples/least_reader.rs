//! The floor of the reader: ntptap's kernel programs and rings (a [`Session`] opened as
//! `ntptap -i IFACE -w FILE` opens it, attribution included), read by the least loop that
//! still writes a pcap file: wait for the rings (the kernel's wake-up at a quarter full, or
//! 250 ms, as ntptap's `-w`), take each record, append a pcap record header and its bytes to
//! one buffer, and write it past the page cache (O_DIRECT, as ntptap's `-w` does) a MiB at a
//! time, the tail at the end through the page cache. No frame, no tracker, no metrics, no
//! journal. Run by
//! `cargo xtask bench` as the contender "least tc"; it prints what ntptap prints for the
//! bench to read ("listening on", "N packets captured", "N packets dropped by kernel").
//!
//! Usage: `least_reader IFACE FILE`; stops on SIGINT or SIGTERM.

#[path = "shared/least.rs"]
mod least;

use std::{io::Write as _, os::fd::AsRawFd as _, os::unix::fs::OpenOptionsExt as _};

use ntptap::capture::WallClock;

/// What one O_DIRECT write takes: 1 MiB, as ntptap's writer.
const CHUNK: usize = 1 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, path] = args.as_slice() else {
        eprintln!("usage: least_reader IFACE FILE");
        std::process::exit(2);
    };
    let (session, mut rings) = least::open(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .expect("create the file (O_DIRECT)");
    // One aligned buffer: records are appended, whole MiBs written from its start, the rest
    // (less than a record) moved back to it.
    let layout = std::alloc::Layout::from_size_align(2 * CHUNK, 4096).expect("a layout");
    // SAFETY: the layout's size is not zero; the memory is freed at the end.
    let base = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!base.is_null(), "out of memory");
    // SAFETY: `base` points to 2 * CHUNK bytes this function owns until it frees them.
    let buf = unsafe { std::slice::from_raw_parts_mut(base, 2 * CHUNK) };
    let mut len = 0usize;
    let mut put = |bytes: &[u8], len: &mut usize| {
        buf[*len..*len + bytes.len()].copy_from_slice(bytes);
        *len += bytes.len();
    };
    // A nanosecond pcap, as ntptap writes: magic, version 2.4, snap length, Ethernet.
    put(&0xa1b2_3c4d_u32.to_ne_bytes(), &mut len);
    put(&2u16.to_ne_bytes(), &mut len);
    put(&4u16.to_ne_bytes(), &mut len);
    put(&[0; 8], &mut len);
    put(&2048u32.to_ne_bytes(), &mut len);
    put(&1u32.to_ne_bytes(), &mut len);
    let clock = WallClock::new();
    let mut captured = 0u64;
    eprintln!("least_reader: listening on {name}");
    least::each_frame(&mut rings, |h, data| {
        let ts = clock.wall(h.ts_mono_ns);
        let mut pcap = [0u8; 16];
        pcap[..4].copy_from_slice(&(ts.as_secs() as u32).to_ne_bytes());
        pcap[4..8].copy_from_slice(&ts.subsec_nanos().to_ne_bytes());
        pcap[8..12].copy_from_slice(&u32::from(h.cap_len).to_ne_bytes());
        pcap[12..].copy_from_slice(&h.orig_len.to_ne_bytes());
        let at = len;
        buf[at..at + 16].copy_from_slice(&pcap);
        buf[at + 16..at + 16 + data.len()].copy_from_slice(data);
        len = at + 16 + data.len();
        captured += 1;
        if len >= CHUNK {
            file.write_all(&buf[..CHUNK]).expect("write the file");
            buf.copy_within(CHUNK..len, 0);
            len -= CHUNK;
        }
    });
    // The tail, through the page cache.
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) };
    file.write_all(&buf[..len]).expect("write the file");
    // SAFETY: `base` came from `alloc_zeroed` with `layout`, and `buf` is not used again.
    unsafe { std::alloc::dealloc(base, layout) };
    least::report(&session, captured);
}
