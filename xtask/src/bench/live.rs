//! The live rows: floods through a veth pair, each contender (none, tcpdump, ntptap and its
//! variants, empty programs) in interleaved rounds.

use std::{
    fmt::Write as _,
    fs,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{not_run::NotRun, offline::median};

/// A TCP stream through the same veth pair: what ntptap's defaults cost traffic that is not
/// UDP at all.
pub(super) const TCP_STREAM: &str = "TCP stream";
/// Its port.
const TCP_PORT: u16 = 5001;

/// The storms of drops that are not NTP: (name, UDP port, dropped by an nftables rule
/// rather than for want of a socket).
pub(super) const STORMS: [(&str, u16, bool); 2] = [
    ("storm to a closed port", 9, false),
    ("storm into an nftables drop", 7, true),
];

/// The medians of one live contender: (sent, captured, CPU µs per captured packet, start,
/// peak RSS KiB).
/// The medians of one contender's rounds.
#[derive(Clone, Copy)]
pub(super) struct Medians {
    pub(super) sent: u64,
    pub(super) captured: u64,
    pub(super) dropped: u64,
    pub(super) cpu: Duration,
    /// Capture CPU per captured packet, µs (NaN when nothing was captured).
    pub(super) per_us: f64,
    pub(super) start: Duration,
    pub(super) rss_kib: u64,
}

impl LiveResult {
    pub(super) fn medians(&self) -> Medians {
        let sent = median_u64(self.runs.iter().map(|x| x.sent).collect());
        let captured = median_u64(self.runs.iter().map(|x| x.captured).collect());
        let cpu = median(self.runs.iter().map(|x| x.cpu).collect());
        Medians {
            sent,
            captured,
            dropped: median_u64(self.runs.iter().map(|x| x.dropped).collect()),
            cpu,
            per_us: if captured > 0 {
                cpu.as_secs_f64() * 1e6 / captured as f64
            } else {
                f64::NAN
            },
            start: median(self.runs.iter().map(|x| x.start).collect()),
            rss_kib: median_u64(self.runs.iter().map(|x| x.peak_rss_kib).collect()),
        }
    }
}

pub(super) fn live_medians(live: &[LiveResult], flood: &str, contender: &str) -> Option<Medians> {
    live.iter()
        .find(|r| r.flood == flood && r.contender == contender)
        .map(LiveResult::medians)
}

/// One live measurement.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Live {
    pub(super) sent: u64,
    pub(super) captured: u64,
    pub(super) dropped: u64,
    /// On-CPU time of the capture process, all threads, from just before the flood to just
    /// before it is told to stop (so start-up and exit are not charged to the packets).
    pub(super) cpu: Duration,
    /// From spawn to its "listening on" line: both print it once capturing has begun.
    pub(super) start: Duration,
    /// Peak resident memory (VmHWM), KiB.
    pub(super) peak_rss_kib: u64,
}

/// On-CPU time of every thread of `pid` (`/proc/PID/task/*/schedstat`, nanoseconds).
pub(super) fn on_cpu(pid: u32) -> Duration {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// A /proc/PID/status field in KiB.
pub(super) fn status_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Live capture in a lab: a flood from namespace A into B, captured on B's veth by each
/// contender in turn (interleaved), sender and capture sharing the machine's CPUs.
pub(super) struct LiveResult {
    pub(super) contender: &'static str,
    pub(super) flood: &'static str,
    pub(super) runs: Vec<Live>,
}

pub(super) const FLOOD_SECONDS: f64 = 2.0;

/// The programs the live contenders run.
pub(super) struct Tools {
    pub(super) ntptap: std::path::PathBuf,
    /// tests/examples/empty_tap.rs: the empty program attached where ntptap attaches.
    pub(super) empty_tap: std::path::PathBuf,
    /// tests/examples/least_reader.rs: ntptap's programs and rings, the least reader.
    pub(super) least_reader: std::path::PathBuf,
    /// tests/examples/least_json.rs: the same, and the least loop that writes JSON lines.
    pub(super) least_json: std::path::PathBuf,
}

/// The expression the "expr" contenders capture with under a flood to `port`: NTP from one
/// host under the NTP flood; the flood itself (not NTP) under the other.
pub(super) fn expression(port: u16) -> String {
    if port == 123 {
        format!("udp port 123 and host {}", ntptap_tests::Lab::A4)
    } else {
        format!("udp port {port}")
    }
}

/// Start `contender` capturing on the lab's `vb` into `file` (None for "none"), under a flood
/// to `port`.
pub(super) fn spawn_contender(
    lab: &ntptap_tests::Lab,
    contender: &str,
    tools: &Tools,
    file: &Path,
    port: u16,
) -> anyhow::Result<Option<std::process::Child>> {
    let ntptap = tools.ntptap.as_path();
    let expression = expression(port);
    Ok(match contender {
        "none" => None,
        empty if empty.starts_with("empty ") => Some(
            lab.b
                .command(&tools.empty_tap)
                .args(["vb", empty.trim_start_matches("empty ")])
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()?,
        ),
        "least tc" => Some(
            lab.b
                .command(&tools.least_reader)
                .arg("vb")
                .arg(file)
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()?,
        ),
        // ntptap's JSON line for each frame, written by the least loop (the floor of --json).
        "least json" => Some(
            lab.b
                .command(&tools.least_json)
                .arg("vb")
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()?,
        ),
        // Printing a line a packet, to a pipe nobody reads slower than it comes (/dev/null):
        // tcpdump's default output against ntptap's.
        "tcpdump print" => Some(
            lab.b
                .command("tcpdump")
                .args(["-i", "vb", "-n", "udp port 123"])
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()?,
        ),
        "tcpdump" | "tcpdump expr" => Some(
            lab.b
                .command("tcpdump")
                .args(["-i", "vb", "-w"])
                .arg(file)
                .arg(if contender == "tcpdump" {
                    "udp port 123"
                } else {
                    &expression
                })
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()?,
        ),
        hook => {
            // "ntptap xdp", "ntptap xdp-generic", "ntptap tc", "ntptap tc-cpu0" (the reader
            // placed on the sender's CPU, where the kernel program writes the ring).
            let hook = hook.trim_start_matches("ntptap ");
            let (hook, variant) = hook.split_once('-').unwrap_or((hook, ""));
            let mode = if variant == "generic" { "skb" } else { "auto" };
            let attribution: Vec<&str> = match variant {
                "off" => vec!["--no-attribution", "--no-drops"],
                "drops" => vec!["--drops"],
                "latency" => vec!["--latency"],
                "expr" => vec![expression.as_str()],
                "json" => vec!["--json"],
                // As dist/ntptap.service runs it: the table, the metrics, a pcapng file.
                "service-pcapng" => vec!["--stats", "300", "--metrics", "127.0.0.1:9123"],
                _ => Vec::new(),
            };
            let mut command = if variant == "cpu0" {
                let mut c = lab.b.command("taskset");
                c.args(["-c", "0"]).arg(ntptap);
                c
            } else {
                lab.b.command(ntptap)
            };
            command
                .args(["-i", "vb", "--hook", hook, "--xdp-mode", mode])
                .args(&attribution);
            // "print", "json": ntptap's lines on standard output instead of a file.
            if variant != "print" && variant != "json" {
                command.arg("-w").arg(file);
            }
            Some(
                command
                    .stderr(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()?,
            )
        }
    })
}

pub(super) fn live_once(
    lab: &ntptap_tests::Lab,
    flood: &Path,
    contender: &str,
    port: u16,
    tools: &Tools,
    dir: &Path,
) -> anyhow::Result<Live> {
    let file = capture_file(dir, contender, port);
    let _ = fs::remove_file(&file);
    let spawned = Instant::now();
    let child = spawn_contender(lab, contender, tools, &file, port)?;
    // stderr, line by line, with when each line came.
    let mut child = child.map(|mut c| {
        let stderr = c.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        (c, rx)
    });
    let mut start = Duration::ZERO;
    let mut lines = Vec::new();
    if let Some((_, rx)) = &child {
        loop {
            let (at, line) = rx
                .recv_timeout(Duration::from_secs(10))
                .with_context(|| format!("{contender} did not start: {lines:?}"))?;
            let listening = line.contains("listening on");
            // A feature the contender asks for that this kernel refused (ntptap goes on
            // without it, with a warning): measuring it would measure something else.
            if line.contains(" WARN ") {
                if let Some((mut c, _)) = child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                bail!("{contender} runs without what it measures here: {line}");
            }
            lines.push(line);
            if listening {
                start = at - spawned;
                break;
            }
        }
    }
    // Let it settle (tcpdump's first ring blocks, ntptap's timers) before the flood.
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.as_ref().map(|(c, _)| c.id());
    let cpu_before = pid.map_or(Duration::ZERO, on_cpu);
    let out = lab
        .a
        .command("taskset")
        .args(["-c", "0"])
        .arg(flood)
        .args([
            ntptap_tests::Lab::B4,
            &if port == TCP_PORT {
                format!("tcp:{port}")
            } else {
                port.to_string()
            },
            &FLOOD_SECONDS.to_string(),
        ])
        .output()?;
    let sent: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("flood output")?;
    // Time to drain what is in flight before stopping.
    std::thread::sleep(Duration::from_millis(300));
    let Some((mut child, rx)) = child.take() else {
        return Ok(Live {
            sent,
            ..Live::default()
        });
    };
    let pid = child.id();
    let cpu = on_cpu(pid).saturating_sub(cpu_before);
    let peak_rss_kib = status_kib(pid, "VmHWM:");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )?;
    child.wait()?;
    lines.extend(rx.iter().map(|(_, l)| l));
    let count = |suffix: &str| {
        lines
            .iter()
            .find_map(|l| {
                l.strip_suffix(suffix)
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    Ok(Live {
        sent,
        captured: count(" packets captured"),
        dropped: count(" packets dropped by kernel"),
        cpu,
        start,
        peak_rss_kib,
    })
}

pub(super) fn live(
    root: &Path,
    runs: usize,
    not_run: &mut NotRun,
) -> anyhow::Result<Vec<LiveResult>> {
    crate::run::cargo(&[
        "build",
        "--release",
        "--package",
        "ntptap-tests",
        "--example",
        "ntp_flood",
        "--example",
        "empty_tap",
        "--example",
        "owner_bench",
        "--example",
        "drop_bench",
        "--example",
        "least_reader",
        "--example",
        "least_json",
    ])?;
    let flood = root.join("target/release/examples/ntp_flood");
    let tools = Tools {
        ntptap: root.join("target/release/ntptap"),
        empty_tap: root.join("target/release/examples/empty_tap"),
        least_reader: root.join("target/release/examples/least_reader"),
        least_json: root.join("target/release/examples/least_json"),
    };
    let lab = ntptap_tests::Lab::new("bench");
    let dir = tempfile::tempdir()?;
    // A receiver that never reads: the kernel drops what overflows its buffer, quietly (no
    // ICMP port unreachable to add load).
    // And a TCP server that reads whatever comes, for the TCP stream (MSG_TRUNC: the kernel
    // discards the bytes, so the reader is not what limits the stream).
    let sink = "import socket, threading, time\nsocks = []\nfor p in (123, 5353):\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    s.bind(('0.0.0.0', p))\n    socks.append(s)\ndef drain(c):\n    while c.recv(1 << 20, socket.MSG_TRUNC):\n        pass\n    c.close()\nl = socket.socket()\nl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\nl.bind(('0.0.0.0', 5001))\nl.listen(16)\nwhile True:\n    c, _ = l.accept()\n    threading.Thread(target=drain, args=(c,), daemon=True).start()\n";
    let _receiver = ntptap_tests::Proc::spawn(
        "receiver",
        lab.b.command("/usr/bin/python3").args(["-c", sink]),
    );
    std::thread::sleep(Duration::from_millis(300));
    let contenders = [
        "none",
        "tcpdump",
        "ntptap xdp",
        "ntptap xdp-generic",
        "ntptap tc",
        "ntptap tc-cpu0",
        // The same expression given to both: what ntptap's kernel interpreter costs against
        // libpcap's compiled filter (`expression`).
        "tcpdump expr",
        "ntptap tc-expr",
        "ntptap xdp-expr",
    ];
    // The nftables drop rule one storm runs into.
    drop_rule(&lab);
    let mut results: Vec<LiveResult> = Vec::new();
    let all_floods = [("NTP flood", 123u16), ("non-NTP flood", 5353)]
        .into_iter()
        .chain(STORMS.iter().map(|(name, port, _)| (*name, *port)))
        .chain([(TCP_STREAM, TCP_PORT)]);
    for (flood_name, port) in all_floods {
        let contenders = flood_contenders(port, &contenders);
        for &c in &contenders {
            results.push(LiveResult {
                contender: c,
                flood: flood_name,
                runs: Vec::new(),
            });
        }
        let mut contenders = contenders;
        for _ in 0..runs {
            let mut failed = Vec::new();
            for &c in &contenders {
                eprintln!("xtask: live: {flood_name}, {c}");
                match live_once(&lab, &flood, c, port, &tools, dir.path()) {
                    Ok(r) => results
                        .iter_mut()
                        .find(|r| r.contender == c && r.flood == flood_name)
                        .expect("slot")
                        .runs
                        .push(r),
                    // The peer and the floor are what every ratio stands on.
                    Err(e) if matches!(c, "none" | "tcpdump") => return Err(e),
                    Err(e) => {
                        not_run.note(&format!("live: {flood_name}, {c}"), &e);
                        failed.push(c);
                    }
                }
            }
            // A contender that failed once is left out of this flood: no ratio of partial runs.
            contenders.retain(|c| !failed.contains(c));
            results.retain(|r| r.flood != flood_name || !failed.contains(&r.contender));
        }
    }
    Ok(results)
}

/// In the receiver's namespace: an nftables rule that drops datagrams to port 7 (the storm
/// into a firewall).
pub(super) fn drop_rule(lab: &ntptap_tests::Lab) {
    ntptap_tests::run(
        lab.b
            .command("nft")
            .args(["add", "table", "inet", "bench_drop"]),
    );
    ntptap_tests::run(lab.b.command("nft").args([
        "add",
        "chain",
        "inet",
        "bench_drop",
        "in",
        "{ type filter hook input priority 0 ; }",
    ]));
    ntptap_tests::run(lab.b.command("nft").args([
        "add",
        "rule",
        "inet",
        "bench_drop",
        "in",
        "udp",
        "dport",
        "7",
        "drop",
    ]));
}

pub(super) fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

pub(super) fn live_report(md: &mut String, results: &[LiveResult]) -> Vec<serde_json::Value> {
    let mut json = Vec::new();
    let _ = writeln!(
        md,
        "\n## Live capture ({FLOOD_SECONDS} s floods of 48-byte UDP payloads from one namespace into another over a veth pair, captured on the receiving side; sender pinned to CPU 0; medians, with the lowest and highest round in brackets)\n"
    );
    let _ = writeln!(
        md,
        "\"expr\": tcpdump and ntptap given the same expression, `{}` under the NTP flood and `{}` under the other (which it captures).\n",
        expression(123),
        expression(5353)
    );
    let _ = writeln!(
        md,
        "| flood | contender | sender kpps | kept vs no capture | captured | dropped | capture CPU µs/packet | start to listening, ms | peak RSS, MiB |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let floods = ["NTP flood", "non-NTP flood"]
        .into_iter()
        .chain(STORMS.iter().map(|(name, _, _)| *name))
        .chain([TCP_STREAM]);
    for flood in floods {
        let base = results
            .iter()
            .find(|r| r.flood == flood && r.contender == "none")
            .map_or(1, |r| r.medians().sent.max(1));
        for r in results.iter().filter(|r| r.flood == flood) {
            let Medians {
                sent,
                captured,
                dropped,
                cpu,
                per_us: per,
                start,
                rss_kib: rss,
            } = r.medians();
            let kept = sent as f64 / base as f64 * 100.0;
            // The spread over the rounds: the host's load moves these figures.
            let range = |v: Vec<f64>| {
                v.iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                        (lo.min(x), hi.max(x))
                    })
            };
            let kept_range = range(
                r.runs
                    .iter()
                    .map(|x| x.sent as f64 / base as f64 * 100.0)
                    .collect(),
            );
            let per_range = range(
                r.runs
                    .iter()
                    .filter(|x| x.captured > 0)
                    .map(|x| x.cpu.as_secs_f64() * 1e6 / x.captured as f64)
                    .collect(),
            );
            let dash = |v: String, real: bool| if real { v } else { "-".to_owned() };
            let _ = writeln!(
                md,
                "| {flood} | {} | {:.0} | {kept:.0} % ({:.0}–{:.0}) | {captured} | {dropped} | {} | {} | {} |",
                r.contender,
                sent as f64 / FLOOD_SECONDS / 1e3,
                kept_range.0,
                kept_range.1,
                dash(
                    format!("{per:.3} ({:.3}–{:.3})", per_range.0, per_range.1),
                    !per.is_nan()
                ),
                dash(format!("{:.0}", start.as_secs_f64() * 1e3), rss > 0),
                dash(format!("{:.1}", rss as f64 / 1024.0), rss > 0),
            );
            json.push(serde_json::json!({
                "flood": flood, "contender": r.contender, "sent": sent, "captured": captured,
                "dropped": dropped, "cpu_s": cpu.as_secs_f64(), "cpu_us_per_captured": per, "kept_percent": kept,
                "start_ms": start.as_secs_f64() * 1e3, "peak_rss_kib": rss,
                "kept_percent_range": [kept_range.0, kept_range.1],
                "sent_per_round": r.runs.iter().map(|x| x.sent).collect::<Vec<_>>(),
                "cpu_us_per_captured_range": [per_range.0, per_range.1],
            }));
        }
    }
    json
}

/// Where `contender` writes its capture under the flood to `port` (pcapng for the pcapng
/// variant, else pcap).
fn capture_file(dir: &Path, contender: &str, port: u16) -> std::path::PathBuf {
    let extension = if contender.ends_with("pcapng") {
        "pcapng"
    } else {
        "cap"
    };
    dir.join(format!(
        "{}-{port}.{extension}",
        contender.replace(' ', "-")
    ))
}

/// The contenders of the flood to `port`: `contenders` and what that flood adds.
fn flood_contenders(port: u16, contenders: &[&'static str]) -> Vec<&'static str> {
    // Under the flood that is not NTP, what any program at each hook costs: the floor of
    // target 3.
    // And ntptap with process attribution: what its hooks cost a flood that is not NTP.
    let floors = ["empty xdp", "empty xdp-generic", "empty tc"];
    // Storms of drops that are not NTP, to a closed port and into an nftables drop rule:
    // what the drop program costs their sender, against ntptap without it.
    // And an empty program where the drop program runs: what any program there costs them.
    let storm_contenders = ["none", "ntptap tc", "ntptap tc-drops", "empty kfree_skb"];
    // What ntptap's defaults (attribution, and drops if on) cost, against all of them off.
    let default_contenders = ["none", "ntptap tc", "ntptap tc-off"];
    match port {
        // And the least reader of ntptap's rings: the floor of `-w FILE`; and ntptap
        // writing pcapng, which decodes and tracks every frame for its comments.
        123 => contenders
            .iter()
            .chain(&[
                "least tc",
                "ntptap tc-pcapng",
                "tcpdump print",
                "ntptap tc-print",
                "ntptap tc-json",
                "least json",
                "ntptap tc-service-pcapng",
            ])
            .copied()
            .collect(),
        // And ntptap with --latency: its queue stamp runs on every datagram delivered.
        5353 => contenders
            .iter()
            .chain(&floors)
            .chain(&["ntptap tc-latency", "ntptap tc-off"])
            .copied()
            .collect(),
        TCP_PORT => default_contenders.to_vec(),
        _ => storm_contenders.to_vec(),
    }
}
