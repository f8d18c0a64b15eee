//! BENCHMARKS.md and results.json: the tables, the targets, the rows a kernel refused.

use std::{fmt::Write as _, fs, path::Path, process::Command};

use super::{
    kernel::{hook_report, kernel_report},
    live::{LiveResult, live_report},
    memory::memory_report,
    not_run::NotRun,
    offline::{Row, decode_report},
    targets::{attribution_targets, drop_targets, latency_targets, targets},
};

pub(super) fn report(
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
    let _ = write!(md, "\n{}", include_str!("../levers.md"));
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
pub(super) fn with_interval(value: f64, interval: Option<(f64, f64)>) -> String {
    match interval {
        Some((lo, hi)) => format!("{value:.2} ({lo:.2}–{hi:.2})"),
        None => format!("{value:.2}"),
    }
}

pub(super) fn machine() -> String {
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

pub struct Options {
    pub packets: u64,
    pub runs: usize,
}
