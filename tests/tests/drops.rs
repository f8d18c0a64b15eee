//! Kernel drops with the kernel's reason: NTP frames the server's host drops after ntptap's
//! hook are recorded once more as drop records (pcapng interface `ntptap-drops`), each with
//! the reason the kernel gives, and counted by reason; the exchange table says what became
//! of each unanswered request. Every count is checked against a count the kernel keeps
//! without ntptap: an nftables counter, `/proc/net/snmp`.

use std::{collections::BTreeSet, path::Path, process::Command, time::Duration};

use nix::sys::signal::Signal;
use ntptap_tests::{
    Lab, Netns, NftCounter, Proc, Record, chrony_server, exit_counts, ntptap_bin, read_drops,
    read_pcap, run,
};

const READY: Duration = Duration::from_secs(20);

/// ntptap on the server side's `va`, writing pcapng to `file`, with the exchange table.
fn tap(lab: &Lab, file: &Path) -> Proc {
    let p = Proc::listening(
        "ntptap",
        lab.a
            .command(ntptap_bin())
            .args(["-v", "--drops", "-i", "va", "--stats", "3600"])
            // Unanswered after 2 s, not 8: the test waits for it. (At 1 s, one clean-clone
            // run counted ignored a request that chronyd answered, its reply in the file: a
            // reply paired later than a second on a loaded machine.)
            .args(["--unanswered-after", "2", "-w"])
            .arg(file),
    );
    assert!(
        p.stderr_seen
            .iter()
            .any(|l| l.contains("drop records: ntptap_drop")),
        "--drops turns them on: {:?}",
        p.stderr_seen
    );
    p
}

fn stop(p: Proc) -> String {
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, stderr) = p.stop(Signal::SIGINT);
    assert!(status.success(), "ntptap failed:\n{stderr}");
    stderr
}

/// NTP client requests from `ns` to `server`:123, numbered `from..from + n` in the last four
/// bytes, `gap` apart.
fn requests(ns: &Netns, server: &str, from: u32, n: u32, gap: Duration) {
    let script = format!(
        "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range({from}, {end}):\n\
         \x20   s.sendto(b'\\x23' + bytes(43) + i.to_bytes(4, 'big'), ({server:?}, 123))\n\
         \x20   time.sleep({gap})\n",
        end = from + n,
        gap = gap.as_secs_f64()
    );
    run(ns.command("/usr/bin/python3").args(["-c", &script]));
}

/// The number in an NTP packet's last four bytes (its transmit timestamp's, or for a reply,
/// its origin timestamp's at bytes 28..32), from an IPv4 packet with or without Ethernet.
fn number(data: &[u8], ip_at: usize) -> u32 {
    let ntp = ip_at + 28;
    let mode = data[ntp] & 7;
    let at = if mode == 4 { ntp + 28 } else { ntp + 44 };
    u32::from_be_bytes(data[at..at + 4].try_into().unwrap())
}

/// Numbers of the drop records with `reason`.
fn dropped(drops: &[Record], reason: &str) -> BTreeSet<u32> {
    drops
        .iter()
        .filter(|r| r.drop().is_some_and(|(why, _)| why == reason))
        .map(|r| number(&r.data, 0))
        .collect()
}

/// `Udp:` counter `name` of `/proc/net/snmp` in `ns`.
fn snmp_udp(ns: &Netns, name: &str) -> u64 {
    let out = run(ns.command("cat").arg("/proc/net/snmp"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no {name} in {names}"));
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// The first counter's packets in nftables table `table` (`FAMILY NAME`) of `ns`.
fn nft_counter(ns: &Netns, table: &str) -> u64 {
    let listing = run(ns
        .command("nft")
        .arg("list")
        .arg("table")
        .args(table.split(' ')));
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    listing
        .split("counter packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no counter in:\n{listing}"))
}

/// The exit summary's kernel drops line.
fn drops_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("ntptap: kernel drops:"))
        .unwrap_or_else(|| panic!("no kernel drops line in:\n{stderr}"))
}

/// A firewall in the server's namespace drops every third of 300 requests; then chronyd
/// stops and 50 more requests find no socket. ntptap records each drop on the right frame
/// with the kernel's reason, exactly as many as nftables counted, and its exchange table says
/// what became of every unanswered request.
#[test]
fn firewall_and_stopped_daemon_drops_have_their_reasons() {
    let lab = Lab::new("drops");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.pcapng");
    let server = chrony_server(&lab.a, dir.path());
    let nft = |args: &str| run(lab.a.command("nft").args(args.split(' ')));
    nft("add table inet ntptap_drop");
    nft("add chain inet ntptap_drop in { type filter hook input priority 0 ; }");
    nft("add rule inet ntptap_drop in udp dport 123 numgen inc mod 3 == 0 counter drop");
    let tap = tap(&lab, &file);
    requests(&lab.b, Lab::A4, 0, 300, Duration::from_millis(3));
    let firewall = nft_counter(&lab.a, "inet ntptap_drop");
    nft("delete table inet ntptap_drop");
    // On the way out: chronyd's replies to 20 more requests, dropped in the output chain
    // (before ntptap's egress hook).
    nft("add table inet ntptap_out");
    nft("add chain inet ntptap_out out { type filter hook output priority 0 ; }");
    nft("add rule inet ntptap_out out udp sport 123 counter drop");
    requests(&lab.b, Lab::A4, 2000, 20, Duration::from_millis(3));
    let replies_dropped = nft_counter(&lab.a, "inet ntptap_out");
    nft("delete table inet ntptap_out");
    let (status, _, _) = server.stop(Signal::SIGTERM);
    assert!(
        status.success() || status.code().is_none(),
        "chronyd: {status}"
    );
    requests(&lab.b, Lab::A4, 1000, 50, Duration::from_millis(3));
    // The exchange table counts a request unanswered after 2 s (--unanswered-after).
    std::thread::sleep(Duration::from_secs(3));
    let stderr = stop(tap);

    assert_eq!(firewall, 100, "nftables dropped every third request");
    let drops = read_drops(&file);
    let every_third: BTreeSet<u32> = (0..300).filter(|n| n % 3 == 0).collect();
    let after: BTreeSet<u32> = (1000..1050).collect();
    assert_eq!(dropped(&drops, "NO_SOCKET"), after, "{stderr}");
    assert_eq!(replies_dropped, 20, "nftables dropped chronyd's replies");
    let outbound: Vec<&Record> = drops.iter().filter(|r| r.direction == Some(2)).collect();
    assert_eq!(outbound.len(), 20, "the replies' drops are outbound");
    for r in &outbound {
        assert_eq!(r.drop().unwrap().0, "NETFILTER_DROP");
        assert!(
            (2000..2020).contains(&number(&r.data, 0)),
            "{:?}",
            r.comments
        );
    }
    let drops: Vec<Record> = drops
        .into_iter()
        .filter(|r| r.direction == Some(1))
        .collect();
    assert_eq!(dropped(&drops, "NETFILTER_DROP"), every_third, "{stderr}");
    assert_eq!(drops.len(), 150, "no other drops: {:?}", drops[0].comments);
    for r in &drops {
        let (_, location) = r.drop().unwrap();
        assert!(
            !location.is_empty() && !location.starts_with("0x"),
            "a drop location is a kernel symbol: {location}"
        );
        assert_eq!(r.direction, Some(1), "drops of requests are inbound");
        assert!(
            r.comments.iter().any(|c| c == "iface=va"),
            "{:?}",
            r.comments
        );
    }
    // Each drop record follows the capture of the same request at TC ingress.
    let frames = read_pcap(&file);
    let captured: BTreeSet<u32> = frames
        .iter()
        .filter(|r| r.direction == Some(1))
        .map(|r| number(&r.data, 14))
        .collect();
    assert!(every_third.is_subset(&captured) && after.is_subset(&captured));
    let out_of_range = |n: &u32| !(2000..2020).contains(n);
    let replies: BTreeSet<u32> = frames
        .iter()
        .filter(|r| r.direction == Some(2))
        .map(|r| number(&r.data, 14))
        .filter(out_of_range)
        .collect();
    let answered: BTreeSet<u32> = (0..300).filter(|n| n % 3 != 0).collect();
    assert_eq!(replies, answered, "chronyd answered the rest");

    // Accounting: the capture's own counts hold with drop records beside them.
    let counts = exit_counts(&stderr);
    assert_eq!(
        (counts.captured, counts.received, counts.dropped),
        (frames.len() as u64, frames.len() as u64, 0),
        "{stderr}"
    );
    assert_eq!(
        frames.len(),
        370 + 200,
        "the dropped replies never reached the egress hook"
    );
    let line = drops_line(&stderr);
    assert!(
        line.contains("170 NTP frames dropped in this host (NETFILTER_DROP 120, NO_SOCKET 50)")
            && line.contains(
                "170 drop records read, 0 lost to a full ring, 0 not copied, 0 left unread"
            ),
        "{line}"
    );
    fates_and_read_back(&stderr, &file);
}

/// The exchange table's fates of the firewall test's 170 unanswered requests, and the drop
/// records read back from its file.
fn fates_and_read_back(stderr: &str, file: &Path) {
    // The exchange table: what became of the 170 unanswered requests.
    let fates = stderr
        .lines()
        .skip_while(|l| !l.starts_with("ntptap: what became of the requests"))
        .find(|l| l.starts_with(Lab::A4))
        .unwrap_or_else(|| panic!("no fates of {} in:\n{stderr}", Lab::A4));
    assert!(
        fates.contains("NETFILTER_DROP×120") && fates.contains("NO_SOCKET×50"),
        "{fates}"
    );
    let ignored: Vec<&str> = fates.split_whitespace().collect();
    assert_eq!(&ignored[1..5], ["0", "0", "0", "0"], "{fates}");

    // Read back: the drop records keep their reasons, on their own interface.
    let out = run(Command::new(ntptap_bin()).arg("-r").arg(file).arg("--json"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let reasons: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .filter_map(|v| v["drop"]["reason"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(reasons.len(), 170);
    assert_eq!(reasons.iter().filter(|r| *r == "NO_SOCKET").count(), 50);
}

/// A server that never reads, with the smallest receive buffer, flooded with requests: the
/// kernel drops what does not fit with `SOCKET_RCVBUFF`, as many as `/proc/net/snmp`'s
/// `RcvbufErrors` grew by.
#[test]
fn a_full_socket_buffer_drops_as_many_as_rcvbuf_errors() {
    let lab = Lab::new("rcvbuf");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.pcapng");
    let mut sleeper = Proc::spawn(
        "a server that never reads",
        lab.a.command("/usr/bin/python3").args([
            "-c",
            "import socket, sys, time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)\n\
             s.bind(('0.0.0.0', 123))\n\
             print('bound', file=sys.stderr, flush=True)\n\
             time.sleep(120)\n",
        ]),
    );
    sleeper.wait_for_stderr("bound", READY);
    let tap = tap(&lab, &file);
    let before = snmp_udp(&lab.a, "RcvbufErrors");
    requests(&lab.b, Lab::A4, 0, 2000, Duration::ZERO);
    std::thread::sleep(Duration::from_millis(300));
    let grown = snmp_udp(&lab.a, "RcvbufErrors") - before;
    let stderr = stop(tap);
    drop(sleeper);

    assert!(grown > 100, "the buffer overflowed ({grown})");
    let drops = read_drops(&file);
    assert_eq!(
        dropped(&drops, "SOCKET_RCVBUFF").len() as u64,
        grown,
        "one drop record per RcvbufErrors: {}",
        drops_line(&stderr)
    );
    assert!(
        drops_line(&stderr).contains(&format!("(SOCKET_RCVBUFF {grown})")),
        "{}",
        drops_line(&stderr)
    );
}

/// Frames with a bad UDP checksum, sent with AF_PACKET from the client's side: the kernel
/// drops each with `UDP_CSUM`, as `InCsumErrors` counts them.
#[test]
fn bad_udp_checksums_drop_as_udp_csum() {
    let lab = Lab::new("csum");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.pcapng");
    let out = lab.a.ip(&["-o", "link", "show", "va"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mac = text
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("va's MAC")
        .replace(':', "");
    let tap = tap(&lab, &file);
    let before = snmp_udp(&lab.a, "InCsumErrors");
    let script = format!(
        "import socket, struct\n\
         def csum(b):\n\
         \x20   s = sum(struct.unpack('!%dH' % (len(b) // 2), b))\n\
         \x20   s = (s >> 16) + (s & 0xffff); s += s >> 16\n\
         \x20   return ~s & 0xffff\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('vb', 0))\n\
         src, dst = socket.inet_aton('{b4}'), socket.inet_aton('{a4}')\n\
         for i in range(10):\n\
         \x20   ntp = b'\\x23' + bytes(43) + i.to_bytes(4, 'big')\n\
         \x20   udp = struct.pack('!HHHH', 40000, 123, 8 + len(ntp), 0x1234) + ntp\n\
         \x20   ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0, src, dst)\n\
         \x20   ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]\n\
         \x20   s.send(bytes.fromhex('{mac}') + s.getsockname()[4] + b'\\x08\\x00' + ip + udp)\n",
        b4 = Lab::B4,
        a4 = Lab::A4,
    );
    run(lab.b.command("/usr/bin/python3").args(["-c", &script]));
    std::thread::sleep(Duration::from_millis(300));
    let grown = snmp_udp(&lab.a, "InCsumErrors") - before;
    let stderr = stop(tap);
    assert_eq!(grown, 10, "the kernel counted ten bad checksums");
    let drops = read_drops(&file);
    assert_eq!(
        dropped(&drops, "UDP_CSUM"),
        (0..10).collect::<BTreeSet<u32>>(),
        "{}",
        drops_line(&stderr)
    );
}

/// Without `--drops` (the default) or with `--no-drops` after it, no drop program, and nothing
/// else changes.
#[test]
fn no_drops_leaves_them_out() {
    let lab = Lab::new("nodrops");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.pcapng");
    let _counter = NftCounter::new(&lab.a, "va");
    let p = Proc::listening(
        "ntptap",
        lab.a
            .command(ntptap_bin())
            .args(["-v", "--drops", "--no-drops", "-i", "va", "-w"])
            .arg(&file),
    );
    assert!(
        p.stderr_seen
            .iter()
            .any(|l| l.contains("drop records: off")),
        "{:?}",
        p.stderr_seen
    );
    requests(&lab.b, Lab::A4, 0, 20, Duration::from_millis(2));
    let stderr = stop(p);
    assert!(read_drops(&file).is_empty());
    assert_eq!(read_pcap(&file).len(), 20);
    assert!(!stderr.contains("NTP frames dropped"), "{stderr}");
}
