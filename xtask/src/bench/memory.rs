//! The memory rows: peak resident memory of the client analytics under spoofed sources.

use std::{
    fmt::Write as _,
    fs::File,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// Peak resident memory of `ntptap -r - --no-print --stats` reading requests from this many
/// distinct spoofed sources (half IPv4, half IPv6 with random-looking interface IDs), fed
/// through a pipe so that no mapping of the file counts: (sources, peak bytes).
pub(super) fn spoofed_memory(ntptap: &Path, out: &Path) -> anyhow::Result<Vec<(u32, u64)>> {
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
pub(super) fn memory_report(md: &mut String, memory: &[(u32, u64)]) -> Vec<serde_json::Value> {
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
