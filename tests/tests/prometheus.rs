//! The Prometheus side: the alert and recording rules in `dist/prometheus/` pass
//! `promtool check rules` and their unit tests (`promtool test rules`: every alert fires on
//! the series that should fire it and stays quiet on the others), and the metrics ntptap
//! serves during a real chrony exchange pass promtool's metric lints.
//! promtool comes from Debian's `prometheus` package, unpacked by `cargo xtask setup`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use ntptap_tests::{Lab, Netns, Proc, chrony_client, chrony_server, ntptap_bin, run, tools_root};

fn promtool() -> PathBuf {
    let path = tools_root().join("usr/bin/promtool");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask setup`",
        path.display()
    );
    path
}

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/prometheus")
}

#[test]
fn the_rules_check_and_their_unit_tests_pass() {
    for (what, args) in [
        ("check rules", ["check", "rules", "ntptap.rules.yml"]),
        ("test rules", ["test", "rules", "ntptap.rules.test.yml"]),
    ] {
        let out = Command::new(promtool())
            .args(args)
            .current_dir(rules_dir())
            .output()
            .expect("promtool runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {what}:\n{text}");
        assert!(text.contains("SUCCESS"), "promtool {what}:\n{text}");
    }
}

/// `promtool check metrics` reads the Prometheus text format, not OpenMetrics: for an
/// OpenMetrics counter family (`# TYPE x counter`, samples `x_total`) it finds no help text for
/// `x_total`, and may take the family for a counter whose name lacks `_total`. Those readings
/// are left out, and only for families whose help is there; every other lint it has (help
/// text, naming, units in names, duplicate and malformed samples) must pass.
#[test]
fn the_metrics_pass_promtools_lints() {
    let lab = Lab::new("promlint");
    let dir = tempfile::tempdir().unwrap();
    let _server = chrony_server(&lab.a, dir.path());
    let tap = Proc::listening(
        "ntptap --metrics",
        lab.b.command(ntptap_bin()).args([
            "-i",
            "vb",
            "--metrics",
            "127.0.0.1:9123",
            "-w",
            "/dev/null",
        ]),
    );
    chrony_client(&lab.b, dir.path(), Lab::A4);
    std::thread::sleep(Duration::from_millis(2200));
    let scrape = run(lab.b.command("/usr/bin/python3").args([
        "-c",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9123/metrics').read().decode(), end='')",
    ]));
    let (status, _, stderr) = tap.stop(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&scrape.stdout).into_owned();
    for family in [
        "ntptap_server_offset_seconds{",
        "ntptap_server_requests_total{",
        "ntptap_server_stratum{",
        "ntptap_server_root_dispersion_seconds{",
        "ntptap_kernel_frames_total{",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    // No metric name mixes units: gauges in seconds say so, counters end in _total.
    assert!(!text.contains("ntptap_server{"), "{text}");
    assert!(!text.contains("ntptap_server_exchanges"), "{text}");
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    {
        use std::io::Write as _;
        let mut stdin = check.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("feed promtool");
    }
    let out = check.wait_with_output().expect("promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        // OpenMetrics counter families, read as the text format (see above): the family
        // `x` has its help, which promtool then misses for the samples `x_total`.
        .filter(|l| {
            !l.strip_suffix(" no help text")
                .and_then(|name| name.strip_suffix("_total"))
                .is_some_and(|family| text.contains(&format!("# HELP {family} ")))
        })
        .filter(|l| !l.contains("counter metrics should have \"_total\" suffix"))
        .filter(|l| !l.contains("# EOF"))
        .collect();
    assert!(
        problems.is_empty(),
        "promtool check metrics:\n{report}\n{text}"
    );
}

/// A Prometheus instant query's samples, by the value of `label`.
fn query(ns: &Netns, promql: &str, label: &str) -> Vec<(String, f64)> {
    let script = format!(
        "import json, urllib.parse, urllib.request\n\
         q = urllib.parse.quote({promql:?})\n\
         r = json.load(urllib.request.urlopen('http://127.0.0.1:9090/api/v1/query?query=' + q, timeout=5))\n\
         assert r['status'] == 'success', r\n\
         for s in r['data']['result']:\n\
         \x20   print(s['metric'].get({label:?}, ''), s['value'][1])\n"
    );
    let out = run(ns.command("/usr/bin/python3").args(["-c", &script]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The sample of `instance` in `samples`.
fn of(samples: &[(String, f64)], instance: &str) -> f64 {
    samples
        .iter()
        .find(|(i, _)| i == instance)
        .map_or_else(|| panic!("no {instance} in {samples:?}"), |(_, x)| *x)
}

/// A relay on port 4123 in front of chronyd that adds `shift` seconds to the server's receive
/// and transmit timestamps: to a client, and to ntptap, the server seems `shift` ahead.
fn shifting_relay(shift: f64) -> String {
    format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0', 4123))\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         d = int({shift} * 2**32)\n\
         while True:\n\
         \x20   data, peer = s.recvfrom(4096)\n\
         \x20   u.sendto(data, ('127.0.0.1', 123))\n\
         \x20   r = bytearray(u.recvfrom(4096)[0])\n\
         \x20   for i in (32, 40):\n\
         \x20       r[i:i+8] = ((int.from_bytes(r[i:i+8], 'big') + d) % 2**64).to_bytes(8, 'big')\n\
         \x20   s.sendto(bytes(r), peer)\n"
    )
}

const HOSTS: u32 = 3;
/// How far ahead the relay puts the server for the last host.
const SHIFT: f64 = 0.2;

/// The server's namespace and the hosts', host N joined to the server by a veth pair (server
/// side `sN`, 10.230.N.1; host side `hN`, 10.230.N.2).
fn fleet() -> (Netns, Vec<Netns>) {
    let srv = Netns::new("fleet-srv");
    let hosts: Vec<Netns> = (1..=HOSTS)
        .map(|n| Netns::new(&format!("fleet-h{n}")))
        .collect();
    for (n, host) in (1..=HOSTS).zip(&hosts) {
        let (s, h) = (format!("s{n}"), format!("h{n}"));
        run(Command::new("ip").args([
            "link", "add", &s, "netns", &srv.name, "type", "veth", "peer", "name", &h, "netns",
            &host.name,
        ]));
        for (ns, dev, me) in [(&srv, &s, 1), (host, &h, 2)] {
            ns.ip(&["addr", "add", &format!("10.230.{n}.{me}/24"), "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
        }
    }
    (srv, hosts)
}

/// Prometheus in `ns` on 127.0.0.1:9090, scraping every host's ntptap each second with the
/// shipped rules; returned once its API answers.
fn prometheus(ns: &Netns, dir: &Path) -> Proc {
    // The shipped alerts once more, their `for` cut to 2 s and their names marked, so that a
    // test of seconds sees the real expressions fire (the shipped ones stay pending for their
    // minutes; promtool's tests show them firing).
    let shipped = std::fs::read_to_string(rules_dir().join("ntptap.rules.yml")).unwrap();
    let alerts = shipped
        .find("  - name: ntptap.alerts")
        .map(|i| &shipped[i..])
        .expect("the alerts group");
    let fast = format!("groups:\n{alerts}")
        .replace("name: ntptap.alerts", "name: ntptap.alerts.fast")
        .replace("- alert: Ntptap", "- alert: FastNtptap")
        .replace("for: 15m", "for: 2s")
        .replace("for: 10m", "for: 2s")
        .replace("for: 5m", "for: 2s");
    let fast_file = dir.join("fast.rules.yml");
    std::fs::write(&fast_file, fast).unwrap();
    let config = dir.join("prometheus.yml");
    let targets: Vec<String> = (1..=HOSTS)
        .map(|n| format!("'10.230.{n}.2:9123'"))
        .collect();
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\nscrape_configs:\n  - job_name: ntptap\n    static_configs:\n      - targets: [{}]\n",
            rules_dir().join("ntptap.rules.yml").display(),
            fast_file.display(),
            targets.join(", ")
        ),
    )
    .unwrap();
    let proc = Proc::spawn(
        "prometheus",
        ns.command(tools_root().join("usr/bin/prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .args(["--web.listen-address=127.0.0.1:9090", "--log.level=warn"]),
    );
    let ready = "import time, urllib.request\nfor _ in range(100):\n    try:\n        urllib.request.urlopen('http://127.0.0.1:9090/-/ready', timeout=1); break\n    except Exception:\n        time.sleep(0.1)\nelse:\n    raise SystemExit('prometheus is not ready')\n";
    run(ns.command("/usr/bin/python3").args(["-c", ready]));
    proc
}

/// Wait until Prometheus has scraped every target once, so that rates see the counters grow.
fn scraped_once(ns: &Netns) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while query(ns, "up{job=\"ntptap\"} == 1", "instance").len() < HOSTS as usize {
        assert!(std::time::Instant::now() < deadline, "targets never up");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every scrape target as `URL HEALTH 'LAST ERROR'`.
fn targets(ns: &Netns) -> String {
    let out = run(ns.command("/usr/bin/python3").args([
        "-c",
        "import json, urllib.request\nr = json.load(urllib.request.urlopen('http://127.0.0.1:9090/api/v1/targets'))\nfor t in r['data']['activeTargets']:\n    print(t['scrapeUrl'], t['health'], repr(t['lastError']))\n",
    ]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// chronyd as a client of host `n`'s server address, four samples; the last host asks the
/// shifting relay.
fn client(host: &Netns, n: u32, dir: &Path) {
    let port = if n == HOSTS { 4123 } else { 123 };
    run(host
        .command(tools_root().join("usr/sbin/chronyd"))
        .args(["-u", "root", "-Q", "-t", "20"])
        .arg(format!(
            "server 10.230.{n}.1 port {port} iburst maxsamples 4"
        ))
        .arg("cmdport 0")
        .arg(format!("pidfile {}/client{n}.pid", dir.display())));
}

/// ntptap on each host, watching NTP on ports 123 and 4123 (the relay's), metrics on the
/// host's address, writing `hN.pcap` in `dir`.
fn taps(hosts: &[Netns], dir: &Path) -> Vec<(Proc, PathBuf)> {
    (1..=HOSTS)
        .zip(hosts)
        .map(|(n, host)| {
            let file = dir.join(format!("h{n}.pcap"));
            let tap = Proc::listening(
                "ntptap",
                host.command(ntptap_bin())
                    .args(["-i", &format!("h{n}"), "--port", "123", "--port", "4123"])
                    .args(["--metrics", &format!("10.230.{n}.2:9123"), "-w"])
                    .arg(&file),
            );
            (tap, file)
        })
        .collect()
}

/// A kiss-o'-death (RATE) from the server's side of host 1, answering nothing (from port
/// 5123, so it is no response to a request): the kiss and event panels have data.
fn kiss(srv: &Netns) {
    let script = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('10.230.1.1', 5123))\np = bytes([0x24, 0, 6, 0xec]) + bytes(8) + b'RATE' + bytes(32)\ns.sendto(p, ('10.230.1.2', 123))\n";
    run(srv.command("/usr/bin/python3").args(["-c", script]));
}

/// Every query of every panel of `dist/grafana/ntptap.json` (with `$instance` as every host
/// and `$__rate_interval` as a minute) returns series from the test Prometheus; the dashboard
/// has what Grafana's schema asks of each panel. Returns what went wrong, one line each.
fn dashboard_problems(ns: &Netns) -> String {
    let dashboard = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/grafana/ntptap.json");
    let script = format!(
        "import json, urllib.parse, urllib.request\n\
         d = json.load(open({:?}))\n\
         assert isinstance(d['schemaVersion'], int) and d['uid'] and d['title'], 'dashboard header'\n\
         ids = [p['id'] for p in d['panels']]\n\
         assert len(ids) == len(set(ids)), 'panel ids repeat'\n\
         n = 0\n\
         for p in d['panels']:\n\
         \x20   assert set(p['gridPos']) == {{'h', 'w', 'x', 'y'}}, p['title']\n\
         \x20   if p['type'] == 'row':\n\
         \x20       continue\n\
         \x20   assert p['datasource']['type'] == 'prometheus' and p['targets'], p['title']\n\
         \x20   for t in p['targets']:\n\
         \x20       e = t['expr'].replace('$instance', '.*').replace('$__rate_interval', '1m')\n\
         \x20       q = urllib.parse.quote(e)\n\
         \x20       r = json.load(urllib.request.urlopen('http://127.0.0.1:9090/api/v1/query?query=' + q, timeout=5))\n\
         \x20       n += 1\n\
         \x20       if r['status'] != 'success' or not r['data']['result']:\n\
         \x20           print(p['title'], t['refId'], e, r.get('error', 'no series'))\n\
         print(n, 'queries')\n",
        dashboard.display().to_string()
    );
    let out = run(ns.command("/usr/bin/python3").args(["-c", &script]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The offset alert, pending as shipped and firing with its `for` cut, for the relayed host
/// and no other; no other alert fires; the worst-offset recording rule sees the shift.
fn alerts_single_out_the_relayed_host(srv: &Netns) {
    let alerts = query(
        srv,
        "ALERTS{alertname=\"NtptapServerOffsetHigh\"}",
        "instance",
    );
    let fast = "ALERTS{alertstate=\"firing\", alertname=~\"FastNtptap.*\"}";
    let firing = query(srv, fast, "alertname");
    let firing_hosts = query(srv, fast, "instance");
    let worst = query(srv, "server:ntptap_server_offset_seconds:max_abs", "server");
    eprintln!(
        "ALERTS NtptapServerOffsetHigh: {alerts:?}; firing with for cut to 2 s: {firing:?}; worst offset per server: {worst:?}"
    );
    assert_eq!(
        firing.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["FastNtptapServerOffsetHigh"],
        "only the offset alert fires: {firing:?}"
    );
    assert_eq!(
        firing_hosts
            .iter()
            .map(|(i, _)| i.as_str())
            .collect::<Vec<_>>(),
        [format!("10.230.{HOSTS}.2:9123")],
        "and for the relayed host only"
    );
    assert_eq!(
        alerts.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(),
        [format!("10.230.{HOSTS}.2:9123")],
        "the offset alert for the relayed host only: {alerts:?}"
    );
    let relayed = format!("10.230.{HOSTS}.1");
    assert!((of(&worst, &relayed) - SHIFT).abs() < 0.01, "{worst:?}");
}
/// A fleet in namespaces: three hosts, each with ntptap watching its own chronyd exchange, the
/// last one through a relay that puts the server 200 ms ahead; a real Prometheus scrapes them
/// all with the shipped rules. PromQL's figures equal what the capture files hold, every
/// target is up with no scrape error, and the offset alert is raised for the relayed host
/// only (pending: its `for` is 10 minutes; promtool's tests show it firing).
#[test]
fn a_real_prometheus_scrapes_a_fleet_and_the_rules_single_out_the_offset_host() {
    let (srv, hosts) = fleet();
    let dir = tempfile::tempdir().unwrap();
    let _chronyd = chrony_server(&srv, dir.path());
    let _relay = Proc::spawn(
        "relay",
        srv.command("/usr/bin/python3")
            .args(["-u", "-c", &shifting_relay(SHIFT)]),
    );
    let taps = taps(&hosts, dir.path());
    let prometheus = prometheus(&srv, dir.path());
    scraped_once(&srv);
    std::thread::scope(|scope| {
        for (n, host) in (1..=HOSTS).zip(&hosts) {
            let dir = dir.path();
            scope.spawn(move || client(host, n, dir));
        }
    });
    kiss(&srv);
    // Frames drained, metrics rendered, scraped and the rules evaluated: a few seconds each.
    std::thread::sleep(Duration::from_secs(5));

    let up = query(&srv, "up{job=\"ntptap\"}", "instance");
    assert_eq!(up.len(), HOSTS as usize, "{up:?}");
    assert!(up.iter().all(|(_, v)| (v - 1.0).abs() < 1e-9), "{up:?}");
    let targets = targets(&srv);
    assert_eq!(targets.lines().count(), HOSTS as usize, "{targets}");
    assert!(
        targets.lines().all(|l| l.ends_with(" up ''")),
        "every target up, no scrape error:\n{targets}"
    );
    let written = query(
        &srv,
        "sum by (instance) (ntptap_frames_written_total)",
        "instance",
    );
    let responses = query(
        &srv,
        "sum by (instance) (ntptap_server_responses_total)",
        "instance",
    );
    let offsets = query(&srv, "ntptap_server_offset_seconds", "instance");
    alerts_single_out_the_relayed_host(&srv);
    let dashboard = dashboard_problems(&srv);
    drop(prometheus);
    let queries = dashboard.lines().last().unwrap_or_default().to_owned();
    assert!(
        dashboard.lines().count() == 1 && queries.ends_with(" queries"),
        "dashboard panels without data:\n{dashboard}"
    );
    eprintln!("dashboard: {queries}, each with series");

    for (n, (tap, file)) in (1..=HOSTS).zip(taps) {
        let (status, _, stderr) = tap.stop(nix::sys::signal::Signal::SIGINT);
        assert!(status.success(), "{stderr}");
        let frames = ntptap_tests::read_pcap(&file);
        let instance = format!("10.230.{n}.2:9123");
        assert!(frames.len() >= 4, "h{n}: {} frames", frames.len());
        assert_eq!(
            of(&written, &instance).round() as usize,
            frames.len(),
            "h{n}: PromQL vs the file"
        );
        // Responses: the frames from the server's side (source port 123 or 4123).
        let from_server = frames
            .iter()
            .filter(|r| {
                r.data
                    .get(34..36)
                    .is_some_and(|p| matches!(u16::from_be_bytes([p[0], p[1]]), 123 | 4123))
            })
            .count();
        assert_eq!(
            of(&responses, &instance).round() as usize,
            from_server,
            "h{n}: responses"
        );
        let offset = of(&offsets, &instance);
        eprintln!(
            "h{n}: PromQL frames {} / file {}, responses {} / file {from_server}, offset {offset:.4} s",
            of(&written, &instance),
            frames.len(),
            of(&responses, &instance),
        );
        let expected = if n == HOSTS { SHIFT } else { 0.0 };
        assert!((offset - expected).abs() < 0.01, "h{n}: offset {offset}");
    }
}
