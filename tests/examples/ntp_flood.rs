//! A UDP flood for `cargo xtask bench`: 48-byte NTP client requests (or other UDP) sent with
//! sendmmsg in batches, as fast as possible, for a given time. Prints the packets sent. With
//! `tcp:PORT`, a TCP stream instead: 1448-byte writes to a connected socket; prints the
//! writes.
//!
//! Usage: ntp_flood ADDR [tcp:]PORT SECONDS

use std::{
    net::UdpSocket,
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

const BATCH: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(args.len() == 4, "usage: ntp_flood ADDR [tcp:]PORT SECONDS");
    let seconds: f64 = args[3].parse().expect("seconds");
    if let Some(port) = args[2].strip_prefix("tcp:") {
        let target: std::net::SocketAddr = format!("{}:{port}", args[1]).parse().expect("address");
        println!("{}", stream(target, seconds));
        return;
    }
    let target: std::net::SocketAddr = format!("{}:{}", args[1], args[2]).parse().expect("address");
    let socket = UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .expect("bind");
    socket.connect(target).expect("connect");
    let mut payload = [0u8; 48];
    payload[0] = 0x23;
    let mut iov = [libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    }; BATCH];
    // SAFETY: an all-zero mmsghdr is valid; each one is pointed at its iovec below.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut sent: u64 = 0;
    while Instant::now() < end {
        // SAFETY: msgs holds BATCH valid headers pointing at live iovecs on a connected socket.
        let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent += n as u64;
        }
    }
    println!("{sent}");
}

/// Write 1448-byte chunks to `target` over TCP for `seconds`; how many went.
fn stream(target: std::net::SocketAddr, seconds: f64) -> u64 {
    use std::io::Write as _;
    let mut socket = std::net::TcpStream::connect(target).expect("connect");
    let chunk = [0x5au8; 1448];
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut sent = 0;
    while Instant::now() < end {
        socket.write_all(&chunk).expect("write");
        sent += 1;
    }
    sent
}
