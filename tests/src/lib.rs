//! Helpers for ntptap's kernel tests: network namespaces and veth pairs that delete
//! themselves, processes that are killed by PID when their guard drops, the NTP peers, and
//! pcap reading.
//!
//! Test traffic stays inside namespaces these helpers create; nothing here touches the root
//! namespace's interfaces.
#![allow(missing_docs, reason = "test helpers")]
#![expect(
    clippy::missing_panics_doc,
    reason = "test helpers panic by design, with a message"
)]
#![expect(
    clippy::must_use_candidate,
    reason = "helpers that run a command return its output for the callers that want it"
)]

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

pub mod load;

/// Panic unless running as root: the kernel tests create namespaces and load BPF programs.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the kernel tests need root (network namespaces, BPF): run `sudo cargo xtask test`"
    );
}

/// Run `command`, panic with its output unless it succeeds.
pub fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

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
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("enter {path}: {e}"));
            f()
        })
        .join()
        .expect("the thread in the namespace panicked")
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
        let mac = |ns: &Netns, dev: &str| {
            let out = ns.ip(&["-o", "link", "show", dev]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split("link/ether ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .expect("MAC")
                .to_owned()
        };
        let (mac_a, mac_b) = (mac(&a, "va"), mac(&b, "vb"));
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

/// How long a capture may take to attach and say `listening on` (a debug build on a loaded
/// two-core machine, the first load of the programs included).
pub const LISTENING: Duration = Duration::from_secs(20);

/// A child process, killed (by its PID) and reaped when the guard drops.
pub struct Proc {
    pub child: Option<Child>,
    pub what: String,
    stderr_lines: Option<mpsc::Receiver<String>>,
    pub stderr_seen: Vec<String>,
}

impl Proc {
    /// Spawn `command` with stderr piped and read line by line in the background.
    #[must_use]
    pub fn spawn(what: &str, command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stderr: ChildStderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child: Some(child),
            what: what.to_owned(),
            stderr_lines: Some(rx),
            stderr_seen: Vec::new(),
        }
    }

    /// Spawn `command` (an ntptap capture) and wait until it prints `listening on`: its
    /// programs are attached and it reads. Panics, with its stderr, after [`LISTENING`].
    #[must_use]
    pub fn listening(what: &str, command: &mut Command) -> Self {
        let mut proc = Self::spawn(what, command);
        proc.wait_for_stderr("listening on", LISTENING);
        proc
    }

    #[must_use]
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Wait until a stderr line contains `needle`; panic after `timeout` with what was seen.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let rx = self.stderr_lines.as_ref().expect("stderr reader");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stderr_seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{} did not print {needle:?} within {timeout:?}; its stderr:\n{}",
                        self.what,
                        self.stderr_seen.join("\n")
                    )
                }
            }
        }
    }

    /// Send `signal`, wait for the exit, and return (exit status, stdout, all of stderr).
    pub fn stop(
        mut self,
        signal: nix::sys::signal::Signal,
    ) -> (std::process::ExitStatus, String, String) {
        let mut child = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
        self.finish(&mut child)
    }

    /// Wait for the process to exit by itself (panics after `timeout`).
    pub fn wait(mut self, timeout: Duration) -> (std::process::ExitStatus, String, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not exit within {timeout:?}", self.what);
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.finish(&mut child)
    }

    fn finish(&mut self, child: &mut Child) -> (std::process::ExitStatus, String, String) {
        let mut stdout = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        let status = child.wait().expect("wait");
        if let Some(rx) = self.stderr_lines.take() {
            // The reader thread ends at EOF, once the process is gone.
            self.stderr_seen.extend(rx.iter());
        }
        (status, stdout, self.stderr_seen.join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The ntptap binary under test (`NTPTAP_BIN`, else next to the test binary's deps folder).
#[must_use]
pub fn ntptap_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NTPTAP_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("ntptap");
    assert!(
        bin.exists(),
        "{} not found: build it (cargo build -p ntptap) or set NTPTAP_BIN",
        bin.display()
    );
    bin
}

/// The unpacked NTP implementations (`cargo xtask setup` puts them in target/tools/root).
#[must_use]
pub fn tools_root() -> PathBuf {
    let dir = std::env::var_os("NTPTAP_TOOLS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools"),
        PathBuf::from,
    );
    let root = dir.join("root");
    assert!(
        root.join("usr/sbin/chronyd").exists(),
        "chronyd is not unpacked under {}: run `cargo xtask setup`",
        root.display()
    );
    root
}

/// A chrony server in `ns`, with its own configuration (local clock, stratum 8, no command
/// port, never touching the system clock, contacting no one).
#[must_use]
pub fn chrony_server(ns: &Netns, dir: &Path) -> Proc {
    chrony_server_with(ns, dir, "")
}

/// [`chrony_server`] with more configuration lines (`ratelimit ...`).
#[must_use]
pub fn chrony_server_with(ns: &Netns, dir: &Path, more: &str) -> Proc {
    let conf = dir.join("chrony-server.conf");
    std::fs::write(
        &conf,
        format!(
            "local stratum 8\nallow\ncmdport 0\npidfile {0}/chronyd-server.pid\ndriftfile {0}/server.drift\n{more}",
            dir.display()
        ),
    )
    .expect("write chrony.conf");
    let chronyd = tools_root().join("usr/sbin/chronyd");
    let mut proc = Proc::spawn(
        "chronyd (server)",
        ns.command(chronyd)
            .args(["-d", "-x", "-u", "root", "-f"])
            .arg(&conf),
    );
    proc.wait_for_stderr("chronyd version", Duration::from_secs(10));
    // chronyd binds its socket right after printing its banner.
    thread::sleep(Duration::from_millis(300));
    proc
}

/// NTPsec's ntpd as a server in `ns`: no time sources, clock discipline off (it never touches
/// the system clock), rate limiting with kiss-o'-death for every address (`restrict default
/// limited kod`), statistics in `dir`.
#[must_use]
pub fn ntpsec_server(ns: &Netns, dir: &Path) -> Proc {
    let conf = dir.join("ntpsec.conf");
    std::fs::write(
        &conf,
        format!(
            "restrict default limited kod nomodify noquery\nrestrict 127.0.0.1\ndisable ntp\nstatsdir {}/\n",
            dir.display()
        ),
    )
    .expect("write ntp.conf");
    let ntpd = tools_root().join("usr/sbin/ntpd");
    let proc = Proc::spawn(
        "ntpd (NTPsec server)",
        ns.command(ntpd).args(["-n", "-u", "root", "-c"]).arg(&conf),
    );
    // ntpd's stderr is block-buffered into a pipe: ask it the time until it answers.
    let answered = ns.enter(|| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("a timeout");
        let mut request = [0u8; 48];
        request[0] = 0x23;
        (0..50).any(|_| {
            let _ = s.send_to(&request, "127.0.0.1:123");
            s.recv(&mut [0u8; 128]).is_ok()
        })
    });
    assert!(answered, "NTPsec's ntpd did not answer within 10 s");
    proc
}

/// chronyd as a client that never touches the clock: a few samples from `server`, then exit.
pub fn chrony_client(ns: &Netns, dir: &Path, server: &str) -> Output {
    let chronyd = tools_root().join("usr/sbin/chronyd");
    run(ns.command(chronyd).args([
        "-u",
        "root",
        "-Q",
        "-t",
        "20",
        &format!("server {server} iburst maxsamples 4"),
        "cmdport 0",
        &format!("pidfile {}/chronyd-client.pid", dir.display()),
    ]))
}

/// ntpsec's SNTP client, one query to `server`.
pub fn ntpdig(ns: &Netns, server: &str) -> Output {
    let root = tools_root();
    run(ns
        .command("/usr/bin/python3")
        .arg(root.join("usr/bin/ntpdig"))
        .args(["-t", "3", server])
        .env("PYTHONPATH", root.join("usr/lib/python3/dist-packages")))
}

/// One record of a pcap file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub ts: Duration,
    pub orig_len: u32,
    pub data: Vec<u8>,
    /// pcapng only: the EPB flags' direction (1 inbound, 2 outbound, 0 not given).
    pub direction: Option<u32>,
    /// pcapng only: the packet's comments.
    pub comments: Vec<String>,
}

impl Record {
    /// ntptap's owner comment (`ntptap: pid=... comm=...`), as `key=value` pairs.
    #[must_use]
    pub fn owner(&self) -> Option<Vec<(String, String)>> {
        let line = self
            .comments
            .iter()
            .find_map(|c| c.strip_prefix("ntptap: "))?;
        Some(
            line.split(' ')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// A drop record's reason and location, from its `drop=REASON at SYMBOL` comment.
    #[must_use]
    pub fn drop(&self) -> Option<(String, String)> {
        self.comments.iter().find_map(|c| {
            let (reason, location) = c.strip_prefix("drop=")?.split_once(" at ")?;
            Some((reason.to_owned(), location.to_owned()))
        })
    }

    /// One fact of ntptap's owner comment (`pid`, `comm`, `socket`, ...).
    #[must_use]
    pub fn owner_fact(&self, key: &str) -> Option<String> {
        self.owner()?
            .into_iter()
            .find_map(|(k, v)| (k == key).then_some(v))
    }
}

/// Every captured frame of the pcap file at `path` (drop records, on pcapng's
/// `ntptap-drops` interface, are left out: see [`read_drops`]).
#[must_use]
pub fn read_pcap(path: &Path) -> Vec<Record> {
    read_records(path, false)
}

/// The drop records of the pcapng file at `path`: the IP packets the kernel dropped, each
/// with its `drop=REASON at SYMBOL` comment.
#[must_use]
pub fn read_drops(path: &Path) -> Vec<Record> {
    read_records(path, true)
}

fn read_records(path: &Path, drops: bool) -> Vec<Record> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..])
            .unwrap_or_else(|e| panic!("{} is not a valid pcapng file: {e}", path.display()));
        let mut records = Vec::new();
        let mut names = Vec::new();
        while let Some(block) = reader.next_block() {
            let block = block
                .unwrap_or_else(|e| panic!("{} has a corrupt block: {e}", path.display()))
                .0;
            if let pcap_file::pcapng::Block::InterfaceDescription(i) = &block {
                names.push(i.options.iter().any(|o| {
                    matches!(o, pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption::IfName(n) if n == "ntptap-drops")
                }));
            }
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = block {
                if names.get(p.interface_id as usize).copied().unwrap_or(false) != drops {
                    continue;
                }
                let direction = p.options.iter().find_map(|o| match o {
                    pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Flags(f) => {
                        Some(f & 3)
                    }
                    _ => None,
                });
                let comments = p
                    .options
                    .iter()
                    .filter_map(|o| {
                        match o {
                        pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Common(
                            pcap_file::pcapng::blocks::opt_common::CommonOption::Comment(c),
                        ) => Some(c.to_string()),
                        _ => None,
                    }
                    })
                    .collect();
                records.push(Record {
                    ts: p.timestamp,
                    orig_len: p.original_len,
                    data: p.data.to_vec(),
                    direction: Some(direction.unwrap_or(0)),
                    comments,
                });
            }
        }
        return records;
    }
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut reader = pcap_file::pcap::PcapReader::new(file)
        .unwrap_or_else(|e| panic!("{} is not a valid pcap file: {e}", path.display()));
    let mut records = Vec::new();
    if drops {
        return records;
    }
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{} has a corrupt record: {e}", path.display()));
        records.push(Record {
            ts: p.timestamp(),
            orig_len: p.orig_len(),
            data: p.data().to_vec(),
            direction: None,
            comments: Vec::new(),
        });
    }
    records
}

/// The three counts of ntptap's (and tcpdump's) exit summary, and from ntptap's reasons line
/// the frames left unread and not written (0 when the line does not name them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitCounts {
    pub captured: u64,
    pub received: u64,
    pub dropped: u64,
    pub unread: u64,
    pub unwritten: u64,
}

/// Parse `N packets captured` / `received by filter` / `dropped by kernel` from stderr, and
/// `N left unread` / `N not written` from the reasons line when there is one.
#[must_use]
pub fn exit_counts(stderr: &str) -> ExitCounts {
    let find = |suffix: &str| -> u64 {
        stderr
            .lines()
            .find_map(|l| l.strip_suffix(suffix).and_then(|n| n.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {suffix:?} line in:\n{stderr}"))
    };
    let reasons = stderr
        .lines()
        .find(|l| l.starts_with("ntptap: dropped:"))
        .unwrap_or_default();
    // "...; 12 left unread (-c reached); 3 not written (the output failed)"
    let reason = |what: &str| -> u64 {
        reasons
            .split(';')
            .find_map(|part| {
                let (count, _) = part.split_once(what)?;
                count.trim().rsplit(' ').next()?.parse().ok()
            })
            .unwrap_or(0)
    };
    ExitCounts {
        captured: find(" packets captured"),
        received: find(" packets received by filter"),
        dropped: find(" packets dropped by kernel"),
        unread: reason("left unread"),
        unwritten: reason("not written"),
    }
}

/// A Python script sending NTP client requests numbered from 0 (the last four bytes) to
/// `server` port 123 for `seconds`, `rate` a second (0: as fast as Python sends).
pub fn paced_requests(server: &str, rate: u32, seconds: f64) -> String {
    format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         rate, start = {rate}, time.perf_counter()\n\
         end, sent = start + {seconds}, 0\n\
         while True:\n\
         \x20   now = time.perf_counter()\n\
         \x20   if now >= end: break\n\
         \x20   due = int((now - start) * rate) if rate else sent + 64\n\
         \x20   while sent < due:\n\
         \x20       s.sendto(b'\\x23' + bytes(43) + sent.to_bytes(4, 'big'), ({server:?}, 123)); sent += 1\n\
         \x20   if rate: time.sleep(0.0005)\n"
    )
}

/// `n` NTP client requests numbered from 0 from `ns` to `server` (IPv4), `gap` apart.
pub fn numbered_requests(ns: &Netns, server: &str, n: u32, gap: Duration) {
    let script = format!(
        "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range({n}):\n    s.sendto(b'\\x23' + bytes(43) + i.to_bytes(4, 'big'), ({server:?}, 123))\n    time.sleep({})\n",
        gap.as_secs_f64()
    );
    run(ns.command("/usr/bin/python3").args(["-c", &script]));
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

/// The sum of the Prometheus samples in `text` whose line starts with `prefix`, rounded.
pub fn metric(text: &str, prefix: &str) -> i64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("not a sample: {l}"))
                .round() as i64
        })
        .sum()
}

/// The values of `key=` lines of a systemd `unit`, split on white space.
#[must_use]
pub fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// Every system call a `SystemCallFilter` entry names, groups expanded as systemd expands them.
fn expand_syscalls(
    entry: &str,
    seen: &mut std::collections::BTreeSet<String>,
    calls: &mut std::collections::BTreeSet<String>,
) {
    if !entry.starts_with('@') {
        calls.insert(entry.to_owned());
        return;
    }
    if !seen.insert(entry.to_owned()) {
        return;
    }
    let out = run(Command::new("systemd-analyze").args(["syscall-filter", "--no-pager", entry]));
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let word = line.trim();
        if word.is_empty() || word.starts_with('#') {
            continue;
        }
        expand_syscalls(word, seen, calls);
    }
}

/// A systemd `unit`'s allow list of system calls, groups expanded: every `SystemCallFilter=`
/// line that allows, less those of the lines that deny (`~`), as systemd combines them.
#[must_use]
pub fn unit_syscalls(unit: &str) -> std::collections::BTreeSet<String> {
    let mut calls = std::collections::BTreeSet::new();
    let mut denied = std::collections::BTreeSet::new();
    let (mut seen, mut seen_denied) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    for line in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        match line.strip_prefix('~') {
            Some(rest) => rest
                .split_whitespace()
                .for_each(|e| expand_syscalls(e, &mut seen_denied, &mut denied)),
            None => line
                .split_whitespace()
                .for_each(|e| expand_syscalls(e, &mut seen, &mut calls)),
        }
    }
    calls.retain(|c| !denied.contains(c));
    assert!(calls.len() > 100 && calls.contains("bpf"), "{calls:?}");
    calls
}

/// `setpriv` arguments that keep exactly `caps` (e.g. `+bpf,+net_admin,+perfmon`): inheritable,
/// ambient (so they survive exec) and bounding, with no new privileges, as a systemd unit's
/// `AmbientCapabilities` or a container's capability list leave them.
#[must_use]
pub fn only_caps(caps: &str) -> Vec<String> {
    vec![
        format!("--inh-caps=-all,{caps}"),
        format!("--ambient-caps={caps}"),
        format!("--bounding-set=-all,{caps}"),
        "--no-new-privs".to_owned(),
    ]
}
