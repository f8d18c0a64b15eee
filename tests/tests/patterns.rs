//! The pattern events (issue 31) on real traffic: real daemons where they exist (chronyd with
//! and without NTS, NTPsec's ntpd), the test's own responders where none does (a monlist
//! answer, a clock a second off, a reply held after its timestamps), and forged sources and
//! hop limits written to the wire through `AF_PACKET`. Each event names exactly its subject;
//! ordinary traffic makes none.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

use nix::sys::signal::Signal;
use ntptap_tests::{
    Lab, Netns, Proc, chrony_server_with,
    load::{self, Client},
    ntptap_bin, require_root,
    spoof::{self, Behaviour, Responder},
    tools_root,
};
use serde_json::Value;

const KINDS: [&str; 6] = [
    "amplification",
    "reflection",
    "hop_limit_change",
    "falseticker",
    "delay_asymmetry",
    "nts_downgrade",
];

/// `ntptap -i DEV --json --no-print` in `ns`, with `more` arguments, its JSON going to a file
/// (a pipe nobody reads until the end would fill, and ntptap would wait on it).
struct Tap {
    proc: Proc,
    out: tempfile::NamedTempFile,
}

fn tap(ns: &Netns, dev: &str, more: &[&str]) -> Tap {
    let out = tempfile::NamedTempFile::new().expect("a file");
    let proc = Proc::listening(
        "ntptap",
        ns.command("sh")
            .args(["-c", "out=$1; shift; exec \"$@\" > \"$out\"", "sh"])
            .arg(out.path())
            .arg(ntptap_bin())
            .args(["-i", dev, "--json", "--no-print"])
            .args(more),
    );
    Tap { proc, out }
}

/// Stop `tap`; every JSON line it wrote, and its stderr.
fn stop(tap: Tap) -> (Vec<Value>, String) {
    let (status, _, stderr) = tap.proc.stop(Signal::SIGINT);
    assert!(status.success(), "ntptap failed:\n{stderr}");
    let text = std::fs::read_to_string(tap.out.path()).expect("ntptap's JSON");
    let events = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .collect();
    (events, stderr)
}

/// Stop `tap`; its JSON events of the pattern kinds.
fn pattern_events(tap: Tap) -> Vec<Value> {
    stop(tap)
        .0
        .into_iter()
        .filter(|e| e["event"].as_str().is_some_and(|k| KINDS.contains(&k)))
        .collect()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// Every address any field of `events` names is one of `fields` (`client=10.203.0.2`), and
/// each of those is named.
fn only_addresses(events: &[Value], fields: &[String]) {
    assert_eq!(
        addresses(&events.iter().collect::<Vec<_>>()),
        fields.iter().cloned().collect::<BTreeSet<_>>(),
        "{events:#?}"
    );
}

/// Every address any field of `events` names.
fn addresses(events: &[&Value]) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for e in events {
        for (k, v) in e.as_object().expect("an object") {
            if let Some(s) = v.as_str()
                && s.parse::<IpAddr>().is_ok()
            {
                all.insert(format!("{k}={s}"));
            }
        }
    }
    all
}

/// chronyd as a long-running client of `servers` in `ns` (polling every 2^`poll` s, never
/// touching the clock), with `more` configuration lines.
fn chrony_client(ns: &Netns, dir: &Path, servers: &[&str], poll: i8, more: &str) -> Proc {
    let mut conf = String::new();
    for s in servers {
        let _ = writeln!(
            conf,
            "server {s} iburst minpoll {poll} maxpoll {poll}{more}"
        );
    }
    let dir = tempfile::tempdir_in(dir).expect("a directory").keep();
    let _ = write!(conf, "cmdport 0\npidfile {0}/client.pid\n", dir.display());
    let path = dir.join("client.conf");
    std::fs::write(&path, conf).expect("write chrony.conf");
    let mut p = Proc::spawn(
        "chronyd (client)",
        ns.command(tools_root().join("usr/sbin/chronyd"))
            .args(["-d", "-x", "-u", "root", "-f"])
            .arg(&path),
    );
    p.wait_for_stderr("chronyd version", Duration::from_secs(10));
    p
}

/// A chronyd server of its own in `ns`, answering on `addr` only.
fn chrony_on(ns: &Netns, dir: &Path, addr: &str) -> Proc {
    let dir = tempfile::tempdir_in(dir).expect("a directory").keep();
    chrony_server_with(ns, &dir, &format!("bindaddress {addr}\n"))
}

/// Exactly one amplification event, about B4 answered by A4, with mode 7 among its requests,
/// and no other address in any pattern event.
fn one_amplification_about_b4(events: &[Value]) {
    let amplification = of_kind(events, "amplification");
    assert_eq!(amplification.len(), 1, "{events:#?}");
    let e = amplification[0];
    assert_eq!(e["client"], Lab::B4, "{e}");
    assert_eq!(e["server"], Lab::A4, "{e}");
    assert!(e["ratio"].as_f64().unwrap() >= 10.0, "{e}");
    assert!(
        e["requests"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("mode 7")),
        "{e}"
    );
    only_addresses(
        events,
        &[format!("client={}", Lab::B4), format!("server={}", Lab::A4)],
    );
}

/// A server on this host (ns a) answers forged monlist requests "from" B4 with 48 KiB each;
/// twenty honest clients ask the time meanwhile. One amplification event, about B4, with the
/// request kind; its metric; a flight-recorder dump named for it.
#[test]
fn amplification_names_the_forged_victim() {
    require_root();
    let lab = Lab::new("amplify");
    load::route_clients(&lab);
    let dir = tempfile::tempdir().expect("tempdir");
    let responder = Responder::start(
        &lab.a,
        Lab::a_ntp(false),
        Behaviour {
            monlist: 100,
            ..Behaviour::default()
        },
    );
    let tap = tap(
        &lab.a,
        "va",
        &[
            "--metrics",
            "9131",
            "--flight-recorder",
            "4M",
            "--flight-recorder-after",
            "0",
            // The monlist requests would dump first (query, threshold 1).
            "--trigger-query",
            "0",
            "--stats",
            "3600",
            "--flight-recorder-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    let clients: Vec<Client> = (0..20u32)
        .map(|i| Client {
            addr: load::address(i, false),
            every: Duration::from_millis(200),
            first: Duration::from_millis(u64::from(i) * 10),
            port: None,
        })
        .collect();
    let victim: SocketAddr = format!("{}:41000", Lab::B4).parse().unwrap();
    std::thread::scope(|scope| {
        let honest = scope.spawn(|| load::play_to_a(&lab, clients, Duration::from_secs(4)));
        std::thread::sleep(Duration::from_secs(1));
        let request = spoof::monlist_request();
        let to = Lab::a_ntp(false);
        let frames = (0..5)
            .map(|_| load::udp_frame(victim, to, &request))
            .collect();
        spoof::inject(
            &lab.b,
            "vb",
            spoof::mac(&lab.a, "va"),
            frames,
            Duration::from_millis(100),
        );
        honest.join().expect("the clients");
    });
    std::thread::sleep(Duration::from_secs(1));
    let metrics = ntptap_tests::http(&lab.a, 9131, "GET /metrics");
    let (all, stderr) = stop(tap);
    let events: Vec<Value> = all
        .into_iter()
        .filter(|e| e["event"].as_str().is_some_and(|k| KINDS.contains(&k)))
        .collect();
    // --stats lists the suspect at the end.
    let suspect = stderr
        .lines()
        .skip_while(|l| !l.starts_with("ntptap: suspects now"))
        .find(|l| l.starts_with("amplification"))
        .unwrap_or_else(|| panic!("no amplification suspect:\n{stderr}"));
    assert!(suspect.contains(Lab::B4), "{suspect}");
    let answered = responder.stop();
    assert!(answered > 100, "the responder answered {answered}");
    one_amplification_about_b4(&events);
    assert_eq!(
        ntptap_tests::metric(&metrics, "ntptap_events_total{event=\"amplification\"}"),
        1,
        "{metrics}"
    );
    let dumps: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        dumps.iter().any(|d| d.ends_with("-amplification.pcapng")),
        "{dumps:?}"
    );
}

/// This host (ns a) asks B4 the time with chronyd; an attacker in ns b forges requests "from"
/// this host to three other servers there (a chronyd answering on each), which answer here.
/// One reflection event: the victim is A4, three reflectors; the solicited answers count for
/// nothing.
#[test]
fn reflection_names_this_host_and_counts_the_reflectors() {
    require_root();
    let lab = Lab::new("reflect");
    load::route_clients(&lab);
    lab.b.ip(&["link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let _server = chrony_server_with(&lab.b, dir.path(), "");
    let tap = tap(&lab.a, "va", &[]);
    let _client = chrony_client(&lab.a, dir.path(), &[Lab::B4], -2, "");
    std::thread::sleep(Duration::from_secs(2));
    // The attacker writes to ns b's loopback: the frames arrive there as from A4.
    let from: SocketAddr = format!("{}:123", Lab::A4).parse().unwrap();
    let mut frames = Vec::new();
    for n in 0..50u64 {
        for reflector in 0..3u32 {
            let to = SocketAddr::new(load::address(reflector, false), 123);
            frames.push(load::udp_frame(from, to, &load::request(n << 32)));
        }
    }
    spoof::inject(&lab.b, "lo", [0; 6], frames, Duration::from_millis(5));
    std::thread::sleep(Duration::from_secs(1));
    let events = pattern_events(tap);
    let reflection = of_kind(&events, "reflection");
    assert_eq!(reflection.len(), 1, "{events:#?}");
    let e = reflection[0];
    assert_eq!(e["victim"], Lab::A4, "{e}");
    assert_eq!(e["reflectors"], 3, "{e}");
    assert!(e["packets"].as_u64().unwrap() >= 100, "{e}");
    only_addresses(&events, &[format!("victim={}", Lab::A4)]);
}

/// Ten clients in ns b ask NTPsec's ntpd in ns a every 100 ms (TTL and hop limit 64); forged
/// requests with the addresses of one IPv4 and one IPv6 client arrive with 200 and 255. Two
/// hop_limit_change events, naming exactly those two clients.
#[test]
fn hop_limit_change_names_the_forged_clients() {
    require_root();
    let lab = Lab::new("hops");
    load::route_clients(&lab);
    let dir = tempfile::tempdir().expect("tempdir");
    let _ntpd = ntptap_tests::ntpsec_server(&lab.a, dir.path());
    let tap = tap(&lab.a, "va", &[]);
    let clients: Vec<Client> = (0..10u32)
        .map(|i| Client {
            addr: load::address(i, i % 2 == 1),
            every: Duration::from_millis(250),
            first: Duration::from_millis(u64::from(i) * 20),
            port: None,
        })
        .collect();
    let (forged4, forged6) = (load::address(2, false), load::address(3, true));
    std::thread::scope(|scope| {
        let honest = scope.spawn(|| load::play_to_a(&lab, clients, Duration::from_secs(5)));
        std::thread::sleep(Duration::from_secs(2));
        let mut frames = Vec::new();
        for n in 0..4u64 {
            let request = load::request(n << 32);
            frames.push(load::udp_frame_ttl(
                SocketAddr::new(forged4, 40_000),
                Lab::a_ntp(false),
                &request,
                200,
            ));
            frames.push(load::udp_frame_ttl(
                SocketAddr::new(forged6, 40_000),
                Lab::a_ntp(true),
                &request,
                255,
            ));
        }
        spoof::inject(
            &lab.b,
            "vb",
            spoof::mac(&lab.a, "va"),
            frames,
            Duration::from_millis(200),
        );
        honest.join().expect("the clients");
    });
    std::thread::sleep(Duration::from_millis(500));
    let events = pattern_events(tap);
    let changes = of_kind(&events, "hop_limit_change");
    let named: BTreeSet<(String, u64, u64)> = changes
        .iter()
        .map(|e| {
            (
                e["client"].as_str().unwrap().to_owned(),
                e["from"].as_u64().unwrap(),
                e["to"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        named,
        BTreeSet::from([
            (forged4.to_string(), 64, 200),
            (forged6.to_string(), 64, 255)
        ]),
        "{events:#?}"
    );
    assert_eq!(changes.len(), 2, "{events:#?}");
    for e in &changes {
        assert!(e["packets_to"].as_u64().unwrap() >= 3, "{e}");
        assert!(e["packets_from"].as_u64().unwrap() >= 4, "{e}");
    }
    assert_eq!(events.len(), 2, "{events:#?}");
}

/// chronyd in ns a uses five servers in ns b: three chronyd, one clock a second ahead, one
/// whose replies are held 40 ms after their timestamps from 5 s on. One falseticker event,
/// about the clock a second off; one delay_asymmetry event, about the held replies, on the
/// reply path; nothing about the honest three.
#[test]
fn a_falseticker_and_a_delayed_reply_path_are_named() {
    require_root();
    let lab = Lab::new("select");
    load::route_clients(&lab);
    let dir = tempfile::tempdir().expect("tempdir");
    let honest: Vec<String> = (0..3u32)
        .map(|i| load::address(i, false).to_string())
        .collect();
    let _servers: Vec<Proc> = honest
        .iter()
        .map(|a| chrony_on(&lab.b, dir.path(), a))
        .collect();
    let (ahead, held) = (load::address(8, false), load::address(9, false));
    let _ahead = Responder::start(
        &lab.b,
        SocketAddr::new(ahead, 123),
        Behaviour {
            offset: 1.0,
            ..Behaviour::default()
        },
    );
    let _held = Responder::start(
        &lab.b,
        SocketAddr::new(held, 123),
        Behaviour {
            hold: Some((Duration::from_secs(5), Duration::from_millis(40))),
            ..Behaviour::default()
        },
    );
    let tap = tap(&lab.a, "va", &[]);
    let mut servers: Vec<&str> = honest.iter().map(String::as_str).collect();
    let (ahead_s, held_s) = (ahead.to_string(), held.to_string());
    servers.extend([ahead_s.as_str(), held_s.as_str()]);
    let _client = chrony_client(&lab.a, dir.path(), &servers, -2, "");
    std::thread::sleep(Duration::from_secs(10));
    let events = pattern_events(tap);
    let falsetickers = of_kind(&events, "falseticker");
    assert_eq!(falsetickers.len(), 1, "{events:#?}");
    assert_eq!(falsetickers[0]["server"], ahead_s, "{events:#?}");
    let offset = falsetickers[0]["offset"].as_f64().unwrap();
    assert!((offset - 1.0).abs() < 0.01, "{events:#?}");
    // Told as soon as three servers are in use: the two others agree.
    let (servers, agreeing) = (
        falsetickers[0]["servers"].as_u64().unwrap(),
        falsetickers[0]["agreeing"].as_u64().unwrap(),
    );
    assert!(servers >= 3 && agreeing == servers - 1, "{events:#?}");
    let asymmetric = of_kind(&events, "delay_asymmetry");
    assert_eq!(asymmetric.len(), 1, "{events:#?}");
    let e = asymmetric[0];
    assert_eq!(
        (e["server"].as_str(), e["path"].as_str()),
        (Some(held_s.as_str()), Some("reply"))
    );
    let rise = e["delay_after"].as_f64().unwrap() - e["delay_before"].as_f64().unwrap();
    // The hold, and what a loaded machine adds to a 40 ms sleep.
    assert!((0.035..0.25).contains(&rise), "{e}");
    assert_eq!(events.len(), 2, "{events:#?}");
}

/// chronyd with NTS (a certificate of the test's own) in ns b asks chronyd in ns a. The server
/// restarts with new keys: its NTSN kiss is an nts_downgrade (`nts_nak`). The client restarts
/// without NTS: `request_without_nts`. Then the test's own responder answers an NTS request
/// without an authenticator: `reply_without_authenticator`. Each names B4 and A4, nothing else.
#[test]
fn nts_downgrades_are_named() {
    require_root();
    let lab = Lab::new("ntsdown");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    ntptap_tests::run(
        std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", &format!("/CN={}", Lab::A4)])
            .args(["-addext", &format!("subjectAltName=IP:{}", Lab::A4)])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let nts = format!(
        "ntsserverkey {}\nntsservercert {}\n",
        key.display(),
        cert.display()
    );
    let server = chrony_server_with(
        &lab.a,
        &tempfile::tempdir_in(dir.path()).unwrap().keep(),
        &nts,
    );
    let tap = tap(&lab.b, "vb", &[]);
    let trusted = format!(" nts\nntstrustedcerts {}", cert.display());
    let client = chrony_client(&lab.b, dir.path(), &[Lab::A4], -2, &trusted);
    std::thread::sleep(Duration::from_secs(3));
    // New keys: the client's cookies are no good.
    drop(server);
    let renewed = chrony_server_with(
        &lab.a,
        &tempfile::tempdir_in(dir.path()).unwrap().keep(),
        &nts,
    );
    std::thread::sleep(Duration::from_secs(3));
    drop(client);
    let client = chrony_client(&lab.b, dir.path(), &[Lab::A4], -2, "");
    std::thread::sleep(Duration::from_secs(3));
    drop(client);
    drop(renewed);
    // An NTS request answered without its authenticator.
    let responder = Responder::start(&lab.a, Lab::a_ntp(false), Behaviour::default());
    lab.b.enter(|| {
        let s = std::net::UdpSocket::bind((Lab::B4, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s.send_to(&spoof::nts_request(), (Lab::A4, 123)).unwrap();
        s.recv(&mut [0u8; 512]).expect("the responder answers");
    });
    assert_eq!(responder.stop(), 1);
    std::thread::sleep(Duration::from_millis(500));
    let events = pattern_events(tap);
    let what: BTreeSet<&str> = events.iter().filter_map(|e| e["what"].as_str()).collect();
    assert_eq!(
        what,
        BTreeSet::from([
            "nts_nak",
            "request_without_nts",
            "reply_without_authenticator"
        ]),
        "{events:#?}"
    );
    assert_eq!(events.len(), 3, "{events:#?}");
    only_addresses(
        &events,
        &[format!("client={}", Lab::B4), format!("server={}", Lab::A4)],
    );
}

/// Ordinary traffic makes no pattern event: in ns a, chronyd and NTPsec's ntpd use four honest
/// servers in ns b, and ntpd serves two thousand well-behaved clients there (every 16 to 64 s),
/// for NTPTAP_PATTERNS_SECS seconds (30; 600 for RELIABILITY.md's run).
#[test]
fn ordinary_traffic_makes_no_pattern_event() {
    require_root();
    let seconds: u64 = std::env::var("NTPTAP_PATTERNS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let lab = Lab::new("ordinary");
    load::route_clients(&lab);
    let dir = tempfile::tempdir().expect("tempdir");
    let servers: Vec<String> = (0..4u32)
        .map(|i| load::address(60_000 + i, false).to_string())
        .collect();
    let _servers: Vec<Proc> = servers
        .iter()
        .map(|a| chrony_on(&lab.b, dir.path(), a))
        .collect();
    let tap = tap(&lab.a, "va", &["--stats", "3600"]);
    let refs: Vec<&str> = servers.iter().map(String::as_str).collect();
    let _chronyd = chrony_client(&lab.a, dir.path(), &refs, 0, "");
    let conf = dir.path().join("ntpd.conf");
    let mut text = String::from("restrict default limited kod nomodify noquery\ndisable ntp\n");
    for s in &servers {
        let _ = writeln!(text, "server {s} iburst minpoll 3 maxpoll 3");
    }
    std::fs::write(&conf, text).unwrap();
    let _ntpd = Proc::spawn(
        "ntpd (NTPsec client and server)",
        lab.a
            .command(tools_root().join("usr/sbin/ntpd"))
            .args(["-n", "-u", "root", "-c"])
            .arg(&conf),
    );
    std::thread::sleep(Duration::from_secs(1));
    let clients: Vec<Client> = (0..2_000u32)
        .map(|i| Client {
            addr: load::address(i, i % 4 == 0),
            every: Duration::from_secs(16 << (i % 3)),
            first: Duration::from_millis(u64::from(i) * 8),
            port: None,
        })
        .collect();
    let played = load::play_to_a(&lab, clients, Duration::from_secs(seconds));
    let requests: u32 = played.sent.iter().sum();
    let (events, stderr) = stop(tap);
    assert_eq!(
        ntptap_tests::exit_counts(&stderr).dropped,
        0,
        "the rings lost frames:\n{stderr}"
    );
    let exchanges = events
        .iter()
        .filter(|e| e["event"] == "server")
        .filter(|e| servers.iter().any(|s| e["server"] == *s.as_str()))
        .filter_map(|e| e["responses"].as_u64())
        .sum::<u64>();
    let served = events
        .iter()
        .rfind(|e| e["event"] == "clients")
        .map(|e| (e["requests"].as_u64(), e["replies"].as_u64()));
    eprintln!(
        "{seconds} s: {requests} requests from 2,000 clients, (requests, replies) seen served \
         {served:?}, {exchanges} responses from the four servers"
    );
    let Some((Some(asked), Some(answered))) = served else {
        panic!("no clients event: {stderr}");
    };
    assert!(asked >= u64::from(requests), "{served:?}\n{stderr}");
    assert!(
        answered * 10 >= asked * 9,
        "ntpd answered {answered} of {asked}"
    );
    assert!(exchanges >= 4 * seconds / 8, "{stderr}");
    let patterns: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"].as_str().is_some_and(|k| KINDS.contains(&k)))
        .collect();
    assert!(patterns.is_empty(), "{patterns:#?}");
    assert!(!stderr.contains("suspects now"), "{stderr}");
}

/// A million forged packets, each with a new address (requests with varying TTLs, NTS
/// requests, unsolicited responses, mode 7 answers), read from a pipe: ntptap's peak resident
/// memory grows by less than the detectors' stated bound plus the tracker's and the client
/// analytics' over reading a thousand.
#[test]
fn a_million_forged_sources_stay_within_the_detectors_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peak = |n: u32| -> u64 {
        let file = dir.path().join(format!("forged-{n}.pcap"));
        load::write_forged_mix(&file, n);
        let mut child = std::process::Command::new(ntptap_bin())
            .args(["-r", "-", "--no-print", "--stats", "3600"])
            .stdin(std::fs::File::open(&file).unwrap())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ntptap");
        let peak = load::peak_rss(&child);
        assert!(child.wait().expect("ntptap's exit").success());
        peak
    };
    let (small, big) = (peak(1_000), peak(1_000_000));
    let grown = big.saturating_sub(small);
    let patterns = ntptap::exchange::PatternLimits::default().bound();
    // As in the client analytics' test: and 16 MiB the allocator keeps of tables that grew.
    let bound = patterns
        + ntptap::exchange::clients::ClientLimits::default().bound()
        + ntptap::exchange::Limits::default().bound()
        + (16 << 20);
    eprintln!(
        "peak RSS: {} MiB with 1,000 forged sources, {} MiB with 1,000,000: grew {} MiB (bound {} MiB, of which the detectors {} MiB)",
        small >> 20,
        big >> 20,
        grown >> 20,
        bound >> 20,
        patterns >> 20
    );
    assert!(grown < bound as u64, "grew {grown} bytes, bound {bound}");
}
