//! Network namespaces with unique names, deleted when their guard drops; the two-host lab on a
//! veth pair; an AF_PACKET tap; nftables counters.

use std::{
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use crate::proc::{require_root, run};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace with a unique name, deleted on drop (panics included).
pub struct Netns {
    pub name: String,
}

impl Netns {
    #[must_use]
    pub fn new(tag: &str) -> Self {
        require_root();
        let name = format!(
            "ntptap-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Output {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs `program` inside the namespace.
    #[must_use]
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Netns {
    /// Run `f` on a thread that has entered this namespace: sockets it creates live there.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f)
            .join()
            .expect("the thread in the namespace panicked")
    }

    /// [`Netns::enter`] without waiting: the thread, to join when it is done.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("enter {path}: {e}"));
            f()
        })
    }

    /// The MAC address of `dev` here, as `ip link` prints it.
    pub fn mac(&self, dev: &str) -> String {
        let out = self.ip(&["-o", "link", "show", dev]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split("link/ether ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("MAC")
            .to_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair: `a` (server side, `va`) and `b` (client side, `vb`),
/// with IPv4 and IPv6 addresses and TX checksum offload off (so captured checksums are whole).
pub struct Lab {
    // Field order is drop order: processes first (in tests), then b, then a.
    pub b: Netns,
    pub a: Netns,
}

impl Lab {
    pub const A4: &'static str = "10.203.0.1";
    pub const B4: &'static str = "10.203.0.2";
    pub const A6: &'static str = "fd00:203::1";
    pub const B6: &'static str = "fd00:203::2";

    /// The NTP port of `a`'s IPv4 address, or of its IPv6 one.
    #[must_use]
    pub fn a_ntp(v6: bool) -> std::net::SocketAddr {
        let ip: std::net::IpAddr = if v6 { Self::A6 } else { Self::A4 }
            .parse()
            .expect("an address");
        std::net::SocketAddr::new(ip, 123)
    }

    #[must_use]
    pub fn new(tag: &str) -> Self {
        let a = Netns::new(&format!("{tag}-a"));
        let b = Netns::new(&format!("{tag}-b"));
        run(Command::new("ip").args([
            "link", "add", "va", "netns", &a.name, "type", "veth", "peer", "name", "vb", "netns",
            &b.name,
        ]));
        for (ns, dev, v4, v6) in [
            (&a, "va", Self::A4, Self::A6),
            (&b, "vb", Self::B4, Self::B6),
        ] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev]);
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"]);
            ns.ip(&["link", "set", dev, "up"]);
            run(ns.command("ethtool").args(["-K", dev, "tx", "off"]));
        }
        // Permanent neighbour entries: a burst sent before ARP or ND resolved would be cut to
        // the kernel's unresolved queue (about 100 packets) before it reached the wire.
        let (mac_a, mac_b) = (a.mac("va"), b.mac("vb"));
        for (ns, dev, peers, peer_mac) in [
            (&a, "va", [Self::B4, Self::B6], &mac_b),
            (&b, "vb", [Self::A4, Self::A6], &mac_a),
        ] {
            for peer in peers {
                ns.ip(&[
                    "neigh",
                    "replace",
                    peer,
                    "lladdr",
                    peer_mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ]);
            }
        }
        Lab { b, a }
    }
}

/// An `AF_PACKET` socket on one interface of a namespace: every frame the kernel hands to
/// packet taps, both ways, as libpcap gets them (tcpdump is not in the kernel matrix's guests).
pub struct PacketTap(std::os::fd::OwnedFd);

impl PacketTap {
    /// Open it on `iface` inside `ns`; frames are queued from then on, 16 MiB of them (forced
    /// past `net.core.rmem_max`: with XDP on veth each frame takes a page or more).
    pub fn open(ns: &Netns, iface: &str) -> PacketTap {
        use std::os::fd::FromRawFd as _;
        let iface = iface.to_owned();
        ns.enter(move || {
            let all = i32::from((libc::ETH_P_ALL as u16).to_be());
            // SAFETY: socket(2) takes no pointers.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    all,
                )
            };
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: fd is a new descriptor that nothing else owns.
            let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
            let index = nix::net::if_::if_nametoindex(iface.as_str())
                .unwrap_or_else(|e| panic!("no interface {iface}: {e}"));
            // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
            let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            at.sll_family = libc::AF_PACKET as u16;
            at.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            at.sll_ifindex = i32::try_from(index).expect("an interface index");
            // SAFETY: bind reads `size_of::<sockaddr_ll>()` bytes of `at`, which lives here.
            let bound = unsafe {
                libc::bind(
                    fd,
                    (&raw const at).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            assert_eq!(
                bound,
                0,
                "bind to {iface}: {}",
                std::io::Error::last_os_error()
            );
            nix::sys::socket::setsockopt(
                &owned,
                nix::sys::socket::sockopt::RcvBufForce,
                &(16 << 20),
            )
            .expect("SO_RCVBUFFORCE");
            PacketTap(owned)
        })
    }

    /// The frames queued so far, oldest first: whether each went out, and its bytes.
    pub fn frames(&self) -> Vec<(bool, Vec<u8>)> {
        use std::os::fd::AsRawFd as _;
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: as for `at` in `open`.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: recvfrom writes at most buf.len() bytes into buf and at most `len`
            // bytes into `from`, both of which live here.
            let n = unsafe {
                libc::recvfrom(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&raw mut from).cast(),
                    &raw mut len,
                )
            };
            let Ok(n) = usize::try_from(n) else {
                let e = std::io::Error::last_os_error();
                assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock,
                    "AF_PACKET read: {e}"
                );
                break;
            };
            frames.push((from.sll_pkttype == libc::PACKET_OUTGOING, buf[..n].to_vec()));
        }
        // A reference that lost frames is no reference.
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `stats`, which lives here.
        let got = unsafe {
            libc::getsockopt(
                self.0.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut stats).cast(),
                &raw mut len,
            )
        };
        assert_eq!(
            got,
            0,
            "PACKET_STATISTICS: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(stats.tp_drops, 0, "the packet socket dropped frames");
        frames
    }
}

/// An nftables counter of UDP port 123 arriving on `dev` in a namespace (netdev ingress, which
/// runs after XDP and TC ingress): a count taken behind the tap, independent of ntptap. The
/// namespace takes it with it when deleted.
pub struct NftCounter<'a> {
    ns: &'a Netns,
    table: String,
}

impl<'a> NftCounter<'a> {
    pub fn new(ns: &'a Netns, dev: &str) -> Self {
        let table = "ntptap_count".to_owned();
        let nft = |args: &[&str]| run(ns.command("nft").args(args));
        nft(&["add", "table", "netdev", &table]);
        let chain = format!("{{ type filter hook ingress device {dev} priority 0 ; }}");
        nft(&["add", "chain", "netdev", &table, "in", &chain]);
        nft(&[
            "add", "rule", "netdev", &table, "in", "udp", "dport", "123", "counter",
        ]);
        Self { ns, table }
    }

    /// Packets counted so far.
    pub fn count(&self) -> u64 {
        let out = run(self
            .ns
            .command("nft")
            .args(["list", "table", "netdev", &self.table]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split("counter packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no counter in:\n{text}"))
    }
}

/// One HTTP/1.1 request, `line` (`GET /metrics`), to 127.0.0.1:`port` inside `ns`: the whole
/// answer, status line and headers included (the endpoint closes the connection).
pub fn http(ns: &Netns, port: u16, line: &str) -> String {
    use std::io::{Read as _, Write as _};
    let request = format!("{line} HTTP/1.1\r\nHost: ntptap\r\nContent-Length: 0\r\n\r\n");
    ns.enter(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("a read timeout");
        s.write_all(request.as_bytes()).expect("send the request");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    })
}
