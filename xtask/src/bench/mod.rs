//! `cargo xtask bench`: ntptap measured against tcpdump and tshark in the same run, reported as
//! ratios. Writes target/bench/results.json and BENCHMARKS.md.
//!
//! - Offline decode: a generated capture of NTP traffic read by `ntptap -r` and
//!   `tcpdump -n -r` at the same verbosity, and by `tshark -V` (per packet, on a slice of it).
//! - Kernel programs: per-frame cost with BPF_PROG_TEST_RUN against an empty XDP program
//!   loaded in the same run (tests/examples/kernel_bench.rs).

use std::{fs, path::Path};

use anyhow::Context as _;

mod kernel;
mod live;
mod memory;
mod not_run;
mod offline;
mod report;
mod targets;

pub use self::report::Options;
use self::{
    kernel::example_json,
    live::live,
    memory::spoofed_memory,
    not_run::NotRun,
    offline::{ANALYSIS, Cost, Row, generate, measure, median},
    report::report,
};

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
