//! The kernel rows: the programs under BPF_PROG_TEST_RUN, the attribution hooks and the drop
//! program on real calls, each against an empty program at its hook (the `*_bench` examples).

use std::{fmt::Write as _, path::Path, process::Command};

use crate::target::Target;
use anyhow::{Context as _, bail};

/// Run a benchmark example of the test crate; its JSON lines.
pub(super) fn example_json(root: &Path, example: &str) -> anyhow::Result<Vec<serde_json::Value>> {
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

/// The kernel programs' table: each against the empty program of its hook.
pub(super) fn kernel_report(md: &mut String, kernel: &[serde_json::Value]) {
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
pub(super) fn hook_report(md: &mut String, title: &str, owners: &[serde_json::Value]) {
    let _ = writeln!(
        md,
        "\n## {title}; ns per run from the kernel's BPF run-time statistics, which add their own clock reads to both; median of 9 rounds × 20,000 calls)\n"
    );
    let _ = writeln!(
        md,
        "| hook | call | ntptap ns | empty program ns | × empty program |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    // owner_bench also prints socket()/close() pairs ("pair"), which are target 13's.
    for o in owners.iter().filter(|o| o.get("hook").is_some()) {
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

/// Target 4: each kernel program against the empty program of its hook, with the least filter
/// and the least capture as floors.
pub(super) fn kernel_targets(kernel: &[serde_json::Value]) -> Vec<Target> {
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
        // Issue 32: the frame against the least capture, without attribution and with it
        // (ntptap's default: a socket lookup the least capture does not make).
        for (suffix, what) in [("", "attribution off"), (" +attribution", "default")] {
            out.extend(Target::new(
                format!("4. kernel, NTP frame vs the least capture ({program}, {what})"),
                ns(&format!("{program}{suffix}"), "NTP, IPv4") / ns(capture, "NTP, IPv4"),
                1.25,
                true,
                None,
            ));
        }
    }
    // An attributed ingress frame against its own floor: the least capture plus the one
    // socket lookup attribution needs there (egress takes the skb's socket, no lookup).
    for (program, floor) in [
        ("ntptap_xdp", "ntptap_cost_capture_lookup"),
        ("ntptap_tc_in", "ntptap_cost_capture_lookup_tc"),
    ] {
        out.extend(Target::new(
            format!(
                "4. kernel, NTP frame with attribution vs the least capture with a socket lookup ({program})"
            ),
            ns(&format!("{program} +attribution"), "NTP, IPv4") / ns(floor, "NTP, IPv4"),
            1.25,
            true,
            None,
        ));
    }
    out
}
