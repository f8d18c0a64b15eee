//! `cargo xtask fuzz`: each cargo-fuzz target for a bounded time, seeded from the shared
//! corpus; a crash is copied into fuzz/regressions/TARGET/, where a test replays it forever.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::run::cmd;

pub const TARGETS: [&str; 3] = ["ntp_decode", "print_frame", "read_capture"];

fn cargo_fuzz_installed() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "cargo", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn install() -> anyhow::Result<()> {
    if !cargo_fuzz_installed() {
        cmd(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
            .context("cannot install cargo-fuzz")?;
    }
    Ok(())
}

/// Build every target with the flags `cargo fuzz run` uses (so each run then starts at
/// once); `cargo xtask test` does this while the kernel tests run.
pub fn build(root: &Path) -> anyhow::Result<()> {
    install()?;
    cmd(Command::new("rustup")
        .args(["run", "nightly", "cargo", "fuzz", "build"])
        .current_dir(root)
        .env("AYA_BUILD_SKIP", "1"))
}

pub fn run(root: &Path, seconds: u32, only: Option<&str>) -> anyhow::Result<()> {
    install()?;
    let captures = corpus_captures(root);
    let mut crashed = Vec::new();
    for target in TARGETS.into_iter().filter(|t| only.is_none_or(|o| o == *t)) {
        let corpus = root.join("fuzz/corpus").join(target);
        fs::create_dir_all(&corpus)?;
        seed(&corpus, target, &captures)?;
        let artifacts = root.join("fuzz/artifacts").join(target);
        let status = Command::new("rustup")
            .args(["run", "nightly", "cargo", "fuzz", "run", target])
            .arg(&corpus)
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=1024",
                "-timeout=10",
            ])
            .current_dir(root)
            // The fuzz targets need the decoder and readers, not the kernel programs.
            .env("AYA_BUILD_SKIP", "1")
            .status()
            .context("cannot run cargo fuzz")?;
        let saved = keep_crashes(root, target, &artifacts)?;
        if !status.success() || !saved.is_empty() {
            crashed.push(format!("{target}: {saved:?}"));
        }
    }
    if !crashed.is_empty() {
        bail!(
            "the fuzzers found crashes, now saved under fuzz/regressions/ where \
             `cargo test -p ntptap --test fuzz_regressions` replays them: {}",
            crashed.join("; ")
        );
    }
    Ok(())
}

/// The public captures in the shared corpus, if it is there.
fn corpus_captures(root: &Path) -> Vec<PathBuf> {
    let dir = std::env::var_os("NTPTAP_CORPUS")
        .map_or_else(|| root.join("../shared/corpus"), PathBuf::from);
    let mut files = Vec::new();
    for sub in ["tcpdump", "zeek", "nts"] {
        if let Ok(entries) = fs::read_dir(dir.join(sub)) {
            files.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng")),
            );
        }
    }
    files
}

/// Seed a target's corpus: whole files for the reader, frames for the printer, UDP payloads
/// (Ethernet, IPv4 or IPv6) for the NTP decoder.
fn seed(corpus: &Path, target: &str, captures: &[PathBuf]) -> anyhow::Result<()> {
    for (i, file) in captures.iter().enumerate() {
        let bytes = fs::read(file)?;
        if target == "read_capture" {
            fs::write(corpus.join(format!("seed-{i}")), &bytes)?;
            continue;
        }
        let Ok(mut reader) = pcap_file::pcap::PcapReader::new(&bytes[..]) else {
            continue;
        };
        let mut n = 0;
        while let Some(Ok(p)) = reader.next_packet() {
            let data = p.data();
            let seed = if target == "print_frame" {
                Some(data.to_vec())
            } else {
                etherparse::SlicedPacket::from_ethernet(data)
                    .ok()
                    .and_then(|s| match s.transport {
                        Some(etherparse::TransportSlice::Udp(u)) => Some(u.payload().to_vec()),
                        _ => None,
                    })
            };
            if let Some(seed) = seed {
                fs::write(corpus.join(format!("seed-{i}-{n}")), seed)?;
                n += 1;
            }
        }
    }
    Ok(())
}

fn keep_crashes(root: &Path, target: &str, artifacts: &Path) -> anyhow::Result<Vec<String>> {
    let mut saved = Vec::new();
    let Ok(entries) = fs::read_dir(artifacts) else {
        return Ok(saved);
    };
    let dest = root.join("fuzz/regressions").join(target);
    fs::create_dir_all(&dest)?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["crash-", "oom-", "timeout-", "leak-"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            fs::copy(entry.path(), dest.join(&name))?;
            fs::remove_file(entry.path())?;
            saved.push(name);
        }
    }
    Ok(saved)
}
