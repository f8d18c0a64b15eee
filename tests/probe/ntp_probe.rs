//! A minimal NTP client for the container test (`tests/tests/attribution.rs`): `COUNT`
//! requests to `ADDR` port 123 from one socket, each waiting up to a second for its reply.
//! Built there with rustc alone for the musl target, a static binary for a FROM-scratch
//! image; std only.
//!
//! Usage: ntp_probe ADDR COUNT [GAP_MS] (a pause after each exchange)

use std::{net::UdpSocket, time::Duration};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, count) = (&args[1], args[2].parse::<u32>().expect("a count"));
    let gap = args.get(3).map_or(0, |ms| ms.parse::<u64>().expect("a pause in ms"));
    let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut request = [0u8; 48];
    request[0] = 0x23;
    let mut buf = [0u8; 512];
    for i in 0..count {
        request[44..48].copy_from_slice(&i.to_be_bytes());
        socket.send_to(&request, (addr.as_str(), 123)).expect("send");
        let _ = socket.recv_from(&mut buf);
        std::thread::sleep(Duration::from_millis(gap));
    }
}
