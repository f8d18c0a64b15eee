//! `cargo xtask bench`: ntptap measured against tcpdump and tshark in the same run, reported as
//! ratios. Writes target/bench/results.json and BENCHMARKS.md.
//!
//! - Offline decode: a generated capture of NTP traffic read by `ntptap -r` and
//!   `tcpdump -n -r` at the same verbosity, and by `tshark -V` (per packet, on a slice of it).
//! - Kernel programs: per-frame cost with BPF_PROG_TEST_RUN against an empty XDP program
//!   loaded in the same run (tests/examples/kernel_bench.rs).

use std::{
    fmt::Write as _,
    fs::{self, File},
    io::{BufWriter, Write as _},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::target::Target;
use anyhow::{Context as _, bail};
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

pub struct Options {
    pub packets: u64,
    pub runs: usize,
}

/// CPU time (user + system) and wall time of one command, its output thrown away.
#[derive(Clone, Copy, Debug)]
struct Cost {
    wall: Duration,
    cpu: Duration,
}

fn measure(program: &Path, args: &[&str]) -> anyhow::Result<Cost> {
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: we wait for our own child, passing pointers to locals that outlive the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &raw mut status, 0, &raw mut usage) };
    let wall = start.elapsed();
    if pid < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{} {args:?} failed (status {status})", program.display());
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Cost {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A capture of `packets` NTP frames: client requests and server replies between a few
/// hundred clients and one server, checksums right, every field plausible.
fn generate(path: &Path, packets: u64) -> anyhow::Result<()> {
    let header = PcapHeader {
        snaplen: 65535,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(
        BufWriter::with_capacity(1 << 20, File::create(path)?),
        header,
    )?;
    let mut frame = Vec::with_capacity(128);
    for i in 0..packets {
        let client = [10, 0, (i / 256 % 4) as u8, (i % 250) as u8 + 2];
        let server = [10, 1, 0, 1];
        let port = 40000 + (i / 2 % 20000) as u16;
        let reply = i % 2 == 1;
        let secs = 3_900_000_000u32 + (i / 100) as u32;
        let mut ntp = [0u8; 48];
        ntp[0] = if reply { 0x24 } else { 0x23 };
        ntp[1] = if reply { 2 } else { 0 };
        ntp[2] = 6;
        ntp[3] = 0xec;
        ntp[4..8].copy_from_slice(&0x0000_0155u32.to_be_bytes());
        ntp[8..12].copy_from_slice(&0x0000_0a3du32.to_be_bytes());
        ntp[12..16].copy_from_slice(&[192, 0, 2, 1]);
        if reply {
            ntp[16..20].copy_from_slice(&(secs - 60).to_be_bytes());
            ntp[24..28].copy_from_slice(&secs.to_be_bytes());
            ntp[32..36].copy_from_slice(&secs.to_be_bytes());
            ntp[36..40].copy_from_slice(&0x0010_0000u32.to_be_bytes());
        }
        ntp[40..44].copy_from_slice(&secs.to_be_bytes());
        ntp[44..48].copy_from_slice(&((i as u32).wrapping_mul(2_654_435_761)).to_be_bytes());
        let (src, dst, sport, dport) = if reply {
            (server, client, 123, port)
        } else {
            (client, server, port, 123)
        };
        frame.clear();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut frame, &ntp)
            .context("build a frame")?;
        let ts = Duration::new(1_700_000_000 + i / 1000, (i % 1000) as u32 * 1_000_000);
        writer.write_packet(&PcapPacket::new(ts, frame.len() as u32, frame.as_slice())?)?;
    }
    writer.into_inner().flush()?;
    Ok(())
}

struct Row {
    what: String,
    ntptap: Cost,
    peer: Cost,
    peer_name: &'static str,
    packets: u64,
    peer_packets: u64,
}

impl Row {
    fn per_packet(c: Cost, n: u64) -> f64 {
        c.cpu.as_secs_f64() * 1e6 / n as f64
    }
    fn ratio(&self) -> f64 {
        Self::per_packet(self.peer, self.peer_packets) / Self::per_packet(self.ntptap, self.packets)
    }
}

pub fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    crate::setup::all(root)?;
    crate::run::cargo(&["build", "--release", "--package", "ntptap"])?;
    let ntptap = root.join("target/release/ntptap");
    let out = root.join("target/bench");
    fs::create_dir_all(&out)?;
    let file = out.join(format!("ntp-{}.pcap", opts.packets));
    if !file.exists() {
        eprintln!(
            "xtask: generating {} ({} packets)",
            file.display(),
            opts.packets
        );
        generate(&file, opts.packets)?;
    }
    let tshark_packets = opts.packets.min(100_000);
    let tshark_file = out.join(format!("ntp-{tshark_packets}.pcap"));
    if !tshark_file.exists() {
        generate(&tshark_file, tshark_packets)?;
    }
    let f = file.to_str().context("path")?;
    let tf = tshark_file.to_str().context("path")?;
    let tcpdump = Path::new("/usr/bin/tcpdump");
    let tshark = Path::new("/usr/bin/tshark");

    let mut rows = Vec::new();
    for (what, ours, theirs, peer, peer_name, peer_packets) in [
        (
            "ntptap -r vs tcpdump -n -r",
            vec!["-r", f],
            vec!["-n", "-r", f],
            tcpdump,
            "tcpdump",
            opts.packets,
        ),
        (
            "ntptap -r -v vs tcpdump -n -v -r",
            vec!["-r", f, "-v"],
            vec!["-n", "-v", "-r", f],
            tcpdump,
            "tcpdump",
            opts.packets,
        ),
        (
            "ntptap -r -vvv vs tshark -V",
            vec!["-r", f, "-vvv"],
            vec!["-r", tf, "-V"],
            tshark,
            "tshark",
            tshark_packets,
        ),
        (
            ANALYSIS,
            vec!["-r", f, "--no-print", "--stats", "3600"],
            vec!["-n", "-r", f],
            tcpdump,
            "tcpdump",
            opts.packets,
        ),
    ] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        // Interleaved, so a slow moment of the machine hits both.
        for _ in 0..opts.runs {
            a.push(measure(&ntptap, &ours)?);
            b.push(measure(peer, &theirs)?);
        }
        let pick = |v: &Vec<Cost>| Cost {
            wall: median(v.iter().map(|c| c.wall).collect()),
            cpu: median(v.iter().map(|c| c.cpu).collect()),
        };
        rows.push(Row {
            what: what.into(),
            ntptap: pick(&a),
            peer: pick(&b),
            peer_name,
            packets: opts.packets,
            peer_packets,
        });
    }

    // A row this kernel cannot run (a program its verifier refuses, a hook it lacks) is
    // reported with its reason; every other row still runs.
    let mut not_run = NotRun::default();
    eprintln!("xtask: kernel programs with BPF_PROG_TEST_RUN");
    let kernel = not_run.or_empty("kernel programs", example_json(root, "kernel_bench"));
    eprintln!("xtask: process attribution hooks, on socket calls that are not NTP");
    let owners = not_run.or_empty("attribution hooks", example_json(root, "owner_bench"));
    eprintln!("xtask: the drop program, on real drops on loopback");
    let drops = not_run.or_empty("drop program", example_json(root, "drop_bench"));
    eprintln!("xtask: memory of the client analytics under a million spoofed sources");
    let memory = not_run.or_empty("memory", spoofed_memory(&ntptap, &out));
    let live = live(root, opts.runs, &mut not_run)?;
    report(
        root,
        opts,
        &rows,
        &[kernel, owners, drops],
        &live,
        &memory,
        &not_run,
    )
}

/// The rows that did not run on this kernel, each with its reason.
#[derive(Default)]
pub struct NotRun(Vec<(String, String)>);

impl NotRun {
    /// `result`'s rows, or none: the reason is kept for the report.
    fn or_empty<T>(&mut self, row: &str, result: anyhow::Result<Vec<T>>) -> Vec<T> {
        result.unwrap_or_else(|e| {
            self.note(row, &e);
            Vec::new()
        })
    }

    fn note(&mut self, row: &str, e: &anyhow::Error) {
        // The reason's last line is the one that says it (a panic's message, ntptap's error).
        let reason = format!("{e:#}");
        let reason = reason
            .lines()
            .rev()
            .find(|l| {
                let l = l.trim();
                !l.is_empty() && !l.starts_with("note:") && !l.starts_with("stack backtrace")
            })
            .unwrap_or(&reason)
            .trim()
            .to_owned();
        eprintln!("xtask: bench row not run: {row}: {reason}");
        self.0.push((row.to_owned(), reason));
    }

    /// The report's section, empty when every row ran.
    fn section(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let mut md = String::from(
            "\n## Rows not run on this kernel\n\nEach was refused or failed here; the other rows ran.\n\n| row | why |\n|---|---|\n",
        );
        for (row, why) in &self.0 {
            let _ = writeln!(md, "| {row} | {} |", why.replace('|', "\\|"));
        }
        md
    }
}

/// The offline row of the exchange tracker and client analytics.
const ANALYSIS: &str =
    "ntptap -r --no-print --stats (decode, exchanges, client analytics) vs tcpdump -n -r";

/// Peak resident memory of `ntptap -r - --no-print --stats` reading requests from this many
/// distinct spoofed sources (half IPv4, half IPv6 with random-looking interface IDs), fed
/// through a pipe so that no mapping of the file counts: (sources, peak bytes).
fn spoofed_memory(ntptap: &Path, out: &Path) -> anyhow::Result<Vec<(u32, u64)>> {
    let mut peaks = Vec::new();
    for n in [10_000u32, 1_000_000] {
        let file = out.join(format!("spoofed-{n}.pcap"));
        if !file.exists() {
            ntptap_tests::load::write_spoofed(&file, n);
        }
        let mut child = Command::new(ntptap)
            .args(["-r", "-", "--no-print", "--stats", "3600"])
            .stdin(File::open(&file)?)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run ntptap")?;
        let peak = ntptap_tests::load::peak_rss(&child);
        if !child.wait()?.success() {
            bail!("ntptap failed reading {}", file.display());
        }
        peaks.push((n, peak));
    }
    Ok(peaks)
}

/// The memory section.
fn memory_report(md: &mut String, memory: &[(u32, u64)]) -> Vec<serde_json::Value> {
    let _ = writeln!(
        md,
        "\n## Client analytics and exchange tracking: peak resident memory (`ntptap -r - --no-print --stats 3600`, requests from distinct spoofed sources through a pipe, VmHWM)\n"
    );
    let _ = writeln!(md, "| distinct sources | peak RSS MiB |");
    let _ = writeln!(md, "|---|---|");
    for (n, peak) in memory {
        let _ = writeln!(md, "| {n} | {:.1} |", *peak as f64 / f64::from(1 << 20));
    }
    if let [(_, small), .., (_, big)] = memory {
        let _ = writeln!(
            md,
            "\nGrowth from the fewest to the most sources: {:.1} MiB (the stated bound, checked by `tests/tests/clients.rs`: 69 MiB: 8 MiB of client analytics, 46 MiB for 65,536 requests awaiting replies, 16 MiB the allocator keeps of tables that grew).",
            big.saturating_sub(*small) as f64 / f64::from(1 << 20)
        );
    }
    memory
        .iter()
        .map(|(n, peak)| serde_json::json!({ "sources": n, "peak_rss_bytes": peak }))
        .collect()
}

/// Run a benchmark example of the test crate; its JSON lines.
fn example_json(root: &Path, example: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "run",
            "--quiet",
            "--release",
            "--package",
            "ntptap-tests",
            "--example",
            example,
        ])
        .current_dir(root)
        .output()
        .with_context(|| format!("cannot run {example}"))?;
    if !out.status.success() {
        bail!("{example} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{example} output"))
}

/// The offline decode table; its rows as JSON.
fn decode_report(md: &mut String, rows: &[Row]) -> Vec<serde_json::Value> {
    let _ = writeln!(
        md,
        "## Offline decode (CPU time, user + system, output to /dev/null)\n"
    );
    let _ = writeln!(
        md,
        "| comparison | ntptap µs/packet | peer µs/packet | peer ÷ ntptap (above 1: ntptap is faster) |"
    );
    let _ = writeln!(md, "|---|---|---|---|");
    let mut json_rows = Vec::new();
    for r in rows {
        let (a, b) = (
            Row::per_packet(r.ntptap, r.packets),
            Row::per_packet(r.peer, r.peer_packets),
        );
        let _ = writeln!(
            md,
            "| {} | {a:.3} | {b:.3} ({}) | {:.1}× |",
            r.what,
            r.peer_name,
            r.ratio()
        );
        json_rows.push(serde_json::json!({
            "comparison": r.what, "ntptap_us_per_packet": a, "peer": r.peer_name,
            "peer_us_per_packet": b, "ratio": r.ratio(),
            "ntptap_wall_s": r.ntptap.wall.as_secs_f64(), "peer_wall_s": r.peer.wall.as_secs_f64(),
        }));
    }
    json_rows
}

fn report(
    root: &Path,
    opts: &Options,
    rows: &[Row],
    [kernel, owners, drops]: &[Vec<serde_json::Value>; 3],
    live: &[LiveResult],
    memory: &[(u32, u64)],
    not_run: &NotRun,
) -> anyhow::Result<()> {
    let machine = machine();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Benchmarks\n\nWritten by `cargo xtask bench` ({} packets, median of {} interleaved runs); do not edit by hand.\n",
        opts.packets, opts.runs
    );
    let _ = writeln!(md, "Machine: {machine}\n");
    let json_rows = decode_report(&mut md, rows);
    let memory_json = memory_report(&mut md, memory);
    kernel_report(&mut md, kernel);
    for (title, rows) in [
        (
            "Process attribution hooks (cgroup v2 root, real socket calls on loopback, none of them NTP",
            owners,
        ),
        (
            "Drop program (tp_btf/kfree_skb, real drops of datagrams to a closed port on loopback",
            drops,
        ),
    ] {
        hook_report(&mut md, title, rows);
    }
    let live_json = live_report(&mut md, live);
    md.push_str(&not_run.section());
    let mut targets = targets(rows, kernel, live);
    targets.extend(attribution_targets(owners, live));
    targets.extend(drop_targets(drops, live));
    targets.extend(latency_targets(live));
    let _ = writeln!(
        md,
        "\n## Targets\n\nEach ratio is ntptap against the peer measured in the same run (or, for the kernel programs, against the empty program); \"of target\" is the ratio divided by the target, so 1 or less meets it. \"Least possible\" is the same ratio for the least any program can do at that hook, measured in the same run: for target 3 an empty program attached in ntptap's place (contenders \"empty …\"), for target 4 the least filter that passes over a non-NTP frame and the least capture of an NTP frame (one clock read, reserve, copy, submit: `ntptap_cost_filter`, `ntptap_cost_capture`). Where that misses the target too, no program at that hook meets it on this machine. Target 3 compares losses of a few % between floods that move by several %: its two ratios carry a 90 % bootstrap interval over the rounds, and its floor counts as out of reach only when the whole interval misses the target. The chart is `target/bench/targets.png`; its black ticks are the least possible.\n"
    );
    let _ = writeln!(
        md,
        "| target | measured | target | of target | least possible | met |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for t in &targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} {:.2} | {:.2} | {} | {} |",
            t.name,
            with_interval(t.measured, t.intervals.map(|[m, _]| m)),
            if t.at_most { "≤" } else { "≥" },
            t.limit,
            t.of_target(),
            t.floor.map_or_else(
                || "-".to_owned(),
                |f| with_interval(f, t.intervals.map(|[_, f]| f))
            ),
            match (t.met(), t.out_of_reach()) {
                (true, _) => "yes",
                (false, true) => "no: out of reach (the least possible misses it too)",
                (false, false) => "no",
            }
        );
    }
    // What the figures mean, the targets out of reach, and the levers: written by hand, kept
    // with the generator so that every run's file carries them.
    let _ = write!(md, "\n{}", include_str!("levers.md"));
    let _ = writeln!(md, "\nReproduce: `cargo xtask bench` (as root).");
    print!("{md}");
    fs::write(root.join("BENCHMARKS.md"), &md)?;
    let chart = root.join("target/bench/targets.png");
    if let Err(e) = crate::chart::draw(&chart, &targets) {
        eprintln!("xtask: no chart: {e:#}");
    }
    let targets_json: Vec<serde_json::Value> = targets
        .iter()
        .map(|t| {
            serde_json::json!({"target": t.name, "measured": t.measured, "limit": t.limit,
                "at_most": t.at_most, "of_target": t.of_target(), "met": t.met()})
        })
        .collect();
    let json = serde_json::json!({ "machine": machine, "packets": opts.packets, "runs": opts.runs, "offline": json_rows, "memory": memory_json, "kernel": kernel, "live": live_json, "targets": targets_json });
    fs::write(
        root.join("target/bench/results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    eprintln!("xtask: wrote BENCHMARKS.md and target/bench/results.json");
    Ok(())
}

/// `value` to two places, with its interval in brackets when there is one.
fn with_interval(value: f64, interval: Option<(f64, f64)>) -> String {
    match interval {
        Some((lo, hi)) => format!("{value:.2} ({lo:.2}–{hi:.2})"),
        None => format!("{value:.2}"),
    }
}

/// The kernel programs' table: each against the empty program of its hook.
fn kernel_report(md: &mut String, kernel: &[serde_json::Value]) {
    let baseline = |program: &str| {
        kernel
            .iter()
            .find(|k| k["program"] == program)
            .and_then(|k| k["ns"].as_f64())
            .unwrap_or(f64::NAN)
    };
    let (nop, nop_tc) = (baseline("ntptap_nop"), baseline("ntptap_nop_tc"));
    // Each program against the empty program of its own hook.
    let empty_for = |program: &str| if program.contains("_tc") { nop_tc } else { nop };
    let _ = writeln!(
        md,
        "\n## Kernel programs (BPF_PROG_TEST_RUN, ns per frame, median of 15 interleaved rounds × 20,000)\n"
    );
    let _ = writeln!(
        md,
        "Empty programs in the same run: XDP {nop:.1} ns, TC {nop_tc:.1} ns; each program is compared with the empty one of its hook.\n"
    );
    let _ = writeln!(md, "| program | frame | ns | × empty program |");
    let _ = writeln!(md, "|---|---|---|---|");
    for k in kernel.iter().filter(|k| {
        !k["program"]
            .as_str()
            .unwrap_or("")
            .starts_with("ntptap_nop")
    }) {
        let ns = k["ns"].as_f64().unwrap_or(f64::NAN);
        let program = k["program"].as_str().unwrap_or("?");
        let _ = writeln!(
            md,
            "| {program} | {} | {ns:.1} | {:.2} |",
            k["frame"].as_str().unwrap_or("?"),
            ns / empty_for(program)
        );
    }
}

/// A table of programs against the empty program at each hook.
fn hook_report(md: &mut String, title: &str, owners: &[serde_json::Value]) {
    let _ = writeln!(
        md,
        "\n## {title}; ns per run from the kernel's BPF run-time statistics, which add their own clock reads to both; median of 9 rounds × 20,000 calls)\n"
    );
    let _ = writeln!(
        md,
        "| hook | call | ntptap ns | empty program ns | × empty program |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for o in owners {
        let (ours, empty) = (
            o["ntptap_ns"].as_f64().unwrap_or(f64::NAN),
            o["empty_ns"].as_f64().unwrap_or(f64::NAN),
        );
        let _ = writeln!(
            md,
            "| {} | {} | {ours:.1} | {empty:.1} | {:.2} |",
            o["hook"].as_str().unwrap_or("?"),
            o["work"].as_str().unwrap_or("?"),
            ours / empty
        );
    }
}

/// Target 7: each attribution hook against the empty program at its hook; target 8: what a
/// non-NTP flood's sender loses with attribution on, against ntptap without it.
fn attribution_targets(owners: &[serde_json::Value], live: &[LiveResult]) -> Vec<Target> {
    let mut out = Vec::new();
    for o in owners {
        let (ours, empty) = (
            o["ntptap_ns"].as_f64().unwrap_or(f64::NAN),
            o["empty_ns"].as_f64().unwrap_or(f64::NAN),
        );
        out.extend(Target::new(
            format!(
                "7. attribution, {} vs empty program ({})",
                o["work"].as_str().unwrap_or("?"),
                o["hook"].as_str().unwrap_or("?")
            ),
            ours / empty,
            1.2,
            true,
            None,
        ));
    }
    let sent = |who: &str| {
        live.iter()
            .find(|r| r.flood == "non-NTP flood" && r.contender == who)
            .map(|r| r.runs.iter().map(|x| x.sent).collect::<Vec<_>>())
    };
    if let (Some(on), Some(off), Some(none)) =
        (sent("ntptap tc-attr"), sent("ntptap tc"), sent("none"))
    {
        let all: Vec<usize> = (0..none.len()).collect();
        let ratio = |rounds: &[usize]| loss_ratio(&on, &off, &none, rounds);
        let mut target = Target::new(
            "8. sender lost, non-NTP flood, attribution on vs off (tc)".to_owned(),
            ratio(&all),
            1.1,
            true,
            None,
        );
        if let Some(t) = &mut target {
            let interval = bootstrap(none.len(), ratio);
            t.intervals = Some([interval, interval]);
        }
        out.extend(target);
    }
    out
}

/// Target 9: the drop program against the empty program at `kfree_skb` on a drop that is not
/// NTP; target 10: what a storm of drops costs its sender with the drop program (`--drops`),
/// against ntptap without it (the default), for each storm.
fn drop_targets(drops: &[serde_json::Value], live: &[LiveResult]) -> Vec<Target> {
    let mut out = Vec::new();
    for d in drops
        .iter()
        .filter(|d| d["work"].as_str().is_some_and(|w| w.contains("not NTP")))
    {
        let (ours, empty) = (
            d["ntptap_ns"].as_f64().unwrap_or(f64::NAN),
            d["empty_ns"].as_f64().unwrap_or(f64::NAN),
        );
        out.extend(Target::new(
            format!(
                "9. drops, {} vs empty program (tp_btf/kfree_skb)",
                d["work"].as_str().unwrap_or("?")
            ),
            ours / empty,
            1.2,
            true,
            None,
        ));
    }
    for storm in STORMS {
        let sent = |who: &str| {
            live.iter()
                .find(|r| r.flood == storm.0 && r.contender == who)
                .map(|r| median_u64(r.runs.iter().map(|x| x.sent).collect()))
        };
        if let (Some(on), Some(off)) = (sent("ntptap tc-drops"), sent("ntptap tc")) {
            out.extend(Target::new(
                format!("10. sender kept, {}, drops on vs off (tc)", storm.0),
                on as f64 / off.max(1) as f64,
                0.95,
                false,
                None,
            ));
        }
    }
    out
}

/// Target 11: what a flood that is not NTP, delivered to a socket, costs its sender with
/// `--latency` (attribution's hooks and the queue stamp) against ntptap without it.
fn latency_targets(live: &[LiveResult]) -> Vec<Target> {
    let sent = |who: &str| {
        live.iter()
            .find(|r| r.flood == "non-NTP flood" && r.contender == who)
            .map(|r| median_u64(r.runs.iter().map(|x| x.sent).collect()))
    };
    let (Some(on), Some(off)) = (sent("ntptap tc-latency"), sent("ntptap tc")) else {
        return Vec::new();
    };
    Target::new(
        "11. sender kept, non-NTP flood, latency on vs off (tc)".to_owned(),
        on as f64 / off.max(1) as f64,
        0.95,
        false,
        None,
    )
    .into_iter()
    .collect()
}

/// The storms of drops that are not NTP: (name, UDP port, dropped by an nftables rule
/// rather than for want of a socket).
const STORMS: [(&str, u16, bool); 2] = [
    ("storm to a closed port", 9, false),
    ("storm into an nftables drop", 7, true),
];

/// The medians of one live contender: (sent, captured, CPU µs per captured packet, start,
/// peak RSS KiB).
/// The medians of one contender's rounds.
#[derive(Clone, Copy)]
struct Medians {
    sent: u64,
    captured: u64,
    dropped: u64,
    cpu: Duration,
    /// Capture CPU per captured packet, µs (NaN when nothing was captured).
    per_us: f64,
    start: Duration,
    rss_kib: u64,
}

impl LiveResult {
    fn medians(&self) -> Medians {
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

fn live_medians(live: &[LiveResult], flood: &str, contender: &str) -> Option<Medians> {
    live.iter()
        .find(|r| r.flood == flood && r.contender == contender)
        .map(LiveResult::medians)
}

fn targets(rows: &[Row], kernel: &[serde_json::Value], live: &[LiveResult]) -> Vec<Target> {
    let mut out = Vec::new();
    let mut push = |name: String, measured: f64, limit: f64, at_most: bool, floor: Option<f64>| {
        out.extend(Target::new(name, measured, limit, at_most, floor));
    };
    let ntp = "NTP flood";
    let other = "non-NTP flood";
    let tcpdump = live_medians(live, ntp, "tcpdump");
    // Target 3's rows, with their intervals: `push` cannot carry those.
    let mut losses = Vec::new();
    for hook in ["tc", "xdp"] {
        let contender = format!("ntptap {hook}");
        if let (Some(ours), Some(theirs)) = (live_medians(live, ntp, &contender), tcpdump) {
            push(
                format!("1. capture CPU per packet vs tcpdump ({hook})"),
                ours.per_us / theirs.per_us,
                0.5,
                true,
                None,
            );
            // Kept vs the no-capture baseline, relative to tcpdump's: the baseline cancels.
            push(
                format!("2. sender kept, NTP flood, vs tcpdump's ({hook})"),
                ours.sent as f64 / theirs.sent as f64,
                1.0,
                false,
                None,
            );
            push(
                format!("6. start to capturing, ms ({hook})"),
                ours.start.as_secs_f64() * 1e3,
                150.0,
                true,
                None,
            );
            push(
                format!("6. peak resident memory, MiB ({hook})"),
                ours.rss_kib as f64 / 1024.0,
                32.0,
                true,
                None,
            );
        }
        // The empty program at the same hook: what attaching anything there costs.
        let empty = format!("empty {hook}");
        let sent = |who: &str| {
            live.iter()
                .find(|r| r.flood == other && r.contender == who)
                .map(|r| r.runs.iter().map(|x| x.sent).collect::<Vec<_>>())
        };
        if let (Some(ours), Some(theirs), Some(none)) =
            (sent(&contender), sent("tcpdump"), sent("none"))
        {
            let floor = sent(&empty);
            let all: Vec<usize> = (0..none.len()).collect();
            let ratio = |of: &[u64], rounds: &[usize]| loss_ratio(of, &theirs, &none, rounds);
            let measured = ratio(&ours, &all);
            let mut target = Target::new(
                format!("3. sender lost, non-NTP flood, vs tcpdump's ({hook})"),
                measured,
                1.0 / 3.0,
                true,
                floor.as_ref().map(|f| ratio(f, &all)),
            );
            if let (Some(t), Some(floor)) = (&mut target, &floor) {
                t.intervals = Some([
                    bootstrap(none.len(), |rounds| ratio(&ours, rounds)),
                    bootstrap(none.len(), |rounds| ratio(floor, rounds)),
                ]);
            }
            losses.extend(target);
        }
    }
    for r in rows {
        // The whole analysis (decode, pairing, client analytics) must cost less than
        // tcpdump's printing; plain decoding, a third of it.
        let limit = if r.what == ANALYSIS { 1.0 } else { 3.0 };
        push(
            format!("5. offline: {}", r.what),
            r.ratio(),
            limit,
            false,
            None,
        );
    }
    out.extend(losses);
    out.extend(kernel_targets(kernel));
    out
}

/// A contender's loss of sender throughput under the non-NTP flood over tcpdump's, from the
/// medians of the given rounds (indices into each contender's runs, which are interleaved:
/// run i of every contender is round i).
fn loss_ratio(ours: &[u64], tcpdump: &[u64], none: &[u64], rounds: &[usize]) -> f64 {
    let med = |v: &[u64]| median_u64(rounds.iter().filter_map(|&i| v.get(i).copied()).collect());
    let base = med(none).max(1) as f64;
    let lost = |v: &[u64]| (1.0 - med(v) as f64 / base).max(0.001);
    lost(ours) / lost(tcpdump)
}

/// A 90 % bootstrap interval of `statistic` over `n` rounds: 2,000 resamples of the rounds
/// with replacement, from a fixed seed so a run's report is reproducible from its data.
fn bootstrap(n: usize, statistic: impl Fn(&[usize]) -> f64) -> (f64, f64) {
    // xorshift64*: plenty for picking round indices.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut values: Vec<f64> = (0..2000)
        .map(|_| {
            let rounds: Vec<usize> = (0..n)
                .map(|_| (next() % n.max(1) as u64) as usize)
                .collect();
            statistic(&rounds)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    (values[100], values[1899])
}

/// Target 4: each kernel program against the empty program of its hook, with the least filter
/// and the least capture as floors.
fn kernel_targets(kernel: &[serde_json::Value]) -> Vec<Target> {
    let ns = |program: &str, frame: &str| {
        kernel
            .iter()
            .find(|k| {
                k["program"] == program && k["frame"].as_str().is_some_and(|f| f.starts_with(frame))
            })
            .and_then(|k| k["ns"].as_f64())
            .unwrap_or(f64::NAN)
    };
    let mut out = Vec::new();
    for (program, empty, filter, capture) in [
        (
            "ntptap_xdp",
            "ntptap_nop",
            "ntptap_cost_filter",
            "ntptap_cost_capture",
        ),
        (
            "ntptap_tc_out",
            "ntptap_nop_tc",
            "ntptap_cost_filter_tc",
            "ntptap_cost_capture_tc",
        ),
    ] {
        let nop = ns(empty, "");
        out.extend(Target::new(
            format!("4. kernel, non-NTP frame vs empty program ({program})"),
            ns(program, "non-NTP") / nop,
            1.15,
            true,
            Some(ns(filter, "non-NTP") / nop),
        ));
        out.extend(Target::new(
            format!("4. kernel, NTP frame vs empty program ({program})"),
            ns(program, "NTP, IPv4") / nop,
            4.0,
            true,
            Some(ns(capture, "NTP, IPv4") / nop),
        ));
    }
    out
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let versions = |p: &str, a: &str| {
        Command::new(p)
            .arg(a)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_default()
    };
    format!(
        "{} CPUs ({cpu}), Linux {kernel}; {}; {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        versions("tcpdump", "--version"),
        versions("tshark", "--version")
    )
}

/// One live measurement.
#[derive(Clone, Copy, Debug, Default)]
struct Live {
    sent: u64,
    captured: u64,
    dropped: u64,
    /// On-CPU time of the capture process, all threads, from just before the flood to just
    /// before it is told to stop (so start-up and exit are not charged to the packets).
    cpu: Duration,
    /// From spawn to its "listening on" line: both print it once capturing has begun.
    start: Duration,
    /// Peak resident memory (VmHWM), KiB.
    peak_rss_kib: u64,
}

/// On-CPU time of every thread of `pid` (`/proc/PID/task/*/schedstat`, nanoseconds).
fn on_cpu(pid: u32) -> Duration {
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
fn status_kib(pid: u32, field: &str) -> u64 {
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
pub struct LiveResult {
    contender: &'static str,
    flood: &'static str,
    runs: Vec<Live>,
}

const FLOOD_SECONDS: f64 = 2.0;

/// The programs the live contenders run.
struct Tools {
    ntptap: std::path::PathBuf,
    /// tests/examples/empty_tap.rs: the empty program attached where ntptap attaches.
    empty_tap: std::path::PathBuf,
}

/// Start `contender` capturing on the lab's `vb` into `file` (None for "none").
fn spawn_contender(
    lab: &ntptap_tests::Lab,
    contender: &str,
    tools: &Tools,
    file: &Path,
) -> anyhow::Result<Option<std::process::Child>> {
    let ntptap = tools.ntptap.as_path();
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
        "tcpdump" => Some(
            lab.b
                .command("tcpdump")
                .args(["-i", "vb", "-w"])
                .arg(file)
                .args(["udp", "port", "123"])
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
            let attribution: &[&str] = match variant {
                "attr" => &["--attribution"],
                "drops" => &["--drops"],
                "latency" => &["--latency"],
                _ => &[],
            };
            let mut command = if variant == "cpu0" {
                let mut c = lab.b.command("taskset");
                c.args(["-c", "0"]).arg(ntptap);
                c
            } else {
                lab.b.command(ntptap)
            };
            Some(
                command
                    .args(["-i", "vb", "--hook", hook, "--xdp-mode", mode])
                    .args(attribution)
                    .arg("-w")
                    .arg(file)
                    .stderr(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()?,
            )
        }
    })
}

fn live_once(
    lab: &ntptap_tests::Lab,
    flood: &Path,
    contender: &str,
    port: u16,
    tools: &Tools,
    dir: &Path,
) -> anyhow::Result<Live> {
    let file = dir.join(format!("{}-{port}.cap", contender.replace(' ', "-")));
    let _ = fs::remove_file(&file);
    let spawned = Instant::now();
    let child = spawn_contender(lab, contender, tools, &file)?;
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
            &port.to_string(),
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

fn live(root: &Path, runs: usize, not_run: &mut NotRun) -> anyhow::Result<Vec<LiveResult>> {
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
    ])?;
    let flood = root.join("target/release/examples/ntp_flood");
    let tools = Tools {
        ntptap: root.join("target/release/ntptap"),
        empty_tap: root.join("target/release/examples/empty_tap"),
    };
    let lab = ntptap_tests::Lab::new("bench");
    let dir = tempfile::tempdir()?;
    // A receiver that never reads: the kernel drops what overflows its buffer, quietly (no
    // ICMP port unreachable to add load).
    let sink = "import socket, time\nsocks = []\nfor p in (123, 5353):\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    s.bind(('0.0.0.0', p))\n    socks.append(s)\ntime.sleep(3600)\n";
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
        "ntptap tc-attr",
    ];
    // Under the flood that is not NTP, what any program at each hook costs: the floor of
    // target 3.
    // And ntptap with process attribution: what its hooks cost a flood that is not NTP.
    let floors = ["empty xdp", "empty xdp-generic", "empty tc"];
    // Storms of drops that are not NTP, to a closed port and into an nftables drop rule:
    // what the drop program costs their sender, against ntptap without it.
    drop_rule(&lab);
    let storm_contenders = ["none", "ntptap tc", "ntptap tc-drops"];
    let mut results: Vec<LiveResult> = Vec::new();
    let all_floods = [("NTP flood", 123u16), ("non-NTP flood", 5353)]
        .into_iter()
        .chain(STORMS.iter().map(|(name, port, _)| (*name, *port)));
    for (flood_name, port) in all_floods {
        let contenders: Vec<&'static str> = match port {
            123 => contenders.to_vec(),
            // And ntptap with --latency: its queue stamp runs on every datagram delivered.
            5353 => contenders
                .iter()
                .chain(&floors)
                .chain(&["ntptap tc-latency"])
                .copied()
                .collect(),
            _ => storm_contenders.to_vec(),
        };
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
fn drop_rule(lab: &ntptap_tests::Lab) {
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

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn live_report(md: &mut String, results: &[LiveResult]) -> Vec<serde_json::Value> {
    let mut json = Vec::new();
    let _ = writeln!(
        md,
        "\n## Live capture ({FLOOD_SECONDS} s floods of 48-byte UDP payloads from one namespace into another over a veth pair, captured on the receiving side; sender pinned to CPU 0; medians, with the lowest and highest round in brackets)\n"
    );
    let _ = writeln!(
        md,
        "| flood | contender | sender kpps | kept vs no capture | captured | dropped | capture CPU µs/packet | start to listening, ms | peak RSS, MiB |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let floods = ["NTP flood", "non-NTP flood"]
        .into_iter()
        .chain(STORMS.iter().map(|(name, _, _)| *name));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_ratios_come_from_the_medians_of_the_rounds() {
        let none = [1000, 1000, 1000, 1000, 1000];
        let tcpdump = [920, 920, 920, 920, 500];
        let empty = [960, 960, 960, 960, 1000];
        let all: Vec<usize> = (0..5).collect();
        // Medians: tcpdump loses 8 %, the empty program 4 %; the outliers do not count.
        assert!((loss_ratio(&empty, &tcpdump, &none, &all) - 0.5).abs() < 1e-9);
        // Only the rounds asked for: round 4 alone, where tcpdump lost 50 % and empty 0.
        let r = loss_ratio(&empty, &tcpdump, &none, &[4]);
        assert!((r - 0.001 / 0.5).abs() < 1e-9, "{r}");
    }

    #[test]
    fn a_refused_row_is_reported_and_the_others_kept() {
        let mut not_run = NotRun::default();
        let ran: Vec<u32> = not_run.or_empty("kernel programs", Ok(vec![1, 2]));
        assert_eq!(ran, [1, 2]);
        assert!(not_run.section().is_empty());
        let refused: Vec<u32> = not_run.or_empty(
            "drop program",
            Err(anyhow::anyhow!(
                "drop_bench failed: thread 'main' panicked at x.rs:1:\nthe drop program: the \
                 verifier refused it: R2 type=rdonly_untrusted_mem expected=scalar\nnote: run \
                 with `RUST_BACKTRACE=1`"
            )),
        );
        assert!(refused.is_empty());
        let section = not_run.section();
        assert!(
            section.contains(
                "| drop program | the drop program: the verifier refused it: R2 \
                 type=rdonly_untrusted_mem expected=scalar |"
            ),
            "{section}"
        );
    }

    #[test]
    fn a_floor_is_out_of_reach_only_when_its_whole_interval_misses() {
        let none = vec![1000u64; 12];
        let tcpdump = vec![920u64; 12];
        // The empty program loses 4 % in most rounds and 1 % in a few: the interval of its
        // ratio reaches below 1/3, so the target is not out of reach by the floor.
        let mut empty = vec![960u64; 12];
        empty[..5].fill(990);
        let mut t = Target::new("3".into(), 0.6, 1.0 / 3.0, true, Some(0.5)).unwrap();
        let all: Vec<usize> = (0..12).collect();
        let floor = bootstrap(12, |r| loss_ratio(&empty, &tcpdump, &none, r));
        assert!(floor.0 < 1.0 / 3.0 && floor.1 >= 0.5, "{floor:?}");
        t.intervals = Some([(0.55, 0.65), floor]);
        assert!(!t.out_of_reach());
        // Every round at 4 %: the whole interval sits at 0.5, above the target.
        let steady = vec![960u64; 12];
        let floor = bootstrap(12, |r| loss_ratio(&steady, &tcpdump, &none, r));
        t.intervals = Some([(0.55, 0.65), floor]);
        assert!(t.out_of_reach(), "{floor:?}");
        assert!((loss_ratio(&steady, &tcpdump, &none, &all) - 0.5).abs() < 1e-9);
    }
}
