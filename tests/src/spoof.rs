//! What an attacker does, inside a lab: frames with forged sources and hop limits written to a
//! veth through an `AF_PACKET` socket (as a raw-socket spoofer does, past the stack's checks),
//! and small NTP responders for what no daemon does (a mode 7 monlist answer, a clock a fixed
//! offset away, a reply held after its timestamps).

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::net::Netns;

/// The MAC address of `dev` in `ns`, as bytes.
pub fn mac(ns: &Netns, dev: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (b, h) in mac.iter_mut().zip(ns.mac(dev).split(':')) {
        *b = u8::from_str_radix(h, 16).expect("a MAC byte");
    }
    mac
}

/// Write `frames` (Ethernet, their destination MAC replaced by `to`) out of `dev` in `ns`,
/// `gap` apart.
pub fn inject(ns: &Netns, dev: &str, to: [u8; 6], frames: Vec<Vec<u8>>, gap: Duration) {
    let dev = dev.to_owned();
    ns.enter(move || {
        // SAFETY: socket(2) takes no pointers.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a new descriptor that nothing else owns.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let index = nix::net::if_::if_nametoindex(dev.as_str()).expect("the interface");
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        at.sll_family = libc::AF_PACKET as u16;
        at.sll_ifindex = i32::try_from(index).expect("an index");
        at.sll_halen = 6;
        at.sll_addr[..6].copy_from_slice(&to);
        for mut frame in frames {
            frame[..6].copy_from_slice(&to);
            // SAFETY: sendto reads frame.len() bytes of frame and size_of::<sockaddr_ll>()
            // bytes of `at`, both alive here.
            let n = unsafe {
                libc::sendto(
                    owned.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const at).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            assert_eq!(
                usize::try_from(n).ok(),
                Some(frame.len()),
                "AF_PACKET send: {}",
                std::io::Error::last_os_error()
            );
            std::thread::sleep(gap);
        }
    });
}

/// The NTP timestamp of now plus `offset` seconds.
#[must_use]
pub fn ntp_now(offset: f64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        + offset
        + 2_208_988_800.0;
    (now * 4_294_967_296.0) as u64
}

/// How a [`Responder`] answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Behaviour {
    /// Its clock runs this many seconds ahead of the host's.
    pub offset: f64,
    /// From this long after the start on, each reply waits this long after its timestamps
    /// are taken: the reply path delayed.
    pub hold: Option<(Duration, Duration)>,
    /// A mode 7 request is answered with this many 440-byte responses (MON_GETLIST_1
    /// items, as an ntpd of before 4.2.7p26 sent for its monitor list).
    pub monlist: usize,
}

/// A small NTP server in a namespace, on `addr`, answering as its [`Behaviour`] says until it
/// drops.
pub struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Responder {
    /// Start it in `ns`.
    pub fn start(ns: &Netns, addr: SocketAddr, behaviour: Behaviour) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = ns.spawn(move || {
            let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("a timeout");
            ready_tx.send(()).expect("the test waits");
            serve(&socket, behaviour, &flag)
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the responder started");
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop it; the requests it answered.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("the responder panicked")
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: &UdpSocket, b: Behaviour, stop: &AtomicBool) -> u64 {
    let start = Instant::now();
    let mut answered = 0;
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let request = &buf[..n];
        match request.first().map(|b| b & 7) {
            Some(3) if n >= 48 => {
                let received = ntp_now(b.offset);
                let mut reply = [0u8; 48];
                reply[0] = (request[0] & 0x38) | 4;
                reply[1] = 1;
                reply[2] = request[2];
                reply[3] = 0xec;
                // Root dispersion 1 ms; reference ID "TEST"; reference time now.
                reply[8..12].copy_from_slice(&66u32.to_be_bytes());
                reply[12..16].copy_from_slice(b"TEST");
                reply[16..24].copy_from_slice(&received.to_be_bytes());
                reply[24..32].copy_from_slice(&request[40..48]);
                reply[32..40].copy_from_slice(&received.to_be_bytes());
                reply[40..48].copy_from_slice(&ntp_now(b.offset).to_be_bytes());
                if let Some((after, hold)) = b.hold
                    && start.elapsed() >= after
                {
                    std::thread::sleep(hold);
                }
                let _ = socket.send_to(&reply, from);
                answered += 1;
            }
            Some(7) if n >= 8 && request[0] & 0x80 == 0 && b.monlist > 0 => {
                for i in 0..b.monlist {
                    // R, M (but on the last), version 2, mode 7; sequence i; implementation
                    // and request code as asked; 6 items of 72 bytes.
                    let mut reply = vec![0u8; 440];
                    reply[0] = 0x80 | if i + 1 < b.monlist { 0x40 } else { 0 } | 0x17;
                    reply[1] = (i & 0x7f) as u8;
                    reply[2] = request[2];
                    reply[3] = request[3];
                    reply[4..6].copy_from_slice(&6u16.to_be_bytes());
                    reply[6..8].copy_from_slice(&72u16.to_be_bytes());
                    let _ = socket.send_to(&reply, from);
                }
                answered += 1;
            }
            _ => {}
        }
    }
    answered
}

/// An NTPv4 client request shaped as NTS makes it (RFC 8915): a unique identifier, a cookie
/// and an authenticator extension field, their contents filler.
#[must_use]
pub fn nts_request() -> Vec<u8> {
    let mut request = crate::load::request(1 << 40).to_vec();
    for (kind, body) in [(0x0104u16, 32usize), (0x0204, 100), (0x0404, 36)] {
        request.extend_from_slice(&kind.to_be_bytes());
        request.extend_from_slice(&((body + 4) as u16).to_be_bytes());
        request.extend(std::iter::repeat_n(0x5a, body));
    }
    request
}

/// A mode 7 MON_GETLIST_1 request (implementation 3, XNTPD), as the monlist attack sends.
#[must_use]
pub fn monlist_request() -> Vec<u8> {
    let mut p = vec![0u8; 192];
    p[0] = 0x17;
    p[2] = 3;
    p[3] = 42;
    p
}
