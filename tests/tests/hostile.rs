//! Hostile traffic and hostile clients (RELIABILITY.md, "Hostile input"): what any machine on
//! the network can send, and what any local process can do to the metrics endpoint, is
//! bounded, and never stops the capture.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use ntptap_tests::{Lab, Netns, Proc, exit_counts, http, ntptap_bin};

const PORT: u16 = 9124;

/// A server's answer (mode 4), forged: stratum 0 and `code` where the reference ID goes.
fn kiss(code: [u8; 4], n: u64) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = (4 << 3) | 4;
    p[12..16].copy_from_slice(&code);
    p[40..48].copy_from_slice(&n.to_be_bytes());
    p
}

/// `line` to ntptap's endpoint on `ns`'s loopback: (status, body).
fn request(ns: &Netns, line: &str) -> (u16, String) {
    let text = http(ns, PORT, line);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, b)| b.to_owned());
    (status, body)
}

fn scrape(ns: &Netns) -> String {
    let (status, body) = request(ns, "GET /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// 100,000 forged kiss-o'-death answers, each with another code: the metric's `code` label
/// takes the registered codes and `other` only, the server's codes in `--stats` likewise, and
/// client requests with stratum 0 and a code-like reference ID are no kiss at all.
#[test]
fn forged_kiss_codes_make_at_most_sixteen_labels() {
    let lab = Lab::new("kisses");
    let ntptap = Proc::listening(
        "ntptap",
        lab.a
            .command(ntptap_bin())
            .args(["-i", "va", "--no-print", "--stats", "0"])
            .args(["--metrics", &PORT.to_string()]),
    );
    let sent = lab.b.enter(|| {
        let s = UdpSocket::bind((Lab::B4, 123)).expect("bind");
        let to: SocketAddr = (Lab::A4.parse::<std::net::IpAddr>().unwrap(), 123).into();
        // One real, registered one, before the flood fills the rings.
        s.send_to(&kiss(*b"RATE", 1), to).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut sent = 0u64;
        for n in 0..100_000u64 {
            let code = [
                b'A' + (n % 26) as u8,
                b'A' + (n / 26 % 26) as u8,
                b'A' + (n / 676 % 26) as u8,
                b'0' + (n / 17_576 % 10) as u8,
            ];
            if s.send_to(&kiss(code, n), to).is_ok() {
                sent += 1;
            }
            // A client's request (mode 3) with a code-like reference ID: no kiss.
            if n % 10 == 0 {
                let mut request = kiss(*b"RATE", n);
                request[0] = (4 << 3) | 3;
                let _ = s.send_to(&request, to);
            }
        }
        sent
    });
    // Until what the rings held has been through the metrics (or a minute has passed).
    let start = Instant::now();
    let mut last = -1;
    let page = loop {
        std::thread::sleep(Duration::from_millis(1500));
        let page = scrape(&lab.a);
        let decoded = ntptap_tests::metric(&page, "ntptap_ntp_packets_total{");
        if decoded == last || start.elapsed() > Duration::from_mins(1) {
            break page;
        }
        last = decoded;
    };
    assert!(last > 10_000, "only {last} of {sent} decoded");
    let codes: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with("ntptap_kiss_of_death_total{"))
        .collect();
    assert!(
        !codes.is_empty() && codes.len() <= 16,
        "{} kiss series for {sent} forged codes:\n{}",
        codes.len(),
        codes.join("\n")
    );
    assert!(
        codes.iter().any(|l| l.contains("code=\"RATE\"")),
        "{codes:?}"
    );
    assert!(
        codes
            .iter()
            .all(|l| l.contains("code=\"other\"") || l.contains("code=\"RATE\"")),
        "{codes:?}"
    );
    let rate = ntptap_tests::metric(&page, "ntptap_kiss_of_death_total{code=\"RATE\"");
    assert_eq!(rate, 1, "the requests with RATE in them are no kiss");
    let rss = rss_kib(ntptap.pid());
    assert!(
        rss < 64 * 1024,
        "resident {rss} KiB, past the DaemonSet's 64 Mi"
    );
    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    let longest = stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a --stats line of {longest} bytes");
    let events = stderr
        .lines()
        .filter(|l| l.contains("ntptap::event"))
        .count();
    assert!(
        events <= 20,
        "{events} event lines in the log for one forged source"
    );
    eprintln!(
        "forged kiss codes: {sent} sent, {last} decoded, {} series, {rss} KiB resident, {events} log lines, longest line {longest} bytes",
        codes.len()
    );
    assert!(exit_counts(&stderr).captured > 0, "{stderr}");
}

/// The endpoint under ulimit -n 1024: 1,100 idle connections and 40 clients that send a
/// request and never read leave the capture running (before, the descriptors ran out and
/// ntptap took it for a vanished interface), memory bounded, and the endpoint answering once
/// they are gone. Other paths are a 404, other methods a 405, a dump from another host
/// without the token a 403.
#[test]
fn idle_and_silent_clients_cannot_stop_the_capture() {
    let lab = Lab::new("http");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut ntptap = Proc::listening(
        "ntptap",
        lab.a
            .command("prlimit")
            .args(["--nofile=1024:1024", "--"])
            .arg(ntptap_bin())
            .args(["-i", "va", "--no-print", "--flight-recorder", "1M"])
            .args(["--metrics", &format!("0.0.0.0:{PORT}"), "--metrics-token"])
            .arg(&token)
            .arg("--flight-recorder-dir")
            .arg(dir.path()),
    );
    let pid = ntptap.pid();
    let held = lab.a.enter(move || {
        let mut held = Vec::new();
        let to: SocketAddr = ([127, 0, 0, 1], PORT).into();
        let start = Instant::now();
        // 40 that ask and never read, then 1,100 that say nothing; past the endpoint's cap
        // and the kernel's backlog a connection is not made at all, which is the point.
        for n in 0..1_140 {
            if start.elapsed() > Duration::from_secs(40) {
                break;
            }
            if let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_millis(20)) {
                if n < 40 {
                    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
                }
                held.push(s);
            }
        }
        held
    });
    assert!(held.len() >= 300, "only {} connections made", held.len());
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(fds < 512, "{fds} descriptors open in ntptap");
    // NTP goes on meanwhile, and ntptap with it.
    lab.b.enter(|| {
        let s = UdpSocket::bind((Lab::B4, 0)).unwrap();
        for n in 0..20u64 {
            s.send_to(&kiss(*b"RATE", n), (Lab::A4, 123)).unwrap();
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    assert!(
        ntptap.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "ntptap stopped under the connections: {:?}",
        ntptap.stderr_seen
    );
    let rss = rss_kib(pid);
    assert!(rss < 64 * 1024, "resident {rss} KiB");
    eprintln!(
        "endpoint under ulimit -n 1024: {} connections made of 1,140 tried, {fds} descriptors open, {rss} KiB resident",
        held.len()
    );
    drop(held);
    let page = scrape(&lab.a);
    assert!(page.contains("ntptap_frames_written_total"), "{page}");
    assert_eq!(request(&lab.a, "GET /nope").0, 404);
    assert_eq!(request(&lab.a, "DELETE /metrics").0, 405);
    // From another host: the token or nothing.
    let remote = |request: &'static str| {
        lab.b.enter(move || {
            let mut s = TcpStream::connect((Lab::A4, PORT)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            answer
        })
    };
    let refused = remote("POST /flight-recorder HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let wrong = remote(
        "POST /flight-recorder HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cre\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(wrong.starts_with("HTTP/1.1 403"), "{wrong}");
    let asked = remote(
        "POST /flight-recorder HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(
        asked.starts_with("HTTP/1.1 200") || asked.starts_with("HTTP/1.1 429"),
        "{asked}"
    );
    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    assert!(
        !stderr.contains("went away"),
        "descriptors ran out and were taken for a lost interface:\n{stderr}"
    );
    assert!(exit_counts(&stderr).captured >= 20, "{stderr}");
}

/// Forged answers from 100,000 sources, injected on the wire: the `server` label has at most
/// as many values as the tracker holds servers (1,024), the evicted ones' series removed.
#[test]
fn forged_servers_stay_within_the_trackers_bound() {
    let lab = Lab::new("servers");
    let ntptap = Proc::listening(
        "ntptap",
        lab.a.command(ntptap_bin()).args([
            "-i",
            "va",
            "-Q",
            "in",
            "--no-print",
            "--metrics",
            &PORT.to_string(),
        ]),
    );
    let link = lab.a.ip(&["-o", "link", "show", "va"]);
    let mac = String::from_utf8_lossy(&link.stdout)
        .split("link/ether ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("va's MAC address")
        .replace(':', "");
    // Ethernet, IPv4 from 10.x.y.z (checksums unset: ntptap's hook sees the frame before the
    // stack would drop it), UDP 123 -> 123, a server's answer (mode 4, stratum 2).
    let script = format!(
        "import socket, struct, time\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('vb', 0))\n\
         head = bytes.fromhex('{mac}0200000000010800')\n\
         ntp = bytes([0x24, 2]) + bytes(46)\n\
         for i in range(100000):\n\
         \x20   ip = bytes.fromhex('4500004c00004000401100000a') + struct.pack('>I', i)[1:] + bytes([10, 203, 0, 1])\n\
         \x20   s.send(head + ip + struct.pack('>HHHH', 123, 123, 56, 0) + ntp)\n\
         \x20   if i % 200 == 199:\n\
         \x20       time.sleep(0.02)\n"
    );
    ntptap_tests::run(lab.b.command("/usr/bin/python3").args(["-c", &script]));
    std::thread::sleep(Duration::from_millis(2500));
    let page = scrape(&lab.a);
    let servers: std::collections::BTreeSet<&str> = page
        .lines()
        .filter_map(|l| l.split("server=\"").nth(1)?.split('"').next())
        .collect();
    let evicted = ntptap_tests::metric(&page, "ntptap_tracker_evicted_servers_total");
    assert!(
        servers.len() <= 1024,
        "{} server label values (bound 1024)",
        servers.len()
    );
    assert!(
        evicted > 1000,
        "the tracker evicted only {evicted} servers:\n{page}"
    );
    eprintln!(
        "forged servers: {} server label values, {evicted} evicted",
        servers.len()
    );
    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
}

/// A pcap file of one Ethernet frame (microsecond timestamps, link type 1).
fn pcap_of(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 65535, 1] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    let len = frame.len() as u32;
    for word in [1_796_051_400u32, 0, len, len] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(frame);
    out
}

/// A mode 6 answer whose text forges a line (CR LF, a lone LF and CR) and carries a
/// right-to-left override (text with other controls is shown as bytes): `-vv` shows them
/// escaped, and the JSON has none of them raw.
#[test]
fn forged_lines_in_mode_6_text_are_shown_not_obeyed() {
    let text = "version=\"ntpd 4.2.8\"\r\n04:00:00.000000 IP 6.6.6.6.123 > 10.0.0.1.123: NTPv4, Server\nrefid=\u{202e}TPN\u{2066}\rx";
    let mut ntp = vec![0x16, 0x82, 0, 1, 0, 0, 0, 0, 0, 0];
    ntp.extend_from_slice(&(text.len() as u16).to_be_bytes());
    ntp.extend_from_slice(text.as_bytes());
    while ntp.len() % 4 != 0 {
        ntp.push(0);
    }
    let udp_len = 8 + ntp.len();
    let mut frame = hex("02000000000202000000000108004500");
    frame.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    frame.extend_from_slice(&hex("0000400040110000c0000201c0000202007b007b"));
    frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&ntp);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("forged.pcap");
    std::fs::write(&file, pcap_of(&frame)).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(ntptap_bin())
            .arg("-r")
            .arg(&file)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let shown = run(&["-vv"]);
    assert!(shown.contains("Data:"), "{shown}");
    for bad in ['\r', '\u{202e}', '\u{2066}'] {
        assert!(!shown.contains(bad), "{bad:?} in -vv output:\n{shown}");
    }
    assert!(
        !shown.lines().any(|l| l.starts_with("04:00:00.000000")),
        "a forged line of its own:\n{shown}"
    );
    assert!(shown.contains("refid=\\u{202e}TPN\\u{2066}"), "{shown}");
    let json = run(&["--json"]);
    for bad in ['\u{202e}', '\u{2066}', '\r', '\n'] {
        assert!(
            !json.trim_end().contains(bad),
            "{bad:?} in the JSON:\n{json}"
        );
    }
    assert!(json.lines().count() == 1, "{json}");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Monlist queries from another host, one a second (each a trigger with the default
/// `--trigger-query 1`): with dumps allowed every second, the directory never holds more than
/// `--flight-recorder-max-files`, the oldest of ntptap's own going first, and a file of
/// someone else's beside them stays.
#[test]
fn a_query_flood_leaves_at_most_the_capped_dumps() {
    let lab = Lab::new("dumpcap");
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("ntptap-flight-notes.pcapng");
    std::fs::write(&foreign, b"keep me").unwrap();
    let ntptap = Proc::listening(
        "ntptap",
        lab.a
            .command(ntptap_bin())
            .args(["-i", "va", "--no-print", "--flight-recorder", "64K"])
            .args([
                "--flight-recorder-after",
                "0.2",
                "--flight-recorder-interval",
                "1",
            ])
            .args(["--flight-recorder-max-files", "2", "--flight-recorder-dir"])
            .arg(dir.path()),
    );
    lab.b.enter(|| {
        let s = UdpSocket::bind((Lab::B4, 0)).unwrap();
        // MON_GETLIST_1, a mode 7 request (the monlist amplification query).
        let mut query = [0u8; 48];
        query[..4].copy_from_slice(&[0x17, 0x00, 0x03, 0x2a]);
        for _ in 0..6 {
            s.send_to(&query, (Lab::A4, 123)).unwrap();
            std::thread::sleep(Duration::from_millis(1300));
        }
    });
    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    let written = stderr.matches("flight recorder: wrote").count();
    assert!(written >= 4, "{written} dumps written:\n{stderr}");
    let dumps: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with("-query.pcapng"))
        .collect();
    assert_eq!(dumps.len(), 2, "{dumps:?}\n{stderr}");
    assert!(foreign.exists(), "a file ntptap did not write was removed");
    assert!(stderr.contains("older removed for the caps"), "{stderr}");
    eprintln!(
        "monlist flood: {written} dumps written, {} left",
        dumps.len()
    );
}
