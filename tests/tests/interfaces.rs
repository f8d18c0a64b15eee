//! Interfaces as a container host has them: `-i any` follows veths that come and go, loopback
//! shows each packet once, and the signals a long capture is steered with (SIGUSR1, SIGUSR2).
//! Run as root; every namespace is removed when its guard drops.

use std::{collections::HashMap, fmt::Write as _, path::Path, thread, time::Duration};

use ntptap_tests::{
    Lab, Netns, Proc, chrony_client, chrony_server, exit_counts, ntptap_bin, numbered_requests,
    read_pcap, run,
};

/// Every enhanced packet of the pcapng at `path`, with the name of its interface.
fn frames_by_interface(path: &Path) -> Vec<(String, Vec<u8>)> {
    use pcap_file::pcapng::{
        Block, PcapNgReader, blocks::interface_description::InterfaceDescriptionOption,
    };
    let bytes = std::fs::read(path).expect("the capture file");
    let mut reader = PcapNgReader::new(&bytes[..]).expect("a pcapng file");
    let mut names = Vec::new();
    let mut frames = Vec::new();
    while let Some(block) = reader.next_block() {
        match block.expect("a valid block").0 {
            Block::InterfaceDescription(idb) => names.push(
                idb.options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default(),
            ),
            Block::EnhancedPacket(p) => frames.push((
                names
                    .get(p.interface_id as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("undescribed #{}", p.interface_id)),
                p.data.to_vec(),
            )),
            _ => {}
        }
    }
    frames
}

/// The last four bytes of an NTP request sent by `numbered_requests`, if `frame` is one
/// (Ethernet, IPv4, UDP to port 123).
fn request_number(frame: &[u8]) -> Option<u32> {
    let udp = frame.get(34..42)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != 123 {
        return None;
    }
    let ntp = frame.get(42..90)?;
    Some(u32::from_be_bytes([ntp[44], ntp[45], ntp[46], ntp[47]]))
}

/// A veth pair from `host` (`hN`, 10.210.N.1) to `peer` (`pN`, 10.210.N.2), up, with
/// permanent neighbours so the first request goes out at once.
fn veth(host: &Netns, peer: &Netns, n: u32) {
    let (h, p) = (format!("h{n}"), format!("p{n}"));
    run(std::process::Command::new("ip").args([
        "link", "add", &h, "netns", &host.name, "type", "veth", "peer", "name", &p, "netns",
        &peer.name,
    ]));
    for (ns, dev, me) in [(host, &h, 1), (peer, &p, 2)] {
        ns.ip(&["addr", "add", &format!("10.210.{n}.{me}/24"), "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    let mac = |ns: &Netns, dev: &str| {
        let out = ns.ip(&["-o", "link", "show", dev]);
        String::from_utf8_lossy(&out.stdout)
            .split("link/ether ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("a MAC address")
            .to_owned()
    };
    let host_mac = mac(host, &h);
    peer.ip(&[
        "neigh",
        "replace",
        &format!("10.210.{n}.1"),
        "lladdr",
        &host_mac,
        "dev",
        &p,
        "nud",
        "permanent",
    ]);
}

/// Pairs created, used and deleted one after another while `-i any` captures.
const PAIRS: u32 = 100;
/// NTP requests through each pair while it exists.
const REQUESTS: u32 = 3;

/// Make and remove `n` veth pairs in `ns`, so that the interfaces made next have indexes
/// past `2 n`: a host whose containers came and went for a while.
fn age_interface_indexes(ns: &Netns, n: u32) {
    let mut batch = String::new();
    for i in 0..n {
        let _ = writeln!(
            batch,
            "link add old{i} type veth peer name older{i}\nlink del old{i}"
        );
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), batch).unwrap();
    run(std::process::Command::new("ip")
        .args(["-n", &ns.name, "-batch"])
        .arg(file.path()));
}

#[test]
fn any_follows_interfaces_as_they_come_and_go() {
    let host = Netns::new("any-host");
    let peer = Netns::new("any-peer");
    // Indexes in the thousands, h79 at 1281: were counters kept by index modulo 256, h79's
    // would land on lo's (index 1).
    age_interface_indexes(&host, 600);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("any.pcapng");
    let mut tap = Proc::spawn(
        "ntptap -i any",
        host.command(ntptap_bin())
            .args(["-i", "any", "--metrics", "127.0.0.1:9123", "-w"])
            .arg(&file)
            .env("NTPTAP_LOG", "ntptap=info"),
    );
    tap.wait_for_stderr("listening on any", Duration::from_secs(20));
    for n in 0..PAIRS {
        veth(&host, &peer, n);
        // Attached within a second of the link event.
        tap.wait_for_stderr(
            &format!("interface appeared; attached iface=h{n}"),
            Duration::from_secs(1),
        );
        numbered_requests(
            &peer,
            &format!("10.210.{n}.1"),
            REQUESTS,
            Duration::from_millis(1),
        );
        // Let the last request reach the host before its interface goes.
        thread::sleep(Duration::from_millis(20));
        host.ip(&["link", "del", &format!("h{n}")]);
        tap.wait_for_stderr(
            &format!("interface went away; released iface=h{n}"),
            Duration::from_secs(1),
        );
    }
    // Counted once, under the right name: each gone interface keeps its last counts.
    thread::sleep(Duration::from_millis(1200));
    let scrape = run(host.command("/usr/bin/python3").args([
        "-c",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9123/metrics').read().decode())",
    ]));
    let metrics = String::from_utf8_lossy(&scrape.stdout).into_owned();
    for n in 0..PAIRS {
        let matched = ntptap_tests::metric(
            &metrics,
            &format!(
                "ntptap_kernel_frames_total{{interface=\"h{n}\",direction=\"in\",reason=\"matched\"}}"
            ),
        );
        assert_eq!(matched, i64::from(REQUESTS), "h{n}'s counters:\n{metrics}");
    }
    let lo = ntptap_tests::metric(
        &metrics,
        "ntptap_kernel_frames_total{interface=\"lo\",direction=\"in\",reason=\"seen\"}",
    );
    assert_eq!(lo, 0, "nothing of the veths counted as lo's:\n{metrics}");
    let (status, _, stderr) = tap.stop(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "no exit code 3 under -i any: {stderr}");
    // Nothing left attached: lo, the one interface that stays, has no program on it.
    let net = run(host.command("bpftool").args(["net", "show", "dev", "lo"]));
    let net = String::from_utf8_lossy(&net.stdout).into_owned();
    assert!(!net.contains("ntptap"), "{net}");

    let mut per_interface: HashMap<String, Vec<u32>> = HashMap::new();
    for (iface, data) in frames_by_interface(&file) {
        if let Some(number) = request_number(&data) {
            per_interface.entry(iface).or_default().push(number);
        }
    }
    for n in 0..PAIRS {
        let got = per_interface.remove(&format!("h{n}")).unwrap_or_default();
        assert_eq!(
            got,
            (0..REQUESTS).collect::<Vec<_>>(),
            "h{n}: every request once, in order, under its own name; stderr:\n{stderr}"
        );
    }
    assert!(
        per_interface.is_empty(),
        "requests under other names: {per_interface:?}"
    );
    // Counted once: the kernel matched each request once (and the ICMP errors are not NTP).
    let counts = exit_counts(&stderr);
    assert_eq!(counts.received, u64::from(PAIRS * REQUESTS), "{stderr}");
    assert_eq!(counts.captured, counts.received, "{stderr}");
}

/// chronyd asking chronyd over 127.0.0.1: on loopback every packet passes egress and then
/// ingress; ntptap, like libpcap, shows it once.
fn loopback_exchange(args: &[&str]) -> (Vec<(String, Vec<u8>)>, String) {
    let ns = Netns::new("lo");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lo.pcapng");
    let _server = chrony_server(&ns, dir.path());
    let tap = Proc::listening(
        "ntptap on lo",
        ns.command(ntptap_bin()).args(args).arg("-w").arg(&file),
    );
    chrony_client(&ns, dir.path(), "127.0.0.1");
    thread::sleep(Duration::from_millis(300));
    let (status, _, stderr) = tap.stop(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    (frames_by_interface(&file), stderr)
}

fn assert_each_once(frames: &[(String, Vec<u8>)], stderr: &str) {
    let modes: Vec<u32> = frames
        .iter()
        // Ethernet (zero MACs on lo), IPv4, UDP: the NTP header starts at 42.
        .filter_map(|(_, d)| d.get(42).map(|b| u32::from(b & 7)))
        .collect();
    let count = |mode: u32| modes.iter().filter(|m| **m == mode).count();
    let (requests, replies) = (count(3), count(4));
    assert!(requests >= 1, "the client asked: {modes:?}\n{stderr}");
    assert_eq!(requests, replies, "one reply per request: {modes:?}");
    for (i, a) in frames.iter().enumerate() {
        assert!(
            frames[i + 1..].iter().all(|b| b.1 != a.1),
            "frame {} appears twice",
            i + 1
        );
    }
    let counts = exit_counts(stderr);
    assert_eq!(
        counts.received,
        frames.len() as u64,
        "counted once: {stderr}"
    );
}

#[test]
fn loopback_shows_each_packet_once() {
    let (frames, stderr) = loopback_exchange(&["-i", "lo"]);
    assert_each_once(&frames, &stderr);
    assert!(frames.iter().all(|(i, _)| i == "lo"));
}

#[test]
fn loopback_shows_each_packet_once_with_any_and_with_out_only() {
    let (frames, stderr) = loopback_exchange(&["-i", "any"]);
    assert_each_once(&frames, &stderr);
    // Asked for the way out only, loopback still shows each packet, once.
    let (frames, stderr) = loopback_exchange(&["-i", "lo", "-Q", "out"]);
    assert_each_once(&frames, &stderr);
}

#[test]
fn sigusr1_prints_the_counts_so_far_and_sigusr2_flushes() {
    let lab = Lab::new("usr");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("usr.pcap");
    let mut tap = Proc::listening(
        "ntptap",
        lab.a
            .command(ntptap_bin())
            .args(["-i", "va", "-w"])
            .arg(&file),
    );
    numbered_requests(&lab.b, Lab::A4, 5, Duration::from_millis(1));
    thread::sleep(Duration::from_millis(400));
    let pid = nix::unistd::Pid::from_raw(tap.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
    tap.wait_for_stderr("5 packets received by filter", Duration::from_secs(5));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2).unwrap();
    thread::sleep(Duration::from_millis(300));
    assert!(
        tap.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "still capturing after SIGUSR1 and SIGUSR2"
    );
    assert_eq!(
        read_pcap(&file).len(),
        5,
        "flushed: the file holds the five"
    );
    numbered_requests(&lab.b, Lab::A4, 2, Duration::from_millis(1));
    thread::sleep(Duration::from_millis(400));
    let (status, _, stderr) = tap.stop(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    // The summary at the end, after the one SIGUSR1 printed.
    let end = stderr
        .rfind(" packets captured")
        .and_then(|i| stderr[..i].rfind('\n'))
        .expect("a summary");
    assert_eq!(exit_counts(&stderr[end..]).captured, 7, "{stderr}");
    assert_eq!(
        exit_counts(&stderr).captured,
        5,
        "SIGUSR1's counts: {stderr}"
    );
    assert_eq!(read_pcap(&file).len(), 7);
}

/// `-i any -v` says, as it happens, which interface appeared and how it was attached, and
/// which went away.
#[test]
fn any_verbose_says_what_it_attaches_and_releases() {
    let host = Netns::new("anyv-host");
    let peer = Netns::new("anyv-peer");
    let mut tap = Proc::spawn(
        "ntptap -i any -v",
        host.command(ntptap_bin())
            .args(["-i", "any", "-v", "-w", "/dev/null"]),
    );
    tap.wait_for_stderr("listening on any", Duration::from_secs(20));
    veth(&host, &peer, 0);
    tap.wait_for_stderr(
        "ntptap: h0: appeared; attached: h0: ingress at TC",
        Duration::from_secs(2),
    );
    host.ip(&["link", "del", "h0"]);
    tap.wait_for_stderr("ntptap: h0: went away; released", Duration::from_secs(2));
    let (status, _, stderr) = tap.stop(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "{stderr}");
}

/// `ntptap -D` numbers the interfaces as `tcpdump -D` does, with the same words for their
/// state (up and connected, loopback down, up without a carrier, down), and `-i N` takes the
/// number: tcpdump lists libpcap's other sources (nflog, dbus...) after them.
#[test]
fn list_interfaces_numbers_them_as_tcpdump_does() {
    let lab = Lab::new("listing");
    lab.a
        .ip(&["link", "add", "vx", "type", "veth", "peer", "name", "vy"]);
    lab.a.ip(&["link", "set", "vx", "up"]);
    let ours = run(lab.a.command(ntptap_bin()).arg("-D"));
    let ours = String::from_utf8_lossy(&ours.stdout).into_owned();
    let theirs = run(lab.a.command("tcpdump").arg("-D"));
    let theirs = String::from_utf8_lossy(&theirs.stdout).into_owned();
    let ours: Vec<&str> = ours.lines().collect();
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(ours.len(), 5, "va, any, lo, vx, vy: {ours:?}");
    // libpcap puts its other sources (bluetooth-monitor, nflog, dbus...), which are not up,
    // before an interface that is down and disconnected (vy): the same words, a later number.
    assert_eq!(ours[..4], theirs[..4], "tcpdump -D: {theirs:#?}");
    assert_eq!(ours[4], "5.vy [none, Disconnected]");
    assert!(
        theirs
            .iter()
            .any(|l| l.ends_with(".vy [none, Disconnected]")),
        "tcpdump -D: {theirs:#?}"
    );
    assert!(ours.contains(&"1.va [Up, Running, Connected]"), "{ours:?}");
    assert!(
        ours.iter().any(|l| l.ends_with(".vx [Up, Disconnected]")),
        "{ours:?}"
    );
    // -i 1 is va; a number past the list is an error that says how many there are.
    let listed = run(lab.a.command(ntptap_bin()).args(["-L", "-i", "1"]));
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "Data link types for va (use option -y to set):\n  EN10MB (Ethernet)\n"
    );
    let past = lab
        .a
        .command(ntptap_bin())
        .args(["-L", "-i", "9"])
        .output()
        .expect("run ntptap");
    assert!(
        !past.status.success()
            && String::from_utf8_lossy(&past.stderr).contains("there are 5 interfaces here"),
        "{past:?}"
    );
}

/// A filter expression is compiled for Ethernet frames: a tunnel (no link header) named with
/// -i is refused with the reason; without an expression it is captured as before.
#[test]
fn an_expression_refuses_an_interface_that_is_not_ethernet() {
    let ns = Netns::new("tunexpr");
    ns.ip(&["tuntap", "add", "dev", "tun7", "mode", "tun"]);
    ns.ip(&["link", "set", "tun7", "up"]);
    let out = ns
        .command(ntptap_bin())
        .args(["-i", "tun7", "-c", "1", "--duration", "1", "udp port 123"])
        .output()
        .expect("run ntptap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("tun7's frames are not Ethernet"),
        "{stderr}"
    );
}
